"""Benchmark: precision x accelerator for the MiniLM pipeline (strings -> embeddings) vs eager PyTorch.

    python -m examples.bench_accel                  # measure, rewrite its section of docs/benchmarks.md
    python -m examples.bench_accel --quick          # a few runs per row, print only

One thread everywhere. Eager is the Hugging Face tokenizer + the transformer + mean pooling + normalization in
PyTorch (``examples.bench``). Each other row is the one exported file through ``onnxpipe_runtime.Pipeline``:
ONNX Runtime's CPU provider for the whole file, the model stage on OpenVINO in f32 and in bf16 (when the CPU
runs bf16 natively) with pre/post on the CPU provider, and ``accelerator="auto"``. All sides alternate call by
call on the same batches of generated sentences. The placement overhead is the time a placed run spends outside
its stages (the hand-offs), at batch 8. A measurement, not a test: numbers move with the (shared) host.

Rewrites only its own section of docs/benchmarks.md (``<!-- bench:accel:begin -->`` ... ``end -->``).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:accel:begin -->", "<!-- bench:accel:end -->"
BATCHES = (1, 8, 32)
RUNS = {1: 100, 8: 40, 32: 20}
QUICK_RUNS = {1: 8, 8: 4, 32: 2}
WARMUP = 3
OVERHEAD_BATCH = 8


def _model_path(given: Path | None) -> Path:
    for path in (given, ROOT / "build" / "demo" / "minilm.onnx", ROOT / "tests" / "vectors" / "minilm" /
                 "model.generated.onnx"):
        if path is not None and path.is_file():
            return path
    import onnxpipe
    from examples import minilm

    path = ROOT / "build" / "bench" / "minilm.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"exporting examples.minilm:factory -> {path} (about a minute)", flush=True)
    onnxpipe.export_pipeline(**minilm.factory(), path=path)
    return path


def _sides(model: Path) -> dict[str, object]:
    """Row label -> an open Pipeline (threads=1), in table order; rows this machine cannot run are left out."""
    from onnxpipe_runtime import Pipeline, available_accelerators

    found = {a.name: a for a in available_accelerators()}
    wanted = [("ONNX Runtime CPU", "cpu", None)]
    if "openvino" in found:
        wanted += [(f"OpenVINO {p}", "openvino", p) for p in found["openvino"].precisions]
    wanted.append(("auto", "auto", None))
    sides = {}
    for label, accelerator, precision in wanted:
        t0 = time.perf_counter()
        pipe = Pipeline.load(model, threads=1, accelerator=accelerator, precision=precision)
        print(f"  loaded {label}: {time.perf_counter() - t0:.1f} s, model stage on {pipe.accelerator} "
              f"{pipe.precision or ''} {pipe.placement or ''}", flush=True)
        sides[label] = pipe
    return sides


def measure(model: Path, runs: dict[int, int]) -> tuple[list[dict], dict, str]:
    import torch

    from examples import minilm
    from examples.bench import _eager_runner

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    print("loading eager PyTorch and the pipelines", flush=True)
    eager = _eager_runner()
    sides = _sides(model)
    auto = sides["auto"]
    auto_choice = f"{auto.accelerator} {auto.precision or ''}".strip() + (  # type: ignore[attr-defined]
        f" ({'; '.join(f'{k}: {v}' for k, v in auto.placement.items())})" if auto.placement else "")  # type: ignore[attr-defined]
    corpus = minilm.sentences(400, seed=7)
    rows = []
    for batch in BATCHES:
        n = runs[batch]
        print(f"batch {batch}: {n} runs of {1 + len(sides)} sides", flush=True)
        times: dict[str, list[float]] = {"eager": [], **{k: [] for k in sides}}
        worst = {k: 0.0 for k in sides}
        labels = list(times)
        for i in range(n + WARMUP):
            texts = corpus[(i * batch) % len(corpus):][:batch]
            if len(texts) < batch:
                texts = (texts + corpus)[:batch]
            arr = np.array(texts, dtype=object)
            out = {}
            shift = i % len(labels)  # rotate who goes first, so no side always runs on a warmer cache
            for label in labels[shift:] + labels[:shift]:
                t0 = time.perf_counter()
                out[label] = eager(texts) if label == "eager" else sides[label].run(text=arr)["embedding"]  # type: ignore[attr-defined]
                if i >= WARMUP:
                    times[label].append((time.perf_counter() - t0) * 1000)
            for k in sides:
                cos = np.sum(out["eager"] * out[k], axis=1) / (
                    np.linalg.norm(out["eager"], axis=1) * np.linalg.norm(out[k], axis=1))
                worst[k] = max(worst[k], float(np.max(1 - cos)))
        eager_p50 = float(np.median(times["eager"]))
        for k in sides:
            p50 = float(np.median(times[k]))
            rows.append({"batch": batch, "side": k, "runs": n, "p50": p50, "eager_p50": eager_p50,
                         "speedup": eager_p50 / p50, "max_1_minus_cos": worst[k]})
        print("  " + " | ".join(f"{k} {np.median(v):.2f} ms" for k, v in times.items()), flush=True)
    overhead = _placement_overhead(sides, corpus, runs[OVERHEAD_BATCH])
    for pipe in sides.values():
        pipe.close()  # type: ignore[attr-defined]
    return rows, overhead, auto_choice


def _placement_overhead(sides: dict[str, object], corpus: list[str], n: int) -> dict:
    """Of a placed run at batch 8 (the model stage on OpenVINO, best precision here), the share spent between
    the stages: whole run minus the sum of its stages, both p50 over the same runs."""
    from onnxpipe_runtime._placement import PlacedSession

    placed = [k for k in sides if k.startswith("OpenVINO")]
    if not placed:
        return {}
    label = placed[-1]
    pipe = sides[label]
    session = pipe._session  # type: ignore[attr-defined]
    if not isinstance(session, PlacedSession):
        return {}
    whole, inside = [], []
    for i in range(n + WARMUP):
        feeds = pipe.validate({"text": corpus[i:][:OVERHEAD_BATCH]})  # type: ignore[attr-defined]
        stages: list[float] = []
        t0 = time.perf_counter()
        session.run(["embedding"], feeds, timings=stages)
        dt = time.perf_counter() - t0
        if i >= WARMUP:
            whole.append(dt * 1000)
            inside.append(sum(stages) * 1000)
    w, s = float(np.median(whole)), float(np.median(np.array(whole) - np.array(inside)))
    print(f"placement overhead at batch {OVERHEAD_BATCH} ({label}): {s:.3f} ms of {w:.2f} ms", flush=True)
    return {"side": label, "whole_p50": w, "handoff_p50": s, "share": s / w}


def _environment(model: Path) -> str:
    import onnxruntime
    import torch

    from onnxpipe_runtime import accelerators

    versions = f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}"
    try:
        import openvino

        versions += f", openvino {openvino.__version__.split('-')[0]}"
    except ImportError:
        versions += ", openvino not installed"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    features = ", ".join(accelerators.cpu_features()) or "none of AVX2/AVX-512/AMX"
    return (f"{accelerators.cpu_name()} (CPU features: {features}), {os.cpu_count()} CPUs visible, 1 thread on "
            f"every side; {versions}; exported file {model.stat().st_size / 1e6:.0f} MB; load average at the start "
            f"{load:.1f} (a shared machine: compare the rows of a batch, not runs)")


def render(rows: list[dict], overhead: dict, auto_choice: str, env: str) -> str:
    lines = [
        "## Precision x accelerator: MiniLM strings -> embeddings",
        "",
        "`python -m examples.bench_accel` (`make bench`). The one exported file through `onnxpipe_runtime.Pipeline"
        "(threads=1, accelerator=..., precision=...)`: *ONNX Runtime CPU* runs the whole file on ONNX Runtime's CPU "
        "provider; *OpenVINO f32 / bf16* run the model stage on OpenVINO's CPU plugin with the tokenizer (pre) and "
        "pooling (post) on the CPU provider (docs/accelerators.md); *auto* is what `accelerator=\"auto\"` picked here: "
        f"{auto_choice}. Eager: Hugging Face tokenizer + model + mean pooling + normalization in PyTorch. All sides "
        "alternate call by call on the same batches.",
        "",
        f"{env}.",
        "",
        "| batch | accelerator | precision | runs | p50 ms | eager p50 ms | speedup vs eager (p50) | max 1 - cos vs eager |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name, _, precision = r["side"].rpartition(" ") if r["side"].startswith("OpenVINO") else (r["side"], "", "f32")
        if r["side"] == "auto":
            precision = "(chosen)"
        lines.append(f"| {r['batch']} | {name} | {precision} | {r['runs']} | {r['p50']:.2f} | {r['eager_p50']:.2f} | "
                     f"**{r['speedup']:.2f}x** | {r['max_1_minus_cos']:.1e} |")
    lines.append("")
    if overhead:
        lines.append(f"Placement overhead ({overhead['side']}, batch {OVERHEAD_BATCH}): the stage hand-offs take "
                     f"**{overhead['handoff_p50']:.3f} ms** of {overhead['whole_p50']:.2f} ms per run "
                     f"(**{100 * overhead['share']:.2f} %**): tensors pass between ONNX Runtime and OpenVINO as numpy "
                     "views of the producer's memory, without copies.")
    else:
        lines.append("OpenVINO is not installed here (`pip install 'onnxpipe-runtime[openvino]'`): CPU rows only.")
    lines += ["", "ONNX Runtime's OpenVINO plugin provider (`onnxruntime-ep-openvino`) is not used: it offers devices "
              "only on Intel hardware (none on this CPU), and without stage placement it takes the tokenizer's "
              "string subgraph and fails (docs/accelerators.md)."]
    return "\n".join(lines)


def write_section(text: str, doc: Path = DOC) -> None:
    """Replace this benchmark's section in ``doc``, or append it after the others."""
    block = f"{BEGIN}\n{text}\n{END}"
    current = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    updated = (pattern.sub(lambda _: block, current, count=1) if pattern.search(current)
               else current.rstrip("\n") + "\n\n" + block + "\n")
    tmp = doc.with_suffix(".md.tmp")
    tmp.write_text(updated, encoding="utf-8")
    os.replace(tmp, doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="an export of examples.minilm:factory (default: build/demo/"
                                                   "minilm.onnx, else tests/vectors/minilm/model.generated.onnx)")
    parser.add_argument("--quick", action="store_true", help="a few runs per batch; print only")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["ONNXPIPE_THREADS"] = "1"
    model = _model_path(args.model)
    print(f"bench_accel: {model.relative_to(ROOT) if model.is_relative_to(ROOT) else model}", flush=True)
    t0 = time.perf_counter()
    rows, overhead, auto_choice = measure(model, QUICK_RUNS if args.quick else RUNS)
    text = render(rows, overhead, auto_choice, _environment(model))
    print(f"bench_accel: {time.perf_counter() - t0:.0f} s", flush=True)
    if args.quick or args.no_write:
        print(text)
        return 0
    write_section(text)
    print(f"wrote {DOC.relative_to(ROOT)} (section {BEGIN})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
