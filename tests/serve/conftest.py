"""Shared fixtures: an in-process server on an ephemeral loopback port, clients with timeouts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("grpc", reason="the serve extra is not installed: pip install 'onnxpipe-runtime[serve]'")
tc = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed (requirements/dev.txt)")

import grpc  # noqa: E402

from onnxpipe_runtime.serve import Server, ServeOptions  # noqa: E402
from onnxpipe_runtime.serve._proto import grpc_service_pb2 as pb  # noqa: E402
from onnxpipe_runtime.serve._proto import grpc_service_pb2_grpc as pb_grpc  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BASIC = ROOT / "tests" / "fixtures" / "basic.onnx"
VECTORS = ROOT / "tests" / "vectors"
#: the MiniLM tokenizer pipeline, built by `make vectors`; ONNXPIPE_TEST_MINILM points elsewhere (a local export)
MINILM = Path(os.environ.get("ONNXPIPE_TEST_MINILM") or VECTORS / "minilm" / "model.generated.onnx")
TIMEOUT = 20.0  # seconds, on every RPC: nothing in these tests may hang
WIDTH = 512  # slow_model's row width


def basic_inputs(rows: int = 2, seed: int = 0, h: int = 2, w: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "features": rng.normal(size=(rows, 3)).astype(np.float32),
        "pixels": rng.integers(0, 256, size=(rows, h, w, 3), dtype=np.uint8),
    }


DATATYPE = {np.dtype(np.float32): "FP32", np.dtype(np.uint8): "UINT8", np.dtype(np.int64): "INT64",
            np.dtype(np.float64): "FP64", np.dtype(object): "BYTES", np.dtype(np.bool_): "BOOL",
            np.dtype(np.int32): "INT32", np.dtype(np.int8): "INT8"}


def triton_inputs(arrays: dict[str, np.ndarray]) -> list:
    out = []
    for name, a in arrays.items():
        t = tc.InferInput(name, list(a.shape), DATATYPE[a.dtype])
        t.set_data_from_numpy(a)
        out.append(t)
    return out


def infer(client, model: str, arrays: dict[str, np.ndarray], outputs: list[str] | None = None, **kw):
    requested = [tc.InferRequestedOutput(n) for n in outputs] if outputs else None
    return client.infer(model, triton_inputs(arrays), outputs=requested, client_timeout=TIMEOUT, **kw)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """basic.onnx, batching on with a generous delay so concurrent requests visibly merge."""
    with Server({"basic": BASIC}, ServeOptions(port=0, max_delay_ms=20.0, grace_s=5.0)) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator:
    c = tc.InferenceServerClient(server.address)
    yield c
    c.close()


@pytest.fixture(scope="module")
def stub(server: Server) -> Iterator:
    """This repository's own stubs (typed contents, exact protocol control)."""
    channel = grpc.insecure_channel(server.address)
    grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
    yield pb_grpc.GRPCInferenceServiceStub(channel)
    channel.close()


def typed_request(model: str, arrays: dict[str, np.ndarray], **kw) -> pb.ModelInferRequest:
    """A ModelInferRequest with typed `contents` (what tritonclient never sends)."""
    req = pb.ModelInferRequest(model_name=model, **kw)
    for name, a in arrays.items():
        t = req.inputs.add(name=name, datatype=DATATYPE[a.dtype], shape=list(a.shape))
        flat = a.reshape(-1)
        field = {"FP32": "fp32_contents", "UINT8": "uint_contents", "INT64": "int64_contents",
                 "FP64": "fp64_contents", "BOOL": "bool_contents", "INT32": "int_contents",
                 "BYTES": "bytes_contents"}[DATATYPE[a.dtype]]
        values = [v.encode() for v in flat] if a.dtype == object else flat.tolist()
        getattr(t.contents, field).extend(values)
    return req


_SLOW_DEPTH: int | None = None


def _slow_graph(depth: int):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.normal(size=(WIDTH, WIDTH)) / np.sqrt(WIDTH)).astype(np.float32), "w")
    nodes, prev = [], "x"
    for i in range(depth):
        nodes += [helper.make_node("MatMul", [prev, "w"], [f"m{i}"]), helper.make_node("Tanh", [f"m{i}"], [f"t{i}"])]
        prev = f"t{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    graph = helper.make_graph(
        nodes, "slow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", WIDTH])], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model


def _calibrated_depth(seconds: float = 2.5, rows: int = 1536) -> int:
    """How many (MatMul, Tanh) layers make a run of ``rows`` rows take about ``seconds`` on this machine now:
    a fixed depth is slow on a loaded machine and fast on a quiet one, and the tests need a run that is
    reliably still going while they act."""
    global _SLOW_DEPTH
    if _SLOW_DEPTH is None:
        import time

        import onnxruntime as ort

        probe = 10
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        sess = ort.InferenceSession(_slow_graph(probe).SerializeToString(), so)
        x = np.full((rows, WIDTH), 0.01, np.float32)
        sess.run(None, {"x": x})
        start = time.perf_counter()
        sess.run(None, {"x": x})
        per_layer = (time.perf_counter() - start) / probe
        _SLOW_DEPTH = int(min(4000, max(20, seconds / max(per_layer, 1e-6))))
    return _SLOW_DEPTH


def slow_model(path: Path, depth: int | None = None) -> Path:
    """x float32 [batch, 512] -> depth x (MatMul, Tanh) -> y; by default deep enough that 1536 rows take
    about 2.5 s here (calibrated once per test session)."""
    onnx = pytest.importorskip("onnx")
    onnx.save(_slow_graph(depth or _calibrated_depth()), path)
    return path
