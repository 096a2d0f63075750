"""`make bench` (serving part): the gRPC sidecar's hop and its dynamic batching.

    python -m examples.bench_serve                          # hop: digits; batching: MiniLM (model.generated.onnx)
    python -m examples.bench_serve --model tests/vectors/digits/model.onnx --seconds 2 --no-write

Two tables. The hop: one client, one row per request, a small model (digits), p50 served minus p50 of
`Pipeline.run` in process, with a lean gRPC client (request bytes built once) and with tritonclient. Batching:
16 clients (in 4 client processes), one row per request, batching off and on, requests/s and p50/p99. The
servers run as separate processes (`python -m onnxpipe_runtime.serve`), so clients and server share no GIL.
The tables go into docs/benchmarks.md between ``<!-- serve:begin -->`` and ``<!-- serve:end -->``. Bounded:
about a minute with the defaults.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
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
from typing import Any
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MINILM = ROOT / "tests" / "vectors" / "minilm" / "model.generated.onnx"
DIGITS = ROOT / "tests" / "vectors" / "digits" / "model.onnx"
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
            shape = [1 if j == 0 else (d if isinstance(d, int) else 28) for j, d in enumerate(s.shape)]
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
        for line in self.proc.stdout or ():
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


def _request_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """One ModelInferRequest for model 'm', raw inputs, serialized once (what a lean client sends)."""
    from onnxpipe_runtime.serve._proto import grpc_service_pb2 as pb
    from onnxpipe_runtime.serve.codec import pack_bytes

    req = pb.ModelInferRequest(model_name="m")
    for name, a in arrays.items():
        kind = {"O": "BYTES", "f": "FP32", "u": "UINT8"}[a.dtype.kind]
        req.inputs.add(name=name, datatype=kind, shape=list(a.shape))
        req.raw_input_contents.append(pack_bytes(a.reshape(-1)) if kind == "BYTES" else a.tobytes())
    return req.SerializeToString()


def _client_worker(conn: Any) -> None:
    """A client process: on ("run", address, bodies, threads, seconds) runs ``threads`` lean gRPC clients (one
    channel each, prebuilt request bytes) and sends back their latencies; on None it ends."""
    import grpc

    channels: dict[tuple[str, int], Any] = {}
    while (msg := conn.recv()) is not None:
        _, address, bodies, threads, seconds = msg
        calls = []
        for k in range(threads):
            if (address, k) not in channels:
                channels[(address, k)] = grpc.insecure_channel(address)
            calls.append(channels[(address, k)].unary_unary("/inference.GRPCInferenceService/ModelInfer"))
        for call in calls:
            call(bodies[0], timeout=60)
        lat: list[list[float]] = [[] for _ in calls]
        end = time.perf_counter() + seconds

        def loop(k: int) -> None:
            i = k
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                calls[k](bodies[i % len(bodies)], timeout=60)
                lat[k].append(time.perf_counter() - t0)
                i += 1

        workers = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
        t0 = time.perf_counter()
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        conn.send(([x for per in lat for x in per], time.perf_counter() - t0))


class LeanClients:
    """``procs`` client processes (spawned: no grpc state shared with this one), reused across slices."""

    def __init__(self, procs: int):
        ctx = mp.get_context("spawn")
        self._conns = []
        self._procs = []
        for _ in range(procs):
            here, there = ctx.Pipe()
            proc = ctx.Process(target=_client_worker, args=(there,), daemon=True)
            proc.start()
            self._conns.append(here)
            self._procs.append(proc)

    def measure(self, address: str, bodies: list[bytes], clients: int, seconds: float) -> tuple[float, list[float]]:
        """``clients`` clients spread over the processes for ``seconds``: (requests/s, latencies in s)."""
        used = self._conns[: min(clients, len(self._conns))]
        share = [clients // len(used) + (1 if i < clients % len(used) else 0) for i in range(len(used))]
        for conn, n in zip(used, share):
            conn.send(("run", address, bodies, n, seconds))
        answers = [conn.recv() for conn in used]  # each process times its own loop (warm-up calls excluded)
        lat = [x for got, _ in answers for x in got]
        return len(lat) / max(elapsed for _, elapsed in answers), lat

    def close(self) -> None:
        for conn, proc in zip(self._conns, self._procs):
            conn.send(None)
            proc.join(10)


def _interleaved(rows: dict[str, Callable[[float], tuple[float, list[float]]]], seconds: float, rounds: int
                 ) -> dict[str, tuple[float, list[float]]]:
    """Every row measured in ``rounds`` short slices in turn, so the shared machine's drifting load hits all
    alike; (requests/s over all slices, latencies)."""
    got: dict[str, tuple[float, list[float]]] = {}
    for _ in range(rounds):
        for label, measure in rows.items():
            rps, lat = measure(seconds / rounds)
            old_elapsed, old_lat = got.get(label, (0.0, []))
            got[label] = (old_elapsed + len(lat) / rps, old_lat + lat)
    return {label: (len(lat) / elapsed, lat) for label, (elapsed, lat) in got.items()}


def run(model: Path, hop_model: Path, seconds: float, rounds: int = 8, client_procs: int = 4
        ) -> tuple[list[str], float, float]:
    """(doc lines, hop ms over in-process for ``hop_model`` at one client, batching throughput ratio at 16)."""
    from onnxpipe_runtime import Pipeline, default_threads

    load_at_start = os.getloadavg()[0]
    clients = LeanClients(client_procs)
    servers = {
        "hop": ServerProcess(hop_model, "m"),
        "sidecar, batching off": ServerProcess(model, "m", "--no-batching"),
        "sidecar, batching on": ServerProcess(model, "m"),
    }
    notes: list[str] = []
    try:
        addresses = {label: server.wait_ready() for label, server in servers.items()}
        hop_make = _inputs(hop_model)
        hop_req = hop_make(0)
        hop_body = [_request_bytes(hop_req)]
        make = _inputs(model)
        bodies = [_request_bytes(make(i)) for i in range(16)]
        same = [bodies[0]]  # every request alike: no padding to the longest sentence in a merged run
        triton_call, triton_close = _triton_caller(addresses["hop"], [hop_req] * 16)
        with Pipeline.load(hop_model) as pipe:  # the baseline: the same runtime, same threads, no network
            for _ in range(50):
                pipe.run(hop_req)
            hop = _interleaved({
                "in-process `Pipeline.run`": lambda t: _measure(lambda k, i: pipe.run(hop_req), 1, t),
                "sidecar, lean gRPC client": lambda t: clients.measure(addresses["hop"], hop_body, 1, t),
                "sidecar, tritonclient": lambda t: _measure(triton_call, 1, t),
            }, seconds, rounds)
        triton_close()
        batching = _interleaved({  # longer slices: a merged MiniLM run takes a good part of a second here
            f"{label}{what}": (lambda t, a=addresses[label], b=b: clients.measure(a, b, 16, t))
            for what, b in ((", mixed requests", bodies), (", one request repeated", same))
            for label in ("sidecar, batching off", "sidecar, batching on")
        }, 2 * seconds, max(1, rounds // 2))
        for label in ("sidecar, batching off", "sidecar, batching on", "hop"):
            stats = servers[label].stop()
            if stats and label != "hop":
                notes.append(f"{label}: {stats}")
    finally:
        clients.close()
        for server in servers.values():
            server.stop()
    p50 = {label: statistics.median(lat) * 1e3 for label, (_, lat) in hop.items()}
    overhead = p50["sidecar, lean gRPC client"] - p50["in-process `Pipeline.run`"]
    overhead_triton = p50["sidecar, tritonclient"] - p50["in-process `Pipeline.run`"]
    ratios = {what: batching[f"sidecar, batching on{what}"][0] / batching[f"sidecar, batching off{what}"][0]
              for what in (", mixed requests", ", one request repeated")}
    ratio = ratios[", mixed requests"]
    header = [
        f"{os.cpu_count()} CPUs visible, runtime threads {default_threads()}, "
        f"{platform.processor() or platform.machine()}; {seconds:g} s per row of the hop in {rounds} interleaved "
        f"slices, {2 * seconds:g} s per row of batching in {max(1, rounds // 2)}; the "
        f"servers are `python -m onnxpipe_runtime.serve` processes, the clients {client_procs} other processes "
        "(lean clients: one gRPC channel each, the request serialized once, as a Java or Go client would hold it), "
        f"all on the same CPUs; load average at the start {load_at_start:.1f} (a shared machine: compare rows "
        "of one table, not runs).",
        "",
        f"**The hop**: `{hop_model.name}` (pipeline {_pipeline_name(hop_model)!r}), one request of one row, "
        "one client, batching on (the default):",
        "",
        "| mode | clients | requests/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
        *[_row(label, 1, rps, lat) for label, (rps, lat) in hop.items()],
        "",
        f"Per-request overhead of the gRPC hop (p50 served - p50 in-process): **{overhead:.2f} ms** with a lean "
        f"client, {overhead_triton:.2f} ms with tritonclient (its Python request building is the difference).",
        "",
        f"**Dynamic batching**: `{model.name}` (pipeline {_pipeline_name(model)!r}, "
        f"{model.stat().st_size / 1e6:.0f} MB), one row per request, 16 clients:",
        "",
        "| mode | clients | requests/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
        *[_row(label, 16, rps, lat) for label, (rps, lat) in batching.items()],
        "",
        *[f"- {n}" for n in notes],
        "",
        f"Batching on / off at 16 clients: **{ratio:.2f}x** requests/s with mixed requests (a merged run pads "
        "every sentence to the longest of its batch, and attention grows with the square of that length), "
        f"**{ratios[', one request repeated']:.2f}x** with one request repeated (no padding). Batching waits at "
        "most `--max-delay-ms` "
        "(2 ms) and only for requests already on their way in; requests that arrive while the model is busy join "
        "the next run, and a request that finds the model idle runs at once on its own RPC thread.",
    ]
    return header, overhead, ratio


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
    p.add_argument("--model", type=Path, default=MINILM, help="the batching table's model (default MiniLM)")
    p.add_argument("--hop-model", type=Path, default=DIGITS, help="the hop table's small model (default digits)")
    p.add_argument("--seconds", type=float, default=6.0, help="measuring time per row (default 6)")
    p.add_argument("--client-procs", type=int, default=4, help="client processes for 16 clients (default 4)")
    p.add_argument("--no-write", action="store_true", help=f"print the table only, do not update {DOC.name}")
    args = p.parse_args(argv)
    if not args.model.exists():
        print(f"bench_serve: {args.model} is absent: run `make vectors` (or pass --model)", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    lines, _, _ = run(args.model.resolve(), args.hop_model.resolve(), args.seconds, client_procs=args.client_procs)
    print("\n".join(lines))
    if not args.no_write:
        write_doc(lines)
        print(f"\nwrote {DOC.relative_to(ROOT)} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
