"""Server limits and model facts the validator and GetCapabilities need (plain dataclasses, no grpc)."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1 << 20


@dataclass(frozen=True)
class ServerLimits:
    max_frames: int = 2000
    max_output_pixels: int = 1280 * 1280
    max_reference_pixels: int = 4096 * 4096
    max_upload_bytes: int = 64 * MIB
    max_message_bytes: int = 4 * MIB
    max_queued_jobs: int = 1000
    max_steps: int = 100
    max_inline_image_bytes: int = 3 * MIB
    max_upload_chunk_bytes: int = 1 * MIB
    max_canvas_px: int = 16384
    max_prompt_chars: int = 2000
    max_display_name_chars: int = 200
    max_guidance_scale: float = 20.0
    max_lease_s: int = 86400
    max_priority: int = 100

    def __post_init__(self) -> None:
        for name in ("max_frames", "max_output_pixels", "max_reference_pixels", "max_upload_bytes",
                     "max_queued_jobs", "max_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class ModelFacts:
    """What the loaded model supports; filled by the engine (defaults are known before the weights load)."""

    model_id: str
    size_multiple_px: int
    default_max_short_side_px: int
    default_steps: int
    default_image_guidance_scale: float
    default_pose_guidance_scale: float
    chunk_frames: int
    chunk_overlap_frames: int
    pose_detection_available: bool
    devices: tuple[str, ...]
