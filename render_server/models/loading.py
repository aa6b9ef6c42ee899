"""Load an official One-to-All checkpoint folder into ``OneToAllTransformer``, strictly and shard by shard.

Accepted layouts (as released, or as produced by ``zero_to_fp32.py --safe_serialization``):
  * every ``*.safetensors`` file in the folder (the official loader merges them all), or the shards an
    ``*.safetensors.index.json`` names; any float dtype, also mixed across tensors;
  * optional configs: the fixture's ``transformer_config.json`` / ``refextractor_config.json`` /
    ``controlnet_config.json``, the official repo's ``wan2.1_t2v_{1.3b,14b}.json`` /
    ``*_refextractor*.json`` / ``*_controlnet*.json`` copied next to the weights, or our own
    ``config.json`` (``save_pretrained``). The released folders carry none of these (only a ModelScope
    ``configuration.json``, ignored), so the config is otherwise inferred from tensor shapes.

Every problem (no weights, not a One-to-All state dict, missing shard, missing/unexpected keys, shape
mismatch, non-float tensors) raises one ``CheckpointError`` naming the file and the first offending keys.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from .transformer_one_to_all import OneToAllTransformer

logger = logging.getLogger(__name__)

HEAD_DIM = 128  # every released Wan2.1 / One-to-All model; the official HRFA code hard-codes it
MAX_LISTED_KEYS = 5

# Keys that only a One-to-All state dict has (one per added module), and one every Wan transformer has.
ONE_TO_ALL_MARKER_KEYS = (
    "blocks.0.attn1.add_k_proj.weight",
    "refextractor.patch_embedding.weight",
    "image_to_cond.conv_in.weight",
    "input_hint_block.conv_in.conv.weight",
)
WAN_MARKER_KEY = "patch_embedding.weight"

_MAIN_CONFIG_NAMES = ("transformer_config.json", "wan2.1_t2v_1.3b.json", "wan2.1_t2v_14b.json")
_REF_CONFIG_PATTERN = re.compile(r"refextractor.*\.json$")
_CONTROL_CONFIG_PATTERN = re.compile(r"controlnet.*\.json$")
# Keys of the official main config that map 1:1 onto OneToAllTransformer arguments.
_MAIN_KEYS = (
    "patch_size", "num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "text_dim",
    "freq_dim", "ffn_dim", "num_layers", "cross_attn_norm", "qk_norm", "eps", "rope_max_seq_len",
)  # fmt: skip


class CheckpointError(ValueError):
    """The checkpoint folder cannot be loaded as a One-to-All transformer (message says which file and keys)."""


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    dtype: torch.dtype
    file: Path


def load_one_to_all_transformer(
    path: str | Path,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    keep_fp32_modules: bool = False,
) -> OneToAllTransformer:
    """Build ``OneToAllTransformer`` for the checkpoint at ``path`` and load it with strict key/shape checks.

    Args:
        path: checkpoint folder (or a single ``.safetensors`` file).
        dtype: runtime dtype; ``None`` keeps the checkpoint's dtype if all tensors share one, else float32.
        device: where the weights end up; tensors are read shard by shard straight to it.
        keep_fp32_modules: keep ``OneToAllTransformer._keep_in_fp32_modules`` (RoPE, time embedders,
            modulation tables, norms) in float32 when ``dtype`` is lower precision, as diffusers'
            ``from_pretrained`` does. Off by default: the official model casts everything (RoPE aside).

    Raises:
        CheckpointError: the folder is not a loadable One-to-All checkpoint.
    """
    path = Path(path)
    files = find_weight_files(path)
    tensors = read_tensor_index(files)
    check_is_one_to_all(path, tensors)
    config, config_source = resolve_config(path, {k: v.shape for k, v in tensors.items()})
    dtype = dtype or _common_dtype(tensors)

    from accelerate import init_empty_weights

    try:
        # Parameters on the meta device (no memory), buffers (RoPE tables) real and float32.
        with init_empty_weights(include_buffers=False):
            model = OneToAllTransformer(**config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: config from {config_source} is not a valid One-to-All config: {error}") from error
    check_keys(path, model, tensors, config_source)

    by_file: dict[Path, list[str]] = {}
    for key, info in tensors.items():
        by_file.setdefault(info.file, []).append(key)
    from safetensors import safe_open

    for file, keys in by_file.items():
        shard: dict[str, torch.Tensor] = {}
        with safe_open(str(file), framework="pt", device=str(torch.device(device))) as handle:
            for key in keys:
                target = OneToAllTransformer.parameter_dtype(key, dtype, keep_fp32_modules)
                shard[key] = handle.get_tensor(key).to(dtype=target)
        # assign=True swaps the meta parameters for these tensors: no second copy of the weights.
        model.load_state_dict(shard, strict=False, assign=True)
        del shard
    model.to(device)  # the RoPE buffers
    model.eval()
    return model


def find_weight_files(path: Path) -> list[Path]:
    """The safetensors files that make up the checkpoint at ``path`` (index-driven when an index exists)."""
    if path.is_file():
        if path.suffix != ".safetensors":
            raise CheckpointError(f"{path}: not a .safetensors file")
        return [path]
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such checkpoint folder")
    indexes = sorted(path.glob("*.safetensors.index.json"))
    if len(indexes) > 1:
        raise CheckpointError(f"{path}: several index files ({', '.join(p.name for p in indexes)}); keep one")
    if indexes:
        index_file = indexes[0]
        try:
            weight_map = json.loads(index_file.read_text())["weight_map"]
            names = sorted(set(weight_map.values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise CheckpointError(f"{index_file}: unreadable index ({error})") from error
        missing = [name for name in names if not (path / name).is_file()]
        if missing:
            raise CheckpointError(
                f"{index_file}: shard(s) named in the index are missing from {path}: {', '.join(missing[:MAX_LISTED_KEYS])}"
            )
        unlisted = sorted(p.name for p in path.glob("*.safetensors") if p.name not in names)
        if unlisted:
            logger.warning("%s: ignoring %s, not named by %s", path, ", ".join(unlisted), index_file.name)
        return [path / name for name in names]
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{path}: no *.safetensors weight files in this folder")
    return files


def read_tensor_index(files: list[Path]) -> dict[str, TensorInfo]:
    """Key -> (shape, dtype, file) from the safetensors headers only (no tensor data is read)."""
    from safetensors import SafetensorError, safe_open

    tensors: dict[str, TensorInfo] = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():
                    view = handle.get_slice(key)
                    dtype = _SAFETENSORS_DTYPES.get(view.get_dtype())
                    if dtype is None or not dtype.is_floating_point:
                        raise CheckpointError(f"{file}: tensor {key!r} has non-float dtype {view.get_dtype()}")
                    if key in tensors:
                        raise CheckpointError(f"{file}: key {key!r} is also in {tensors[key].file.name}")
                    tensors[key] = TensorInfo(tuple(view.get_shape()), dtype, file)
        except SafetensorError as error:
            raise CheckpointError(f"{file}: not a readable safetensors file ({error})") from error
    return tensors


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}  # fmt: skip


def check_is_one_to_all(path: Path, tensors: Mapping[str, TensorInfo]) -> None:
    """Refuse state dicts that are not One-to-All (e.g. a plain Wan2.1 transformer or a VAE)."""
    missing = [key for key in ONE_TO_ALL_MARKER_KEYS if key not in tensors]
    if not missing:
        return
    files = sorted({info.file.name for info in tensors.values()})
    if WAN_MARKER_KEY in tensors:
        what = "a plain Wan2.1 transformer (no One-to-All reference/pose modules)"
    elif any(key.startswith(("transformer.", "module.", "model.")) for key in tensors):
        what = "a state dict with prefixed keys (official checkpoints have none)"
    else:
        what = "not a One-to-All transformer"
    raise CheckpointError(
        f"{path} ({', '.join(files[:MAX_LISTED_KEYS])}) looks like {what}: missing {', '.join(missing)}; "
        f"first keys: {', '.join(sorted(tensors)[:MAX_LISTED_KEYS])}"
    )


def check_keys(path: Path, model: torch.nn.Module, tensors: Mapping[str, TensorInfo], config_source: str) -> None:
    """Strict key and shape comparison against the model's state dict, reported as one error."""
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    missing = [key for key in expected if key not in tensors]
    unexpected = [key for key in tensors if key not in expected]
    mismatched = [key for key in expected if key in tensors and tensors[key].shape != expected[key]]
    if not (missing or unexpected or mismatched):
        return
    lines = [f"{path}: checkpoint does not match OneToAllTransformer built from {config_source}:"]
    if missing:
        lines.append(f"  missing keys ({len(missing)}): {', '.join(missing[:MAX_LISTED_KEYS])}")
    if unexpected:
        where = sorted({tensors[key].file.name for key in unexpected})
        lines.append(
            f"  unexpected keys ({len(unexpected)}) in {', '.join(where[:MAX_LISTED_KEYS])}: "
            f"{', '.join(unexpected[:MAX_LISTED_KEYS])}"
        )
    for key in mismatched[:MAX_LISTED_KEYS]:
        lines.append(
            f"  shape mismatch in {tensors[key].file.name}: {key} is {tensors[key].shape}, model expects {expected[key]}"
        )
    if len(mismatched) > MAX_LISTED_KEYS:
        lines.append(f"  ... {len(mismatched) - MAX_LISTED_KEYS} more shape mismatches")
    raise CheckpointError("\n".join(lines))


