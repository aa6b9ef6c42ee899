"""UMT5 prompt embeddings, computed once and cached on disk, so the 11 GB text encoder need not stay resident.

Encoding is the official One-to-All / diffusers ``_get_t5_prompt_embeds`` recipe: tokenize with padding to
``max_length`` (512) and truncation, run the encoder with the attention mask, keep the rows of the true
token count (EOS included) and zero the rest. Like the official ``wanx_t2v`` encoder, prompts are not
cleaned (diffusers' ``prompt_clean`` is a no-op for the empty and the official negative prompt anyway).

Cache entries are keyed by a fingerprint of the text-encoder and tokenizer files + prompt + max_length +
dtype, stored as ``<cache_dir>/t5-<key>.safetensors`` (written atomically). On a miss the encoder is loaded,
every missing prompt is encoded, and the encoder is freed again.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

DEFAULT_MAX_LENGTH = 512
_FINGERPRINT_SAMPLE = 1 << 20  # bytes hashed at the start and at the end of every file


def fingerprint_files(*folders: Path) -> str:
    """Fast identity of model folders: relative path, size, and a hash of the first and last MiB of every file.

    Hashing 11 GB of T5 weights on every start would take tens of seconds; sizes plus head/tail bytes change
    with any re-download or conversion, while mtimes change on a mere copy.
    """
    digest = hashlib.sha256()
    for folder in folders:
        folder = Path(folder)
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            size = file.stat().st_size
            digest.update(f"{folder.name}/{file.relative_to(folder).as_posix()}:{size}\n".encode())
            with file.open("rb") as handle:
                digest.update(handle.read(_FINGERPRINT_SAMPLE))
                if size > 2 * _FINGERPRINT_SAMPLE:
                    handle.seek(size - _FINGERPRINT_SAMPLE)
                    digest.update(handle.read(_FINGERPRINT_SAMPLE))
    return digest.hexdigest()


@torch.no_grad()
def encode_prompts(
    tokenizer: Any,
    text_encoder: torch.nn.Module,
    prompts: Sequence[str],
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    dtype: torch.dtype | None = None,
) -> list[torch.Tensor]:
    """Each prompt separately -> (1, max_length, D) embeddings (rows past the token count are zero).

    One prompt per encoder call, so an embedding never depends on which other prompts were encoded with it.
    """
    device = next(text_encoder.parameters()).device
    results = []
    for prompt in prompts:
        inputs = tokenizer(
            [prompt],
            padding="max_length",
            max_length=max_length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        ids, mask = inputs.input_ids, inputs.attention_mask
        seq_len = int(mask.gt(0).sum())
        hidden = text_encoder(ids.to(device), mask.to(device)).last_hidden_state
        hidden = hidden.to(dtype or hidden.dtype)
        hidden[:, seq_len:] = 0
        results.append(hidden.cpu())
    return results


class T5PromptEncoder:
    """Loads (tokenizer, text encoder) only when called, encodes, and frees them again."""

    def __init__(
        self,
        load: Callable[[], tuple[Any, torch.nn.Module]],
        fingerprint: str,
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
        dtype: torch.dtype | None = None,
    ) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self._load = load
        self.fingerprint = fingerprint
        self.max_length = max_length
        self.dtype = dtype
        self.loads = 0  # how often the encoder was loaded (the cache should keep this at most 1)

    @classmethod
    def from_modules(
        cls, tokenizer: Any, text_encoder: torch.nn.Module, *, max_length: int = DEFAULT_MAX_LENGTH
    ) -> "T5PromptEncoder":
        """Wrap in-memory modules (tests, the tiny demo); the fingerprint covers config and weights."""
        digest = hashlib.sha256(json.dumps(text_encoder.config.to_dict(), sort_keys=True, default=str).encode())
        for name, tensor in sorted(text_encoder.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().to(torch.float32).cpu().numpy().tobytes())
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
        return cls(lambda: (tokenizer, text_encoder), digest.hexdigest(), max_length=max_length)

    def encode(self, prompts: Sequence[str]) -> list[torch.Tensor]:
        tokenizer, text_encoder = self._load()
        self.loads += 1
        try:
            return encode_prompts(tokenizer, text_encoder, prompts, max_length=self.max_length, dtype=self.dtype)
        finally:
            del tokenizer, text_encoder
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


class TextEmbeddingCache:
    """Prompt -> (1, L, D) embeddings, served from ``cache_dir`` and computed by ``encoder`` on a miss."""

    def __init__(self, cache_dir: str | Path, encoder: T5PromptEncoder) -> None:
        self.cache_dir = Path(cache_dir)
        self.encoder = encoder

    def key(self, prompt: str) -> str:
        payload = {
            "encoder": self.encoder.fingerprint,
            "prompt": prompt,
            "max_length": self.encoder.max_length,
            "dtype": str(self.encoder.dtype),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:40]

    def path(self, prompt: str) -> Path:
        return self.cache_dir / f"t5-{self.key(prompt)}.safetensors"

    def get(self, prompts: Sequence[str]) -> list[torch.Tensor]:
        """Embeddings for every prompt; all misses are encoded with a single encoder load."""
        found: dict[str, torch.Tensor] = {}
        for prompt in dict.fromkeys(prompts):
            cached = self._read(prompt)
            if cached is not None:
                found[prompt] = cached
        missing = [p for p in dict.fromkeys(prompts) if p not in found]
        if missing:
            for prompt, embeds in zip(missing, self.encoder.encode(missing)):
                self._write(prompt, embeds)
                found[prompt] = embeds
        return [found[p] for p in prompts]

    def _read(self, prompt: str) -> torch.Tensor | None:
        file = self.path(prompt)
        if not file.is_file():
            return None
        try:
            return load_file(str(file))["embeds"]
        except (OSError, KeyError, RuntimeError, ValueError, SafetensorError):
            # A truncated or foreign file: recompute and overwrite it.
            return None

    def _write(self, prompt: str, embeds: torch.Tensor) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        target = self.path(prompt)
        fd, tmp = tempfile.mkstemp(prefix=target.name, suffix=".tmp", dir=self.cache_dir)
        os.close(fd)
        try:
            metadata = {"prompt": prompt, "max_length": str(self.encoder.max_length), "encoder": self.encoder.fingerprint}
            save_file({"embeds": embeds.contiguous()}, tmp, metadata=metadata)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
