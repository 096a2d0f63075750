"""The sidecar driven by tritonclient (a client of the protocol written by others) and by our own stubs."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from conftest import BASIC, TIMEOUT, VECTORS, basic_inputs, infer, tc, typed_request
from tritonclient.utils import InferenceServerException

from onnxpipe_runtime import Pipeline, tensor_json
from onnxpipe_runtime.serve import Server, ServeOptions
from onnxpipe_runtime.serve._proto import grpc_service_pb2 as pb
from onnxpipe_runtime.serve.codec import pack_bytes

OUTPUTS = ["score", "label_id", "label", "confident", "pixel_sum"]


@pytest.fixture(scope="module")
def local():
    with Pipeline.load(BASIC, threads=1) as pipe:
        yield pipe


def _assert_same(got: dict, want: dict) -> None:
    for name, w in want.items():
        g = got[name]
        assert g.shape == w.shape, name
        if w.dtype == object:
            assert [x.decode() if isinstance(x, bytes) else x for x in g.reshape(-1)] == list(w.reshape(-1)), name
        elif w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7, err_msg=name)
        else:
            assert g.dtype == w.dtype, name
            np.testing.assert_array_equal(g, w, err_msg=name)


# -- health and metadata --------------------------------------------------------------------------------------
def test_live_ready(client):
    assert client.is_server_live(client_timeout=TIMEOUT)
    assert client.is_server_ready(client_timeout=TIMEOUT)
    assert client.is_model_ready("basic", client_timeout=TIMEOUT)
    assert client.is_model_ready("basic", "1", client_timeout=TIMEOUT)
    assert not client.is_model_ready("nope", client_timeout=TIMEOUT)
    assert not client.is_model_ready("basic", "2", client_timeout=TIMEOUT)


def test_server_metadata(client):
    from onnxpipe_runtime import __version__

    md = client.get_server_metadata(client_timeout=TIMEOUT)
    assert (md.name, md.version) == ("onnxpipe", __version__)


def test_model_metadata_from_manifest(client, local):
    md = client.get_model_metadata("basic", as_json=True, client_timeout=TIMEOUT)
    assert md["name"] == "basic" and md["versions"] == ["1"]
    ins = {t["name"]: (t["datatype"], [int(d) for d in t.get("shape", [])]) for t in md["inputs"]}
    assert ins == {"features": ("FP32", [-1, 3]), "pixels": ("UINT8", [-1, -1, -1, 3]), "score_threshold": ("FP32", [])}
    outs = [(t["name"], t["datatype"]) for t in md["outputs"]]
    manifest = [(o.name, o.dtype) for o in local.signature.outputs]  # the signature read from the manifest
    kinds = {"float32": "FP32", "int64": "INT64", "string": "BYTES", "bool": "BOOL"}
    assert outs == [(n, kinds[d]) for n, d in manifest]


def test_unknown_model_metadata_is_not_found(client):
    with pytest.raises(InferenceServerException) as e:
        client.get_model_metadata("nope", client_timeout=TIMEOUT)
    assert e.value.status() == "StatusCode.NOT_FOUND"
    assert "[NOT_FOUND] unknown model 'nope'" in e.value.message() and "basic" in e.value.message()


# -- inference ------------------------------------------------------------------------------------------------
def test_infer_raw_matches_runtime(client, local):
    x = basic_inputs(3, seed=1)
    r = infer(client, "basic", x)
    got = {n: r.as_numpy(n) for n in OUTPUTS}
    _assert_same(got, local.run(x))
    assert r.get_response().raw_output_contents  # tritonclient sent raw: answered raw


def test_infer_threshold_and_requested_outputs(client, local):
    x = basic_inputs(2, seed=2) | {"score_threshold": np.array(0.99, dtype=np.float32)}
    r = infer(client, "basic", x, outputs=["confident", "label"])
    resp = r.get_response()
    assert [o.name for o in resp.outputs] == ["confident", "label"]
    want = local.run(x)
    np.testing.assert_array_equal(r.as_numpy("confident"), want["confident"])
    assert not want["confident"].any()  # the threshold really reached the graph
    assert list(r.as_numpy("label")) == [s.encode() for s in want["label"]]


def test_infer_typed_contents(stub, local):
    x = basic_inputs(2, seed=3)
    resp = stub.ModelInfer(typed_request("basic", x, id="req-7"), timeout=TIMEOUT)
    assert resp.id == "req-7" and resp.model_version == "1" and not resp.raw_output_contents
    out = {o.name: o for o in resp.outputs}
    want = local.run(x)
    np.testing.assert_allclose(np.array(out["score"].contents.fp32_contents).reshape(2, 3), want["score"], rtol=1e-6)
    assert list(out["label_id"].contents.int64_contents) == want["label_id"].tolist()
    assert [b.decode() for b in out["label"].contents.bytes_contents] == list(want["label"])
    assert list(out["confident"].contents.bool_contents) == want["confident"].tolist()
    assert list(out["score"].shape) == [2, 3]


@pytest.mark.parametrize("how", ["request", "output"])
def test_client_chooses_raw_or_typed(stub, local, how):
    x = basic_inputs(1, seed=4)
    req = typed_request("basic", x)
    if how == "request":
        req.parameters["binary_data_output"].bool_param = True
    else:
        req.outputs.add(name="label").parameters["binary_data"].bool_param = True
    resp = stub.ModelInfer(req, timeout=TIMEOUT)
    names = [o.name for o in resp.outputs]
    assert len(resp.raw_output_contents) == len(names)
    label = resp.raw_output_contents[names.index("label")]
    assert label == pack_bytes(local.run(x)["label"])
    assert not resp.outputs[0].contents.ByteSize()


def test_triton_stub_talks_to_us(server, local):
    """Triton's own generated stubs (package inference, same service) reach this server: wire compatible."""
    from tritonclient.grpc import service_pb2 as tpb
    from tritonclient.grpc import service_pb2_grpc as tpb_grpc

    x = basic_inputs(1, seed=5)
    req = tpb.ModelInferRequest(model_name="basic")
    f = req.inputs.add(name="features", datatype="FP32", shape=[1, 3])
    f.contents.fp32_contents.extend(x["features"].reshape(-1).tolist())
    p = req.inputs.add(name="pixels", datatype="UINT8", shape=list(x["pixels"].shape))
    p.contents.uint_contents.extend(x["pixels"].reshape(-1).tolist())
    with grpc.insecure_channel(server.address) as ch:
        resp = tpb_grpc.GRPCInferenceServiceStub(ch).ModelInfer(req, timeout=TIMEOUT)
    assert list(resp.outputs[1].contents.int64_contents) == local.run(x)["label_id"].tolist()


