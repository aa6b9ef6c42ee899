"""CFG parallelism (and Ulysses in the same spawned group) on CPU with real gloo process groups and the
tiny real model.

Rank processes are spawned (as on a GPU node, one per device); every comparison is against the plain
single-process ``OneToAllPipeline`` on the same inputs.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))  # spawned ranks import parallel_helpers by name

import parallel_helpers as helpers  # noqa: E402

from render_server.parallel.cfg_parallel import CfgParallel, CfgParallelPipeline, assign_passes  # noqa: E402
from render_server.parallel.launch import TinyPipelineFactory, spawn_ranks  # noqa: E402
from render_server.pipeline.guidance import guidance_for_scales, one_pass, three_pass_case1  # noqa: E402
from render_server.pipeline.types import Cancelled  # noqa: E402

JOIN_TIMEOUT_S = 120
RELATIVE_TOLERANCE = 2e-6  # max |difference| / max |value| of fp32 latents


@pytest.fixture(scope="module")
def text_cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("parallel-text-cache"))


@pytest.fixture(scope="module")
def single(text_cache_dir):
    # One thread while the rank processes share the cores; restored for the rest of the session.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield TinyPipelineFactory(seed=0, text_cache_dir=text_cache_dir)("cpu")
    torch.set_num_threads(threads)


# -- pass assignment (pure) ------------------------------------------------------------------------------------


def _names(groups):
    return [[p.name for p in g] for g in groups]


def test_assignment_balances_passes_and_groups_shared_references():
    three = guidance_for_scales(2.5, 1.5).passes
    assert _names(assign_passes(three, 1)) == [["cond", "uncond", "ref_uncond"]]
    # U and R0 both read the black reference: one reference-extractor run on that rank.
    assert _names(assign_passes(three, 2)) == [["cond"], ["uncond", "ref_uncond"]]
    assert _names(assign_passes(three, 3)) == [["cond"], ["uncond"], ["ref_uncond"]]
    assert _names(assign_passes(three, 4)) == [["cond"], ["uncond"], ["ref_uncond"], []]
    # case1: C and P0 share the real reference.
    assert _names(assign_passes(three_pass_case1(2.0, 2.0).passes, 2)) == [["cond", "pose_uncond"], ["uncond"]]
    assert _names(assign_passes(guidance_for_scales(2.5, 1.0).passes, 2)) == [["cond"], ["uncond"]]
    assert _names(assign_passes(one_pass().passes, 2)) == [["cond"], []]
    for world in range(1, 5):
        groups = assign_passes(three, world)
        assert sorted(p.name for g in groups for p in g) == sorted(p.name for p in three)
        assert max(map(len, groups)) == -(-len(three) // world)
    with pytest.raises(ValueError, match="world_size"):
        assign_passes(three, 0)


# -- one rank: the degenerate group is the plain pipeline ------------------------------------------------------


def test_one_rank_group_is_bit_identical_to_the_plain_pipeline(single, tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        parallel = CfgParallelPipeline.from_pipeline(single, CfgParallel())
        shot = helpers.make_shot()
        expected = single.run_chunk(single.prepare(shot), 0)
        got = parallel.run_chunk(parallel.prepare(shot), 0)
        assert torch.equal(got.latents, expected.latents)
        assert np.array_equal(got.frames, expected.frames)
        with pytest.raises(Cancelled):
            parallel.run_chunk(parallel.prepare(shot), 0, should_cancel=lambda: True)
        with pytest.raises(TypeError, match="already"):
            CfgParallelPipeline.from_pipeline(parallel, CfgParallel())
    finally:
        dist.destroy_process_group()


# -- two spawned ranks ------------------------------------------------------------------------------------------


def test_two_ranks_cfg_and_ulysses_match_single_process_and_fail_cleanly(single, text_cache_dir):
    with tempfile.TemporaryDirectory(prefix="o2a-cfg-test-") as workdir:
        started = time.monotonic()
        processes = spawn_ranks(helpers.cfg_worker, (workdir, text_cache_dir), ["cpu", "cpu"], 30.0, workdir)

        # The single-process reference, computed while the ranks work.
        shot = helpers.make_shot()
        prepared = single.prepare(shot)
        first = single.run_chunk(prepared, 0)
        expected = {
            "three_pass_0": first.latents,
            "three_pass_1": single.run_chunk(prepared, 1, previous_frames=helpers._previous(first, prepared)).latents,
            "two_pass_0": single.run_chunk(
                single.prepare(helpers.make_shot(image_guidance_scale=2.0, pose_guidance_scale=1.0)), 0
            ).latents,
        }
        for process in processes:
            process.join(JOIN_TIMEOUT_S)
        assert all(p.exitcode == 0 for p in processes), [p.exitcode for p in processes]
        assert time.monotonic() - started < JOIN_TIMEOUT_S

        results = [torch.load(Path(workdir) / f"rank{rank}.pt") for rank in range(2)]
        expected.update(ulysses_three_pass_0=expected["three_pass_0"], ulysses_three_pass_1=expected["three_pass_1"])
        for rank, got in enumerate(results):
            assert all(torch.equal(got[name], results[0][name]) for name in expected)  # ranks agree bitwise
            for name, value in expected.items():
                assert got[name].shape == value.shape
                # Splitting the pass batch changes matmul blocking: fp32 rounding only (measured 8e-7 of the
                # latent scale; the single-process pipeline with pass_batch_size=1 differs by as much).
                error = (got[name] - value).abs().max() / value.abs().max()
                assert error <= RELATIVE_TOLERANCE, (rank, name, float(error))
        report = [json.loads((Path(workdir) / f"rank{r}.json").read_text()) for r in range(2)]

    # Ulysses: each rank's main and control blocks saw half of the 20 video tokens.
    assert report[0]["ulysses_seen"] == report[1]["ulysses_seen"] == {"main": 10, "control": 10}
    # Rank 1 alone asked to cancel after one step: both stopped before step 1.
    assert report[0]["cancelled_at"] == report[1]["cancelled_at"] == [0, 1]
    # Rank 1's transformer raised: rank 1 re-raised it, rank 0 got an error naming rank 1 (no timeout wait).
    assert report[1]["error"] == ["RuntimeError", "injected failure"]
    kind, message = report[0]["error"]
    assert kind == "RankFailedError" and "rank 1: RuntimeError: injected failure" in message
    # Rank 1 stalled (alive, silent): rank 0's exchange ended with an error after about the group's timeout.
    kind, seconds = report[0]["hang"]
    assert kind == "DistBackendError" or kind == "RuntimeError", kind
    assert helpers.HANG_TIMEOUT_S - 0.5 <= seconds < 2 * helpers.HANG_TIMEOUT_S, seconds
