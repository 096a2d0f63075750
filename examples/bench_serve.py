"""`make bench` (serving part): the gRPC sidecar on the MiniLM pipeline, measured with tritonclient.

    python -m examples.bench_serve                          # tests/vectors/minilm/model.generated.onnx
    python -m examples.bench_serve --model tests/fixtures/basic.onnx --seconds 2 --no-write

Requests/s and p50/p99 latency with 1 and 16 concurrent clients, dynamic batching off and on, and the
per-request cost of the gRPC hop against calling the Python runtime in-process. Each request is one
sentence (an embedding API call). The servers run as separate processes (`python -m onnxpipe_runtime.serve`)
so clients and server do not share a GIL. The table goes into docs/benchmarks.md between
``<!-- serve:begin -->`` and ``<!-- serve:end -->``. Bounded: about 1.5 minutes with the defaults.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MINILM = ROOT / "tests" / "vectors" / "minilm" / "model.generated.onnx"
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- serve:begin -->", "<!-- serve:end -->"
SENTENCES = [
    "A man is eating food.",
    "The new movie is awesome, and the soundtrack is even better than the trailer promised.",
    "Where is the nearest train station?",
    "Sidecars keep the model next to the application that needs it.",
]
START_TIMEOUT = 90.0


def _inputs(model: Path) -> Callable[[int], dict[str, np.ndarray]]:
    """A request maker for the model's signature: one sentence, or one row of random data."""
    from onnxpipe_runtime import Pipeline

    with Pipeline.load(model, threads=1) as pipe:
        specs = pipe.signature.required_inputs
    rng = np.random.default_rng(0)

    def make(i: int) -> dict[str, np.ndarray]:
        out = {}
        for s in specs:
            shape = [1 if not isinstance(d, int) else d for d in s.shape]
            if s.dtype == "string":
                out[s.name] = np.array([SENTENCES[i % len(SENTENCES)]] * int(np.prod(shape)), dtype=object).reshape(shape)
            elif s.dtype == "uint8":
                out[s.name] = rng.integers(0, 256, size=shape, dtype=np.uint8)
            else:
                out[s.name] = rng.normal(size=shape).astype(s.dtype)
        return out

    return make


