"""`make soak`: 16 clients against a live sidecar for a while; every answer checked, memory sampled.

    python -m examples.soak_serve                     # 60 s, 16 clients, digits (batching on)
    python -m examples.soak_serve --seconds 600 --clients 32 --model tests/vectors/minilm/model.generated.onnx

The server is its own process (`python -m onnxpipe_runtime.serve`); the clients are threads of this one, each
with its own channel, sending valid requests (1-4 rows) and, one in ten, a malformed one. Fails (exit 1) when a
valid request is not answered correctly, a malformed one gets a status other than INVALID_ARGUMENT, the server
dies, or its RSS in the last quarter of the run is more than ``--rss-bound-mib`` above the first quarter's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from examples.fuzz_serve import INFER, Sidecar, rss_mib

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "tests" / "vectors" / "digits" / "model.onnx"


def _requests(model: Path, n: int = 32) -> list[tuple[bytes, dict[str, np.ndarray]]]:
    from onnxpipe_runtime import Pipeline
    from onnxpipe_runtime.serve._proto import grpc_service_pb2 as pb
    from onnxpipe_runtime.serve.codec import pack_bytes

    rng = np.random.default_rng(1)
    sentences = ["A man is eating food.", "Where is the nearest train station?", "Sidecars keep models close."]
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Pipeline.load(model, threads=1) as pipe:
            for i in range(n):
                rows = 1 + i % 4
                arrays: dict[str, np.ndarray] = {}
                for s in pipe.signature.required_inputs:
                    shape = [rows if j == 0 else (d if isinstance(d, int) else 28) for j, d in enumerate(s.shape)]
                    if s.dtype == "string":
                        arrays[s.name] = np.array([sentences[(i + k) % 3] for k in range(rows)], dtype=object)
                    elif s.dtype == "uint8":
                        arrays[s.name] = rng.integers(0, 256, size=shape, dtype=np.uint8)
                    else:
                        arrays[s.name] = rng.normal(size=shape).astype(s.dtype)
                req = pb.ModelInferRequest(model_name="m")
                for name, a in arrays.items():
                    kind = {"O": "BYTES", "u": "UINT8", "f": "FP32"}[a.dtype.kind]
                    req.inputs.add(name=name, datatype=kind, shape=list(a.shape))
                    req.raw_input_contents.append(pack_bytes(a.reshape(-1)) if kind == "BYTES" else a.tobytes())
                out.append((req.SerializeToString(), pipe.run(arrays)))
    return out


def run(model: Path, clients: int, seconds: float, bound: float) -> int:
    import grpc

    from examples.fuzz_serve import _check

    server = Sidecar(str(model), "--name", "m")
    reqs = _requests(model)
    bad = reqs[0][0][: len(reqs[0][0]) // 2]
    statuses: Counter[str] = Counter()
    problems: list[str] = []
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    samples: list[tuple[float, float]] = []

    def client(k: int) -> None:
        with grpc.insecure_channel(server.address) as ch:
            call = ch.unary_unary(INFER)
            i = k
            while time.monotonic() < stop_at:
                i += 1
                malformed = i % 10 == 0
                data, expected = (bad, None) if malformed else reqs[i % len(reqs)]
                t0 = time.perf_counter()
                try:
                    response = call(data, timeout=60)
                    status = "OK"
                    why = "a malformed request was answered" if malformed else _check(response, expected)
                except grpc.RpcError as e:
                    status = e.code().name
                    why = None if malformed and status == "INVALID_ARGUMENT" else f"{status}: {e.details()[:200]}"
                with lock:
                    statuses[status] += 1
                    if not malformed:
                        latencies.append(time.perf_counter() - t0)
                    if why:
                        problems.append(why)

    t0 = time.monotonic()
    pool = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in pool:
        t.start()
    while any(t.is_alive() for t in pool):
        if server.proc.poll() is None:
            samples.append((time.monotonic() - t0, rss_mib(server.proc.pid)))
        time.sleep(0.5)
    elapsed = time.monotonic() - t0
    alive = server.proc.poll() is None
    rc = server.stop()
    total = sum(statuses.values())
    quarter = max(1, len(samples) // 4)
    first = statistics.median(r for _, r in samples[:quarter]) if samples else 0.0
    last = statistics.median(r for _, r in samples[-quarter:]) if samples else 0.0
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    print(f"soak: {model.name}, {clients} clients, {elapsed:.0f} s: {total:,} requests ({total / elapsed:,.0f}/s), "
          f"statuses {dict(statuses.most_common())}; valid p50 {q[49] * 1e3:.1f} ms, p99 {q[98] * 1e3:.1f} ms")
    print(f"soak: server alive to the end: {alive}; exit status after SIGTERM {rc}; RSS first quarter {first:.0f} MiB, "
          f"last quarter {last:.0f} MiB (bound +{bound:.0f}), peak {max((r for _, r in samples), default=0):.0f} MiB")
    for p in problems[:20]:
        print(f"soak: PROBLEM {p}")
    failed = not alive or rc != 0 or bool(problems) or last - first > bound
    print("soak: FAILED" if failed else "soak: passed")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=DIGITS)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--rss-bound-mib", type=float, default=32.0, help="RSS growth allowed, last quarter vs first")
    args = p.parse_args(argv)
    return run(args.model.resolve(), args.clients, args.seconds, args.rss_bound_mib)


if __name__ == "__main__":
    sys.exit(main())
