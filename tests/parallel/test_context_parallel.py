"""Ulysses context parallelism: plan, argument checks, and (opt-in, 4 ranks) cfg+ulysses against one process.

The 2-rank Ulysses run against the single-process pipeline is part of the spawned group in
``test_cfg_parallel.py`` (one spawn for both, to keep the suite fast on 2 cores).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput

sys.path.insert(0, str(Path(__file__).resolve().parent))  # spawned ranks import parallel_helpers by name

import parallel_helpers as helpers  # noqa: E402

from render_server.models.tiny import build_tiny_transformer  # noqa: E402
from render_server.parallel.config import parse_parallel  # noqa: E402
from render_server.parallel.context_parallel import (  # noqa: E402
    _check_tokens_hook,
    check_ulysses_degree,
    one_to_all_cp_plan,
)
from render_server.parallel.launch import TinyPipelineFactory, spawn_ranks  # noqa: E402

RUN_4_RANKS = os.environ.get("O2A_TEST_4_RANKS") == "1"


def test_plan_splits_video_tokens_and_gathers_before_the_output_modulation():
    plan = one_to_all_cp_plan()
    model = build_tiny_transformer(seed=0)
    names = dict(model.named_modules())
    assert set(plan) <= set(names)  # exact module names: "rope" is not refextractor.rope
    assert isinstance(plan["blocks.0"]["hidden_states"], ContextParallelInput)
    assert plan["blocks.0"]["hidden_states"].split_dim == 1
    assert all(plan["rope"][i].split_output for i in (0, 1))
    # norm_out, not proj_out: the token-replace output modulation indexes whole-sequence positions.
    assert isinstance(plan["norm_out"], ContextParallelOutput) and "proj_out" not in plan
    assert type(model)._cp_plan is None  # the model itself still refuses a plain enable_parallelism()


def test_degree_must_divide_the_heads():
    model = build_tiny_transformer(seed=0)  # 2 heads
    check_ulysses_degree(model, 2)
    with pytest.raises(ValueError, match=r"must divide the model's 2 attention heads \(possible: \[2\]\)"):
        check_ulysses_degree(model, 3)
    with pytest.raises(ValueError, match=">= 2"):
        check_ulysses_degree(model, 1)


def test_token_count_must_divide_by_the_degree():
    model = build_tiny_transformer(seed=0)
    hook = _check_tokens_hook(2)
    hook(model, (), {"hidden_states": torch.zeros(1, 16, 3, 4, 4)})  # (3+1) * 2 * 2 = 16 tokens
    with pytest.raises(ValueError, match="9 video tokens"):
        hook(model, (), {"hidden_states": torch.zeros(1, 16, 2, 2, 6)})  # (2+1) * 1 * 3 = 9


def test_flag_parsing():
    assert parse_parallel(None, None).mode == "none"
    cfg = parse_parallel("cfg", None)
    assert (cfg.gpus, cfg.cfg_degree, cfg.ulysses_degree) == (2, 2, 1)
    assert parse_parallel("ulysses", 4).ulysses_degree == 4
    both = parse_parallel("cfg+ulysses", 6)
    assert (both.cfg_degree, both.ulysses_degree) == (3, 2)
    assert (parse_parallel("cfg+ulysses", 4).cfg_degree, parse_parallel("cfg+ulysses", 8).cfg_degree) == (2, 2)
    assert parse_parallel("cfg+ulysses", 8, ulysses_degree=2).cfg_degree == 4
    with pytest.raises(ValueError, match="--parallel"):
        parse_parallel("tensor", 2)
    with pytest.raises(ValueError, match="needs --parallel"):
        parse_parallel("none", 2)
    with pytest.raises(ValueError, match="must divide gpus"):
        parse_parallel("cfg+ulysses", 6, ulysses_degree=4)
    with pytest.raises(ValueError, match="gpus must be"):
        parse_parallel("cfg", 0)
    with pytest.raises(ValueError, match="timeout_s"):
        parse_parallel("cfg", 2, timeout_s=0)


@pytest.mark.skipif(not RUN_4_RANKS, reason="4 rank processes take ~50 s on 2 cores; set O2A_TEST_4_RANKS=1")
def test_cfg_plus_ulysses_on_four_ranks_matches_single_process(tmp_path):
    text_cache_dir = str(tmp_path / "text")
    single = TinyPipelineFactory(seed=0, text_cache_dir=text_cache_dir, threads=None)("cpu")
    prepared = single.prepare(helpers.make_shot())
    first = single.run_chunk(prepared, 0)
    expected = {
        "three_pass_0": first.latents,
        "three_pass_1": single.run_chunk(prepared, 1, previous_frames=helpers._previous(first, prepared)).latents,
    }
    with tempfile.TemporaryDirectory(prefix="o2a-cp-test-") as workdir:
        processes = spawn_ranks(helpers.ulysses_worker, (workdir, text_cache_dir, "cfg+ulysses", 4), ["cpu"] * 4, 60.0, workdir)
        for process in processes:
            process.join(300)
        assert [p.exitcode for p in processes] == [0] * 4
        results = [torch.load(Path(workdir) / f"rank{r}.pt") for r in range(4)]
    for got in results:
        assert got["seen"] == {"main": 10, "control": 10}
        for name, value in expected.items():
            assert torch.equal(got[name], results[0][name])
            assert (got[name] - value).abs().max() / value.abs().max() <= 2e-6


def test_device_gangs_and_factories():
    from render_server.parallel.config import device_gangs
    from render_server.parallel.launch import CheckpointPipelineFactory, pipeline_factory

    config = parse_parallel("cfg", 2)
    assert device_gangs(["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:4"], config) == [
        ("cuda:0", "cuda:1"), ("cuda:2", "cuda:3")
    ]
    assert device_gangs(["cuda:0", "cuda:1"], parse_parallel(None, None)) == [("cuda:0",), ("cuda:1",)]
    with pytest.raises(ValueError, match="needs 2 devices"):
        device_gangs(["cuda:0"], config)
    with pytest.raises(ValueError, match="twice"):
        device_gangs(["cuda:0", "cuda:0"], config)
    assert isinstance(pipeline_factory("tiny"), TinyPipelineFactory)
    assert pipeline_factory("one-to-all", checkpoint="c", wan="w") == CheckpointPipelineFactory("c", "w", None)
    with pytest.raises(ValueError, match="--checkpoint"):
        pipeline_factory("one-to-all")


def test_parallel_group_has_the_pipeline_segment_api():
    """The job worker drives a ParallelGroup exactly like a OneToAllPipeline: same call signatures."""
    import inspect

    from render_server.parallel.launch import ParallelGroup
    from render_server.pipeline.pipeline import OneToAllPipeline

    for name in ("prepare", "generate_chunk", "generate"):
        ours = inspect.signature(getattr(ParallelGroup, name)).parameters
        theirs = inspect.signature(getattr(OneToAllPipeline, name)).parameters
        assert [(p.name, p.kind) for p in ours.values()] == [(p.name, p.kind) for p in theirs.values()], name
