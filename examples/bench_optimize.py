"""Benchmark: what ``onnxpipe optimize`` buys, side by side with eager PyTorch in one run.

    python -m examples.bench_optimize                  # optimize, measure, write docs/benchmarks.md + a plot
    python -m examples.bench_optimize --quick          # fewer runs and batches (a smoke test)
    python -m examples.bench_optimize --no-write       # print only

MiniLM strings -> embeddings, one thread on every side, runs alternating: eager (Hugging Face fast tokenizer +
the transformer + mean pooling + normalization in PyTorch), the exported fp32 file, the fp32 file with the
model stage fused (``--candidates fp32-fused``), and the file ``optimize`` chose with every default candidate
under ``cosine>=0.99`` on held-out sentences (not the calibration set). Then the share of the in-graph
tokenizer at batch 8, and static int8 for the digits and detector pipelines. Rewrites only its own section of
docs/benchmarks.md (``<!-- bench:optimize:begin -->`` .. ``<!-- bench:optimize:end -->``).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "benchmarks-optimize.png"
BEGIN, END = "<!-- bench:optimize:begin -->", "<!-- bench:optimize:end -->"
MINILM = ROOT / "tests" / "vectors" / "minilm" / "model.generated.onnx"


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _texts(n: int, seed: int) -> np.ndarray:
    from examples import minilm

    return np.array(minilm.sentences(n, seed=seed), dtype=object)


def _optimize_minilm(tmp: Path) -> tuple[Path, Path, Any, float]:
    import onnxpipe

    validation = [{"text": _texts(16, 1000 + i)} for i in range(12)]  # held out: other seeds than calibration
    calibration = [{"text": _texts(16, 2000 + i)} for i in range(4)]
    fused = tmp / "minilm.fused.onnx"
    say("optimize (fp32 fusions only) ...")
    onnxpipe.optimize(MINILM, validation=validation, candidates=["fp32-fused"], include_fp32=False, path_out=fused,
                      threads=1, runs=5, progress=lambda s: None)
    say("optimize (every default candidate, gate cosine>=0.99 on held-out sentences) ...")
    auto = tmp / "minilm.auto.onnx"
    start = time.perf_counter()
    report = onnxpipe.optimize(MINILM, validation=validation, calibration=calibration, gate="cosine>=0.99",
                               path_out=auto, progress=lambda s: say("  " + s))
    seconds = time.perf_counter() - start
    if report.path_out is None:
        auto = MINILM
    return fused, auto, report, seconds


def _measure_minilm(files: dict[str, Path], batches: dict[int, int]) -> list[dict[str, Any]]:
    import torch

    from onnxpipe_runtime import Pipeline

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    from examples.bench import _eager_runner

    eager = _eager_runner()
    corpus = list(_texts(600, 7))
    pipes = {k: Pipeline.load(p, threads=1) for k, p in files.items()}
    rows = []
    try:
        for batch, n in batches.items():
            say(f"MiniLM batch {batch}: {n} rounds of eager + {len(pipes)} files, alternating")
            times: dict[str, list[float]] = {k: [] for k in ["eager", *pipes]}
            worst = {k: 1.0 for k in pipes}
            sides = ["eager", *pipes]
            for i in range(n + 2):
                texts = corpus[(i * batch) % 500:][:batch]
                arr = np.array(texts, dtype=object)
                out = {}
                for side in sides[i % len(sides):] + sides[: i % len(sides)]:  # rotate who goes first
                    t0 = time.perf_counter()
                    out[side] = eager(texts) if side == "eager" else pipes[side].run(text=arr)["embedding"]
                    if i >= 2:
                        times[side].append((time.perf_counter() - t0) * 1000)
                for k in pipes:
                    worst[k] = min(worst[k], float(np.min(np.sum(out["eager"] * out[k], axis=1))))
            row: dict[str, Any] = {"batch": batch, "runs": n}
            for side, ts in times.items():
                row[f"{side}_p50"] = float(np.median(ts))
            for k in pipes:
                row[f"{k}_speedup"] = row["eager_p50"] / row[f"{k}_p50"]
                row[f"{k}_cos"] = worst[k]
            rows.append(row)
            say("  " + ", ".join(f"{k} {row[f'{k}_p50']:.1f} ms" for k in times))
    finally:
        for p in pipes.values():
            p.close()
    return rows


def _tokenizer_share(path: Path, batch: int = 8, runs: int = 30) -> tuple[float, float]:
    """p50 of the pre stage alone (the in-graph tokenizer) and of the whole file, 1 thread, batch 8."""
    import onnx
    import onnxruntime as ort

    from onnxpipe._optimize._stage import extract
    from onnxpipe_runtime import Pipeline
    from onnxpipe_runtime.pipeline import _extensions_library, session_options

    full = onnx.load(str(path))
    stage = extract(full)
    pre = onnx.ModelProto()
    pre.CopyFrom(full)
    del pre.graph.output[:]
    pre.graph.output.extend(stage.infos[n] for n in stage.inputs)
    keep = [n for n in pre.graph.node if n.name.startswith("pre/")]
    del pre.graph.node[:]
    pre.graph.node.extend(keep)
    so = session_options(1)
    so.register_custom_ops_library(_extensions_library())
    sess = ort.InferenceSession(pre.SerializeToString(), so, providers=["CPUExecutionProvider"])
    texts = _texts(batch * runs, 11)
    pre_t, full_t = [], []
    with Pipeline.load(path, threads=1) as pipe:
        for i in range(runs):
            arr = texts[i * batch:(i + 1) * batch]
            t0 = time.perf_counter()
            sess.run(None, {"text": arr})
            pre_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            pipe.run(text=arr)
            full_t.append(time.perf_counter() - t0)
    return float(np.median(pre_t) * 1000), float(np.median(full_t) * 1000)


def _small_pipelines(tmp: Path, runs: int) -> list[dict[str, Any]]:
    """Static int8 (QDQ) for digits and detector against their fp32 files, mixed where all-int8 fails the gate:
    gate metrics and p50 at batch 1 / 8."""
    import onnxpipe
    from onnxpipe_runtime import tensor_json

    rows = []
    for name in ("digits", "detector"):
        src = ROOT / "tests" / "vectors" / name / "model.onnx"
        cases = [tensor_json.load(p) for p in sorted((src.parent).glob("inputs_*.json"))]
        extra = _more_cases(name)
        say(f"{name}: static int8 on {len(cases) + len(extra)} validation cases")
        rep = onnxpipe.optimize(src, validation=cases + extra, candidates=["int8-static", "mixed"],
                                include_fp32=False, path_out=tmp / f"{name}.int8.onnx", threads=1, runs=runs,
                                progress=lambda s: None)
        fp32, static, q = rep.candidate("fp32"), rep.candidate("int8-static"), rep.candidate(str(rep.chosen))
        rows.append({"name": name, "chosen": q.name + (f" ({len(q.fp32_nodes)} node(s) fp32)" if q.fp32_nodes else ""),
                     "static": ", ".join(f"{k} {v:.4f}" for k, v in static.metrics.items()),
                     "metrics": q.metrics, "passed": q.passed,
                     "speedup": {b: fp32.p50_ms[b] / q.p50_ms[b] for b in q.p50_ms},
                     "p50": {b: (fp32.p50_ms[b], q.p50_ms[b]) for b in q.p50_ms},
                     "size": (fp32.size, q.size)})
    return rows


def _more_cases(name: str) -> list[dict[str, np.ndarray]]:
    if name == "digits":
        from examples import digits

        _, _, images, _ = digits.load_digits_data()  # the held-out split
        return [{"image": digits.render(images[i * 32:(i + 1) * 32], 28, 28, seed=i)} for i in range(8)]
    from examples import detector

    samples = detector.generate(64, (48, 96), seed=5, same_size=True)
    return [{"image": np.stack([s[0] for s in samples[i * 8:(i + 1) * 8]])} for i in range(8)]


def _plot(rows: list[dict[str, Any]], labels: dict[str, str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    b = [r["batch"] for r in rows]
    ax.plot(b, [r["eager_p50"] for r in rows], "o-", label="eager PyTorch (HF tokenizer + model)")
    for key, label in labels.items():
        ax.plot(b, [r[f"{key}_p50"] for r in rows], "o-", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch (sentences)")
    ax.set_ylabel("p50 latency, ms (1 thread)")
    ax.set_title("MiniLM strings -> embeddings: eager vs optimized files")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)


def _section(rows, report, seconds, tok, small, labels, env) -> str:  # noqa: ANN001
    lines = [BEGIN, "## Optimize: fusions and precision for the model stage, under an accuracy gate", "",
             "`python -m examples.bench_optimize` (`make bench`). MiniLM strings in, `embedding` [batch, 384] out, "
             "1 thread everywhere, runs alternating in one process. Eager: Hugging Face fast tokenizer + the "
             "transformer + pooling in PyTorch. `fp32`: the exported file. `fused`: `onnxpipe optimize "
             "--candidates fp32-fused`. `auto`: `onnxpipe optimize` with every default candidate and the gate "
             "`cosine>=0.99` on 192 held-out sentences (calibration: 64 others; the table's own sentences are a third set); it chose "
             f"**{report.chosen}** in {seconds:.0f} s.", "", env, "",
             "| batch | runs | eager p50 ms | " + " | ".join(f"{v} p50 ms" for v in labels.values()) + " | "
             + " | ".join(f"{v} vs eager" for v in labels.values()) + " | "
             + " | ".join(f"{v} min cos vs eager" for v in labels.values()) + " |",
             "|---" * (3 + 3 * len(labels)) + "|"]
    for r in rows:
        lines.append(f"| {r['batch']} | {r['runs']} | {r['eager_p50']:.2f} | "
                     + " | ".join(f"{r[f'{k}_p50']:.2f}" for k in labels) + " | "
                     + " | ".join(f"**{r[f'{k}_speedup']:.2f}x**" for k in labels) + " | "
                     + " | ".join(f"{r[f'{k}_cos']:.6f}" for k in labels) + " |")
    lines += ["", f"![MiniLM: eager vs optimized]({PLOT.name})", "",
              "The search, as `onnxpipe optimize` printed it (latency with the runtime's own thread rule on this "
              "machine, while nothing else ran; speedups against the fp32 file):", "", "```",
              report.table(), "```", "",
              f"In-graph tokenizer (the pre stage alone) at batch 8: **{tok[0]:.2f} ms of {tok[1]:.2f} ms** for the "
              f"whole fp32 file (**{100 * tok[0] / tok[1]:.1f} %**).", "",
              "Static int8 (QDQ, standard ONNX) for the small CNN pipelines, gated against their fp32 files on 11 "
              "validation batches (candidates `int8-static,mixed`; 1 thread):", "",
              "| pipeline | all-int8 metrics | chosen | its metrics | passed | p50 fp32 -> int8, batch 1 (ms) | "
              "batch 8 (ms) | speedup b1 | speedup b8 | size fp32 -> int8 (KB) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s in small:
        m = ", ".join(f"{k} {v:.4f}" for k, v in s["metrics"].items())
        b1, b8 = s["p50"][1], s["p50"][8]
        lines.append(f"| {s['name']} | {s['static']} | {s['chosen']} | {m} | {'yes' if s['passed'] else 'no'} | "
                     f"{b1[0]:.3f} -> {b1[1]:.3f} | "
                     f"{b8[0]:.3f} -> {b8[1]:.3f} | {s['speedup'][1]:.2f}x | {s['speedup'][8]:.2f}x | "
                     f"{s['size'][0] / 1e3:.0f} -> {s['size'][1] / 1e3:.0f} |")
    lines.append(END)
    return "\n".join(lines)


def _environment() -> str:
    import onnxruntime
    import torch
    import transformers

    from onnxpipe._optimize import _cpu_features

    cpu = _cpu_features()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu['cpu']} ({', '.join(cpu['flags'])}), {os.cpu_count()} CPUs visible; torch {torch.__version__}, "
            f"transformers {transformers.__version__}, onnxruntime {onnxruntime.__version__}; load average at the "
            f"start {load:.1f} (a shared machine: compare the columns of a row, not runs).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer batches and runs")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch docs/")
    args = parser.parse_args(argv)
    if not MINILM.is_file():
        print(f"bench_optimize: {MINILM} is absent; run `make generated-models` first", file=sys.stderr)
        return 2
    env = _environment()
    batches = {1: 8, 8: 5} if args.quick else {1: 40, 4: 25, 8: 20, 16: 12, 32: 8, 64: 5}
    with tempfile.TemporaryDirectory(prefix="bench-optimize-") as tmp_name:
        tmp = Path(tmp_name)
        fused, auto, report, seconds = _optimize_minilm(tmp)
        labels = {"fp32": "fp32 file", "fused": "fp32 fused", "auto": f"auto ({report.chosen})"}
        rows = _measure_minilm({"fp32": MINILM, "fused": fused, "auto": auto}, batches)
        tok = _tokenizer_share(MINILM)
        small = _small_pipelines(tmp, runs=5 if args.quick else 30)
    text = _section(rows, report, seconds, tok, small, labels, env)
    print(text)
    if not args.no_write:
        _plot(rows, labels)
        doc = DOC.read_text(encoding="utf-8")
        if BEGIN in doc:
            doc = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: text, doc, flags=re.S)
        else:
            doc = doc.rstrip("\n") + "\n\n" + text + "\n"
        DOC.write_text(doc, encoding="utf-8")
        say(f"wrote {DOC.relative_to(ROOT)} and {PLOT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
