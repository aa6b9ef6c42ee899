"""``ParallelGroup``: the server's handle on N rank processes (here 2 CPU ranks over gloo, tiny model).

One group serves the tests of this module in order; the last one kills a rank and checks that the server
gets a clear error quickly instead of hanging.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # spawned ranks import parallel_helpers by name

import parallel_helpers as helpers  # noqa: E402

from render_server.parallel.config import parse_parallel  # noqa: E402
from render_server.parallel.launch import ParallelGroup, ParallelRankError, TinyPipelineFactory  # noqa: E402
from render_server.pipeline.types import Cancelled  # noqa: E402

DEATH_DETECTED_WITHIN_S = 20.0


@pytest.fixture(scope="module")
def text_cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("group-text-cache"))


@pytest.fixture(scope="module")
def group(text_cache_dir):
    factory = helpers.FailingFactory(text_cache_dir=text_cache_dir, fail_rank=1, how="exit")
    group = ParallelGroup.start(factory, ["cpu", "cpu"], parse_parallel("cfg", 2, timeout_s=30.0))
    yield group
    group.close()


@pytest.fixture(scope="module")
def single(text_cache_dir):
    # One thread while the rank processes share the cores; restored for the rest of the session.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield TinyPipelineFactory(seed=0, text_cache_dir=text_cache_dir)("cpu")
    torch.set_num_threads(threads)


def assert_same_frames(got: np.ndarray, expected: np.ndarray) -> None:
    """The same frames up to fp32 rounding: splitting the pass batch moves latents by ~1e-6 of their scale
    (see test_cfg_parallel), which can flip a uint8 rounding now and then (observed: 0 or 1 value in 50 000)."""
    difference = np.abs(got.astype(np.int16) - expected.astype(np.int16))
    assert difference.max() <= 1 and np.count_nonzero(difference) <= 1e-3 * difference.size, (
        difference.max(), np.count_nonzero(difference))


def test_two_chunk_three_pass_shot_gives_the_single_process_frames(group, single):
    shot = helpers.make_shot()
    steps = []
    video = group.generate(shot, on_step=steps.append)
    expected = single.generate(shot)
    assert video.shape == expected.shape == (17, helpers.SIZE, helpers.SIZE, 3)
    assert_same_frames(video, expected)
    assert group.model_size == "1.3b"
    # Progress comes from rank 0 only: one event per step of each of the 2 chunks.
    assert [(s.chunk_index, s.step_index) for s in steps] == [(c, i) for c in range(2) for i in range(helpers.STEPS)]
    assert steps[0].passes == ("cond", "uncond", "ref_uncond")


def test_two_pass_and_one_pass_shots(group, single):
    shot = helpers.make_shot(image_guidance_scale=2.0, pose_guidance_scale=1.0)  # 2-pass, 2 chunks
    assert_same_frames(group.generate(shot), single.generate(shot))
    # 1-pass: rank 0 runs the very batch the single process runs (rank 1 idles): bit for bit.
    shot = helpers.make_shot(num_frames=9, image_guidance_scale=1.0)
    assert np.array_equal(group.generate(shot), single.generate(shot))


def test_invalid_shot_is_refused_before_any_rank_works_and_the_group_goes_on(group):
    with pytest.raises(ValueError, match="steps"):
        group.prepare(helpers.make_shot(steps=0))
    prepared = group.prepare(helpers.make_shot(num_frames=1))
    assert [(c.start, c.end) for c in prepared.chunks] == [(0, 1)]
    with pytest.raises(ValueError, match="chunk_index"):
        group.generate_chunk(prepared, 0, chunk_index=1)


def test_cancel_stops_every_rank_at_the_same_step(group):
    prepared = group.prepare(helpers.make_shot())
    steps = []
    with pytest.raises(Cancelled) as info:
        group.generate_chunk(prepared, 0, on_step=steps.append, should_cancel=lambda: len(steps) >= 1)
    assert info.value.chunk_index == 0 and info.value.step_index >= 1
    # Every rank stopped: the group runs the next chunk normally.
    frames = group.generate_chunk(prepared, 0)
    assert frames.shape == (13, helpers.SIZE, helpers.SIZE, 3)


def test_out_of_memory_on_one_rank_fails_the_chunk_but_not_the_group(group, single):
    with pytest.raises(torch.OutOfMemoryError, match=r"rank 1 \(cpu\): OutOfMemoryError: injected"):
        group.generate(helpers.make_shot(num_frames=5, width=helpers.OOM_WIDTH_PX))
    shot = helpers.make_shot(num_frames=5)
    assert np.array_equal(group.generate(shot), single.generate(shot))


def test_a_dead_rank_is_a_clear_error_not_a_hang(group):
    shot = helpers.make_shot(num_frames=5, width=helpers.POISON_WIDTH_PX)  # rank 1 exits on its 2nd call
    started = time.monotonic()
    with pytest.raises(ParallelRankError, match=r"rank 1 \(cpu\) died with exit code 3"):
        group.generate(shot)
    assert time.monotonic() - started < DEATH_DETECTED_WITHIN_S
    with pytest.raises(ParallelRankError, match="closed"):
        group.prepare(helpers.make_shot())


def test_group_arguments_are_checked():
    with pytest.raises(ValueError, match="--gpus 2 needs 2 devices"):
        ParallelGroup.start(TinyPipelineFactory(), ["cpu"], parse_parallel("cfg", 2))
    with pytest.raises(ValueError, match="distinct"):
        ParallelGroup.start(TinyPipelineFactory(), ["cuda:0", "cuda:0"], parse_parallel("cfg", 2))
