"""The server picks the measured fast exact path by default for the real model on a GPU, and nowhere else."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from render_server.engine import EngineConfig
from render_server.main import build_parser, config_from_args


def _engine_config(argv: list[str]) -> EngineConfig:
    return config_from_args(build_parser().parse_args(argv)).engine


def test_fast_path_is_default_only_for_the_real_model_on_cuda(tmp_path: Path) -> None:
    real = _engine_config(["--checkpoint", str(tmp_path), "--wan", str(tmp_path), "--device", "cpu"])
    assert real.compile_blocks is None and real.vae_decode_bf16 is None  # automatic
    assert dataclasses.replace(real, device="cuda:0").fast_path_default()
    assert not dataclasses.replace(real, device="cpu").fast_path_default()
    tiny = _engine_config(["--model", "tiny", "--device", "cpu"])
    assert not dataclasses.replace(tiny, device="cuda:0").fast_path_default()
    assert not tiny.acceleration_requested


def test_speed_flags_can_be_switched_off_and_warm_up_size_parsed(tmp_path: Path) -> None:
    cfg = _engine_config(["--checkpoint", str(tmp_path), "--wan", str(tmp_path), "--device", "cpu",
                          "--no-compile-blocks", "--vae-decode-bf16", "--warm-up-size", "1024x576"])
    assert cfg.compile_blocks is False and cfg.vae_decode_bf16 is True
    assert cfg.warm_up_size == (1024, 576)
    assert cfg.acceleration_requested


@pytest.mark.parametrize("bad", ["1024", "0x576", "axb", "1024x-5"])
def test_bad_warm_up_size_is_a_usage_error_naming_the_flag(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--model", "tiny", "--warm-up-size", bad])
    assert "--warm-up-size" in capsys.readouterr().err
