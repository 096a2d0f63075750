"""`make bench` (offline scoring part): rows/s scoring a table, for digits (PNG images) and MiniLM (sentences).

    python -m examples.bench_score                  # ~3 minutes; rewrites its section of docs/benchmarks.md
    python -m examples.bench_score --quick --no-write

Each mode reads the same Parquet file and writes a Parquet file of outputs:

- plain loop: the code a user writes by hand: read the table, decode each image with Pillow, call
  ``Pipeline.run`` on one row at a time (threads: the process's CPUs), write the outputs;
- local engine: ``onnxpipe_runtime.score.score_file`` at batch 64 (threads: the process's CPUs; the model is
  loaded by each run, as the command does);
- Spark ``local[2]``: ``score_dataframe`` (mapInArrow, the CLI's ``--engine spark``), ``pipeline_udf``
  (an Arrow UDF in ``withColumn``) and, for MiniLM, Spark's own ``predict_batch_udf`` (a pandas UDF; it takes
  no encoded images, so not for digits) — each at batch 64, 2 Python workers of 1 thread each. The JVM is
  started (and the file shipped and loaded once) before timing: what is measured is the job.

Each mode also scores a 128-row table: its time is the job's fixed cost, and the difference gives the cost of
one more row; the Spark overhead per row is that cost against the local engine's, at batch 64 on the same two
CPUs. The table goes into docs/benchmarks.md between ``<!-- bench:score:begin -->`` and ``<!-- bench:score:end -->``.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:score:begin -->", "<!-- bench:score:end -->"
DIGITS = ROOT / "tests" / "vectors" / "digits" / "model.onnx"
MINILM = ROOT / "tests" / "vectors" / "minilm" / "model.generated.onnx"
BATCH = 64
SMALL = 128  # rows of the small table that measures a job's fixed cost


def _say(text: str) -> None:
    print(f"[bench_score {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def plain_loop(model: Path, data: Path, out: Path) -> None:
    """What a user writes without onnxpipe's scoring: one Pipeline.run per row."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from onnxpipe_runtime import Pipeline

    table = pq.read_table(data)
    results: dict[str, list] = {}
    with Pipeline.load(model) as pipe:
        name = pipe.signature.required_inputs[0].name
        for value in table[name].to_pylist():
            x = np.asarray(Image.open(io.BytesIO(value)).convert("RGB"))[None] if isinstance(value, bytes) else [value]
            for k, v in pipe.run({name: x}).items():
                results.setdefault(k, []).append(v[0].tolist())
    pq.write_table(pa.table(results), out)


def local_engine(model: Path, data: Path, out: Path) -> None:
    from onnxpipe_runtime.score import score_file

    score_file(model, data, out, batch_size=BATCH, progress=False)


def spark_modes(spark, with_predict_batch: bool) -> dict[str, Callable[[Path, Path, Path], None]]:
    from onnxpipe_runtime.spark import pipeline_udf, score_dataframe

    def map_in_arrow(model: Path, data: Path, out: Path) -> None:
        score_dataframe(spark.read.parquet(str(data)), model, batch_size=BATCH).write.mode("overwrite").parquet(str(out))

    def arrow_udf(model: Path, data: Path, out: Path) -> None:
        df = spark.read.parquet(str(data))
        udf = pipeline_udf(model, batch_size=BATCH, spark=spark)
        column = df.columns[-1]
        df.withColumn("pred", udf(column)).select("pred.*").write.mode("overwrite").parquet(str(out))

    def predict_batch(model: Path, data: Path, out: Path) -> None:
        from pyspark.ml.functions import predict_batch_udf
        from pyspark.sql.types import ArrayType, FloatType

        from onnxpipe_runtime.spark import _ship, _worker_pipeline

        name, pipe = _ship(spark, model)
        pipe.close()

        def make_predict_fn():
            runner = _worker_pipeline(name, None)
            return lambda text: runner.run(text=text.astype(object))["embedding"]

        udf = predict_batch_udf(make_predict_fn, return_type=ArrayType(FloatType()), batch_size=BATCH)
        df = spark.read.parquet(str(data))
        df.withColumn("embedding", udf("text")).select("embedding").write.mode("overwrite").parquet(str(out))

    modes = {"Spark local[2], mapInArrow (score_dataframe, --engine spark)": map_in_arrow,
             "Spark local[2], Arrow UDF (pipeline_udf)": arrow_udf}
    if with_predict_batch:
        modes["Spark local[2], predict_batch_udf (pandas UDF)"] = predict_batch
    return modes


