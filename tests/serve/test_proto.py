"""The one .proto: stubs current, wire-compatible with Triton's published protocol, importable beside it."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUBS = ROOT / "runtimes" / "python" / "onnxpipe_runtime" / "serve" / "_proto"


def test_generated_stubs_are_current(tmp_path: Path):
    """Regenerate from proto/grpc_service.proto into a temp dir: the committed stubs must be identical."""
    pytest.importorskip("grpc_tools", reason="grpcio-tools is not installed (requirements/dev.txt)")
    out = tmp_path / "_proto"
    subprocess.run([sys.executable, str(ROOT / "proto" / "generate.py"), "--out", str(out)],
                   check=True, capture_output=True, timeout=60)
    names = sorted(p.name for p in out.iterdir())
    committed = sorted(p.name for p in STUBS.iterdir() if p.is_file() and not p.name.endswith(".pyc"))
    assert names == committed
    stale = [n for n in names if not filecmp.cmp(out / n, STUBS / n, shallow=False)]
    assert not stale, f"stale stubs {stale}: run `python proto/generate.py` and commit the result"


def _fields(message) -> dict:
    out = {}
    for f in message.fields:
        kind = f.message_type.full_name if f.message_type else f.type
        out[f.name] = (f.number, kind, f.is_repeated if hasattr(f, "is_repeated") else f.label)
    for nested in message.nested_types:
        out[nested.name] = _fields(nested)
    return out


def test_wire_compatible_with_triton():
    """Every message and RPC we declare has the same full name and field numbers/types in Triton's
    grpc_service.proto (as shipped by tritonclient): an independent copy of the published protocol."""
    tpb = pytest.importorskip("tritonclient.grpc.service_pb2")
    from onnxpipe_runtime.serve._proto import grpc_service_pb2 as pb

    ours, theirs = pb.DESCRIPTOR, tpb.DESCRIPTOR
    assert ours.package == theirs.package == "inference"
    for name, message in ours.message_types_by_name.items():
        assert _fields(message) == _fields(theirs.message_types_by_name[name]), name
    ours_svc = ours.services_by_name["GRPCInferenceService"]
    theirs_svc = theirs.services_by_name["GRPCInferenceService"]
    for m in ours_svc.methods:
        t = theirs_svc.methods_by_name[m.name]
        assert (m.input_type.full_name, m.output_type.full_name) == (t.input_type.full_name, t.output_type.full_name)
    assert [m.name for m in ours_svc.methods] == [
        "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"]


@pytest.mark.parametrize("implementation", ["upb", "python"])
def test_importable_beside_tritonclient_in_both_orders(implementation):
    """Both register package `inference`; ours lives in a private pool, so neither import order clashes, with
    protobuf's default (upb) implementation and the pure-Python one (which onnxruntime-extensions forces on
    child processes by setting PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python in os.environ)."""
    env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=implementation)
    for first, second in [("tritonclient.grpc", "onnxpipe_runtime.serve.server"),
                          ("onnxpipe_runtime.serve.server", "tritonclient.grpc")]:
        code = (f"import {first}, {second}\n"
                "from google.protobuf.internal import api_implementation\n"
                f"assert api_implementation.Type() == {implementation!r}, api_implementation.Type()\n"
                "from tritonclient.grpc import service_pb2 as t\n"
                "from onnxpipe_runtime.serve._proto import grpc_service_pb2 as o\n"
                "assert 'ModelStreamInferResponse' in t.DESCRIPTOR.message_types_by_name\n"
                "r = o.ModelInferRequest(model_name='m', raw_input_contents=[b'x'])\n"
                "r.inputs.add(name='a').parameters['k'].bool_param = True\n"
                "back = t.ModelInferRequest.FromString(r.SerializeToString())\n"
                "assert back.model_name == 'm' and back.inputs[0].parameters['k'].bool_param\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
        assert out.returncode == 0, f"import {first} then {second}: {out.stderr[-1500:]}"
