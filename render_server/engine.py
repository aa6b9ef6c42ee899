"""The engine: from a validated `JobSpec` to pose preparation (`render_server.pose`) and the chunked pipeline
(`render_server.pipeline`), for one device.

The worker drives it segment by segment::

    prepared = engine.prepare(spec, reference_rgb, reference_pose, driving_keypoints, should_cancel=...)
    for chunk in prepared.chunks:
        frames = engine.render_chunk(prepared, chunk, previous_frames, on_step=..., should_cancel=...)

and maps the engine's domain errors (`render_server.jobs.errors`) onto job states. torch is imported lazily so the
service can ask the engine for model facts and chunk plans before (and without) loading any weights.
"""

from __future__ import annotations

import gc
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .jobs.errors import InputError, OutOfDeviceMemory, RenderCancelled
from .jobs.spec import JobSpec
from .pipeline.chunking import MAIN_CHUNK, OVERLAP_FRAMES, Chunk, plan_chunks
from .service.limits import ModelFacts

logger = logging.getLogger(__name__)

# Tiny model defaults: few steps and small frames so the demo and tests take seconds on a CPU.
TINY_DEFAULT_STEPS = 4
TINY_MAX_SHORT_SIDE_PX = 64
# Official max short side per model size (spec 2.7).
MAX_SHORT_SIDE_PX = {"1.3b": 384, "14b": 576}
OFFICIAL_SCALES = {"1.3b": (2.5, 1.5), "14b": (2.0, 1.5)}  # mirrors pipeline.guidance.OFFICIAL_DEFAULT_SCALES
_BYTES_14B_THRESHOLD = 12 * 1024**3  # 1.3B weights are ~3-6 GB, 14B ~28-57 GB


@dataclass(frozen=True)
class EngineConfig:
    model: str  # "tiny" or "one-to-all"
    device: str = "cpu"
    checkpoint: Path | None = None
    wan: Path | None = None
    data_dir: Path | None = None  # for the text-embedding cache
    chunk_frames: int = MAIN_CHUNK  # default plan's chunk length (4k+1); shorter needs less memory
    pose_model: Path | None = None  # DWPose ONNX whole-body model: enables ReferencePose.detect
    det_model: Path | None = None
    tiny_seed: int = 0
    # Several GPUs for one shot (docs/parallel.md): the gang's devices and the mode; None = one device.
    gang: tuple[str, ...] = ()
    parallel: Any = None  # render_server.parallel.config.ParallelConfig
    # Speed/memory options (render_server.pipeline.acceleration); applied on CUDA, or anywhere when set.
    # None = automatic: on for the real model on CUDA (the measured fast exact path, docs/speed.md), off elsewhere.
    attention_backend: str = "auto"
    compile_blocks: bool | None = None
    vae_decode_bf16: bool | None = None
    offload: str = "none"
    # (width, height) compiled at start-up so the first shot of that size does not pay for compilation.
    warm_up_size: tuple[int, int] | None = None

    @property
    def acceleration_requested(self) -> bool:
        return (self.attention_backend != "auto" or bool(self.compile_blocks) or bool(self.vae_decode_bf16)
                or self.offload != "none")

    def fast_path_default(self) -> bool:
        """Users of the real model on a GPU expect the fast exact path without knowing the flags."""
        return self.model == "one-to-all" and self.device.startswith("cuda")


@dataclass(frozen=True)
class StepInfo:
    """Progress of one finished denoising step, as the worker reports it (1-based step and pass)."""

    segment_index: int
    segment_count: int
    step: int
    step_count: int
    pass_index: int
    pass_count: int


@dataclass
class PreparedJob:
    chunks: list[Chunk]
    pose_frames: np.ndarray  # uint8 (N, H, W, 3)
    reference_image: np.ndarray  # uint8 (H, W, 3), after alignment
    reference_pose: np.ndarray  # uint8 (H, W, 3)
    mask: np.ndarray | None  # uint8 (H, W), 255 = outpaint
    shot: Any = field(repr=False)  # pipeline.PreparedShot


