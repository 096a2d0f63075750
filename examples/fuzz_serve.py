"""`make fuzz`: malformed requests against a live sidecar, with a memory bound. Bounded: about a minute.

    python -m examples.fuzz_serve                     # 50,000 requests, RSS bound 64 MiB over the warm baseline
    python -m examples.fuzz_serve --requests 50000 --rss-bound-mib 32

The server runs as its own process (`python -m onnxpipe_runtime.serve`, basic + digits models). Requests come
from three sources, interleaved: the malformed-request catalog (every way a ModelInferRequest can be wrong
that docs/serving.md names: datatypes, shapes with zero, negative and huge dims in every position, data sizes,
raw/typed mixing, BYTES length prefixes, bad UTF-8, 20,000-character names, limits), random bytes, and valid
requests with random bytes flipped. A valid request goes in every few, and its answer is checked against the
runtime in process. The run fails (exit 1) when the server dies, answers a valid request wrongly, answers
anything with a status the docs do not list (UNKNOWN, CANCELLED, ...), or its RSS passes the bound.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BASIC = ROOT / "tests" / "fixtures" / "basic.onnx"
DIGITS = ROOT / "tests" / "vectors" / "digits" / "model.onnx"
INFER = "/inference.GRPCInferenceService/ModelInfer"
#: statuses docs/serving.md lists for a bad request (plus OK: random bytes are sometimes a valid message)
EXPECTED = {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "RESOURCE_EXHAUSTED"}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Sidecar:
    """The server process on a free port; ``stop()`` sends SIGTERM and returns its exit status."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "onnxpipe_runtime.serve", *args, "--port", "0", "--log-level", "WARNING"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"))
        if self.proc.stdout is None or self.proc.stderr is None:
            raise SystemExit("fuzz: the server's output pipes did not open")
        line = self.proc.stdout.readline()
        m = re.search(r"listening on ([\d.]+:\d+)", line)
        if not m:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise SystemExit(f"the server did not start: {line}{err}")
        self.address = m.group(1)
        self.log_lines = 0
        threading.Thread(target=self._count_log, daemon=True).start()

    def _count_log(self) -> None:
        for line in self.proc.stderr or ():
            self.log_lines += 1
            if "Traceback" in line:
                print(f"fuzz: traceback in the server log: {line.rstrip()}", file=sys.stderr)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(5)


