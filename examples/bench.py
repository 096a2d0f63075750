"""Benchmark: the MiniLM sentence-embedding pipeline, eager PyTorch vs the exported file in ONNX Runtime.

    python -m examples.bench                      # export, measure, write docs/benchmarks.md + a plot
    python -m examples.bench --model FILE.onnx    # reuse an export of examples.minilm:factory

Both sides do the whole job on strings, with one thread: eager is the Hugging Face tokenizer + the
transformer + mean pooling + normalization in PyTorch; exported is ``onnxpipe_runtime.Pipeline`` with
``threads=1`` on the one file (tokenizer inside). Runs alternate between the two so machine load hits both
alike. A measurement, not a test: numbers move with the host (this one is shared).

Rewrites only its own section of docs/benchmarks.md (between ``<!-- bench:minilm:begin -->`` and
``<!-- bench:minilm:end -->``); other benchmarks own the other sections.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "benchmarks-minilm.png"
BEGIN, END = "<!-- bench:minilm:begin -->", "<!-- bench:minilm:end -->"
BATCHES = (1, 8)


def _export(path: Path) -> Path:
    import onnxpipe
    from examples import minilm

    print(f"exporting examples.minilm:factory -> {path} (about a minute)", flush=True)
    onnxpipe.export_pipeline(**minilm.factory(), path=path)
    return path


def _eager_runner():
    """Strings -> embeddings the Hugging Face way (tokenizer + model + pooling + normalize), one thread."""
    import torch

    from examples import minilm

    tok = minilm.hf_tokenizer()
    model = minilm.load_model()

    def run(texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            enc = tok(texts, padding=True, truncation=True, max_length=minilm.MAX_LENGTH, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()

    return run


def measure(model_path: Path, iterations: dict[int, int], warmup: int = 5) -> list[dict]:
    import torch

    from examples import minilm
    from onnxpipe_runtime import Pipeline

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    eager = _eager_runner()
    corpus = minilm.sentences(400, seed=7)
    rows = []
    with Pipeline.load(model_path, threads=1) as pipe:
        for batch in BATCHES:
            n = iterations[batch]
            batches = [corpus[(i * batch) % len(corpus):][:batch] for i in range(n + warmup)]
            times = {"eager": [], "onnx": []}
            worst = 0.0
            for i, texts in enumerate(batches):
                arr = np.array(texts, dtype=object)
                # alternate which side goes first, so neither always runs on a warmer cache
                order = ("eager", "onnx") if i % 2 == 0 else ("onnx", "eager")
                out = {}
                for side in order:
                    t0 = time.perf_counter()
                    out[side] = eager(texts) if side == "eager" else pipe.run(text=arr)["embedding"]
                    dt = time.perf_counter() - t0
                    if i >= warmup:
                        times[side].append(dt * 1000)
                cos = np.sum(out["eager"] * out["onnx"], axis=1)  # both unit length
                worst = max(worst, float(np.max(1 - cos)))
            row = {"batch": batch, "iterations": n, "max_1_minus_cos": worst}
            for side, ts in times.items():
                row[f"{side}_p50"] = float(np.median(ts))
                row[f"{side}_p90"] = float(np.percentile(ts, 90))
            row["speedup_p50"] = row["eager_p50"] / row["onnx_p50"]
            rows.append(row)
            print(f"batch {batch}: eager p50 {row['eager_p50']:.2f} ms p90 {row['eager_p90']:.2f} ms | "
                  f"onnx p50 {row['onnx_p50']:.2f} ms p90 {row['onnx_p90']:.2f} ms | "
                  f"speedup {row['speedup_p50']:.2f}x", flush=True)
    return rows


def cpu_name() -> str:
    """The CPU's model name, as the runtime reads it."""
    from onnxpipe_runtime.accelerators import cpu_name as read

    return read()


def _environment(model_path: Path) -> str:
    import onnxruntime
    import torch
    import transformers

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cpu = cpu_name()
    size = model_path.stat().st_size / 1e6
    return (f"{cpu}, {os.cpu_count()} CPUs visible, 1 thread on each side; torch {torch.__version__}, "
            f"transformers {transformers.__version__}, onnxruntime {onnxruntime.__version__}; "
            f"exported file {size:.0f} MB; load average at the start {load:.1f} (a shared machine: "
            "compare the two columns of a row, not runs)")


