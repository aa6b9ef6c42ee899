"""Speed and memory options applied to a built ``OneToAllPipeline`` (``AccelerationOptions`` -> ``accelerate``).

Exact options (output within bf16 noise of the eager path):

* ``attention_backend``: diffusers attention dispatch name, or ``"auto"`` = FlashAttention 3 (``_flash_3``) when
  ``flash_attn_interface`` is importable on a Hopper GPU, else cuDNN SDPA (``_native_cudnn``) on CUDA, else PyTorch
  SDPA (``native``). Every attention of the model (HRFA, cross, reference extractor, control) goes through it.
* ``compile_blocks``: ``torch.compile`` of the repeated blocks (``compile_repeated_blocks``) with
  ``dynamic=False``: one graph per block class and input shape; steps and chunks of the same size reuse it
  (``CompileWatch`` counts new graphs so callers can assert "no recompiles" after warm-up).
* ``vae_decode_dtype``: decode in bfloat16 (autocast over the float32 VAE: encode stays float32, which the
  token-replace chaining needs); diffusers' Wan decoder already streams frame by frame with a causal cache.
* ``pass_batch_size``: guidance passes per transformer batch (None = all passes in one batch).
* ``offload``: diffusers group offloading (``"block"``: one block group on the GPU at a time, prefetched on a side
  stream; ``"leaf"``: per-layer, least memory). Needed for the 14B on a 48 GB card.

Approximate options, off by default, each reporting drift in ``bench/``:

* ``fp8_linears``: the big linears of the main and control blocks as float8 e4m3 (per-output-channel weight
  scales, per-token dynamic activation scales, ``torch._scaled_mm`` on CUDA; a dequantised reference on CPU).
* ``step_cache``: diffusers ``FirstBlockCache`` (``"first_block"``, threshold ``step_cache_threshold``) or
  ``TaylorSeer`` (``"taylorseer"``). Our control branch is folded into the main blocks, so a skipped block skips
  its control residual too; the pipeline resets the cache state at every chunk start.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
import torch.nn as nn

logger = logging.getLogger(__name__)

OffloadMode = Literal["none", "block", "leaf"]
StepCacheMode = Literal["none", "first_block", "taylorseer"]

_OFFLOAD_MODES = ("none", "block", "leaf")
_STEP_CACHE_MODES = ("none", "first_block", "taylorseer")
# Sub-modules called on their own (not only through the top-level forward): each needs its own offload hooks.
_OFFLOAD_BLOCK_MODULES = ["refextractor", "controlnet", "input_hint_block"]
# Linears worth quantising: the token-wise matrices of the main and control blocks (not the one-frame
# reference extractor, the embedders, the output head or the zero-initialised control projections).
_FP8_MODULE_PREFIXES = ("blocks.", "controlnet.blocks.")
FP8_DTYPE = torch.float8_e4m3fn


@dataclass(frozen=True)
class AccelerationOptions:
    """What ``accelerate`` applies; see the module docstring. ``exact()`` and ``eager()`` are the two presets."""

    attention_backend: str = "auto"
    compile_blocks: bool = False
    compile_mode: str | None = None
    compile_backend: str = "inductor"
    vae_decode_dtype: torch.dtype | None = None
    pass_batch_size: int | None = None
    offload: OffloadMode = "none"
    offload_blocks_per_group: int = 1
    offload_use_stream: bool = True
    fp8_linears: bool = False
    step_cache: StepCacheMode = "none"
    step_cache_threshold: float = 0.05
    extra_compile_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.offload not in _OFFLOAD_MODES:
            raise ValueError(f"offload must be one of {_OFFLOAD_MODES}, got {self.offload!r}")
        if self.step_cache not in _STEP_CACHE_MODES:
            raise ValueError(f"step_cache must be one of {_STEP_CACHE_MODES}, got {self.step_cache!r}")
        if self.pass_batch_size is not None and self.pass_batch_size < 1:
            raise ValueError(f"pass_batch_size must be >= 1 or None, got {self.pass_batch_size}")
        if self.offload_blocks_per_group < 1:
            raise ValueError(f"offload_blocks_per_group must be >= 1, got {self.offload_blocks_per_group}")
        if not (self.step_cache_threshold > 0):
            raise ValueError(f"step_cache_threshold must be > 0, got {self.step_cache_threshold!r}")
        if self.offload != "none" and self.compile_blocks:
            # Offload hooks move weights inside the blocks' forward: compiled graphs would specialise on them.
            raise ValueError("compile_blocks cannot be combined with offload (offload hooks run inside the blocks)")

    @classmethod
    def exact(cls, **overrides: Any) -> "AccelerationOptions":
        """Fastest exact setup: best attention kernel, compiled blocks, bf16 decode, all passes in one batch."""
        return replace(cls(attention_backend="auto", compile_blocks=True, vae_decode_dtype=torch.bfloat16), **overrides)

    @classmethod
    def eager(cls, **overrides: Any) -> "AccelerationOptions":
        """Straightforward reference: PyTorch SDPA (its own kernel choice), no compile, float32 decode."""
        return replace(cls(attention_backend="native", compile_blocks=False, vae_decode_dtype=None), **overrides)

    @property
    def approximate(self) -> bool:
        return self.fp8_linears or self.step_cache != "none"


@dataclass
class AccelerationReport:
    """What was applied (for logs and ``docs/benchmarks.md``)."""

    attention_backend: str
    compiled_modules: int = 0
    fp8_linears: int = 0
    offload: str = "none"
    step_cache: str = "none"
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def resolve_attention_backend(name: str, device: torch.device, dtype: torch.dtype = torch.bfloat16) -> str:
    """``"auto"`` -> ``_flash_3`` (FA3 installed, sm90), ``_native_cudnn`` (CUDA), else ``native``.

    cuDNN and FlashAttention kernels take half precision only: a float32 model gets ``native`` (PyTorch SDPA).
    """
    if name != "auto":
        from diffusers.models.attention_dispatch import AttentionBackendName

        valid = {b.value for b in AttentionBackendName}
        if name not in valid:
            raise ValueError(f"attention_backend must be 'auto' or one of {sorted(valid)}, got {name!r}")
        return name
    if device.type != "cuda" or dtype not in (torch.bfloat16, torch.float16):
        return "native"
    if importlib.util.find_spec("flash_attn_interface") is not None and torch.cuda.get_device_capability(device)[0] == 9:
        return "_flash_3"
    return "_native_cudnn"


def accelerate(pipeline: Any, options: AccelerationOptions) -> AccelerationReport:
    """Apply ``options`` to ``pipeline`` (an ``OneToAllPipeline``) in place; returns what was applied.

    Call once, after the pipeline is built and its transformer is on its device and dtype.
    """
    transformer = pipeline.transformer
    device = _module_device(transformer)
    backend = resolve_attention_backend(options.attention_backend, device, pipeline.dtype)
    transformer.set_attention_backend(backend)
    report = AccelerationReport(attention_backend=backend)

    pipeline.pass_batch_size = options.pass_batch_size
    pipeline.codec.decode_dtype = options.vae_decode_dtype

    if options.fp8_linears:
        report.fp8_linears = quantize_linears_fp8(transformer)
    if options.step_cache != "none":
        enable_step_cache(transformer, options.step_cache, options.step_cache_threshold)
        report.step_cache = options.step_cache
    if options.offload != "none":
        enable_offload(transformer, device, options)
        pipeline.execution_device = device  # the weights now rest on the CPU between calls
        report.offload = options.offload
    if options.compile_blocks:
        raise_recompile_limit()
        kwargs = {"fullgraph": True, "dynamic": False, "backend": options.compile_backend, **options.extra_compile_kwargs}
        if options.compile_mode is not None:
            kwargs["mode"] = options.compile_mode
        transformer.compile_repeated_blocks(**kwargs)
        report.compiled_modules = sum(
            1 for m in transformer.modules() if m.__class__.__name__ in transformer._repeated_blocks
        )
    logger.info("acceleration applied: %s", report.as_dict())
    return report


# ----------------------------------------------------------------------------------------------
# Compile bookkeeping
# ----------------------------------------------------------------------------------------------


# Graphs per block code object a served model needs: 3 main-block variants (no control, first and later control
# block) x token replace on/off x a few chunk lengths (81 and the default plan's shorter final chunks) x batch
# compositions. dynamo's default limit (8) is hit by the second chunk length and then silently runs eager.
RECOMPILE_LIMIT = 64


def raise_recompile_limit(limit: int = RECOMPILE_LIMIT) -> None:
    """Raise torch._dynamo's per-function graph limit (process-wide torch setting) to ``limit``."""
    import torch._dynamo.config as dynamo_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, limit)
    dynamo_config.accumulated_recompile_limit = max(dynamo_config.accumulated_recompile_limit, 8 * limit)


