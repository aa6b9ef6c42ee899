"""Ulysses context parallelism for ``OneToAllTransformer`` through diffusers' ``enable_parallelism``.

The model keeps ``_cp_plan = None`` (Wan's plan would split the sequence but not the One-to-All extras);
this module supplies the plan and the pieces Wan's plan lacks:

* the video tokens (prefix frame + latent frames) are split along the sequence at ``blocks.0`` and the RoPE
  tables with them (``"rope"``: the exact module name, so ``refextractor.rope`` is untouched);
* the HRFA reference K/V stay whole on every rank: ``OneToAllAttnProcessor`` runs the reference attention
  with ``parallel_config=None`` (local queries, all reference keys: exact), and the reference extractor's
  blocks use ``LocalWanAttnProcessor``, which ignores the config ``enable_parallelism`` writes everywhere;
* text cross-attention needs no exchange (diffusers' ``WanAttnProcessor`` passes no config for it);
* pose-control tokens and the token-replace range are sharded by a forward pre-hook on every main block
  (``_ShardControlAndTokenRange``): the model computes them for the whole sequence, each rank keeps its
  shard; control blocks then run on the shard like the main blocks (their self-attention is Ulysses too);
* the sequence is gathered at ``norm_out`` (not ``proj_out`` as for Wan), because the output modulation
  also applies the token-replace range, which the model indexes in whole-sequence positions.

Limits (each a clear ``ValueError`` before any work): the Ulysses degree must divide the attention heads
(12 for 1.3B, 40 for 14B); the token count ``(F + 1) * h/2 * w/2`` of every chunk must divide by it; ring
attention is not offered (untested with HRFA). ``cfg+ulysses`` builds a (cfg, ring=1, ulysses) mesh: CFG
ranks exchange pass predictions, Ulysses ranks exchange attention heads.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from typing import Any

import torch
import torch.distributed as dist
from diffusers.models._modeling_parallel import ContextParallelConfig, ContextParallelInput, ContextParallelOutput

from .cfg_parallel import CfgParallel, CfgParallelPipeline
from .config import ParallelConfig

logger = logging.getLogger(__name__)


def one_to_all_cp_plan() -> dict[str, Any]:
    """The context-parallel plan of ``OneToAllTransformer`` (module FQN -> split / gather)."""
    return {
        "rope": {
            0: ContextParallelInput(split_dim=1, expected_dims=4, split_output=True),
            1: ContextParallelInput(split_dim=1, expected_dims=4, split_output=True),
        },
        "blocks.0": {"hidden_states": ContextParallelInput(split_dim=1, expected_dims=3, split_output=False)},
        "norm_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    }


def check_ulysses_degree(transformer: torch.nn.Module, degree: int) -> None:
    """``ValueError`` when ``degree`` cannot split this model's attention heads."""
    heads = int(transformer.config.num_attention_heads)
    if degree < 2:
        raise ValueError(f"ulysses_degree must be >= 2, got {degree}")
    if heads % degree:
        divisors = [d for d in range(2, heads + 1) if heads % d == 0]
        raise ValueError(
            f"ulysses_degree {degree} must divide the model's {heads} attention heads (possible: {divisors})"
        )


class _ShardControlAndTokenRange:
    """Forward pre-hook of a main block: whole-sequence pose tokens and token-replace range -> this rank's shard.

    The shard length comes from the (already split) RoPE table, its offset from the rank in the sequence
    group (diffusers' equipartition: shard r holds tokens ``[r * n, (r + 1) * n)``).
    """

    def __init__(self, block: torch.nn.Module, group: dist.ProcessGroup) -> None:
        # The class's forward: diffusers' hooks replace the instance's forward with a (*args, **kwargs) wrapper.
        self.signature = inspect.signature(type(block).forward)
        self.group = group

    def __call__(self, module, args, kwargs):
        bound = self.signature.bind(module, *args, **kwargs)
        arguments = bound.arguments
        rotary_emb = arguments.get("rotary_emb")
        if rotary_emb is None:
            return None
        local = rotary_emb[0].shape[1]
        rank, world = dist.get_rank(self.group), dist.get_world_size(self.group)
        offset = rank * local
        token_range = arguments.get("token_range")
        if token_range is not None:
            start, end = token_range
            arguments["token_range"] = (min(max(start - offset, 0), local), min(max(end - offset, 0), local))
        control = arguments.get("control")
        if control is not None and control.pose_tokens.shape[1] == local * world:
            # Once per forward: the stream object is shared by the blocks, the shard replaces the whole.
            control.pose_tokens = control.pose_tokens[:, offset : offset + local]
        return bound.args[1:], bound.kwargs