def render(rows: list[dict], env: str, plot_name: str | None) -> str:
    lines = [
        "## MiniLM sentence embeddings: eager PyTorch vs the exported file",
        "",
        "`python -m examples.bench` (`make bench`). Strings in, `embedding` [batch, 384] out. Eager: Hugging Face "
        "`BertTokenizerFast` + the transformer + mean pooling + L2 normalization in PyTorch. Exported: the one "
        "ONNX file (`examples.minilm:factory`, tokenizer in the graph) through `onnxpipe_runtime.Pipeline` "
        "with `threads=1`. The two alternate run by run on the same batches of generated sentences.",
        "",
        f"{env}.",
        "",
        "| batch | runs | eager p50 ms | eager p90 ms | exported p50 ms | exported p90 ms | speedup (p50) | max 1 - cos |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['batch']} | {r['iterations']} | {r['eager_p50']:.2f} | {r['eager_p90']:.2f} | {r['onnx_p50']:.2f} | "
            f"{r['onnx_p90']:.2f} | **{r['speedup_p50']:.2f}x** | {r['max_1_minus_cos']:.1e} |"
        )
    lines.append("")
    lines.append("Speedup is eager p50 / exported p50 (above 1: the exported file is faster). A plain export of the "
                 "model alone measured about 1.9x at batch 1 and 1.2x at batch 8 on this machine; these rows "
                 "include tokenization on both sides.")
    if plot_name:
        lines += ["", f"![MiniLM latency, eager vs exported]({plot_name})"]
    return "\n".join(lines)


def write_section(text: str, doc: Path = DOC, begin: str = BEGIN, end: str = END) -> None:
    """Replace a benchmark's section (``begin`` .. ``end``) in ``doc`` (create the file or the section if missing)."""
    block = f"{begin}\n{text}\n{end}"
    current = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(current):
        updated = pattern.sub(lambda _: block, current, count=1)
    else:
        head, sep, rest = current.partition("\n")
        if head.startswith("# "):  # right under the title, before other benchmarks' sections
            updated = f"{head}\n\n{block}\n{sep}{rest.lstrip(chr(10))}" if rest.strip() else f"{head}\n\n{block}\n"
        else:
            updated = f"{block}\n\n{current}"
    tmp = doc.with_suffix(".md.tmp")
    tmp.write_text(updated, encoding="utf-8")
    os.replace(tmp, doc)


def plot(rows: list[dict], path: Path = PLOT) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    x = np.arange(len(rows))
    width = 0.36
    for k, (side, label, color) in enumerate((("eager", "eager PyTorch", "#c44e52"),
                                               ("onnx", "exported (onnxruntime)", "#4c72b0"))):
        p50 = [r[f"{side}_p50"] for r in rows]
        p90 = [r[f"{side}_p90"] for r in rows]
        err = [np.zeros(len(rows)), np.array(p90) - np.array(p50)]
        ax.bar(x + (k - 0.5) * width, p50, width, yerr=err, capsize=3, label=label, color=color)
    ax.set_xticks(x, [f"batch {r['batch']}\n{r['speedup_p50']:.2f}x" for r in rows])
    ax.set_ylabel("latency per call, ms (bar p50, whisker p90)")
    ax.set_title("MiniLM sentence embeddings, 1 thread")
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})  # no version/date stamp in the PNG
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="an existing export of examples.minilm:factory")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per batch size (default 60 / 30)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    iterations = {1: args.runs or 60, 8: args.runs or 30}
    with tempfile.TemporaryDirectory() as tmp:
        model_path = args.model or _export(Path(tmp) / "minilm.generated.onnx")
        if not model_path.is_file():
            print(f"--model: {str(model_path)!r} is not a file", file=sys.stderr)
            return 2
        env = _environment(model_path)
        rows = measure(model_path, iterations)
    if args.no_write:
        return 0
    plot(rows)
    write_section(render(rows, env, PLOT.name))
    print(f"wrote {DOC.relative_to(ROOT)} (section {BEGIN}) and {PLOT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