class CompileWatch:
    """Counts graphs dynamo compiled inside a ``with`` block (``new_graphs``); 0 = no recompiles."""

    def __enter__(self) -> "CompileWatch":
        self._start = _unique_graphs()
        self.new_graphs = 0
        return self

    def __exit__(self, *exc: object) -> None:
        self.new_graphs = _unique_graphs() - self._start


def _unique_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def warm_up(
    pipeline: Any,
    *,
    height: int,
    width: int,
    chunk_frames: tuple[int, ...] = (81,),
    guidance_variants: tuple[str, ...] = ("auto",),
    text_length: int = 512,
) -> int:
    """Compile every graph a served bucket needs before the first real shot; returns the graphs compiled.

    For each chunk length (4k+1) and guidance variant, a one-step two-chunk shot of random images runs through
    ``pipeline.generate``: the first chunk compiles the plain blocks, the second the token-replace ones. Output is
    discarded. Shapes that differ later (another size, chunk length, guidance variant or prompt length) compile
    on first use. ``text_length`` must match the served prompt embeddings (512 for UMT5 as the official code pads).
    """
    import numpy as np

    from .chunking import OVERLAP_FRAMES
    from .types import PromptEmbeddings, ShotInputs

    text_dim = pipeline.transformer.config.text_dim
    rng = np.random.default_rng(0)
    zeros = torch.zeros(1, text_length, text_dim)
    with CompileWatch() as watch:
        for frames in chunk_frames:
            for variant in guidance_variants:
                shot = ShotInputs(
                    reference_image=rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
                    reference_pose=rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
                    pose_frames=rng.integers(0, 256, (2 * frames - OVERLAP_FRAMES, height, width, 3), dtype=np.uint8),
                    steps=1,
                    guidance_variant=variant,
                    max_chunk_frames=frames,
                    prompt_embeds=PromptEmbeddings(zeros, zeros),
                )
                pipeline.generate(shot)
    return watch.new_graphs


