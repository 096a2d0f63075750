"""Issue 13, the sidecar's part: one test (or more) per numbered defect, each failing before its fix.

§1 limits before allocating, §3 unparseable requests (no leak, one log line), §4 memory back after large
requests, §6 stop/SIGTERM under load (held by explicit hooks, not by timing), §8 status codes, §10 token
sources and plain ONNX files. Memory is measured on a server process (`ServerProcess`), everything else
in process.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from conftest import BASIC, ROOT, TIMEOUT, VECTORS, basic_inputs, infer, tc, typed_request
from test_server import PIX, _code, _error, _raw_request
from tritonclient.utils import InferenceServerException

from onnxpipe_runtime.serve import Server, ServeOptions
from onnxpipe_runtime.serve import cli as serve_cli
from onnxpipe_runtime.serve._proto import grpc_service_pb2 as pb
from onnxpipe_runtime.serve.codec import decode_input, pack_bytes
from onnxpipe_runtime.serve.limits import DEFAULT_MAX_ELEMENTS, DEFAULT_MAX_STRING_BYTES, Budget, Limits
from onnxpipe_runtime.serve.status import GRPC_STATUS, RequestError
from onnxpipe_runtime.signature import TensorSpec

INFER = "/inference.GRPCInferenceService/ModelInfer"
DIGITS = VECTORS / "digits" / "model.onnx"


def _spec_table(name: str) -> dict:
    return json.loads((ROOT / "spec" / name).read_text(encoding="utf-8"))


def _too_large(err: grpc.RpcError, *needles: str) -> None:
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.details()
    assert err.details().startswith("[TOO_LARGE] ") and _code(err) == "TOO_LARGE", err.details()
    for needle in needles:
        assert needle in err.details(), err.details()


# -- the contract's tables ------------------------------------------------------------------------------------
def test_limits_and_status_codes_are_the_contracts():
    limits = {row["name"]: row["default"] for row in _spec_table("limits.json")["limits"]}
    assert (DEFAULT_MAX_ELEMENTS, DEFAULT_MAX_STRING_BYTES) == (limits["max_elements"], limits["max_string_bytes"])
    assert ServeOptions().max_elements == DEFAULT_MAX_ELEMENTS
    for row in _spec_table("errors.json")["codes"]:
        if row["grpc"] is not None and not row.get("client_only"):
            assert GRPC_STATUS[row["code"]] == row["grpc"], row


# -- §1 limits per request and per batch, from the declared shape ---------------------------------------------
def test_huge_declared_shape_is_too_large_before_allocating(stub):
    # 2**80 elements claimed with 12 bytes sent: refused from the shape, naming the limit and the value
    err = _error(stub, _raw_request("basic", [("features", "FP32", [1 << 40, 1 << 40], bytes(12)), PIX]))
    _too_large(err, "input 'features'", "1,099,511,627,776", "--max-elements 16,777,216", "max_elements")


def test_typed_contents_claiming_a_huge_shape_are_too_large(stub):
    req = pb.ModelInferRequest(model_name="basic")
    req.inputs.add(name="features", datatype="FP32", shape=[DEFAULT_MAX_ELEMENTS, 2])
    err = _error(stub, req)
    _too_large(err, "input 'features'", "above --max-elements")


def test_max_elements_flag_counts_the_whole_request():
    with Server({"basic": BASIC}, ServeOptions(port=0, max_elements=100, grace_s=1.0)) as s:
        with grpc.insecure_channel(s.address) as ch:
            call = ch.unary_unary(INFER)
            ok = typed_request("basic", basic_inputs(2))  # 6 + 36 elements
            assert pb.ModelInferResponse.FromString(call(ok.SerializeToString(), timeout=TIMEOUT)).outputs
            with pytest.raises(grpc.RpcError) as e:  # 15 + 90 elements: each under 100, together over
                call(typed_request("basic", basic_inputs(5)).SerializeToString(), timeout=TIMEOUT)
            _too_large(e.value, "input 'pixels'", "105", "--max-elements 100")


def test_max_string_bytes_raw_and_typed():
    spec = TensorSpec("text", "string", ("batch",))
    small = Limits(max_string_bytes=10)
    t = pb.ModelInferRequest.InferInputTensor(name="text", datatype="BYTES", shape=[2])
    assert list(decode_input(spec, t, pack_bytes(["hello", "world"]), Budget(small))) == ["hello", "world"]
    with pytest.raises(RequestError) as e:
        decode_input(spec, t, pack_bytes(["hello", "world!"]), Budget(small))
    assert e.value.code == "TOO_LARGE" and "--max-string-bytes 10" in e.value.message and "11 bytes" in e.value.message
    t.contents.bytes_contents.extend([b"hello", b"world!"])
    with pytest.raises(RequestError) as e:
        decode_input(spec, t, None, Budget(small))
    assert e.value.code == "TOO_LARGE" and "max_string_bytes" in e.value.message


def test_serve_cli_limit_flags():
    args = serve_cli.parser().parse_args([str(BASIC), "--max-elements", "1000", "--max-string-bytes", "2000"])
    assert (args.max_elements, args.max_string_bytes) == (1000, 2000)


def test_merged_batch_stays_within_max_elements():
    """Requests waiting together merge only up to the limit: 3 requests of 2 elements, limit 4 -> runs of <= 4."""
    from test_batching import FakePipe, _batcher, _held

    pipe = FakePipe()
    b = _batcher(pipe, max_batch=32, max_delay=5.0, limits=Limits(max_elements=4))
    try:
        pipe.gate.clear()
        first = b.submit({"x": np.zeros((1, 2), np.float32)}, elements=2)
        _held(pipe, b)  # the first runs alone, held; the next three queue behind it
        rest = [b.submit({"x": np.full((1, 2), i, np.float32)}, elements=2) for i in range(3)]
        pipe.gate.set()
        for f in [first, *rest]:
            assert f.result(TIMEOUT)["y"].shape == (1, 2)
        assert pipe.calls == [1, 2, 1]
    finally:
        b.close(5.0)


# -- §3 unparseable requests: INVALID_ARGUMENT, one log line each, no traceback, no leak ----------------------
def test_unparseable_requests_are_invalid_argument_with_one_log_line(server, client, caplog):
    rng = np.random.default_rng(13)
    payloads = [b"\xff\xff\xff\xff\x0f", b"\x0a\xff\xff\xff\xff\x0f"] + [rng.bytes(64) for _ in range(30)]
    with caplog.at_level(logging.INFO, logger="onnxpipe.serve"):
        with grpc.insecure_channel(server.address) as ch:
            call = ch.unary_unary(INFER)
            refused = 0
            for payload in payloads:
                try:
                    call(payload, timeout=TIMEOUT)
                except grpc.RpcError as e:  # random bytes are sometimes a valid (empty-ish) message
                    assert e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), e.details()
                    refused += 1
            with pytest.raises(grpc.RpcError) as e:
                call(b"\xff\xff\xff\xff\x0f", timeout=TIMEOUT)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and _code(e.value) == "INVALID_INPUT"
            assert "not a valid ModelInferRequest message" in e.value.details()
    lines = [r for r in caplog.records if "refused" in r.getMessage()]
    assert 1 <= len(lines) <= refused + 1 and all(r.exc_info is None for r in caplog.records)
    assert "Traceback" not in caplog.text
    assert infer(client, "basic", basic_inputs(1)).as_numpy("score").shape == (1, 3)


def test_refused_requests_are_logged_at_a_bounded_rate():
    from onnxpipe_runtime.serve.memory import RejectLog

    records: list[str] = []

    class Sink(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("onnxpipe.test.rejects")
    logger.addHandler(Sink())
    logger.setLevel(logging.INFO)
    log = RejectLog(logger, per_window=5, window=3600.0)
    for i in range(1000):
        log(logging.INFO, "refused %d", i)
    assert records == [f"refused {i}" for i in range(5)]


def test_random_bytes_do_not_grow_the_server(tmp_path):
    """grpcio's typed path leaked ~16 MiB per 1,000 unparseable requests; bytes parsed by us stay flat."""
    from test_shutdown import ServerProcess, rss_mib

    server = ServerProcess(str(BASIC), "--log-level", "WARNING")
    try:
        rng = np.random.default_rng(3)
        with grpc.insecure_channel(server.address) as ch:
            call = ch.unary_unary(INFER)

            def blast(n: int) -> None:
                for _ in range(n):
                    try:
                        call(b"\x0a\xff\xff\xff" + rng.bytes(int(rng.integers(8, 2048))), timeout=TIMEOUT)
                    except grpc.RpcError as e:
                        assert e.code() != grpc.StatusCode.UNAVAILABLE, e.details()

            blast(500)  # warm up: thread pool, arenas
            before = rss_mib(server.proc.pid)
            blast(3000)
            grown = rss_mib(server.proc.pid) - before
        assert grown < 12, f"RSS grew {grown:.1f} MiB over 3,000 unparseable requests"
    finally:
        server.kill()