def _check_tokens_hook(degree: int):
    def hook(module, args, kwargs):
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        _, _, frames, height, width = hidden.shape
        p_t, p_h, p_w = module.config.patch_size
        tokens = (frames // p_t + 1) * (height // p_h) * (width // p_w)
        if tokens % degree:
            raise ValueError(
                f"Ulysses degree {degree}: the chunk's {tokens} video tokens ((F+1) x h/2 x w/2 for latents "
                f"{tuple(hidden.shape)}) must divide by {degree}; pick a frame size or chunk length that does"
            )

    return hook


@contextlib.contextmanager
def _cpu_device_count():
    """diffusers picks the rank's device as ``rank % torch.accelerator.device_count()``, which divides by
    zero on a CPU-only host; count the CPU as one device while ``enable_parallelism`` runs (gloo tests)."""
    if torch._C._get_accelerator().type != "cpu":
        yield
        return
    original = torch.accelerator.device_count
    torch.accelerator.device_count = lambda: 1
    try:
        yield
    finally:
        torch.accelerator.device_count = original


def enable_ulysses(transformer: torch.nn.Module, degree: int, mesh: Any | None = None) -> ContextParallelConfig:
    """Make ``transformer`` run Ulysses context parallelism over ``degree`` ranks (all ranks call this).

    ``mesh``: a device mesh with ``ring`` (size 1) and ``ulysses`` dimensions (``cfg+ulysses``); None = the
    whole default group. Requires a context-parallel attention backend (diffusers checks: ``native``,
    ``_native_cudnn``, ``flash``, ``sage``, ...).
    """
    check_ulysses_degree(transformer, degree)
    if getattr(transformer, "_parallel_config", None) is not None:
        raise ValueError("context parallelism is already enabled on this transformer")
    config = ContextParallelConfig(ulysses_degree=degree, mesh=mesh)
    with _cpu_device_count():
        transformer.enable_parallelism(config=config, cp_plan=one_to_all_cp_plan())
    group = config._flattened_mesh.get_group()
    for block in transformer.blocks:
        block.register_forward_pre_hook(_ShardControlAndTokenRange(block, group), with_kwargs=True)
    transformer.register_forward_pre_hook(_check_tokens_hook(degree), with_kwargs=True)
    return config


def make_context_parallel_pipeline(pipeline: Any, config: ParallelConfig) -> CfgParallelPipeline:
    """A rank's pipeline for ``ulysses`` / ``cfg+ulysses`` (inside an initialised group of ``config.gpus`` ranks).

    Ranks ``c * U .. c * U + U - 1`` form Ulysses group ``c``; ranks with the same position in their Ulysses
    group form a CFG group. Every rank computes its CFG group's passes on its sequence shard.
    """
    world = dist.get_world_size()
    if world != config.gpus:
        raise ValueError(f"the group has {world} ranks, --gpus says {config.gpus}")
    check_ulysses_degree(pipeline.transformer, config.ulysses_degree)
    device_type = pipeline.device.type
    mesh = dist.device_mesh.init_device_mesh(
        device_type, (config.cfg_degree, 1, config.ulysses_degree), mesh_dim_names=("cfg", "ring", "ulysses")
    )
    enable_ulysses(pipeline.transformer, config.ulysses_degree, mesh=mesh["ring", "ulysses"])
    cfg_group = mesh.get_group("cfg")
    return CfgParallelPipeline.from_pipeline(pipeline, CfgParallel(group=cfg_group))