# ----------------------------------------------------------------------------------------------
# Offloading and step caching
# ----------------------------------------------------------------------------------------------


def enable_offload(transformer: nn.Module, device: torch.device, options: AccelerationOptions) -> None:
    """diffusers group offloading with hooks on every separately-called sub-module (see ``_OFFLOAD_BLOCK_MODULES``)."""
    offload_type = "block_level" if options.offload == "block" else "leaf_level"
    # diffusers 0.42.1: block-level streaming with ``block_modules`` registers the layer-execution tracker twice
    # on the nested modules and raises (seen on an H100), so block level runs without the side stream
    # (blocking copies); leaf level streams and prefetches.
    use_stream = options.offload_use_stream and device.type == "cuda" and offload_type == "leaf_level"
    kwargs: dict[str, Any] = dict(
        onload_device=device,
        offload_device=torch.device("cpu"),
        offload_type=offload_type,
        use_stream=use_stream,
    )
    if offload_type == "block_level":
        kwargs["num_blocks_per_group"] = options.offload_blocks_per_group
        kwargs["block_modules"] = [name for name in _OFFLOAD_BLOCK_MODULES if hasattr(transformer, name)]
    transformer.enable_group_offload(**kwargs)


def enable_step_cache(transformer: nn.Module, mode: StepCacheMode, threshold: float) -> None:
    """FirstBlockCache (skip blocks 1..L-1 while block 0's residual barely moves) or TaylorSeer."""
    from diffusers.hooks import FirstBlockCacheConfig, TaylorSeerCacheConfig

    if mode == "first_block":
        transformer.enable_cache(FirstBlockCacheConfig(threshold=threshold))
    elif mode == "taylorseer":
        # The default identifiers match nothing in Wan (``blocks.0.attn1`` ends in a digit): name them.
        transformer.enable_cache(
            TaylorSeerCacheConfig(
                cache_interval=2, disable_cache_before_step=2, cache_identifiers=[r"blocks\.\d+\.attn\d"]
            )
        )
    else:
        raise ValueError(f"step_cache must be one of {_STEP_CACHE_MODES}, got {mode!r}")


