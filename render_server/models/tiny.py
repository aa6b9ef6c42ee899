"""Tiny, randomly initialised but real components for tests and the CPU demo.

Every builder runs the real classes (``OneToAllTransformer``, diffusers' ``AutoencoderKLWan``,
transformers' ``UMT5EncoderModel`` + a fast tokenizer built in memory): only the sizes are small.
Weights come from the given seed alone (the global RNG is left untouched) and nothing touches the Hub.

Dimensions fit together: ``TINY_TRANSFORMER_CONFIG["text_dim"] == TINY_TEXT_ENCODER_CONFIG["d_model"]``,
the VAE has ``z_dim`` 16 = the transformer's ``in_channels``, and the VAE compresses 8x in space and
4x in time like Wan's. A 2-chunk 81+ frame shot at 64x64 runs on CPU in seconds.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import NamedTuple

import torch

from .transformer_one_to_all import OneToAllTransformer

#: Transformer: 2 heads x 128 (the released head_dim), D = 256, 4 main blocks, 1 reference-extractor block
#: (2 features, each read by 2 main blocks), 2 control blocks (after main blocks 1 and 2). ~6 M params.
TINY_TRANSFORMER_CONFIG = MappingProxyType(
    {
        "patch_size": (1, 2, 2),
        "num_attention_heads": 2,
        "attention_head_dim": 128,
        "in_channels": 16,
        "out_channels": 16,
        "text_dim": 32,
        "freq_dim": 64,
        "ffn_dim": 256,
        "num_layers": 4,
        "ref_num_layers": 1,
        "ref_ffn_dim": 128,
        "control_num_layers": 2,
        "control_ffn_dim": 128,
        "rope_max_seq_len": 1024,
    }
)

#: Wan2.1-style VAE (``AutoencoderKLWan``) at base_dim 3: 16 latent channels, 8x spatial / 4x temporal.
TINY_VAE_CONFIG = MappingProxyType(
    {
        "base_dim": 3,
        "z_dim": 16,
        "dim_mult": [1, 1, 1, 1],
        "num_res_blocks": 1,
        "temperal_downsample": [False, True, True],
    }
)

#: UMT5 encoder: d_model 32 (= the tiny transformer's text_dim), 2 layers, 4 heads.
TINY_TEXT_ENCODER_CONFIG = MappingProxyType(
    {
        "vocab_size": 64,
        "d_model": 32,
        "d_kv": 8,
        "d_ff": 64,
        "num_layers": 2,
        "num_heads": 4,
        "relative_attention_num_buckets": 8,
        "dropout_rate": 0.0,
    }
)

#: Text length to use with the tiny text encoder (the real models use 512).
TINY_TEXT_MAX_LENGTH = 16

# Tokenizer vocabulary: T5's special ids first (pad 0, eos 1, unk 2), then single characters.
_SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")
_CHARACTERS = " abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'-()"


class TextEncoderBundle(NamedTuple):
    text_encoder: "torch.nn.Module"  # transformers.UMT5EncoderModel
    tokenizer: object  # transformers.PreTrainedTokenizerFast


def randomize_parameters_(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Overwrite every parameter with seeded random values, zero-initialised branches included.

    Same recipe as the official-parity fixture: norm weights 1 + 0.1 N(0,1), biases 0.05 N(0,1),
    modulation tables N(0,1)/sqrt(D), matrices and kernels N(0,1)/sqrt(fan_in). Non-zero everywhere, so
    every path (control residuals, reference features, prefix frame) influences the output.
    """
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=generator, dtype=torch.float32)
            if name.endswith("scale_shift_table"):
                value = noise / math.sqrt(param.shape[-1])
            elif param.ndim == 1 and name.endswith("bias"):
                value = 0.05 * noise
            elif param.ndim == 1:
                value = 1 + 0.1 * noise
            else:
                value = noise / math.sqrt(math.prod(param.shape[1:]))
            param.copy_(value.to(param.dtype))


def build_tiny_transformer(seed: int = 0, **overrides) -> OneToAllTransformer:
    """``OneToAllTransformer`` with ``TINY_TRANSFORMER_CONFIG`` (+ ``overrides``), random weights from ``seed``, eval mode."""
    config = {**TINY_TRANSFORMER_CONFIG, **overrides}
    with torch.random.fork_rng(devices=[]):
        model = OneToAllTransformer(**config)
    randomize_parameters_(model, torch.Generator().manual_seed(seed))
    return model.eval()


def build_tiny_vae(seed: int = 0):
    """diffusers ``AutoencoderKLWan`` with ``TINY_VAE_CONFIG`` (default Wan2.1 latents_mean/std), eval mode."""
    from diffusers import AutoencoderKLWan

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKLWan(**TINY_VAE_CONFIG)
    return vae.eval()


def build_tiny_tokenizer():
    """Offline character-level fast tokenizer with T5's conventions (pad 0, eos 1 appended, unk 2)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(_SPECIAL_TOKENS + tuple(_CHARACTERS))}
    if len(vocab) > TINY_TEXT_ENCODER_CONFIG["vocab_size"]:
        raise AssertionError("tiny vocabulary larger than the tiny UMT5 embedding table")
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=TINY_TEXT_MAX_LENGTH,
    )


def build_tiny_text_encoder(seed: int = 0) -> TextEncoderBundle:
    """Tiny ``UMT5EncoderModel`` (random weights from ``seed``, eval mode) and its offline tokenizer."""
    from transformers import UMT5Config, UMT5EncoderModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = UMT5EncoderModel(UMT5Config(**TINY_TEXT_ENCODER_CONFIG))
    return TextEncoderBundle(text_encoder.eval(), build_tiny_tokenizer())
