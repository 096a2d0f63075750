"""BYTES tensors end to end: string inputs and outputs, raw and typed, and the MiniLM tokenizer pipeline."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import MINILM, TIMEOUT, infer, tc, typed_request
from tritonclient.utils import InferenceServerException

from onnxpipe_runtime import Pipeline
from onnxpipe_runtime.serve import Server, ServeOptions
from onnxpipe_runtime.serve._proto import grpc_service_pb2 as pb
from onnxpipe_runtime.serve._proto import grpc_service_pb2_grpc as pb_grpc

TEXTS = np.array(["abc", "héllo wörld", "", "日本語", "a\x00b"], dtype=object)


def strings_model(path: Path) -> Path:
    """text string [batch] -> shout = text + "!" (StringConcat), is_empty bool [batch] (Equal): standard ops only."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("StringConcat", ["text", "bang"], ["shout"]),
         helper.make_node("Equal", ["text", "empty"], ["is_empty"])], "strings",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])],
        [helper.make_tensor_value_info("shout", TensorProto.STRING, ["batch"]),
         helper.make_tensor_value_info("is_empty", TensorProto.BOOL, ["batch"])],
        initializer=[numpy_helper.from_array(np.array(["!"], dtype=object), "bang"),
                     numpy_helper.from_array(np.array([""], dtype=object), "empty")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9
    manifest = {"format": "onnxpipe.manifest", "format_version": 1, "name": "strings",
                "inputs": [{"name": "text", "dtype": "string", "shape": ["batch"]}],
                "outputs": [{"name": "shout", "dtype": "string", "shape": ["batch"]},
                            {"name": "is_empty", "dtype": "bool", "shape": ["batch"]}],
                "domains": []}
    helper.set_model_props(model, {"onnxpipe.manifest": json.dumps(manifest)})
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def strings_server(tmp_path_factory):
    path = strings_model(tmp_path_factory.mktemp("strings") / "strings.onnx")
    with Server({"strings": path}, ServeOptions(port=0, max_delay_ms=20.0, grace_s=2.0)) as s:
        yield s


@pytest.fixture(scope="module")
def strings_client(strings_server):
    c = tc.InferenceServerClient(strings_server.address)
    yield c
    c.close()


def test_bytes_in_and_out_raw(strings_client):
    r = infer(strings_client, "strings", {"text": TEXTS})
    assert [b.decode() for b in r.as_numpy("shout")] == [t + "!" for t in TEXTS]
    assert r.as_numpy("is_empty").tolist() == [t == "" for t in TEXTS]
    md = strings_client.get_model_metadata("strings", as_json=True, client_timeout=TIMEOUT)
    assert md["inputs"][0]["datatype"] == "BYTES" and md["outputs"][1]["datatype"] == "BOOL"


def test_bytes_typed(strings_server):
    with grpc.insecure_channel(strings_server.address) as ch:
        resp = pb_grpc.GRPCInferenceServiceStub(ch).ModelInfer(typed_request("strings", {"text": TEXTS}), timeout=TIMEOUT)
    shout = {o.name: o for o in resp.outputs}["shout"]
    assert shout.datatype == "BYTES" and [b.decode() for b in shout.contents.bytes_contents] == [t + "!" for t in TEXTS]


def test_invalid_utf8_is_invalid_argument(strings_server):
    req = pb.ModelInferRequest(model_name="strings")
    req.inputs.add(name="text", datatype="BYTES", shape=[2]).contents.bytes_contents.extend([b"ok", b"\xc3\x28"])
    with grpc.insecure_channel(strings_server.address) as ch, pytest.raises(grpc.RpcError) as e:
        pb_grpc.GRPCInferenceServiceStub(ch).ModelInfer(req, timeout=TIMEOUT)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input 'text': element 1 is not valid UTF-8" in e.value.details()


def test_numbers_for_a_bytes_input_are_refused(strings_client):
    with pytest.raises(InferenceServerException) as e:
        infer(strings_client, "strings", {"text": np.zeros(2, np.float32)})
    assert "input 'text': datatype FP32 given, expected BYTES [-1]" in e.value.message()


def test_concurrent_strings_split_back_right(strings_server, strings_client):
    cases = [np.array([f"{i}-{'x' * i}"] * (1 + i % 3), dtype=object) for i in range(16)]
    with ThreadPoolExecutor(16) as ex:
        results = list(ex.map(lambda t: infer(strings_client, "strings", {"text": t}).as_numpy("shout"), cases,
                              timeout=TIMEOUT * 2))
    for t, got in zip(cases, results):
        assert [g.decode() for g in got] == [s + "!" for s in t]


# -- the MiniLM tokenizer pipeline (built by `make vectors`) ---------------------------------------------------
SENTENCES = ["A man is eating food.", "The quick brown fox jumps over the lazy dog, twice, before breakfast.",
             "Ünïcödé and emoji 🚀 survive the wire.", "short"]


@pytest.fixture(scope="module")
def minilm():
    if not MINILM.exists():
        pytest.skip(f"{MINILM} is absent: run `make vectors` to build the MiniLM tokenizer pipeline")
    with Pipeline.load(MINILM) as pipe:
        with Server({"minilm": MINILM}, ServeOptions(port=0, max_delay_ms=20.0, grace_s=5.0)) as s:
            c = tc.InferenceServerClient(s.address)
            yield pipe, s, c
            c.close()


def _string_input(pipe) -> str:
    (name,) = [s.name for s in pipe.signature.required_inputs if s.dtype == "string"]
    return name


def _close(got, want, name):
    if want.dtype == object:
        assert [g.decode() for g in got.reshape(-1)] == list(want.reshape(-1)), name
    elif want.dtype.kind == "f":
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3, err_msg=name)
    else:
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_minilm_bytes_over_grpc_equals_runtime(minilm):
    pipe, _, client = minilm
    name = _string_input(pipe)
    text = np.array(SENTENCES, dtype=object)
    want = pipe.run({name: text})
    r = infer(client, "minilm", {name: text})
    for out, w in want.items():
        _close(r.as_numpy(out), w, out)


def test_minilm_concurrent_clients(minilm):
    pipe, server, client = minilm
    name = _string_input(pipe)
    cases = [np.array([SENTENCES[i % 4]] * (1 + i % 2), dtype=object) for i in range(8)]
    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(lambda t: infer(client, "minilm", {name: t}), cases, timeout=120))
    for t, r in zip(cases, results):
        want = pipe.run({name: t})
        for out, w in want.items():
            _close(r.as_numpy(out), w, out)