def catalog() -> list[tuple[str, bytes]]:
    """(name, serialized request) for every malformed request the docs describe."""
    from onnxpipe_runtime.serve._proto import grpc_service_pb2 as pb
    from onnxpipe_runtime.serve.codec import pack_bytes

    out: list[tuple[str, bytes]] = []

    def raw(name: str, model: str, tensors: list[tuple[str, str, list[int], bytes]], **kw: object) -> None:
        req = pb.ModelInferRequest(model_name=model, **kw)
        for n, dt, shape, data in tensors:
            req.inputs.add(name=n, datatype=dt, shape=shape)
            req.raw_input_contents.append(data)
        out.append((name, req.SerializeToString()))

    pix = ("pixels", "UINT8", [1, 1, 1, 3], bytes(3))
    feat = ("features", "FP32", [1, 3], bytes(12))
    huge = [1 << 40, 1 << 62, (1 << 63) - 1]
    raw("ok-basic", "basic", [feat, pix])
    for dt in ("FP64", "INT64", "BYTES", "BOOL", "", "fp32", "X" * 20_000):
        raw(f"datatype-{dt[:8]}", "basic", [("features", dt, [1, 3], bytes(24)), pix])
    for rank in range(0, 6):
        raw(f"rank-{rank}", "basic", [("features", "FP32", [1] * rank, bytes(4)), pix])
    for pos in range(4):  # zero, negative and huge dims in every position of the image
        for d in (0, -1, *huge):
            shape = [1, 28, 28, 3]
            shape[pos] = d
            raw(f"digits-dim{pos}-{d}", "digits", [("image", "UINT8", shape, bytes(0 if d <= 0 else 3))])
    for shape in ([0, 28, 28, 3], [1, 0, 0, 3], [0, 0, 0, 0], [0, 1 << 40, 1 << 40, 3]):
        raw(f"digits-empty-{shape}", "digits", [("image", "UINT8", shape, b"")])
    raw("size-short", "basic", [("features", "FP32", [1, 3], bytes(8)), pix])
    raw("size-long", "basic", [("features", "FP32", [1, 3], bytes(16)), pix])
    raw("too-many-elements", "basic", [("features", "FP32", [1 << 23, 3], bytes(12)), pix])
    raw("batch-disagree", "basic", [("features", "FP32", [2, 3], bytes(24)), pix])
    raw("unknown-input", "basic", [("bogus", "FP32", [1], bytes(4)), pix])
    raw("huge-input-name", "basic", [("n" * 20_000, "FP32", [1, 3], bytes(12)), pix])
    raw("missing-input", "basic", [pix])
    raw("twice", "basic", [feat, pix, feat])
    raw("unknown-model", "nope", [feat, pix])
    raw("huge-model-name", "m" * 20_000, [feat, pix])
    raw("unknown-version", "basic", [feat, pix], model_version="7")
    raw("bool-raw-2", "basic", [feat, pix, ("score_threshold", "FP32", [], bytes(4))])
    req = pb.ModelInferRequest(model_name="basic")
    req.inputs.add(name="features", datatype="FP32", shape=[1, 3])
    req.inputs.add(name="pixels", datatype="UINT8", shape=[1, 1, 1, 3])
    req.raw_input_contents.append(bytes(12))  # one raw for two inputs
    out.append(("raw-count", req.SerializeToString()))
    req = pb.ModelInferRequest(model_name="basic")
    t = req.inputs.add(name="features", datatype="FP32", shape=[1, 3])
    t.contents.fp32_contents.extend([1.0, 2.0])
    out.append(("typed-count", req.SerializeToString()))
    t.contents.int64_contents.extend([1, 2, 3])
    out.append(("typed-wrong-field", req.SerializeToString()))
    req = pb.ModelInferRequest(model_name="basic")
    p = req.inputs.add(name="pixels", datatype="UINT8", shape=[1, 1, 1, 3])
    p.contents.uint_contents.extend([1, 2, 1000])
    out.append(("typed-out-of-range", req.SerializeToString()))
    req = pb.ModelInferRequest(model_name="basic")
    req.inputs.add(name="features", datatype="FP32", shape=[1, 3]).contents.fp32_contents.extend([1, 2, 3])
    req.raw_input_contents.append(bytes(12))
    out.append(("raw-and-typed", req.SerializeToString()))
    req = pb.ModelInferRequest(model_name="basic")
    req.inputs.add(name="features", datatype="FP32", shape=[1, 3])
    req.inputs.add(name="pixels", datatype="UINT8", shape=[1, 1, 1, 3])
    req.raw_input_contents.extend([bytes(12), bytes(3)])
    req.outputs.add(name="é" * 20_000)
    out.append(("huge-output-name", req.SerializeToString()))
    req.outputs[0].name = "score"
    req.outputs[0].parameters["binary_data"].string_param = "yes"
    out.append(("binary-data-string", req.SerializeToString()))
    for name, data in (("bytes-short-prefix", b"\x01\x00"), ("bytes-lying-length", b"\xff\xff\xff\x7fabc"),
                       ("bytes-bad-utf8", pack_bytes([b"\xff\xfe"])), ("bytes-extra", pack_bytes(["a", "b"]))):
        raw(name, "basic", [feat, pix, ("score_threshold", "BYTES", [1], data)])
    out.append(("empty", b""))
    out.append(("varint-overflow", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"))
    out.append(("truncated", out[0][1][: len(out[0][1]) // 2]))
    return out


def valid_requests() -> list[tuple[bytes, dict[str, np.ndarray]]]:
    """(request, expected outputs) pairs, answered in process by the runtime."""
    import warnings

    from onnxpipe_runtime import Pipeline
    from onnxpipe_runtime.serve._proto import grpc_service_pb2 as pb

    rng = np.random.default_rng(0)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Pipeline.load(BASIC, threads=1) as basic, Pipeline.load(DIGITS, threads=1) as digits:
            for i in range(8):
                rows = int(rng.integers(1, 4))
                a = {"features": rng.normal(size=(rows, 3)).astype(np.float32),
                     "pixels": rng.integers(0, 256, size=(rows, 2, 2, 3), dtype=np.uint8)}
                model, pipe = ("basic", basic) if i % 2 == 0 else ("digits", digits)
                if model == "digits":
                    a = {"image": rng.integers(0, 256, size=(rows, 28, 28, 3), dtype=np.uint8)}
                req = pb.ModelInferRequest(model_name=model)
                for n, x in a.items():
                    req.inputs.add(name=n, datatype="FP32" if x.dtype == np.float32 else "UINT8", shape=list(x.shape))
                    req.raw_input_contents.append(x.tobytes())
                out.append((req.SerializeToString(), pipe.run(a)))
    return out


def _check(response: bytes, expected: dict[str, np.ndarray]) -> str | None:
    from onnxpipe_runtime.serve._proto import grpc_service_pb2 as pb
    from onnxpipe_runtime.serve.codec import unpack_bytes

    resp = pb.ModelInferResponse.FromString(response)
    for t, data in zip(resp.outputs, resp.raw_output_contents):
        want = expected[t.name]
        if t.datatype == "BYTES":
            got = [b.decode() for b in unpack_bytes(t.name, data, int(np.prod(t.shape)))]
            if got != [str(v) for v in want.reshape(-1)]:
                return f"{t.name}: {got[:3]} != {want.reshape(-1)[:3]}"
        else:
            arr = np.frombuffer(data, dtype=want.dtype).reshape(list(t.shape))
            if arr.shape != want.shape or not np.allclose(arr, want, rtol=1e-4, atol=1e-5):
                return f"{t.name}: differs from the runtime in process"
    return None


def requests(n: int, seed: int) -> Iterator[tuple[str, bytes, dict[str, np.ndarray] | None]]:
    rng = np.random.default_rng(seed)
    cat = catalog()
    valid = valid_requests()
    for i in range(n):
        kind = i % 4
        if kind == 0:
            name, data = cat[(i // 4) % len(cat)]
            yield f"catalog:{name}", data, None
        elif kind == 1:
            yield "random", rng.bytes(int(rng.integers(0, 4096))), None
        elif kind == 2:
            data = bytearray(valid[int(rng.integers(len(valid)))][0])
            for _ in range(int(rng.integers(1, 8))):
                data[int(rng.integers(len(data)))] = int(rng.integers(256))
            yield "flipped", bytes(data), None
        else:
            data, expected = valid[int(rng.integers(len(valid)))]
            yield "valid", data, expected


def run(n: int, threads: int, bound: float, seed: int) -> int:
    import grpc

    server = Sidecar(str(BASIC), str(DIGITS), "--name", "basic", "--name", "digits", "--max-message-mb", "16")
    statuses: Counter[str] = Counter()
    problems: list[str] = []
    lock = threading.Lock()
    todo = iter(list(requests(n, seed)))
    peak = [0.0]
    try:
        with grpc.insecure_channel(server.address) as ch:
            call: Callable[..., bytes] = ch.unary_unary(INFER)
            for data, _ in valid_requests()[:4]:  # warm up
                call(data, timeout=30)
            time.sleep(0.5)
            baseline = rss_mib(server.proc.pid)

            def worker() -> None:
                while True:
                    with lock:
                        item = next(todo, None)
                    if item is None:
                        return
                    kind, data, expected = item
                    try:
                        response = call(data, timeout=30)
                        status = "OK"
                        if expected is not None and (why := _check(response, expected)):
                            with lock:
                                problems.append(f"valid request answered wrongly: {why}")
                    except grpc.RpcError as e:
                        status = e.code().name
                        if expected is not None or status not in EXPECTED:
                            with lock:
                                problems.append(f"{kind}: {status} {e.details()[:200]}")
                    with lock:
                        statuses[status] += 1

            def sample() -> None:
                while any(t.is_alive() for t in pool):
                    peak[0] = max(peak[0], rss_mib(server.proc.pid))
                    time.sleep(0.1)

            t0 = time.perf_counter()
            pool = [threading.Thread(target=worker) for _ in range(threads)]
            for t in pool:
                t.start()
            sampler = threading.Thread(target=sample)
            sampler.start()
            for t in pool:
                t.join()
            sampler.join()
            elapsed = time.perf_counter() - t0
            time.sleep(0.5)
            after = rss_mib(server.proc.pid)
        alive = server.proc.poll() is None
        rc = server.stop()
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
    crashes = 0 if alive else 1
    total = sum(statuses.values())
    print(f"fuzz: {total:,} requests in {elapsed:.1f} s ({threads} client threads, seed {seed}); "
          f"statuses {dict(statuses.most_common())}")
    print(f"fuzz: crashes {crashes}; server exit status after SIGTERM {rc}; server log lines {server.log_lines}")
    print(f"fuzz: RSS baseline {baseline:.0f} MiB, peak {peak[0]:.0f} MiB (+{peak[0] - baseline:.0f}), "
          f"after {after:.0f} MiB (+{after - baseline:.0f}; bound +{bound:.0f})")
    for p in problems[:20]:
        print(f"fuzz: PROBLEM {p}")
    failed = crashes or rc != 0 or problems or after - baseline > bound or peak[0] - baseline > 4 * bound
    print("fuzz: FAILED" if failed else "fuzz: passed")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=50_000)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--rss-bound-mib", type=float, default=64.0, help="RSS growth allowed after the run")
    p.add_argument("--seed", type=int, default=13)
    args = p.parse_args(argv)
    return run(args.requests, args.threads, args.rss_bound_mib, args.seed)


if __name__ == "__main__":
    sys.exit(main())