def test_concurrent_requests_answer_right(client, local):
    """16 clients at once, 1 to 3 rows each: every answer equals the in-process runtime's."""
    cases = [basic_inputs(1 + i % 3, seed=100 + i) for i in range(32)]

    def call(x):
        r = infer(client, "basic", x)
        return {n: r.as_numpy(n) for n in OUTPUTS}

    with ThreadPoolExecutor(16) as ex:
        results = list(ex.map(call, cases, timeout=TIMEOUT * 2))
    for x, got in zip(cases, results):
        _assert_same(got, local.run(x))


@pytest.mark.parametrize("batching", [True, False])
def test_requests_queued_behind_a_run_are_merged(tmp_path, batching):
    """A slow model: while one request runs, the next ones queue and then run as one batch (or one by one
    with --no-batching); each client gets exactly its own rows back."""
    from conftest import WIDTH, slow_model

    model = slow_model(tmp_path / "slow.onnx")
    with Server({"slow": model}, ServeOptions(port=0, batching=batching, threads=2, grace_s=5.0)) as s:
        batcher = s.models["slow"].batcher
        clients = [tc.InferenceServerClient(s.address) for _ in range(7)]
        try:
            big = np.full((1024, WIDTH), 0.01, np.float32)  # long enough for the small ones to queue behind it
            rows = [np.full((1 + i % 2, WIDTH), 0.1 * (i + 1), np.float32) for i in range(6)]
            with ThreadPoolExecutor(7) as ex:
                first = ex.submit(lambda: infer(clients[6], "slow", {"x": big}).as_numpy("y"))
                end = time.monotonic() + TIMEOUT
                while batcher.runs < 1 or batcher._queue:  # the big request is running now
                    assert time.monotonic() < end
                    time.sleep(0.002)
                small = [ex.submit(lambda k=k, x=x: infer(clients[k], "slow", {"x": x}).as_numpy("y"))
                         for k, x in enumerate(rows)]
                results = [f.result(TIMEOUT) for f in small]
                assert first.result(TIMEOUT).shape == big.shape
        finally:
            for c in clients:
                c.close()
        with Pipeline.load(model, threads=1) as pipe:
            for x, got in zip(rows, results):
                np.testing.assert_allclose(got, pipe.run(x=x)["y"], rtol=1e-4, atol=1e-5)
        if batching:
            assert batcher.runs <= 3, batcher.runs  # the big one, then the six small ones (in one or two runs)
        else:
            assert batcher.runs == 7