def _common_dtype(tensors: Mapping[str, TensorInfo]) -> torch.dtype:
    dtypes = {info.dtype for info in tensors.values()}
    return dtypes.pop() if len(dtypes) == 1 else torch.float32


# ----------------------------------------------------------------------------------------------
# Config: official JSONs when present, otherwise inferred from shapes
# ----------------------------------------------------------------------------------------------


def _count_indexed(shapes: Mapping[str, Any], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for key in shapes if (m := pattern.match(key))}
    if indices and indices != set(range(len(indices))):
        raise CheckpointError(f"{prefix}N indices are not contiguous: {sorted(indices)[:10]}")
    return len(indices)


def infer_config_from_state_dict(shapes: Mapping[str, tuple[int, ...] | torch.Size | torch.Tensor]) -> dict[str, Any]:
    """``OneToAllTransformer`` arguments from a key -> shape (or tensor) mapping.

    Head count assumes head_dim 128 (all released models; the official HRFA code requires it).
    """
    shapes = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v) for k, v in shapes.items()}

    def shape(key: str) -> tuple[int, ...]:
        if key not in shapes:
            raise CheckpointError(f"cannot infer the config: key {key!r} is missing")
        return shapes[key]

    inner_dim, in_channels, *patch_size = shape("patch_embedding.weight")
    if inner_dim % HEAD_DIM:
        raise CheckpointError(f"cannot infer heads: inner dim {inner_dim} is not a multiple of head_dim {HEAD_DIM}")
    config: dict[str, Any] = {
        "patch_size": tuple(patch_size),
        "num_attention_heads": inner_dim // HEAD_DIM,
        "attention_head_dim": HEAD_DIM,
        "in_channels": in_channels,
        "out_channels": shape("proj_out.weight")[0] // math.prod(patch_size),
        "text_dim": shape("condition_embedder.text_embedder.linear_1.weight")[1],
        "freq_dim": shape("condition_embedder.time_embedder.linear_1.weight")[1],
        "ffn_dim": shape("blocks.0.ffn.net.0.proj.weight")[0],
        "num_layers": _count_indexed(shapes, "blocks."),
        "cross_attn_norm": "blocks.0.norm2.weight" in shapes,
        "ref_num_layers": _count_indexed(shapes, "refextractor.blocks."),
        "ref_in_channels": shape("refextractor.patch_embedding.weight")[1],
        "ref_freq_dim": shape("refextractor.condition_embedder.time_embedder.linear_1.weight")[1],
        "control_num_layers": _count_indexed(shapes, "controlnet.blocks."),
        "pose_in_channels": shape("input_hint_block.conv_in.conv.weight")[1],
    }
    if config["ref_num_layers"]:
        config["ref_ffn_dim"] = shape("refextractor.blocks.0.ffn.net.0.proj.weight")[0]
    if config["control_num_layers"]:
        config["control_ffn_dim"] = shape("controlnet.blocks.0.ffn.net.0.proj.weight")[0]
    return config