# -- §4 amplification and retention ---------------------------------------------------------------------------
def test_raw_input_is_used_in_place():
    spec = TensorSpec("features", "float32", ("batch", 3))
    raw = np.arange(6, dtype="<f4").tobytes()
    t = pb.ModelInferRequest.InferInputTensor(name="features", datatype="FP32", shape=[2, 3])
    a = decode_input(spec, t, raw)
    assert a.base is not None and not a.flags.writeable and a.tolist() == [[0, 1, 2], [3, 4, 5]]


def _big_requests(rows: int) -> tuple[bytes, bytes]:
    """(refused, valid) raw requests for basic.onnx of about 24 * rows bytes each."""
    bad = _raw_request("basic", [("features", "FP32", [rows * 2, 3], bytes(rows * 24)), PIX])
    good = _raw_request("basic", [("features", "FP32", [rows, 3], bytes(rows * 12)),
                                  ("pixels", "UINT8", [rows, 1, 1, 3], bytes(rows * 3))])
    return bad.SerializeToString(), good.SerializeToString()


def _settled_rss(pid: int, baseline: float, bound: float) -> float:
    """RSS growth over ``baseline`` once it falls to ``bound`` (the trim runs 0.2 s after a request), or after 10 s."""
    from test_shutdown import rss_mib

    end = time.monotonic() + 10
    while (grown := rss_mib(pid) - baseline) > bound and time.monotonic() < end:
        time.sleep(0.1)
    return grown


