"""The One-to-All Animation model on diffusers (torch lives only below this package).

Names are resolved lazily so that ``import render_server.models`` stays cheap and a missing torch
fails at use, with the real ImportError, rather than at package import.
"""

from render_server._lazy import lazy_getattr

_EXPORTS = {
    "OneToAllTransformer": "transformer_one_to_all",
    "ReferenceFeatures": "reference_encoder",
    "CheckpointError": "loading",
    "load_one_to_all_transformer": "loading",
    "infer_config_from_state_dict": "loading",
    "build_tiny_transformer": "tiny",
    "build_tiny_vae": "tiny",
    "build_tiny_text_encoder": "tiny",
    "ONE_TO_ALL_1_3B_CONFIG": "configs",
    "ONE_TO_ALL_14B_CONFIG": "configs",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