def resolve_config(path: Path, shapes: Mapping[str, tuple[int, ...]]) -> tuple[dict[str, Any], str]:
    """Config for ``path``: inferred from shapes, overridden by any config JSON found in the folder."""
    config = infer_config_from_state_dict(shapes)
    sources = ["tensor shapes"]
    folder = path if path.is_dir() else path.parent
    own = folder / "config.json"
    if own.is_file():
        data = _read_json(own)
        if data.get("_class_name") == OneToAllTransformer.__name__:
            params = inspect.signature(OneToAllTransformer.__init__).parameters
            config.update({k: v for k, v in data.items() if k in params and k != "self"})
            return _normalise(config), str(own)
        if data.get("_class_name") == "WanTransformer3DModel" and data.get("in_channels") == config["in_channels"]:
            config.update(_main_from_json(data, own))
            sources.append(own.name)
    main = next((folder / name for name in _MAIN_CONFIG_NAMES if (folder / name).is_file()), None)
    if main is not None:
        config.update(_main_from_json(_read_json(main), main))
        sources.append(main.name)
    for pattern, prefix in ((_REF_CONFIG_PATTERN, "ref_"), (_CONTROL_CONFIG_PATTERN, "control_")):
        found = sorted(p for p in folder.glob("*.json") if pattern.search(p.name))
        if len(found) > 1:
            raise CheckpointError(f"{folder}: several {prefix.rstrip('_')} configs: {', '.join(p.name for p in found)}")
        if found:
            config.update(_branch_from_json(_read_json(found[0]), found[0], prefix, config))
            sources.append(found[0].name)
    return _normalise(config), " + ".join(sources)


