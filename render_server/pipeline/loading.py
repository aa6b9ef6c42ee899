"""Build an ``OneToAllPipeline`` from ``--checkpoint DIR`` (official One-to-All folder) and ``--wan DIR``.

``--wan`` is a Wan2.1-T2V-{1.3B,14B}-Diffusers folder; only ``vae/``, ``text_encoder/`` and ``tokenizer/``
are used (its transformer is not). Everything loads with ``local_files_only=True``: never a Hub call. The
UMT5 encoder is not kept: it is loaded on a text-cache miss, used, and freed (see ``text.py``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .pipeline import OneToAllPipeline
from .text import DEFAULT_MAX_LENGTH, T5PromptEncoder, TextEmbeddingCache, fingerprint_files

_WEIGHT_SUFFIXES = (".safetensors", ".bin")


class WanFolderError(ValueError):
    """The ``--wan`` folder lacks a part or does not fit the checkpoint; the message names the path."""


def default_text_cache_dir() -> Path:
    """``$O2A_CACHE_DIR/text-embeddings``, else ``~/.cache/o2a-render/text-embeddings``."""
    root = os.environ.get("O2A_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "o2a-render") / "text-embeddings"


def check_wan_folder(wan_dir: str | Path) -> dict[str, Path]:
    """Paths of ``vae``, ``text_encoder``, ``tokenizer``; raises ``WanFolderError`` naming what is missing."""
    wan_dir = Path(wan_dir)
    if not wan_dir.is_dir():
        raise WanFolderError(f"--wan {wan_dir}: not a folder (expected a Wan2.1-T2V-*-Diffusers folder)")
    parts = {name: wan_dir / name for name in ("vae", "text_encoder", "tokenizer")}
    problems = []
    for name in ("vae", "text_encoder"):
        folder = parts[name]
        if not (folder / "config.json").is_file():
            problems.append(f"{folder / 'config.json'} is missing")
        elif not any(p.name.endswith(_WEIGHT_SUFFIXES) for p in folder.iterdir()):
            problems.append(f"{folder} has no weight files (*.safetensors / *.bin)")
    tokenizer = parts["tokenizer"]
    if not tokenizer.is_dir() or not any(tokenizer.iterdir()):
        problems.append(f"{tokenizer} is missing or empty")
    if problems:
        raise WanFolderError(f"--wan {wan_dir}: " + "; ".join(problems))
    return parts


def load_pipeline(
    checkpoint: str | Path,
    wan: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    text_cache_dir: str | Path | None = None,
    text_device: str | torch.device | None = None,
    text_dtype: torch.dtype | None = None,
    text_max_length: int = DEFAULT_MAX_LENGTH,
    vae_decode_dtype: torch.dtype | None = None,
    pass_batch_size: int | None = None,
    model_size: str | None = None,
) -> OneToAllPipeline:
    """Transformer from ``checkpoint`` (``CheckpointError`` on a bad folder), VAE (float32) and cached UMT5
    text embeddings from ``wan``. ``text_device``/``text_dtype`` default to ``device`` and bfloat16 on CUDA,
    float32 on CPU."""
    from diffusers import AutoencoderKLWan

    from render_server.models import load_one_to_all_transformer

    parts = check_wan_folder(wan)
    device = torch.device(device)
    text_device = torch.device(text_device) if text_device is not None else device
    if text_dtype is None:
        text_dtype = torch.bfloat16 if text_device.type == "cuda" else torch.float32

    transformer = load_one_to_all_transformer(checkpoint, dtype=dtype, device=device)
    text_config = _read_config(parts["text_encoder"])
    d_model = text_config.get("d_model")
    if d_model != transformer.config.text_dim:
        raise WanFolderError(
            f"--wan {parts['text_encoder']}: d_model={d_model} does not match the checkpoint's text_dim="
            f"{transformer.config.text_dim} (UMT5-XXL has 4096)"
        )
    try:
        vae = AutoencoderKLWan.from_pretrained(parts["vae"], torch_dtype=torch.float32, local_files_only=True)
    except (OSError, ValueError) as error:
        raise WanFolderError(f"--wan {parts['vae']}: cannot load AutoencoderKLWan: {error}") from error
    vae = vae.to(device).eval()
    if vae.config.z_dim != transformer.config.in_channels:
        raise WanFolderError(
            f"--wan {parts['vae']}: z_dim={vae.config.z_dim} does not match the checkpoint's "
            f"in_channels={transformer.config.in_channels}"
        )

    def load_text_encoder():
        from transformers import AutoTokenizer, UMT5EncoderModel

        try:
            tokenizer = AutoTokenizer.from_pretrained(parts["tokenizer"], local_files_only=True)
            encoder = UMT5EncoderModel.from_pretrained(
                parts["text_encoder"], torch_dtype=text_dtype, local_files_only=True
            )
        except (OSError, ValueError) as error:
            raise WanFolderError(f"--wan {Path(wan)}: cannot load the UMT5 text encoder/tokenizer: {error}") from error
        return tokenizer, encoder.to(text_device).eval()

    encoder = T5PromptEncoder(
        load_text_encoder,
        fingerprint_files(parts["text_encoder"], parts["tokenizer"]),
        max_length=text_max_length,
        dtype=text_dtype,
    )
    cache = TextEmbeddingCache(text_cache_dir if text_cache_dir is not None else default_text_cache_dir(), encoder)
    return OneToAllPipeline(
        transformer,
        vae,
        cache.get,
        model_size=model_size,
        pass_batch_size=pass_batch_size,
        vae_decode_dtype=vae_decode_dtype,
    )


def _read_config(folder: Path) -> dict:
    file = folder / "config.json"
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise WanFolderError(f"--wan {file}: unreadable config: {error}") from error