def test_memory_returns_after_large_requests():
    """Refused 24 MiB requests leave nothing (each used to keep +3x its size, until a full GC); valid large
    ones do not pile up: what stays is the model's working set for its largest run, held by ONNX Runtime's
    CPU arena, not a copy per request."""
    from test_shutdown import ServerProcess, rss_mib

    server = ServerProcess(str(BASIC), "--log-level", "WARNING", "--max-message-mb", "200")
    try:
        opts = [("grpc.max_send_message_length", 200 << 20), ("grpc.max_receive_message_length", 200 << 20)]
        with grpc.insecure_channel(server.address, options=opts) as ch:
            call = ch.unary_unary(INFER)
            call(_raw_request("basic", [("features", "FP32", [1, 3], bytes(12)), PIX]).SerializeToString(),
                 timeout=TIMEOUT)
            baseline = rss_mib(server.proc.pid)
            bad, good = _big_requests(1 << 20)
            for _ in range(4):
                with pytest.raises(grpc.RpcError) as e:
                    call(bad, timeout=60)
                assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            grown = _settled_rss(server.proc.pid, baseline, 16)
            assert grown <= 16, f"RSS stayed {grown:.0f} MiB above its baseline after 4 refused 24 MiB requests"
            for _ in range(4):
                call(good, timeout=60)
                with pytest.raises(grpc.RpcError):
                    call(bad, timeout=60)
            # ONNX Runtime's CPU arena keeps about 90 MiB after the first such run (its working set); copies
            # per request would stack past this bound (issue 13 saw +1 GiB for one 60 MiB request)
            grown = _settled_rss(server.proc.pid, baseline, 160)
            print(f"RSS after the large valid requests: +{grown:.0f} MiB")
            assert grown <= 160, f"RSS stayed {grown:.0f} MiB above its baseline after 4 large valid requests"
    finally:
        server.kill()