def _read_json(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{file}: unreadable config ({error})") from error
    if not isinstance(data, dict):
        raise CheckpointError(f"{file}: config must be a JSON object")
    return data


def _main_from_json(data: Mapping[str, Any], file: Path) -> dict[str, Any]:
    for key in ("image_dim", "added_kv_proj_dim"):
        if data.get(key) is not None:
            raise CheckpointError(f"{file}: {key}={data[key]!r}, but One-to-All is built on Wan2.1-T2V ({key} null)")
    return {key: data[key] for key in _MAIN_KEYS if key in data}


def _branch_from_json(data: Mapping[str, Any], file: Path, prefix: str, main: Mapping[str, Any]) -> dict[str, Any]:
    # The official set_up_controlnet/set_up_refextractor use the main model's width and head count.
    for key in ("num_attention_heads", "attention_head_dim"):
        if key in data and data[key] != main[key]:
            raise CheckpointError(f"{file}: {key}={data[key]} differs from the main model's {main[key]}")
    out = {f"{prefix}num_layers": data["num_layers"]} if "num_layers" in data else {}
    if "ffn_dim" in data:
        out[f"{prefix}ffn_dim"] = data["ffn_dim"]
    if prefix == "ref_":
        out.update({f"ref_{k}": data[k] for k in ("in_channels", "freq_dim") if k in data})
    return out


def _normalise(config: dict[str, Any]) -> dict[str, Any]:
    config["patch_size"] = tuple(config["patch_size"])
    return config
