"""Text-embedding cache (official T5 recipe, keyed on the encoder files) and ``--wan`` folder loading."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from render_server.models.tiny import TINY_TEXT_MAX_LENGTH, build_tiny_text_encoder, build_tiny_vae
from render_server.pipeline.loading import WanFolderError, check_wan_folder, load_pipeline
from render_server.pipeline.text import (
    T5PromptEncoder,
    TextEmbeddingCache,
    encode_prompts,
    fingerprint_files,
)
from render_server.pipeline.types import OFFICIAL_NEGATIVE_PROMPT, ShotInputs

PROMPTS = ["", OFFICIAL_NEGATIVE_PROMPT.lower()[:40], "a dancer in a red dress"]


@pytest.fixture(scope="module")
def tiny_text():
    return build_tiny_text_encoder(seed=0)


def test_encoding_matches_diffusers_recipe(tiny_text):
    from diffusers import WanPipeline

    ours = encode_prompts(tiny_text.tokenizer, tiny_text.text_encoder, PROMPTS, max_length=TINY_TEXT_MAX_LENGTH)
    fake_pipe = SimpleNamespace(tokenizer=tiny_text.tokenizer, text_encoder=tiny_text.text_encoder)
    for prompt, embeds in zip(PROMPTS, ours):
        reference = WanPipeline._get_t5_prompt_embeds(
            fake_pipe, prompt, max_sequence_length=TINY_TEXT_MAX_LENGTH, device=torch.device("cpu"), dtype=torch.float32
        )
        assert embeds.shape == (1, TINY_TEXT_MAX_LENGTH, 32)
        torch.testing.assert_close(embeds, reference, atol=1e-6, rtol=1e-6)
    # "" is the single </s> token: one non-zero row, the rest exactly zero (no attention mask downstream).
    assert ours[0][0, 1:].abs().sum() == 0 and ours[0][0, 0].abs().sum() > 0


def test_cache_hits_disk_and_loads_encoder_once(tiny_text, tmp_path):
    encoder = T5PromptEncoder.from_modules(tiny_text.tokenizer, tiny_text.text_encoder, max_length=TINY_TEXT_MAX_LENGTH)
    cache = TextEmbeddingCache(tmp_path, encoder)
    first = cache.get(PROMPTS)
    assert encoder.loads == 1 and len(list(tmp_path.glob("t5-*.safetensors"))) == len(PROMPTS)
    again = cache.get(list(reversed(PROMPTS)))
    assert encoder.loads == 1
    for a, b in zip(first, reversed(again)):
        assert torch.equal(a, b)
    # A fresh cache object over the same folder (a server restart) needs no encoder at all.
    restarted = T5PromptEncoder(lambda: pytest.fail("encoder loaded"), encoder.fingerprint, max_length=TINY_TEXT_MAX_LENGTH)
    assert torch.equal(TextEmbeddingCache(tmp_path, restarted).get([""])[0], first[0])
    # A damaged entry is recomputed.
    cache.path("").write_bytes(b"garbage")
    assert torch.equal(cache.get([""])[0], first[0]) and encoder.loads == 2


def test_cache_key_covers_encoder_prompt_and_length(tiny_text, tmp_path):
    other = build_tiny_text_encoder(seed=1)
    a = T5PromptEncoder.from_modules(tiny_text.tokenizer, tiny_text.text_encoder, max_length=TINY_TEXT_MAX_LENGTH)
    b = T5PromptEncoder.from_modules(other.tokenizer, other.text_encoder, max_length=TINY_TEXT_MAX_LENGTH)
    c = T5PromptEncoder.from_modules(tiny_text.tokenizer, tiny_text.text_encoder, max_length=8)
    keys = {TextEmbeddingCache(tmp_path, e).key(p) for e in (a, b, c) for p in ("", "x")}
    assert len(keys) == 6


def test_fingerprint_follows_file_content(tmp_path):
    folder = tmp_path / "text_encoder"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\0" * (3 << 20))
    before = fingerprint_files(folder)
    assert fingerprint_files(folder) == before
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-5] = 1  # in the hashed tail
    (folder / "model.safetensors").write_bytes(bytes(data))
    assert fingerprint_files(folder) != before


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory, tiny_text):
    root = tmp_path_factory.mktemp("Wan2.1-T2V-tiny-Diffusers")
    build_tiny_vae(seed=0).save_pretrained(root / "vae")
    tiny_text.text_encoder.save_pretrained(root / "text_encoder")
    tiny_text.tokenizer.save_pretrained(root / "tokenizer")
    return root


def test_load_pipeline_from_folders(wan_dir, official_parity_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipeline = load_pipeline(official_parity_dir / "checkpoint", wan_dir, text_cache_dir=tmp_path / "cache")
    rng = np.random.default_rng(0)
    shot = ShotInputs(
        reference_image=rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
        reference_pose=rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
        pose_frames=rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8),
        steps=1,
    )
    image = pipeline.generate(shot)
    assert image.shape == (1, 32, 32, 3)
    # Both prompts were encoded once from the saved folder and cached on disk.
    assert len(list((tmp_path / "cache").glob("t5-*.safetensors"))) == 2
    again = load_pipeline(official_parity_dir / "checkpoint", wan_dir, text_cache_dir=tmp_path / "cache")
    assert np.array_equal(again.generate(shot), image)


def test_load_pipeline_rejects_mismatched_text_encoder(wan_dir, official_parity_dir, tmp_path):
    from transformers import UMT5Config, UMT5EncoderModel

    other = tmp_path / "wan"
    shutil.copytree(wan_dir, other)
    shutil.rmtree(other / "text_encoder")
    UMT5EncoderModel(UMT5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=4)).save_pretrained(
        other / "text_encoder"
    )
    with pytest.raises(WanFolderError, match="d_model=16"):
        load_pipeline(official_parity_dir / "checkpoint", other, text_cache_dir=tmp_path / "cache")


def test_wan_folder_errors(wan_dir, tmp_path):
    assert set(check_wan_folder(wan_dir)) == {"vae", "text_encoder", "tokenizer"}
    with pytest.raises(WanFolderError, match="not a folder"):
        check_wan_folder(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    shutil.copytree(wan_dir, broken)
    shutil.rmtree(broken / "vae")
    (broken / "tokenizer").joinpath("tokenizer.json").unlink()
    for f in (broken / "tokenizer").iterdir():
        f.unlink()
    with pytest.raises(WanFolderError) as info:
        check_wan_folder(broken)
    assert "vae/config.json is missing" in str(info.value) and "tokenizer is missing or empty" in str(info.value)
    for f in (broken / "text_encoder").glob("*.safetensors"):
        f.unlink()
    with pytest.raises(WanFolderError, match="text_encoder has no weight files"):
        check_wan_folder(broken)