# -- §6 stop under load: accepted requests finish, later ones are UNAVAILABLE, none CANCELLED -------------------
class Gate:
    """Holds every model run until released; counts the requests the server has accepted."""

    def __init__(self, server: Server):
        self.open = threading.Event()
        self.accepted = 0
        self._lock = threading.Lock()
        batcher = server.models["basic"].batcher
        real = batcher.pipe

        class Held:
            signature = real.signature

            @staticmethod
            def validate(given):
                return real.validate(given)

            @staticmethod
            def run(feeds):
                assert self.open.wait(TIMEOUT)
                return real.run(feeds)

        batcher.pipe = Held()
        server.on_accepted = self._accept

    def _accept(self, model: str) -> None:
        with self._lock:
            self.accepted += 1

    def wait_accepted(self, n: int) -> None:
        end = time.monotonic() + TIMEOUT
        while self.accepted < n:
            assert time.monotonic() < end, f"{self.accepted} of {n} requests accepted"
            time.sleep(0.005)


def test_stop_finishes_accepted_requests_and_refuses_later_ones_unavailable():
    s = Server({"basic": BASIC}, ServeOptions(port=0, grace_s=TIMEOUT, max_delay_ms=1.0)).start()
    gate = Gate(s)
    client = tc.InferenceServerClient(s.address)
    try:
        with ThreadPoolExecutor(24) as ex:
            accepted = [ex.submit(infer, client, "basic", basic_inputs(1, seed=i)) for i in range(16)]
            gate.wait_accepted(16)  # one running (held), fifteen queued
            stopping = ex.submit(s.stop)
            end = time.monotonic() + TIMEOUT
            while not s._servicer.stopping.is_set():
                assert time.monotonic() < end
                time.sleep(0.005)
            later = [ex.submit(infer, client, "basic", basic_inputs(1)) for _ in range(8)]
            for f in later:
                with pytest.raises(InferenceServerException) as e:
                    f.result(TIMEOUT)
                assert e.value.status() == "StatusCode.UNAVAILABLE", e.value.message()
                assert "[CLOSED]" in e.value.message()
            assert not any(f.done() for f in accepted), "an accepted request ended before the model ran"
            gate.open.set()
            for f in accepted:
                assert f.result(TIMEOUT).as_numpy("score").shape == (1, 3)
            stopping.result(TIMEOUT)
    finally:
        gate.open.set()
        client.close()
        s.stop(0.0)