def reset_step_cache(transformer: nn.Module) -> None:
    """Forget cached residuals (call at every chunk start: chunks differ in shape and content)."""
    if getattr(transformer, "is_cache_enabled", False):
        transformer._reset_stateful_cache()


# ----------------------------------------------------------------------------------------------
# FP8 linears
# ----------------------------------------------------------------------------------------------


class Float8Linear(nn.Module):
    """``nn.Linear`` with an e4m3 weight (per-output-channel scale) and per-token dynamic activation scales.

    CUDA (sm89+): ``torch._scaled_mm`` with row-wise scales, output in the input dtype. Elsewhere: the same
    quantisation, dequantised and multiplied in the input dtype (bit-for-bit the rounding, not the speed).
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        amax = weight.abs().amax(dim=1, keepdim=True).float().clamp(min=1e-12)
        scale = amax / torch.finfo(FP8_DTYPE).max
        self.register_buffer("weight_fp8", (weight.float() / scale).to(FP8_DTYPE))
        self.register_buffer("weight_scale", scale.t().contiguous())  # (1, out)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        amax = x2.abs().amax(dim=1, keepdim=True).float().clamp(min=1e-12)
        x_scale = amax / torch.finfo(FP8_DTYPE).max
        x_fp8 = (x2.float() / x_scale).to(FP8_DTYPE)
        out_dtype = x.dtype if x.dtype in (torch.bfloat16, torch.float16) else torch.bfloat16
        if x.is_cuda:
            out = torch._scaled_mm(
                x_fp8, self.weight_fp8.t(), scale_a=x_scale, scale_b=self.weight_scale, out_dtype=out_dtype,
                use_fast_accum=True,
            )
        else:
            out = (x_fp8.float() * x_scale) @ (self.weight_fp8.float() * self.weight_scale.t()).t()
        out = out.to(x.dtype)
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, fp8=e4m3"


def quantize_linears_fp8(transformer: nn.Module) -> int:
    """Swap the block linears for ``Float8Linear``; returns how many. The state dict changes (inference only)."""
    targets = [
        (name, module)
        for name, module in transformer.named_modules()
        if isinstance(module, nn.Linear)
        and name.startswith(_FP8_MODULE_PREFIXES)
        and module.in_features % 16 == 0
        and module.out_features % 16 == 0
    ]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = transformer.get_submodule(parent_name)
        setattr(parent, child, Float8Linear(module))
    return len(targets)


def _module_device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


__all__ = [
    "AccelerationOptions",
    "AccelerationReport",
    "CompileWatch",
    "Float8Linear",
    "accelerate",
    "enable_offload",
    "enable_step_cache",
    "quantize_linears_fp8",
    "reset_step_cache",
    "resolve_attention_backend",
    "warm_up",
]
