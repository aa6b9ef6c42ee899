"""Flow-matching Euler schedule (shift 7) in the official and in the corrected form.

Both forms come from diffusers' ``FlowMatchEulerDiscreteScheduler(shift=7, num_train_timesteps=1000)``:

* ``"official"``: ``set_timesteps(steps)``, exactly what the official pipeline gets. diffusers stores the
  training ``sigma_min`` already shifted (7 * 0.001 / (1 + 6 * 0.001)) and then shifts the linspace a second
  time, so the last non-zero sigma is 0.046756 for every step count instead of ~0.007 (fixture quirk Q3).
* ``"default"``: the schedule that code intends: the unshifted training range ``linspace(1, 0.001, steps)``
  shifted once (``set_timesteps(sigmas=...)``), last non-zero sigma 0.00696.

The Euler step is written out (``x + (sigma_next - sigma) * v`` in float32, as diffusers computes it) because
token replace steps only the unpinned latent frames and the scheduler object keeps a step counter we do not
want to share between chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

ScheduleMode = Literal["default", "official"]

DEFAULT_STEPS = 30
DEFAULT_SHIFT = 7.0
NUM_TRAIN_TIMESTEPS = 1000


@dataclass(frozen=True)
class Schedule:
    """Timesteps (passed to the transformer) and sigmas (``len(timesteps) + 1``, last = 0), float32 on CPU."""

    timesteps: torch.Tensor
    sigmas: torch.Tensor

    @property
    def num_steps(self) -> int:
        return int(self.timesteps.shape[0])


def make_schedule(
    steps: int = DEFAULT_STEPS, *, shift: float = DEFAULT_SHIFT, mode: ScheduleMode = "default"
) -> Schedule:
    """Build the sampling schedule; raises ``ValueError`` for steps < 1, a non-finite or non-positive shift."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if not (isinstance(shift, (int, float)) and np.isfinite(shift) and shift > 0):
        raise ValueError(f"shift must be a finite number > 0, got {shift!r}")
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS, shift=float(shift), use_dynamic_shifting=False
    )
    if mode == "official":
        scheduler.set_timesteps(steps)
    elif mode == "default":
        # Unshifted training range [1, 1/num_train_timesteps]; set_timesteps applies the shift once.
        sigma_min = 1.0 / NUM_TRAIN_TIMESTEPS
        scheduler.set_timesteps(sigmas=np.linspace(1.0, sigma_min, steps).tolist())
    else:
        raise ValueError(f"schedule mode must be 'default' or 'official', got {mode!r}")
    return Schedule(
        timesteps=scheduler.timesteps.to(torch.float32).clone(),
        sigmas=scheduler.sigmas.to(torch.float32).clone(),
    )


def euler_step(
    sample: torch.Tensor, velocity: torch.Tensor, schedule: Schedule, step: int, *, upcast_velocity: bool = True
) -> torch.Tensor:
    """One Euler step ``sample + (sigma[step+1] - sigma[step]) * velocity`` with a float32 sample.

    diffusers upcasts only the sample, so with a bfloat16 velocity ``dt * v`` is rounded to bfloat16 first;
    ``upcast_velocity=False`` keeps that (official compatibility), the default computes the product in float32.
    Returns float32; the caller decides the storage dtype of the latents between steps.
    """
    sigma = schedule.sigmas[step].to(sample.device)
    sigma_next = schedule.sigmas[step + 1].to(sample.device)
    if upcast_velocity:
        velocity = velocity.to(torch.float32)
    return sample.to(torch.float32) + (sigma_next - sigma) * velocity