def test_different_image_sizes_do_not_merge_but_all_answer(client, local):
    xs = [basic_inputs(1, seed=200 + i, h=1 + i % 2, w=2) for i in range(8)]
    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(lambda x: infer(client, "basic", x).as_numpy("pixel_sum"), xs, timeout=TIMEOUT * 2))
    for x, got in zip(xs, results):
        np.testing.assert_array_equal(got, local.run(x)["pixel_sum"])


def test_different_thresholds_are_not_mixed(client, local):
    xs = [basic_inputs(1, seed=300) | {"score_threshold": np.array(t, dtype=np.float32)} for t in (0.0, 1.0) * 4]
    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(lambda x: infer(client, "basic", x).as_numpy("confident"), xs, timeout=TIMEOUT * 2))
    assert [bool(r[0]) for r in results] == [True, False] * 4


# -- golden vectors -------------------------------------------------------------------------------------------
def _vector_sets():
    for spec_path in sorted(VECTORS.glob("*/vector.json")):
        spec = json.loads(spec_path.read_text())
        model = spec_path.parent / spec["model"]
        yield pytest.param(spec_path.parent, spec, id=spec["name"], marks=[] if model.exists() else [
            pytest.mark.skip(reason=f"{model.relative_to(VECTORS)} is absent: run `make vectors`")])


def _check_vector(spec: dict, case: str, r, expected: dict, merged: bool = False) -> None:
    assert {o.name for o in r.get_response().outputs} == set(expected), case
    for name, want in expected.items():
        got = r.as_numpy(name)
        assert got.shape == want.shape, (case, name)
        if want.dtype == object:
            assert [g.decode() for g in got.reshape(-1)] == list(want.reshape(-1)), (case, name)
        elif want.dtype.kind == "f" and merged and spec.get("batch_dependent"):
            # dynamic int8 scales activations per tensor, so a row depends on the rows batched with it: when the
            # server merged requests, rows are held to the optimizer's gate instead of the element tolerance
            g, w = got.reshape(len(got), -1).astype(np.float64), want.reshape(len(want), -1).astype(np.float64)
            cos = np.sum(g * w, axis=1) / (np.linalg.norm(g, axis=1) * np.linalg.norm(w, axis=1))
            assert cos.min() >= spec["batch_dependent"]["cosine"], (case, name, cos)
        elif want.dtype.kind == "f":
            tol = spec["tolerance"][str(want.dtype)]
            np.testing.assert_allclose(got, want, atol=tol["atol"], rtol=tol["rtol"], err_msg=f"{case}: {name}")
        else:
            np.testing.assert_array_equal(got, want, err_msg=f"{case}: {name}")


@pytest.mark.parametrize("folder,spec", list(_vector_sets()))
def test_golden_vectors_over_grpc(folder, spec):
    """Every shared vector set, through the wire (what Java and Go compare against, served): each case alone,
    then all cases three times at once, so equal ones merge in the dynamic batcher."""
    with Server({spec["name"]: folder / spec["model"]}, ServeOptions(port=0, max_delay_ms=20.0, grace_s=2.0)) as s:
        c = tc.InferenceServerClient(s.address)
        try:
            cases = [(case["name"], tensor_json.load(folder / case["inputs"]), tensor_json.load(folder / case["expected"]))
                     for case in spec["cases"]]
            for name, inputs, expected in cases:
                _check_vector(spec, name, infer(c, spec["name"], inputs), expected)
            with ThreadPoolExecutor(6) as ex:
                futures = [(name, expected, ex.submit(infer, c, spec["name"], inputs))
                           for name, inputs, expected in cases * 3]
                for name, expected, f in futures:
                    _check_vector(spec, name, f.result(TIMEOUT), expected, merged=True)
        finally:
            c.close()


