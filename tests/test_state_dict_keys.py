"""Key sets and shapes of the real 1.3B and 14B configs (built on the meta device) against the spec's lists.

The lists come from ``../shared/docs/one_to_all_state_dict_{1.3b,14b}.tsv`` relative to the repo root
(override the folder with ``O2A_SHARED_DOCS``); they were dumped from the official model class.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from render_server.models.configs import RELEASED_CONFIGS  # noqa: E402
from render_server.models.loading import infer_config_from_state_dict  # noqa: E402
from render_server.models.transformer_one_to_all import OneToAllTransformer  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPECTED_COUNTS = {"1.3b": 1329, "14b": 1513}


def read_tsv(size: str) -> dict[str, tuple[int, ...]]:
    folder = Path(os.environ.get("O2A_SHARED_DOCS", "../shared/docs"))
    folder = folder if folder.is_absolute() else (REPO_ROOT / folder).resolve()
    path = folder / f"one_to_all_state_dict_{size}.tsv"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    shapes = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, shape = line.split("\t")
            shapes[key] = tuple(int(n) for n in shape.split("x"))
    return shapes


@pytest.fixture(scope="module", params=sorted(RELEASED_CONFIGS))
def size(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def meta_model(size: str) -> OneToAllTransformer:
    with torch.device("meta"):
        return OneToAllTransformer(**RELEASED_CONFIGS[size])


def test_key_set_and_shapes_match_the_official_model(size: str, meta_model: OneToAllTransformer) -> None:
    expected = read_tsv(size)
    assert len(expected) == EXPECTED_COUNTS[size]
    actual = {k: tuple(v.shape) for k, v in meta_model.state_dict().items()}
    assert sorted(set(expected) - set(actual)) == [], "keys the model lacks"
    assert sorted(set(actual) - set(expected)) == [], "keys the official model lacks"
    wrong = {k: (actual[k], expected[k]) for k in expected if actual[k] != expected[k]}
    assert wrong == {}


def test_no_buffers_are_persistent(meta_model: OneToAllTransformer) -> None:
    # RoPE tables are recomputed, never loaded: the state dict holds parameters only.
    assert len(meta_model.state_dict()) == len(dict(meta_model.named_parameters()))


def test_config_inferred_from_the_key_list(size: str) -> None:
    inferred = infer_config_from_state_dict(read_tsv(size))
    expected = RELEASED_CONFIGS[size]
    assert {k: inferred[k] for k in inferred} == {k: expected[k] for k in inferred}
    for key in ("num_layers", "ref_num_layers", "control_num_layers", "num_attention_heads", "ffn_dim"):
        assert inferred[key] == expected[key], key


def test_every_reference_feature_and_control_block_is_used(meta_model: OneToAllTransformer) -> None:
    config = meta_model.config
    assert meta_model.used_reference_features == frozenset(range(config.ref_num_layers + 1))
    controlled = [i for i, block in enumerate(meta_model.blocks) if block.has_control]
    assert controlled == list(range(1, config.control_num_layers + 1))
