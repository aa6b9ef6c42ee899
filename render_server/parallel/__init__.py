"""Several GPUs for one shot: CFG-parallel guidance passes, Ulysses context parallelism, and the launcher
that runs a shot's pipeline calls on N local GPUs in lockstep (docs/parallel.md).

Names are resolved lazily so that ``render_server.parallel.launch``'s pure-Python parts (flag parsing) do
not import torch.
"""

from render_server._lazy import lazy_getattr

_EXPORTS = {
    "assign_passes": "cfg_parallel",
    "CfgParallel": "cfg_parallel",
    "CfgParallelPipeline": "cfg_parallel",
    "RankFailedError": "cfg_parallel",
    "ParallelConfig": "config",
    "parse_parallel": "config",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