def _best(run: Callable[[Path, Path, Path], None], model: Path, data: Path, out: Path, n: int, repeats: int) -> float:
    import pyarrow.parquet as pq

    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(model, data, out)
        best = min(best, time.perf_counter() - t0)
        done = sum(pq.read_metadata(f).num_rows for f in _parquet_files(out))
        if done != n:
            raise SystemExit(f"{out.name}: {done} rows out for {n} in")
    return best


def measure(sizes: dict[str, int], repeats: int) -> list[dict]:
    """Per pipeline and mode: the best time for the whole table and for a small one (``SMALL`` rows: the
    job's fixed cost: scheduling, model load, files), hence rows/s and the marginal cost of one more row."""
    import pyarrow.parquet as pq

    from examples.score_data import digits_table, sentences_table
    from onnxpipe_runtime.spark import _spread
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        _say("starting Spark local[2] (JVM start, not timed)")
        spark = (SparkSession.builder.master("local[2]").appName("onnxpipe bench_score")
                 .config("spark.ui.showConsoleProgress", "false").config("spark.ui.enabled", "false").getOrCreate())
        spark.sparkContext.setLogLevel("ERROR")
        try:
            for pipeline, model, make in (("digits", DIGITS, lambda n: digits_table(n)),
                                          ("minilm", MINILM, lambda n: sentences_table(n))):
                if not model.is_file():
                    _say(f"{model} absent (make generated-models): {pipeline} skipped")
                    continue
                n, small = sizes[pipeline], SMALL
                data, little = tmp / f"{pipeline}.parquet", tmp / f"{pipeline}.small.parquet"
                table = make(n)
                pq.write_table(table, data, row_group_size=max(1, n // 8))  # 8 row groups: Spark splits there
                pq.write_table(table.slice(0, small), little, row_group_size=small // 2)
                _spread(spark, str(data))
                modes: dict[str, Callable[[Path, Path, Path], None]] = {
                    "plain loop over Pipeline.run (batch 1)": plain_loop,
                    f"local engine (score_file, batch {BATCH})": local_engine}
                modes.update(spark_modes(spark, pipeline == "minilm"))
                warm = False
                for k, (mode, run) in enumerate(modes.items()):
                    out = tmp / f"{pipeline}.{k}.out.parquet"
                    if "Spark" in mode and not warm:  # ship the file, load it in both workers: not timed
                        _say(f"{pipeline}: warming up the Spark workers")
                        run(model, data, out)
                        warm = True
                    reps = 1 if mode.startswith("plain") else repeats  # the slowest, and steady
                    t_small = _best(run, model, little, tmp / f"{pipeline}.{k}.small.parquet", small, reps)
                    t_full = _best(run, model, data, out, n, reps)
                    per_row = max(t_full - t_small, 1e-9) / (n - small)
                    rows.append({"pipeline": pipeline, "mode": mode, "rows": n, "seconds": t_full, "rate": n / t_full,
                                 "fixed": t_small, "per_row": per_row})
                    _say(f"{pipeline:7s} {mode}: {n / t_full:,.0f} rows/s ({n:,} rows in {t_full:.1f} s; "
                         f"{small} rows in {t_small:.2f} s; {per_row * 1e6:,.0f} µs per further row)")
        finally:
            spark.stop()
    return rows


def _parquet_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.parquet")) if path.is_dir() else [path]


def render(rows: list[dict], env: str) -> str:
    lines = [
        "## Offline scoring: rows/s, plain loop vs local engine vs Spark",
        "",
        "`python -m examples.bench_score` (`make bench`). Each mode reads the same Parquet table and writes a "
        "Parquet table of outputs. Digits: 28 x 28 PNG images (bytes) -> top-3 labels and scores; MiniLM: "
        "sentences -> 384-d embeddings. Plain loop: decode + `Pipeline.run` one row at a time. Local engine: "
        f"`onnxpipe score` at batch {BATCH}, one process. Spark `local[2]`: 2 Python workers of 1 thread each (the "
        "task's CPUs), the JVM started and the file loaded in the workers before timing. Best of the runs. "
        f"*Fixed* is the time for a {SMALL}-row table (the job's own cost: scheduling, loading, files); *per row* "
        f"is the cost of each further row, (t(table) - t({SMALL} rows)) / (rows - {SMALL}).",
        "",
        f"{env}.",
        "",
        "| pipeline | mode | rows | rows/s | vs local engine | fixed s | per row µs | per row vs local engine |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        local = next((x for x in rows if x["pipeline"] == r["pipeline"] and x["mode"].startswith("local")), None)
        rel = f"{r['rate'] / local['rate']:.2f}x" if local else ""
        over = f"{100 * (r['per_row'] / local['per_row'] - 1):+.0f} %" if local and r is not local else ""
        lines.append(f"| {r['pipeline']} | {r['mode']} | {r['rows']:,} | {r['rate']:,.0f} | {rel} | {r['fixed']:.2f} | "
                     f"{r['per_row'] * 1e6:,.0f} | {over} |")
    lines += ["", "The Spark per-row overhead over the local engine at batch 64 (the target was at most 20 %) is the last "
              "column of the Spark rows. Negative: Spark's two single-threaded workers beat one process with two "
              "threads, as for MiniLM, whose rows cost milliseconds each. Where a row costs the model well under a "
              "millisecond (digits), Spark's own work per row in the JVM (reading Parquet, Arrow to and from the "
              "Python workers, writing Parquet), on the same two CPUs, costs more than the model, and the target is "
              "not met: use the local engine for cheap models that fit one machine. The Spark variants differ by "
              "less than the run-to-run noise of this machine."]
    return "\n".join(lines)


def _environment(load_start: float) -> str:
    import onnxruntime
    import pyarrow
    import pyspark

    from examples.bench import cpu_name

    cpu = cpu_name()
    return (f"{cpu}, {os.cpu_count()} CPUs visible; onnxruntime {onnxruntime.__version__}, pyarrow "
            f"{pyarrow.__version__}, pyspark {pyspark.__version__}; load average at the start {load_start:.1f} "
            "(a shared machine: compare the rows of one table, not runs)")


def write_section(text: str, doc: Path = DOC) -> None:
    """Replace this benchmark's section of ``doc`` (appended when missing)."""
    block = f"{BEGIN}\n{text}\n{END}"
    current = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    updated = pattern.sub(lambda _: block, current, count=1) if pattern.search(current) else (
        current.rstrip("\n") + "\n\n" + block + "\n")
    tmp = doc.with_suffix(".md.tmp")
    tmp.write_text(updated, encoding="utf-8")
    os.replace(tmp, doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small tables, one run each (a smoke test)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ alone")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sizes = {"digits": 2_000, "minilm": 256} if args.quick else {"digits": 10_000, "minilm": 640}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = measure(sizes, repeats=1 if args.quick else 2)
    text = render(rows, _environment(load))
    print(text)
    if not args.no_write:
        write_section(text)
        _say(f"wrote {DOC.relative_to(ROOT)} (section {BEGIN})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
