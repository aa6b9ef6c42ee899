"""The committed generated gRPC code must match protos/ (regenerated into a temporary folder and compared)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _load_generator():
    spec = importlib.util.spec_from_file_location("o2a_protos_generate", REPO_ROOT / "protos" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_fresh() -> None:
    stale = _load_generator().stale_files()
    assert stale == [], f"generated code is stale, run `python protos/generate.py`: {stale}"


def test_both_generated_copies_import_together() -> None:
    from blender_addon.client._generated import render_service_pb2 as client_pb2
    from blender_addon.client._generated import render_service_pb2_grpc as client_grpc
    from render_server._generated import render_service_pb2 as server_pb2
    from render_server._generated import render_service_pb2_grpc as server_grpc

    assert client_pb2.DESCRIPTOR.package == "one_to_all.v1"
    assert client_pb2.DESCRIPTOR.name == server_pb2.DESCRIPTOR.name == "one_to_all/v1/render_service.proto"
    assert hasattr(client_grpc, "RenderServiceStub") and hasattr(server_grpc, "RenderServiceServicer")
    wire = server_pb2.SubmitJobRequest(client_request_id="x", width_px=32).SerializeToString()
    assert client_pb2.SubmitJobRequest.FromString(wire).width_px == 32


def test_every_enum_starts_unspecified() -> None:
    from render_server._generated import render_service_pb2 as pb2

    for enum in pb2.DESCRIPTOR.enum_types_by_name.values():
        assert enum.values_by_number[0].name.endswith("_UNSPECIFIED"), enum.name
