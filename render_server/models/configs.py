"""Configs of the released One-to-All models (``OneToAllTransformer`` arguments).

From the official ``configs/wan2.1_t2v_{1.3b,14b}.json`` + ``*_refextractor_2d_withmask2.json`` +
``*_controlnet_{2,1}.json``; the same values the loader infers from the released state dicts.
"""

from types import MappingProxyType

_COMMON = {
    "patch_size": (1, 2, 2),
    "attention_head_dim": 128,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 1024,
    "ref_in_channels": 32,
    "ref_freq_dim": 256,
    "pose_in_channels": 3,
}

#: One-to-All-1.3b_1 / -1.3b_2: D 1536 (12 heads), 30 blocks, refextractor 14 blocks, 2 control blocks.
ONE_TO_ALL_1_3B_CONFIG = MappingProxyType(
    {**_COMMON, "num_attention_heads": 12, "ffn_dim": 8960, "num_layers": 30,
     "ref_num_layers": 14, "ref_ffn_dim": 8960, "control_num_layers": 2, "control_ffn_dim": 8960}
)  # fmt: skip

#: One-to-All-14b: D 5120 (40 heads), 40 blocks, refextractor 7 blocks, 1 control block.
ONE_TO_ALL_14B_CONFIG = MappingProxyType(
    {**_COMMON, "num_attention_heads": 40, "ffn_dim": 13824, "num_layers": 40,
     "ref_num_layers": 7, "ref_ffn_dim": 13824, "control_num_layers": 1, "control_ffn_dim": 13824}
)  # fmt: skip

RELEASED_CONFIGS = MappingProxyType({"1.3b": ONE_TO_ALL_1_3B_CONFIG, "14b": ONE_TO_ALL_14B_CONFIG})