class Engine:
    """One model on one device. `load()` is slow (weights); everything else waits for it."""

    def __init__(self, config: EngineConfig) -> None:
        if config.model not in ("tiny", "one-to-all"):
            raise ValueError(f"model must be 'tiny' or 'one-to-all', got {config.model!r}")
        if config.model == "one-to-all" and (config.checkpoint is None or config.wan is None):
            raise ValueError("the One-to-All model needs --checkpoint DIR and --wan DIR")
        if config.chunk_frames < 9 or (config.chunk_frames - 1) % 4:
            raise ValueError(f"chunk_frames must be 4k+1 and >= 9, got {config.chunk_frames}")
        self.config = config
        self._gang = config.gang or (config.device,)
        self._parallel = config.parallel is not None and config.parallel.enabled
        # The device label (metrics, logs, capabilities): "cuda:0", or "cuda:0+cuda:1" for a parallel gang.
        self.device = "+".join(self._gang)
        self._pipeline: Any = None
        self._detector: Any = None
        self._loaded = threading.Event()
        self._model_size = "1.3b" if config.model == "tiny" else _guess_model_size(config.checkpoint)

    # -- facts (no weights needed) --------------------------------------------------------------------------------

    def ready(self) -> bool:
        return self._loaded.is_set()

    def facts(self) -> ModelFacts:
        tiny = self.config.model == "tiny"
        image, pose = OFFICIAL_SCALES[self._model_size]
        return ModelFacts(
            model_id="tiny" if tiny else f"one-to-all-{self._model_size}",
            size_multiple_px=16,
            default_max_short_side_px=TINY_MAX_SHORT_SIDE_PX if tiny else MAX_SHORT_SIDE_PX[self._model_size],
            default_steps=TINY_DEFAULT_STEPS if tiny else 30,
            default_image_guidance_scale=image,
            default_pose_guidance_scale=pose,
            chunk_frames=self.config.chunk_frames,
            chunk_overlap_frames=OVERLAP_FRAMES,
            pose_detection_available=self.config.pose_model is not None,
            devices=self._gang,
        )

    def plan(self, frame_count: int, chunk_plan: str, image_pose_transfer: str) -> list[Chunk]:
        """The segments of a job (pure Python; matches what the pipeline will run)."""
        if image_pose_transfer == "per_frame":
            return plan_chunks(frame_count, _per_frame_plan(frame_count))
        if chunk_plan == "official":
            return plan_chunks(frame_count, "official")
        return plan_chunks(frame_count, "default", max_chunk_frames=self.config.chunk_frames)

    def segment_count(self, frame_count: int, chunk_plan: str, image_pose_transfer: str) -> int:
        return len(self.plan(frame_count, chunk_plan, image_pose_transfer))

    # -- loading --------------------------------------------------------------------------------------------------

    def load(self) -> None:
        """Builds the pipeline on the device (and the pose detector when configured)."""
        cfg = self.config
        if self._parallel:
            self._start_group()
        elif cfg.model == "tiny":
            self._pipeline = _build_tiny_pipeline(cfg)
        else:
            import torch

            from .pipeline.loading import load_pipeline

            dtype = torch.bfloat16 if cfg.device.startswith("cuda") else torch.float32
            text_cache = cfg.data_dir / "text-cache" if cfg.data_dir is not None else None
            self._pipeline = load_pipeline(cfg.checkpoint, cfg.wan, device=cfg.device, dtype=dtype,
                                           text_cache_dir=text_cache)
            self._model_size = self._pipeline.model_size
        if not self._parallel and (cfg.device.startswith("cuda") or cfg.acceleration_requested):
            self._accelerate()
        if cfg.pose_model is not None:
            from .pose.detect import DWPoseDetector

            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cfg.device.startswith("cuda") else None
            self._detector = DWPoseDetector(str(cfg.pose_model), str(cfg.det_model) if cfg.det_model else None,
                                            providers=providers)
        self._loaded.set()
        logger.info("model loaded", extra={"model": self.facts().model_id, "device": self.device})

    def _accelerate(self) -> None:
        import torch

        from .pipeline.acceleration import AccelerationOptions, accelerate

        cfg = self.config
        backend = cfg.attention_backend
        if backend == "auto" and self._pipeline.dtype == torch.float32:
            # "auto" picks cuDNN/FlashAttention on CUDA, which need half precision: the float32 tiny model on a
            # GPU failed every job with it (seen on an H100). PyTorch SDPA handles float32.
            backend = "native"
        auto = cfg.fast_path_default()
        compile_blocks = auto if cfg.compile_blocks is None else cfg.compile_blocks
        decode_bf16 = auto if cfg.vae_decode_bf16 is None else cfg.vae_decode_bf16
        options = AccelerationOptions(
            attention_backend=backend, compile_blocks=compile_blocks,
            vae_decode_dtype=torch.bfloat16 if decode_bf16 else None, offload=cfg.offload,
        )
        report = accelerate(self._pipeline, options)
        logger.info("acceleration", extra={"device": self.device, **report.as_dict()})
        if compile_blocks and cfg.warm_up_size is not None:
            from .pipeline.acceleration import warm_up

            width, height = cfg.warm_up_size
            graphs = warm_up(self._pipeline, height=height, width=width, chunk_frames=(cfg.chunk_frames,))
            logger.info("warm-up compiled", extra={"device": self.device, "graphs": graphs,
                                                   "width": width, "height": height})

    def _start_group(self) -> None:
        """Spawns the gang's rank processes (the server process itself never touches CUDA then)."""
        from .parallel.launch import pipeline_factory, start_group

        cfg = self.config
        cache = cfg.data_dir / "text-cache" if cfg.data_dir is not None else None
        factory = pipeline_factory(cfg.model, checkpoint=cfg.checkpoint, wan=cfg.wan, text_cache_dir=cache,
                                   tiny_seed=cfg.tiny_seed)
        self._pipeline = start_group(factory, self._gang, cfg.parallel)
        if self._pipeline.model_size:
            self._model_size = self._pipeline.model_size

    def close(self) -> None:
        """Stops a parallel gang's processes (server shutdown)."""
        if self._parallel and self._pipeline is not None:
            self._pipeline.close()

    # -- rendering ------------------------------------------------------------------------------------------------

    def prepare(
        self,
        spec: JobSpec,
        reference_image: np.ndarray,
        reference_pose: np.ndarray | None,
        driving: np.ndarray,
        *,
        should_cancel: Callable[[], bool] | None = None,
    ) -> PreparedJob:
        from .pipeline.types import OFFICIAL_NEGATIVE_PROMPT, ShotInputs
        from .pose.keypoints import KeypointError, PoseFrame, PoseSequence
        from .pose.prepare import PrepareOptions, prepare_shot

        self._loaded.wait()
        if should_cancel is not None and should_cancel():
            raise RenderCancelled("cancelled before preparation")
        if self._parallel and self._pipeline.closed:
            # A rank died or hung during an earlier job and the group closed itself: start a fresh one.
            logger.warning("parallel group was closed after a failure; restarting it", extra={"device": self.device})
            self._start_group()
        try:
            options = PrepareOptions(
                width=spec.width_px, height=spec.height_px,
                mode="pose" if spec.alignment_mode.startswith("pose") else "ref",
                align_limbs=spec.alignment_mode.endswith("retarget"),
                face_lightening=spec.face_lightening, head_lightening=spec.head_lightening,
                same_skeleton=spec.same_skeleton,
            )
            sequence = PoseSequence.from_array(driving, spec.canvas_width_px, spec.canvas_height_px, spec.fps)
            poses = prepare_shot(
                reference_image,
                PoseFrame(reference_pose) if reference_pose is not None else None,
                sequence,
                options,
                detector=self._detector,
            )
        except (KeypointError, ValueError) as exc:  # every pose-preparation input problem is a ValueError
            raise InputError(str(exc)) from exc

        chunks = self.plan(spec.frame_count, spec.chunk_plan, spec.image_pose_transfer)
        plan: Any = None
        if spec.image_pose_transfer == "per_frame":
            plan = _per_frame_plan(spec.frame_count)
        elif spec.chunk_plan == "official":
            plan = "official"
        shot = ShotInputs(
            reference_image=poses.reference_image,
            reference_pose=poses.reference_pose,
            pose_frames=poses.pose_frames,
            mask=poses.mask if poses.mask.any() else None,
            seed=spec.seed,
            steps=spec.steps,
            image_guidance_scale=spec.image_guidance_scale,
            pose_guidance_scale=spec.pose_guidance_scale,
            guidance_variant=_guidance_variant(spec),
            plan=plan,
            max_chunk_frames=self.config.chunk_frames,
            prompt=spec.prompt,
            negative_prompt=spec.negative_prompt if spec.negative_prompt is not None else OFFICIAL_NEGATIVE_PROMPT,
        )
        try:
            prepared_shot = self._guard(lambda: self._pipeline.prepare(shot))
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        if [(c.start, c.end) for c in prepared_shot.chunks] != [(c.start, c.end) for c in chunks]:
            raise RuntimeError("the pipeline planned different chunks than the engine (chunking contract broken)")
        return PreparedJob(
            chunks=prepared_shot.chunks,
            pose_frames=poses.pose_frames,
            reference_image=poses.reference_image,
            reference_pose=poses.reference_pose,
            mask=poses.mask if poses.mask.any() else None,
            shot=prepared_shot,
        )

    def render_chunk(
        self,
        prepared: PreparedJob,
        chunk: Chunk,
        previous_frames: np.ndarray | None,
        *,
        on_step: Callable[[StepInfo], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """Renders one segment; returns its delivered frames (global `write_start:write_end`)."""
        from .pipeline.types import Cancelled

        def step(progress) -> None:
            if on_step is not None:
                passes = len(progress.passes)
                on_step(StepInfo(progress.chunk_index, progress.num_chunks, progress.step_index + 1,
                                 progress.num_steps, passes, passes))

        try:
            return self._guard(lambda: self._pipeline.generate_chunk(
                prepared.shot, chunk, previous_frames=previous_frames, on_step=step, should_cancel=should_cancel))
        except Cancelled as exc:
            raise RenderCancelled(str(exc)) from exc

    def _guard(self, fn: Callable[[], Any]) -> Any:
        """Runs `fn`, turning a device out-of-memory error into OutOfDeviceMemory after freeing the caches."""
        import torch

        try:
            return fn()
        except torch.OutOfMemoryError as exc:
            self.release()
            raise OutOfDeviceMemory(str(exc).splitlines()[0] if str(exc) else "out of memory") from None

    def release(self) -> None:
        """Frees cached device memory between jobs (and after an out-of-memory error).

        Only on CUDA: a full `gc.collect()` costs ~0.5 s with torch loaded, which buys nothing on the CPU. A
        parallel gang's memory lives in its rank processes, which free it themselves.
        """
        if self.device.startswith("cuda") and not self._parallel:
            import torch

            gc.collect()
            torch.cuda.empty_cache()

    def memory_bytes(self) -> int:
        if not self.device.startswith("cuda") or self._parallel:  # never create a CUDA context for a gang
            return 0
        import torch

        return int(torch.cuda.memory_allocated(self.device))


def _per_frame_plan(frame_count: int) -> list[tuple[int, int]]:
    return [(i, i + 1) for i in range(frame_count)]


def _guidance_variant(spec: JobSpec) -> str:
    if spec.guidance_mode == "none":
        return "1pass"
    if spec.guidance_mode == "pose_last" and spec.image_guidance_scale > 1 and spec.pose_guidance_scale > 1:
        return "3pass_case1"
    return "auto"


def _guess_model_size(checkpoint: Path | None) -> str:
    """1.3B or 14B from the weight files' total size, before loading (the loader confirms it)."""
    if checkpoint is None or not Path(checkpoint).is_dir():
        return "1.3b"
    total = sum(p.stat().st_size for p in Path(checkpoint).rglob("*") if p.suffix in (".safetensors", ".bin", ".pt"))
    return "14b" if total > _BYTES_14B_THRESHOLD else "1.3b"


def _build_tiny_pipeline(cfg: EngineConfig) -> Any:
    import torch

    from .models.tiny import TINY_TEXT_MAX_LENGTH, build_tiny_text_encoder, build_tiny_transformer, build_tiny_vae
    from .pipeline.pipeline import OneToAllPipeline
    from .pipeline.text import T5PromptEncoder, TextEmbeddingCache

    bundle = build_tiny_text_encoder(seed=cfg.tiny_seed)
    encoder = T5PromptEncoder.from_modules(bundle.tokenizer, bundle.text_encoder, max_length=TINY_TEXT_MAX_LENGTH)
    cache_dir = (cfg.data_dir or Path(".")) / "text-cache"
    cache = TextEmbeddingCache(cache_dir, encoder)
    device = torch.device(cfg.device)
    transformer = build_tiny_transformer(seed=cfg.tiny_seed).to(device)
    vae = build_tiny_vae(seed=cfg.tiny_seed).to(device)
    return OneToAllPipeline(transformer, vae, cache.get, model_size="1.3b")
