"""The one multi-GPU flag: ``--parallel cfg|ulysses|cfg+ulysses --gpus N`` (pure Python, no torch).

* ``cfg``: the guidance passes of a step on different GPUs (N <= passes is useful; more GPUs idle).
* ``ulysses``: diffusers context parallelism (Ulysses all-to-all) over the video tokens of one chunk, degree N
  (N must divide the attention heads: 12 for 1.3B, 40 for 14B).
* ``cfg+ulysses``: N = cfg_degree x ulysses_degree; ``--ulysses-degree`` picks the split (default: the
  largest CFG degree that is at most the pass count of 3-pass guidance).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Literal, Sequence

ParallelMode = Literal["none", "cfg", "ulysses", "cfg+ulysses"]
PARALLEL_MODES: tuple[str, ...] = ("none", "cfg", "ulysses", "cfg+ulysses")
DEFAULT_TIMEOUT_S = 600.0
MAX_CFG_DEGREE = 3  # the default guidance has 3 passes; a 4th CFG rank would idle


@dataclass(frozen=True)
class ParallelConfig:
    """How one shot uses ``gpus`` local GPUs. ``timeout_s`` bounds every collective (a dead rank -> an error)."""

    mode: ParallelMode = "none"
    gpus: int = 1
    ulysses_degree: int = 1
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.mode not in PARALLEL_MODES:
            raise ValueError(f"parallel mode must be one of {PARALLEL_MODES}, got {self.mode!r}")
        if isinstance(self.gpus, bool) or not isinstance(self.gpus, int) or self.gpus < 1:
            raise ValueError(f"gpus must be an int >= 1, got {self.gpus!r}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s!r}")
        if self.mode == "none" and self.gpus != 1:
            raise ValueError(f"--gpus {self.gpus} needs --parallel cfg, ulysses or cfg+ulysses")
        if self.mode in ("cfg", "none") and self.ulysses_degree != 1:
            raise ValueError(f"ulysses_degree must be 1 for --parallel {self.mode}, got {self.ulysses_degree}")
        if self.mode == "ulysses" and self.ulysses_degree != self.gpus:
            raise ValueError(f"ulysses_degree must equal gpus ({self.gpus}) for --parallel ulysses, got {self.ulysses_degree}")
        if self.mode == "cfg+ulysses" and (self.ulysses_degree < 1 or self.gpus % self.ulysses_degree):
            raise ValueError(f"ulysses_degree {self.ulysses_degree} must divide gpus {self.gpus} for --parallel cfg+ulysses")

    @property
    def cfg_degree(self) -> int:
        return self.gpus // self.ulysses_degree

    @property
    def enabled(self) -> bool:
        return self.mode != "none"


def parse_parallel(
    mode: str | None, gpus: int | None, ulysses_degree: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> ParallelConfig:
    """Validate the flag values (``ValueError`` naming the flag) and fill in the defaults."""
    mode = mode or "none"
    if mode not in PARALLEL_MODES:
        raise ValueError(f"--parallel must be one of {PARALLEL_MODES}, got {mode!r}")
    if gpus is None:
        gpus = 1 if mode == "none" else 2
    if mode == "ulysses":
        ulysses_degree = gpus if ulysses_degree is None else ulysses_degree
    elif mode == "cfg+ulysses" and ulysses_degree is None:
        cfg = max(d for d in range(1, MAX_CFG_DEGREE + 1) if gpus % d == 0)
        ulysses_degree = gpus // cfg
    return ParallelConfig(mode, gpus, ulysses_degree or 1, timeout_s)  # type: ignore[arg-type]


def add_parallel_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--parallel``, ``--gpus``, ``--ulysses-degree`` and ``--parallel-timeout-s`` to a CLI parser."""
    group = parser.add_argument_group("multi-GPU (one shot on several GPUs, docs/parallel.md)")
    group.add_argument("--parallel", choices=PARALLEL_MODES, default="none",
                       help="cfg: guidance passes on separate GPUs; ulysses: context parallelism over one chunk")
    group.add_argument("--gpus", type=int, default=None, help="GPUs per shot (default 2 with --parallel)")
    group.add_argument("--ulysses-degree", type=int, default=None, help="cfg+ulysses: GPUs per sequence split")
    group.add_argument("--parallel-timeout-s", type=float, default=DEFAULT_TIMEOUT_S,
                       help="bound on every cross-GPU exchange: a hung or dead GPU process becomes an error")


def config_from_args(args: argparse.Namespace) -> ParallelConfig:
    return parse_parallel(args.parallel, args.gpus, args.ulysses_degree, args.parallel_timeout_s)


def device_gangs(devices: Sequence[str], config: ParallelConfig) -> list[tuple[str, ...]]:
    """Split the server's devices into gangs of ``config.gpus`` (one engine and one job queue consumer each).

    Leftover devices (fewer than ``gpus``) stay unused, with a ``ValueError`` if not even one gang fits.
    """
    devices = list(devices)
    if not config.enabled:
        return [(d,) for d in devices]
    gpus = [d for d in devices if d.startswith("cuda")]
    if len(set(gpus)) != len(gpus):
        raise ValueError(f"--device lists a GPU twice: {devices}")
    if len(devices) < config.gpus:
        raise ValueError(f"--parallel {config.mode} --gpus {config.gpus} needs {config.gpus} devices, got {devices}")
    count = len(devices) // config.gpus
    return [tuple(devices[i * config.gpus : (i + 1) * config.gpus]) for i in range(count)]
