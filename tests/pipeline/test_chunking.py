"""Chunk plans: the official plan verbatim, the default plan's guarantees and the cost of both."""

from __future__ import annotations

import json

import pytest

from render_server.pipeline.chunking import (
    Chunk,
    official_split_plan,
    plan_chunks,
    plan_cost,
)


def _delivered(chunks: list[Chunk], num_frames: int) -> list[int]:
    owner = [-1] * num_frames
    for chunk in chunks:
        for i in range(chunk.write_start, chunk.write_end):
            owner[i] = chunk.index
    return owner


def test_official_plan_matches_fixture_for_every_length(official_parity_dir):
    data = json.loads((official_parity_dir / "preprocess" / "split_plan.json").read_text())
    assert data["constants"] == {"MAIN_CHUNK": 81, "OVERLAP_FRAMES": 5, "FINAL_CHUNK_CANDIDATES": [65, 69, 73, 77, 81]}
    assert len(data["plans"]) >= 100
    for total, expected in data["plans"].items():
        total = int(total)
        assert official_split_plan(total) == [tuple(r) for r in expected], total
        if total >= 81:
            chunks = plan_chunks(total, "official")
            assert [(c.start, c.end) for c in chunks] == [tuple(r) for r in expected], total
        else:
            with pytest.raises(ValueError, match="num_frames"):
                plan_chunks(total, "official")


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        (81, [(0, 81), (16, 81)]),
        (100, [(0, 81), (35, 100)]),
        (158, [(0, 81), (76, 157), (93, 158)]),
        (64, [(0, 81), (76, 64)]),  # the official -1 sentinel
        (50, [(0, 81), (-15, 50)]),
    ],
)
def test_official_plan_known_values(total, expected):
    assert official_split_plan(total) == expected


def test_official_plan_overwrites_and_token_replaces():
    chunks = plan_chunks(100, "official")
    assert [c.token_replace for c in chunks] == [False, True]
    assert chunks[1].prev_frame_indices == (35, 36, 37, 38, 39)
    assert chunks[1].pinned_latent_frames == 2
    assert (chunks[1].write_start, chunks[1].write_end) == (35, 100)  # overwrite stitching
    owner = _delivered(chunks, 100)
    assert owner[:35] == [0] * 35 and owner[35:] == [1] * 65


@pytest.mark.parametrize("num_frames", list(range(1, 420)))
def test_default_plan_guarantees(num_frames):
    chunks = plan_chunks(num_frames)
    # 4k+1 lengths of at most 81 frames, balanced, fewest chunks.
    assert all((c.num_frames - 1) % 4 == 0 and 1 <= c.num_frames <= 81 for c in chunks)
    latent = [c.latent_frames for c in chunks]
    assert max(latent) - min(latent) <= 1
    total_latent = (num_frames + 2) // 4 + 1
    assert len(chunks) == (1 if total_latent <= 21 else 1 + -(-(total_latent - 21) // 19))
    # Padding only at the end, at most 3 frames; consecutive chunks overlap by exactly the 5 pinned frames.
    assert chunks[0].start == 0 and num_frames <= chunks[-1].end <= num_frames + 3
    for prev, cur in zip(chunks, chunks[1:]):
        assert cur.start == prev.end - 5
        assert cur.prev_frame_indices == tuple(range(cur.start, cur.start + 5))
    assert not chunks[0].token_replace
    # Keep-earlier stitching: every frame delivered exactly once, in order.
    owner = _delivered(chunks, num_frames)
    assert -1 not in owner and owner == sorted(owner)
    assert sum(c.write_end - c.write_start for c in chunks) == num_frames
    for chunk in chunks[1:]:
        assert chunk.write_start == chunk.start + 5
    # Pose indices clamp into the shot.
    assert chunks[-1].pose_frame_indices(num_frames)[-1] == num_frames - 1


def test_single_frame_and_short_shots():
    assert [(c.start, c.end) for c in plan_chunks(1)] == [(0, 1)]
    assert [(c.start, c.end) for c in plan_chunks(2)] == [(0, 5)]
    assert [(c.start, c.end) for c in plan_chunks(81)] == [(0, 81)]
    assert [(c.start, c.end) for c in plan_chunks(82)] == [(0, 45), (40, 85)]


def test_cost_of_both_plans_over_lengths():
    """The default plan never costs more than the official one and wastes at most 3 padded frames."""
    rows = {}
    for n in range(81, 801):
        official = plan_cost(plan_chunks(n, "official"), n)
        default = plan_cost(plan_chunks(n), n)
        assert default <= official, n
        chunks = plan_chunks(n)
        assert sum(c.num_frames for c in chunks) - n == (chunks[-1].end - n) + 5 * (len(chunks) - 1)
        rows[n] = (official, default)
    assert rows[81] == (146 / 81, 1.0)
    assert rows[100][0] == pytest.approx(146 / 100) and rows[100][1] == pytest.approx(106 / 100)
    official_mean = sum(r[0] for r in rows.values()) / len(rows)
    default_mean = sum(r[1] for r in rows.values()) / len(rows)
    assert default_mean < 1.07 and official_mean > 1.12  # measured: 1.062 vs 1.141
    for n in range(1, 82):  # the official plan cannot run these at all
        padded = n + (-(n - 1)) % 4  # next 4k+1 length
        assert plan_cost(plan_chunks(n), n) == padded / n


def test_explicit_plan():
    chunks = plan_chunks(21, [(0, 21)])
    assert [(c.start, c.end, c.token_replace) for c in chunks] == [(0, 21, False)]
    chunks = plan_chunks(100, [[0, 81], [35, 100]])
    assert chunks[1].token_replace and chunks[1].write_start == 35
    chunks = plan_chunks(100, [[0, 81], [35, 100]], stitching="keep_earlier")
    assert chunks[1].write_start == 81


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((0,), {}, "num_frames"),
        ((-3,), {}, "num_frames"),
        ((2.5,), {}, "num_frames"),
        ((10, "fancy"), {}, "plan"),
        ((10, [(0, 8)]), {}, r"plan\[0\]"),
        ((10, [(0, 9)]), {}, "cover"),
        ((10, [(-1, 8)]), {}, r"plan\[0\]"),
        ((10, [(0, 9), (5, 14)]), {}, r"plan\[1\]"),
        ((10, [(0,)]), {}, "plan"),
        ((10, "default"), {"stitching": "blend"}, "stitching"),
        ((10, "default"), {"max_chunk_frames": 80}, "max_chunk_frames"),
        ((10, "default"), {"overlap_frames": 4}, "overlap_frames"),
    ],
)
def test_bad_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plan_chunks(*args, **kwargs)
