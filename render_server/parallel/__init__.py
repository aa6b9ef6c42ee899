"""Several GPUs for one shot: CFG-parallel guidance passes, Ulysses context parallelism, and the launcher
that runs a shot's pipeline calls on N local GPUs in lockstep (docs/parallel.md).

Names are resolved lazily so that ``render_server.parallel.launch``'s pure-Python parts (flag parsing) do
not import torch.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "assign_passes": "cfg_parallel",
    "CfgParallel": "cfg_parallel",
    "CfgParallelPipeline": "cfg_parallel",
    "RankFailedError": "cfg_parallel",
    "ParallelConfig": "config",
    "parse_parallel": "config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