class ServerProcess:
    def __init__(self, model: Path, name: str, *flags: str):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "onnxpipe_runtime.serve", str(model), "--name", name, "--port", "0",
             "--log-level", "INFO", *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        self.address: str | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            m = re.search(r"listening on ([\d.]+):(\d+)", line)
            if m:
                self.address = f"{m.group(1)}:{m.group(2)}"
                self._ready.set()
        self._ready.set()

    def wait_ready(self) -> str:
        if not self._ready.wait(START_TIMEOUT) or self.address is None:
            self.stop()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise SystemExit(f"bench_serve: the server did not start: {err[-2000:]}")
        return self.address

    def stop(self) -> str:
        """SIGTERM; returns the server's closing statistics line (requests per run), if it printed one."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        err = self.proc.stderr.read() if self.proc.stderr and not self.proc.stderr.closed else ""
        if self.proc.stderr:
            self.proc.stderr.close()
        m = re.search(r"model 'm': (.*requests per run)", err)
        return m.group(1) if m else ""


def _measure(call: Callable[[int, int], None], clients: int, seconds: float) -> tuple[float, list[float]]:
    """Run ``call(client, i)`` from ``clients`` threads for ``seconds``; (requests/s, latencies in s)."""
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    start = threading.Barrier(clients + 1, timeout=30)
    stop_at = [0.0]

    def worker(k: int) -> None:
        start.wait()
        i = 0
        try:
            while time.perf_counter() < stop_at[0]:
                t0 = time.perf_counter()
                call(k, i)
                lat[k].append(time.perf_counter() - t0)
                i += 1
        except BaseException as e:  # report, do not hang the barrier of others
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + seconds
    t_begin = time.perf_counter()
    start.wait()
    for t in threads:
        t.join(seconds + 60)
    elapsed = time.perf_counter() - t_begin
    if errors:
        raise SystemExit(f"bench_serve: a request failed: {errors[0]}")
    flat = [x for per in lat for x in per]
    return len(flat) / elapsed, flat


def _pipeline_name(model: Path) -> str:
    from onnxpipe_runtime.format import read_model

    manifest = read_model(model).manifest
    return manifest.name if manifest is not None else model.stem


def _row(label: str, clients: int, rps: float, lat: list[float]) -> str:
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [lat[0]] * 99
    return f"| {label} | {clients} | {rps:,.0f} | {q[49] * 1e3:.2f} | {q[98] * 1e3:.2f} |"


def _triton_caller(address: str, requests: list[dict[str, np.ndarray]]) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """(call(client, i), close) with 16 tritonclient connections to ``address``."""
    import tritonclient.grpc as tc

    clients = [tc.InferenceServerClient(address) for _ in range(16)]
    kinds = {"O": "BYTES", "f": "FP32", "u": "UINT8"}

    def call(k: int, i: int) -> None:
        inputs = []
        for name, a in requests[(k + i) % len(requests)].items():
            t = tc.InferInput(name, list(a.shape), kinds[a.dtype.kind])
            t.set_data_from_numpy(a)
            inputs.append(t)
        clients[k].infer("m", inputs, client_timeout=60)

    for k in range(16):
        call(k, 0)  # warm up every connection

    def close() -> None:
        for c in clients:
            c.close()

    return call, close


def run(model: Path, seconds: float, rounds: int = 8) -> tuple[list[str], float]:
    from onnxpipe_runtime import Pipeline, default_threads

    load_at_start = os.getloadavg()[0]
    make = _inputs(model)
    requests = [make(i) for i in range(16)]
    servers = {
        "sidecar, batching off": ServerProcess(model, "m", "--no-batching"),
        "sidecar, batching on": ServerProcess(model, "m"),
    }
    rows: list[str] = []
    notes: list[str] = []
    try:
        addresses = {label: server.wait_ready() for label, server in servers.items()}
        callers = {label: _triton_caller(address, requests) for label, address in addresses.items()}
        with Pipeline.load(model) as pipe:  # the baseline: the same runtime, same threads, no network
            for r in requests:
                pipe.run(r)
            calls: dict[str, Callable[[int, int], None]] = {
                "in-process `Pipeline.run`": lambda k, i: pipe.run(requests[i % 16]),
                **{label: call for label, (call, _) in callers.items()},
            }
            # every row is measured in interleaved short slices, so the shared machine's drifting load hits
            # all of them alike; in-process is measured with one caller only (it is not a server)
            results: dict[tuple[str, int], tuple[list[float], float]] = {}
            for _ in range(rounds):
                for n in (1, 16):
                    for label, call in calls.items():
                        if n > 1 and label not in callers:
                            continue
                        rps, lat = _measure(call, n, seconds / rounds)
                        got, elapsed = results.get((label, n), ([], 0.0))
                        results[(label, n)] = (got + lat, elapsed + len(lat) / rps)
        for (label, n), (lat, elapsed) in results.items():
            rows.append(_row(label, n, len(lat) / elapsed, lat))
        overhead = (statistics.median(results[("sidecar, batching off", 1)][0])
                    - statistics.median(results[("in-process `Pipeline.run`", 1)][0])) * 1e3
        for _, close in callers.values():
            close()
        for label, server in servers.items():
            stats = server.stop()
            if stats:
                notes.append(f"{label}: {stats}")
    finally:
        for server in servers.values():
            server.stop()
    header = [
        f"Model: `{model.name}` (pipeline {_pipeline_name(model)!r}, {model.stat().st_size / 1e6:.0f} MB), "
        "one sentence per request; "
        f"{os.cpu_count()} CPUs visible, runtime threads {default_threads()}, {platform.processor() or platform.machine()}; "
        f"{seconds:g} s per row in {rounds} interleaved slices, tritonclient (gRPC) clients in a separate process "
        "from the server, sharing its CPUs (on a small machine the clients limit what batching can show); "
        f"load average at the start {load_at_start:.1f} (a shared machine: compare rows, not runs).",
        "",
        "| mode | clients | requests/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    footer = [
        "",
        *[f"- {n}" for n in notes],
        "",
        f"Per-request overhead of the gRPC hop (1 client, batching off, p50 served - p50 in-process): "
        f"**{overhead:.2f} ms**"
        + (" (negative: the shared machine's load swings more than the hop costs; rerun `make bench` on a quiet "
           "machine for this number)" if overhead < 0 else "")
        + ". Batching waits at most `--max-delay-ms` (2 ms) "
        "and only for requests already on their way in; requests that arrive while the model is busy join the "
        "next run.",
    ]
    return header + rows + footer, overhead


def write_doc(lines: list[str]) -> None:
    block = "\n".join([BEGIN, "## Serving (gRPC sidecar)", "", *lines, END])
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=MINILM)
    p.add_argument("--seconds", type=float, default=6.0, help="measuring time per row (default 6)")
    p.add_argument("--no-write", action="store_true", help=f"print the table only, do not update {DOC.name}")
    args = p.parse_args(argv)
    if not args.model.exists():
        print(f"bench_serve: {args.model} is absent: run `make vectors` (or pass --model)", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    lines, _ = run(args.model.resolve(), args.seconds)
    print("\n".join(lines))
    if not args.no_write:
        write_doc(lines)
        print(f"\nwrote {DOC.relative_to(ROOT)} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
