"""Schedules: the official double-shifted one (fixture values) and the corrected default."""

from __future__ import annotations

import json

import pytest
import torch

from render_server.pipeline.scheduling import euler_step, make_schedule

# Spec section 2.2: official 30-step timesteps (diffusers 0.33), 3 decimals.
OFFICIAL_30 = [
    1000.0, 994.96, 989.606, 983.908, 977.83, 971.334, 964.375, 956.903, 948.856, 940.169,
    930.759, 920.533, 909.381, 897.17, 883.743, 868.907, 852.429, 834.021, 813.321, 789.875,
    763.096, 732.219, 696.227, 653.731, 602.796, 540.63, 463.059, 363.544, 231.243, 46.756,
]


def test_official_schedule_matches_fixture(official_parity_dir):
    params = json.loads((official_parity_dir / "pipeline" / "params.json").read_text())
    assert params["scheduler"]["shift"] == 7.0
    for case in params["cases"]:
        plan = json.loads((official_parity_dir / "pipeline" / "expected" / case / "plan.json").read_text())
        for chunk in plan["chunks"]:
            schedule = make_schedule(len(chunk["timesteps"]), shift=params["scheduler"]["shift"], mode="official")
            assert schedule.timesteps.tolist() == chunk["timesteps"]  # bitwise
            assert schedule.sigmas.tolist() == chunk["sigmas"]


def test_official_30_steps_match_spec():
    schedule = make_schedule(30, mode="official")
    assert schedule.num_steps == 30 and schedule.sigmas.shape == (31,)
    torch.testing.assert_close(schedule.timesteps, torch.tensor(OFFICIAL_30), atol=6e-3, rtol=0)
    assert schedule.sigmas[-1].item() == 0.0


@pytest.mark.parametrize("steps", [1, 4, 30, 50])
def test_default_schedule_is_single_shifted(steps):
    schedule = make_schedule(steps)
    official = make_schedule(steps, mode="official")
    assert schedule.timesteps[0].item() == 1000.0 and schedule.sigmas[-1].item() == 0.0
    assert torch.all(schedule.sigmas[:-1] > schedule.sigmas[1:])  # strictly decreasing to 0
    if steps > 1:
        # Last non-zero sigma: shift(0.001) = 0.00696 instead of the official shift(shift(0.001)) = 0.04676.
        assert schedule.sigmas[-2].item() == pytest.approx(7 * 0.001 / (1 + 6 * 0.001), rel=1e-5)
        assert official.sigmas[-2].item() == pytest.approx(0.046756, rel=1e-4)
    torch.testing.assert_close(schedule.timesteps, schedule.sigmas[:-1] * 1000)


def test_euler_step_arithmetic():
    schedule = make_schedule(4, mode="official")
    x = torch.randn(1, 16, 3, 4, 4)
    v = torch.randn(1, 16, 3, 4, 4)
    out = euler_step(x, v, schedule, 1)
    assert torch.equal(out, x + (schedule.sigmas[2] - schedule.sigmas[1]) * v)
    # Integrating v exactly over all steps lands on x - v (flow matching: x_0 = x_1 - v for constant v).
    y = x
    for i in range(schedule.num_steps):
        y = euler_step(y, v, schedule, i)
    torch.testing.assert_close(y, x - v, atol=1e-5, rtol=1e-5)
    half = euler_step(x, v.to(torch.bfloat16), schedule, 0, upcast_velocity=False)
    assert half.dtype == torch.float32


@pytest.mark.parametrize(("steps", "shift", "mode", "match"), [
    (0, 7.0, "default", "steps"), (-1, 7.0, "default", "steps"), (2.0, 7.0, "default", "steps"),
    (4, float("nan"), "default", "shift"), (4, 0.0, "default", "shift"), (4, 7.0, "karras", "mode"),
])
def test_bad_schedule_arguments(steps, shift, mode, match):
    with pytest.raises(ValueError, match=match):
        make_schedule(steps, shift=shift, mode=mode)