# -- bad requests ---------------------------------------------------------------------------------------------
def _error(stub, req) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        stub.ModelInfer(req, timeout=TIMEOUT)
    return e.value


def _code(err: grpc.RpcError) -> str:
    return dict(err.trailing_metadata() or ()).get("onnxpipe-error-code", "")


def _raw_request(model: str, tensors: list[tuple[str, str, list[int], bytes]]) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name=model)
    for name, dt, shape, raw in tensors:
        req.inputs.add(name=name, datatype=dt, shape=shape)
        req.raw_input_contents.append(raw)
    return req


PIX = ("pixels", "UINT8", [1, 1, 1, 3], bytes(3))


@pytest.mark.parametrize("tensors,status,needle", [
    ([("features", "FP32", [1, 3], bytes(8)), PIX], "INVALID_ARGUMENT",
     "input 'features': raw data has 8 bytes, shape [1, 3] of FP32 needs 12"),
    ([("features", "FP64", [1, 3], bytes(24)), PIX], "INVALID_ARGUMENT",
     "input 'features': datatype FP64 given, expected FP32 [-1, 3]"),
    ([("features", "FP32", [1, 4], bytes(16)), PIX], "INVALID_ARGUMENT",
     "input 'features': dimension 1 is 4"),
    ([("features", "FP32", [2, 3], bytes(24)), PIX], "INVALID_ARGUMENT",
     "inputs sharing a dimension name must agree"),
    ([("features", "FP32", [-1, 3], b""), PIX], "INVALID_ARGUMENT", "negative dimension"),
    ([("features", "FP32", [1 << 20, 3], bytes(12)), PIX], "INVALID_ARGUMENT", "raw data has 12 bytes"),
    ([PIX], "INVALID_ARGUMENT", "missing input 'features'"),
    ([("bogus", "FP32", [1], bytes(4)), PIX], "INVALID_ARGUMENT", "unknown input 'bogus'"),
    ([("features", "FP32", [1, 3], bytes(12)), PIX, ("features", "FP32", [1, 3], bytes(12))], "INVALID_ARGUMENT",
     "input 'features' is given twice"),
])
def test_bad_inputs_name_the_input(stub, tensors, status, needle):
    err = _error(stub, _raw_request("basic", tensors))
    assert err.code().name == status
    assert needle in err.details(), err.details()
    assert err.details().startswith("[INVALID_INPUT] ") and _code(err) == "INVALID_INPUT"


