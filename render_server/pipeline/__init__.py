"""Sampling pipeline of the render server: chunk plans, schedule, guidance, text cache, VAE helpers and the
``OneToAllPipeline`` itself (torch and diffusers live only here and in ``render_server.models``).

Names are resolved lazily, so ``from render_server.pipeline.chunking import plan_chunks`` (pure Python) does
not import torch.
"""

from render_server._lazy import lazy_getattr

_EXPORTS = {
    "Chunk": "chunking",
    "plan_chunks": "chunking",
    "plan_cost": "chunking",
    "official_split_plan": "chunking",
    "Schedule": "scheduling",
    "make_schedule": "scheduling",
    "Guidance": "guidance",
    "GuidancePass": "guidance",
    "guidance_for_scales": "guidance",
    "default_guidance_scales": "guidance",
    "Cancelled": "types",
    "ShotInputs": "types",
    "StepProgress": "types",
    "PipelineMode": "types",
    "PreparedShot": "pipeline",
    "ChunkResult": "pipeline",
    "OneToAllPipeline": "pipeline",
    "LatentCodec": "vae",
    "official_preview": "preview",
    "PromptEmbeddings": "types",
    "TextEmbeddingCache": "text",
    "T5PromptEncoder": "text",
    "load_pipeline": "loading",
    "WanFolderError": "loading",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