# -- §8 status codes as docs/serving.md says -------------------------------------------------------------------
def test_huge_names_are_clipped_and_keep_the_code(stub):
    name = "n" * 20_000
    err = _error(stub, pb.ModelInferRequest(model_name=name))
    assert err.code() == grpc.StatusCode.NOT_FOUND and _code(err) == "NOT_FOUND", err.details()
    assert "(20,000 chars)" in err.details() and len(err.details()) < 1100
    err = _error(stub, _raw_request("basic", [(name, "FP32", [1, 3], bytes(12)), PIX]))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and _code(err) == "INVALID_INPUT", err.details()
    req = _raw_request("basic", [("features", "FP32", [1, 3], bytes(12)), PIX])
    req.outputs.add(name="é" * 20_000)
    err = _error(stub, req)
    assert err.code() == grpc.StatusCode.NOT_FOUND and _code(err) == "NOT_FOUND", err.details()
    req = _raw_request("basic", [("features", "X" * 20_000, [1, 3], bytes(12)), PIX])
    err = _error(stub, req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and len(err.details()) < 1100


def test_zero_element_tensor_with_huge_dims_is_too_large(stub):
    err = _error(stub, _raw_request("basic", [("features", "FP32", [0, 1 << 40], b""), PIX]))
    _too_large(err, "dimension 1 is 1,099,511,627,776")


@pytest.fixture(scope="module")
def digits_stub():
    with Server({"digits": DIGITS}, ServeOptions(port=0, grace_s=1.0)) as s:
        with grpc.insecure_channel(s.address) as ch:
            yield ch.unary_unary(INFER)


@pytest.mark.parametrize("shape", [[1, 0, 0, 3], [0, 0, 0, 3], [2, 0, 28, 3]])
def test_empty_images_are_invalid_argument(digits_stub, shape):
    req = _raw_request("digits", [("image", "UINT8", shape, b"")])
    with pytest.raises(grpc.RpcError) as e:
        digits_stub(req.SerializeToString(), timeout=TIMEOUT)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and _code(e.value) == "INVALID_INPUT", e.value.details()
    assert "input 'image'" in e.value.details() and "no elements" in e.value.details()


def test_empty_batch_of_whole_images_is_an_empty_answer(digits_stub):
    req = _raw_request("digits", [("image", "UINT8", [0, 28, 28, 3], b"")])
    resp = pb.ModelInferResponse.FromString(digits_stub(req.SerializeToString(), timeout=TIMEOUT))
    assert [list(o.shape) for o in resp.outputs] == [[0, 3], [0, 3], [0, 3]]


def test_empty_text_batch_is_invalid_argument():
    from conftest import MINILM

    if not MINILM.exists():
        pytest.skip(f"{MINILM} is absent: `make generated-models`")
    with Server({"minilm": MINILM}, ServeOptions(port=0, grace_s=1.0)) as s:
        with grpc.insecure_channel(s.address) as ch:
            req = _raw_request("minilm", [("text", "BYTES", [0], b"")])
            with pytest.raises(grpc.RpcError) as e:
                ch.unary_unary(INFER)(req.SerializeToString(), timeout=TIMEOUT)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and _code(e.value) == "INVALID_INPUT", e.value.details()


# -- §10 the token from a file or the environment; plain ONNX files said ---------------------------------------
def _options_from(argv: list[str], monkeypatch, env: str | None = None) -> ServeOptions:
    seen: list[ServeOptions] = []

    class Stop(Exception):
        pass

    def fake_server(models, options):
        seen.append(options)
        raise Stop

    monkeypatch.setattr(serve_cli, "Server", fake_server)
    if env is None:
        monkeypatch.delenv("ONNXPIPE_TOKEN", raising=False)
    else:
        monkeypatch.setenv("ONNXPIPE_TOKEN", env)
    with pytest.raises(Stop):
        serve_cli.main([str(BASIC), *argv])
    return seen[0]


def test_token_from_file_env_or_flag(tmp_path, monkeypatch, capsys):
    secret = tmp_path / "token"
    secret.write_text("from-file\n", encoding="utf-8")
    assert _options_from(["--token-file", str(secret)], monkeypatch).token == "from-file"
    assert _options_from([], monkeypatch, env="from-env").token == "from-env"
    assert _options_from(["--token", "from-flag"], monkeypatch, env="from-env").token == "from-flag"
    assert _options_from([], monkeypatch).token is None
    empty = tmp_path / "empty"
    empty.write_text("  \n", encoding="utf-8")
    assert serve_cli.main([str(BASIC), "--token-file", str(empty)]) == 2
    assert "the file is empty" in capsys.readouterr().err
    assert serve_cli.main([str(BASIC), "--token-file", str(tmp_path / "absent")]) == 2
    assert "cannot read it" in capsys.readouterr().err
    assert "/proc" in serve_cli.parser().format_help()


def test_plain_onnx_is_served_and_said(caplog):
    with caplog.at_level(logging.WARNING, logger="onnxpipe.serve"):
        with Server({"plain": ROOT / "tests" / "fixtures" / "plain.onnx"}, ServeOptions(port=0, grace_s=1.0)) as s:
            c = tc.InferenceServerClient(s.address)
            try:
                assert infer(c, "plain", basic_inputs(1)).as_numpy("score").shape == (1, 3)
            finally:
                c.close()
    assert "no onnxpipe manifest (plain ONNX)" in caplog.text


def test_env_token_is_not_on_the_command_line(tmp_path):
    from test_shutdown import ServerProcess

    server = ServerProcess(str(BASIC), env={"ONNXPIPE_TOKEN": "s3cret-env"})
    try:
        cmdline = (open(f"/proc/{server.proc.pid}/cmdline", "rb").read() if os.path.exists("/proc") else b"")
        assert b"s3cret-env" not in cmdline
        c = tc.InferenceServerClient(server.address)
        try:
            with pytest.raises(InferenceServerException):
                c.is_server_live(client_timeout=TIMEOUT)
            assert c.is_server_live(headers={"authorization": "Bearer s3cret-env"}, client_timeout=TIMEOUT)
        finally:
            c.close()
    finally:
        server.kill()


# -- §11 batching that pays: text rows merge with rows of a similar length -----------------------------------
def test_strings_merge_only_with_similar_lengths():
    from onnxpipe_runtime.serve.batching import _length_class

    short, similar, long = (np.array([t], dtype=object) for t in ("a man eats", "a woman reads", "x" * 80))
    assert _length_class(short) == _length_class(similar) != _length_class(long)
    assert _length_class(np.array([], dtype=object)) == 0