def test_raw_count_must_match_inputs(stub):
    req = _raw_request("basic", [("features", "FP32", [1, 3], bytes(12)), PIX])
    req.raw_input_contents.append(b"extra")
    err = _error(stub, req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "3 raw_input_contents for 2 input(s)" in err.details()


def test_raw_and_typed_mixed_rejected(stub):
    req = _raw_request("basic", [("features", "FP32", [1, 3], bytes(12)), PIX])
    req.inputs[0].contents.fp32_contents.extend([1.0, 2.0, 3.0])
    assert "one or the other" in _error(stub, req).details()


def test_typed_wrong_field_and_count(stub):
    x = basic_inputs(1)
    req = typed_request("basic", x)
    req.inputs[0].contents.ClearField("fp32_contents")
    req.inputs[0].contents.int64_contents.extend([1, 2, 3])
    assert "values given in contents.int64_contents, expected FP32 values in contents.fp32_contents" in \
        _error(stub, req).details()
    req = typed_request("basic", x)
    req.inputs[0].contents.fp32_contents.append(1.0)
    assert "contents.fp32_contents has 4 value(s), shape [1, 3] needs 3" in _error(stub, req).details()
    req = typed_request("basic", x)
    req.inputs[1].contents.uint_contents[0] = 300
    assert "input 'pixels': values in [" in _error(stub, req).details()


def test_no_data_at_all(stub):
    req = pb.ModelInferRequest(model_name="basic")
    req.inputs.add(name="features", datatype="FP32", shape=[1, 3])
    req.inputs.add(name="pixels", datatype="UINT8", shape=[1, 1, 1, 3])
    assert "contents.fp32_contents has 0 value(s)" in _error(stub, req).details()


def test_unknown_model_version_and_output_are_not_found(stub):
    x = basic_inputs(1)
    for req, needle in [
        (typed_request("nope", x), "unknown model 'nope'"),
        (typed_request("basic", x, model_version="3"), "has no version '3'"),
    ]:
        err = _error(stub, req)
        assert err.code() == grpc.StatusCode.NOT_FOUND and needle in err.details() and _code(err) == "NOT_FOUND"
    req = typed_request("basic", x)
    req.outputs.add(name="scores")
    err = _error(stub, req)
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert "unknown output 'scores'; model 'basic' has outputs ['score'," in err.details()


def test_conflicting_output_forms_rejected(stub):
    req = typed_request("basic", basic_inputs(1))
    req.outputs.add(name="score").parameters["binary_data"].bool_param = True
    req.outputs.add(name="label").parameters["binary_data"].bool_param = False
    assert "both raw and typed" in _error(stub, req).details()


def test_garbage_bytes_are_rejected_and_server_lives(server, client):
    """Not a ModelInferRequest at all, then a truncated one: errors, and the server still answers."""
    with grpc.insecure_channel(server.address) as ch:
        call = ch.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        good = typed_request("basic", basic_inputs(1)).SerializeToString()
        for payload in (b"\xff\xff\xff\xff\x0f", good[: len(good) // 2]):
            with pytest.raises(grpc.RpcError) as e:
                call(payload, timeout=TIMEOUT)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and _code(e.value) == "INVALID_INPUT"
    assert client.is_server_live(client_timeout=TIMEOUT)
    assert infer(client, "basic", basic_inputs(1)).as_numpy("score").shape == (1, 3)


def test_malformed_bytes_raw(tmp_path):
    """A BYTES input whose raw length prefixes lie: INVALID_ARGUMENT naming input and element."""
    from onnxpipe_runtime.serve.codec import decode_input
    from onnxpipe_runtime.serve.status import RequestError
    from onnxpipe_runtime.signature import TensorSpec

    spec = TensorSpec("text", "string", ("batch",))
    t = pb.ModelInferRequest.InferInputTensor(name="text", datatype="BYTES", shape=[2])
    assert list(decode_input(spec, t, pack_bytes(["héllo", ""]))) == ["héllo", ""]
    for raw, needle in [
        (b"\x05\x00\x00\x00abc", "element 0 claims 5 bytes but only 3 remain"),
        (b"\x01\x00\x00\x00a\x01\x00", "ends inside the 4-byte length of element 1"),
        (pack_bytes(["a"]), "holds 1 element(s), its shape needs 2"),
        (pack_bytes(["a", "b", "c"]), "bytes left after the 2 element(s)"),
        (b"\x01\x00\x00\x00\xff" + pack_bytes(["b"]), "element 0 is not valid UTF-8"),
    ]:
        with pytest.raises(RequestError) as e:
            decode_input(spec, t, raw)
        assert e.value.code == "INVALID_INPUT" and "input 'text'" in e.value.message and needle in e.value.message


def test_message_size_limit_is_resource_exhausted():
    with Server({"basic": BASIC}, ServeOptions(port=0, max_message_mb=1, grace_s=1.0)) as s:
        c = tc.InferenceServerClient(s.address)
        try:
            x = {"features": np.zeros((1, 3), np.float32), "pixels": np.zeros((1, 800, 800, 3), np.uint8)}
            with pytest.raises(InferenceServerException) as e:
                infer(c, "basic", x)
            assert e.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
            assert infer(c, "basic", basic_inputs(1)).as_numpy("score").shape == (1, 3)
        finally:
            c.close()


# -- standard services ----------------------------------------------------------------------------------------
def test_health_checking(server):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(server.address) as ch:
        h = health_pb2_grpc.HealthStub(ch)
        for service in ("", "inference.GRPCInferenceService"):
            resp = h.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_and_describes_the_service(server):
    from google.protobuf import descriptor_pb2
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(server.address) as ch:
        r = reflection_pb2_grpc.ServerReflectionStub(ch)
        reqs = [reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="inference.GRPCInferenceService")]
        answers = list(r.ServerReflectionInfo(iter(reqs), timeout=TIMEOUT))
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names
    fd = descriptor_pb2.FileDescriptorProto.FromString(answers[1].file_descriptor_response.file_descriptor_proto[0])
    assert fd.package == "inference"
    assert [m.name for m in fd.service[0].method][:6] == [
        "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"]


def test_full_queue_is_resource_exhausted_and_recovers(tmp_path):
    from conftest import WIDTH, slow_model

    model = slow_model(tmp_path / "slow.onnx")
    with Server({"slow": model}, ServeOptions(port=0, max_queue=1, threads=2, grace_s=5.0)) as s:
        clients = [tc.InferenceServerClient(s.address) for _ in range(3)]
        try:
            batcher = s.models["slow"].batcher
            big = {"x": np.full((1024, WIDTH), 0.01, np.float32)}

            def until(condition, what):
                end = time.monotonic() + TIMEOUT
                while not condition():
                    assert time.monotonic() < end, f"timed out waiting for {what}"
                    time.sleep(0.005)

            with ThreadPoolExecutor(2) as ex:
                running = ex.submit(infer, clients[0], "slow", big)
                until(lambda: batcher.runs == 1 and not batcher._queue, "the first request to run")
                queued = ex.submit(infer, clients[1], "slow", {"x": big["x"][:100]})
                until(lambda: len(batcher._queue) == 1, "the second request to queue")
                assert not running.done(), "the model ran too fast for this test to mean anything"
                with pytest.raises(InferenceServerException) as e:
                    infer(clients[2], "slow", {"x": big["x"][:1]})
                assert e.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
                assert "[OVERLOADED]" in e.value.message() and "--max-queue 1" in e.value.message()
                assert running.result(TIMEOUT).as_numpy("y").shape == (1024, WIDTH)
                assert queued.result(TIMEOUT).as_numpy("y").shape == (100, WIDTH)
            assert infer(clients[2], "slow", {"x": big["x"][:1]}).as_numpy("y").shape == (1, WIDTH)
        finally:
            for c in clients:
                c.close()


def test_bad_requests_leave_nothing_behind(server, stub):
    """Hundreds of malformed requests: no thread, queued job or growing state is left after them."""
    batcher = server.models["basic"].batcher
    before = threading.active_count()
    bad = [
        _raw_request("basic", [("features", "FP32", [1, 3], bytes(5)), PIX]),
        _raw_request("basic", [("features", "FP32", [3], bytes(12)), PIX]),
        _raw_request("basic", [("features", "BYTES", [1, 3], b"\x01\x00\x00"), PIX]),
        typed_request("nope", basic_inputs(1)),
    ]
    for i in range(200):
        with pytest.raises(grpc.RpcError):
            stub.ModelInfer(bad[i % len(bad)], timeout=TIMEOUT)
    assert threading.active_count() <= before + 2  # grpc may lazily start a poller thread
    assert not batcher._queue and not batcher._arriving
    assert stub.ModelInfer(typed_request("basic", basic_inputs(1)), timeout=TIMEOUT).outputs


def test_deadline_passed_in_queue_is_dropped(tmp_path):
    """A client that gives up while its request waits behind a long run gets DEADLINE_EXCEEDED, and its
    request is never run (no work for nobody)."""
    from conftest import WIDTH, slow_model

    model = slow_model(tmp_path / "slow.onnx")
    with Server({"slow": model}, ServeOptions(port=0, threads=2, grace_s=5.0)) as s:
        batcher = s.models["slow"].batcher
        clients = [tc.InferenceServerClient(s.address) for _ in range(2)]
        try:
            with ThreadPoolExecutor(1) as ex:
                running = ex.submit(infer, clients[0], "slow", {"x": np.full((1536, WIDTH), 0.01, np.float32)})
                end = time.monotonic() + TIMEOUT
                while batcher.runs < 1:
                    assert time.monotonic() < end
                    time.sleep(0.002)
                t = tc.InferInput("x", [1, WIDTH], "FP32")
                t.set_data_from_numpy(np.ones((1, WIDTH), np.float32))
                with pytest.raises(InferenceServerException) as e:
                    clients[1].infer("slow", [t], client_timeout=0.2)
                assert e.value.status() == "StatusCode.DEADLINE_EXCEEDED"
                running.result(TIMEOUT)
            assert infer(clients[1], "slow", {"x": np.ones((1, WIDTH), np.float32)}).as_numpy("y").shape == (1, WIDTH)
            assert batcher.runs == 2, batcher.runs  # the big run and the last one: the abandoned request never ran
        finally:
            for c in clients:
                c.close()
