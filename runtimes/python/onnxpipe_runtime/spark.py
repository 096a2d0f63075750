"""Score Spark DataFrames with the same file: ``pip install 'onnxpipe-runtime[spark]'`` (pyspark >= 4.1).

    from onnxpipe_runtime.spark import pipeline_udf, score_dataframe

    digits = pipeline_udf("digits.onnx")                        # a vectorized (Arrow) UDF
    df.withColumn("pred", digits("image")).select("id", "pred.label", "pred.score")

    scored = score_dataframe(df, "digits.onnx", keep=["id"])    # mapInArrow: the CLI's --engine spark

Both ship the file to the executors with ``SparkContext.addFile``, keep one loaded :class:`Pipeline` per Python
worker (Spark reuses workers, so the file is loaded once per worker, not per task or batch), size its threads
to the task's CPUs (``spark.task.cpus``, capped by what the worker's container may use) rather than the host's
cores, and score Arrow batches with the local engine's :class:`~onnxpipe_runtime.score.Scorer`: the same
column rules, the same bad-row messages (``partition P, row R``). Spark types have no fixed-size lists and no
uint8: tensors come back as arrays, uint8 as smallint.

The two measured within noise of each other (``examples/bench_score.py``, docs/scale-out.md); the CLI uses
``score_dataframe`` (top-level output columns, ``skip`` in one pass). Nothing here is imported by the rest of the
runtime.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Tuple

import pyarrow as pa

from onnxpipe_runtime.errors import InputError
from onnxpipe_runtime.pipeline import Pipeline
from onnxpipe_runtime.score import ERROR_COLUMN, Progress, ScoreSummary, Scorer, _rebatch, table_format
from onnxpipe_runtime.threads import ENV_VAR, default_threads

__all__ = ["pipeline_udf", "score_dataframe", "score_with_spark", "task_threads"]

#: one loaded pipeline per (file, threads) in this Python worker
_PIPELINES: dict[tuple[str, int, tuple[tuple[str, Any], ...]], Pipeline] = {}


def task_threads() -> int:
    """Threads for a pipeline inside a Spark task: the task's CPUs (``spark.task.cpus``), at most what this
    worker may use (``threads.py``); ``ONNXPIPE_THREADS`` overrides."""
    from pyspark import TaskContext

    if os.environ.get(ENV_VAR):
        return default_threads()
    ctx = TaskContext.get()
    cpus = ctx.cpus() if ctx is not None else 1
    return max(1, min(int(cpus or 1), default_threads()))


def _worker_pipeline(name: str, threads: int | None, load: Mapping[str, Any] | None = None) -> Pipeline:
    from pyspark import SparkFiles

    n = threads or task_threads()
    key = (name, n, tuple(sorted((load or {}).items())))
    pipe = _PIPELINES.get(key)
    if pipe is None:
        pipe = _PIPELINES[key] = Pipeline.load(SparkFiles.get(name), threads=n, **dict(load or {}))
    return pipe


def _ship(spark: Any, path: str | Path) -> tuple[str, Pipeline]:
    """Add the file to the job (once) and open it on the driver, for its signature."""
    path = Path(path).resolve()
    if not path.is_file():
        raise InputError(f"model {str(path)!r}: no such file")
    ctx = spark.sparkContext
    if str(path) not in getattr(ctx, "_onnxpipe_files", set()):
        ctx.addFile(str(path))
        ctx._onnxpipe_files = getattr(ctx, "_onnxpipe_files", set()) | {str(path)}
    return path.name, Pipeline.load(path, threads=1)


def _label(partition: int, first: int) -> Callable[[int], str]:
    return lambda i: f"partition {partition}, row {first + i}"


def _spark_arrow_type(t: pa.DataType) -> pa.DataType:
    """The nearest type Spark's Arrow conversion takes: lists for fixed-size lists, int16 for uint8."""
    if pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(_spark_arrow_type(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([(t.field(i).name, _spark_arrow_type(t.field(i).type)) for i in range(t.num_fields)])
    return pa.int16() if pa.types.is_uint8(t) else t


def _spark_schema(schema: pa.Schema) -> tuple[pa.Schema, Any]:
    from pyspark.sql.pandas.types import from_arrow_schema

    arrow = pa.schema([(f.name, _spark_arrow_type(f.type)) for f in schema])
    return arrow, from_arrow_schema(arrow)


def score_dataframe(df: Any, path: str | Path, *, columns: Mapping[str, str] | None = None,
                    params: Mapping[str, Any] | None = None, keep: Sequence[str] = (), on_error: str = "fail",
                    batch_size: int = 64, threads: int | None = None, load: Mapping[str, Any] | None = None,
                    counter: Any = None) -> Any:
    """``df`` scored with ``mapInArrow``: the ``keep`` columns, then one column per output (and ``error`` when
    ``on_error="null"``). ``on_error="skip"`` drops bad rows (use ``null`` to see why). Partition order and the
    order within partitions are kept. ``load``: more ``Pipeline.load`` options (``accelerator``); ``counter``: a
    Spark accumulator that counts the rows scored (for progress)."""
    from pyspark import TaskContext
    from pyspark.sql.pandas.types import to_arrow_schema

    policy = "null" if on_error == "skip" else on_error
    name, pipe = _ship(df.sparkSession, path)
    with pipe:
        scorer = Scorer(pipe, columns=columns, params=params, keep=keep, on_error=policy)
        read = scorer.read_columns
        missing = [c for c in read if c not in df.columns]
        if missing:
            raise InputError(f"no column {missing[0]!r} in the DataFrame (columns: {df.columns}); "
                             "map inputs to columns with columns={INPUT: COLUMN}")
        arrow_in = to_arrow_schema(df.select(*read).schema)
        out_arrow, out_spark = _spark_schema(scorer.output_schema(arrow_in))
    args = (dict(columns or {}), dict(params or {}), list(keep), policy)
    load = dict(load or {})

    def score_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        worker = Scorer(_worker_pipeline(name, threads, load), columns=args[0], params=args[1], keep=args[2],
                        on_error=args[3])
        ctx = TaskContext.get()
        part = ctx.partitionId() if ctx is not None else 0
        seen = 0
        for batch in _rebatch(batches, batch_size):
            scored = worker.score(batch, row_label=_label(part, seen))
            seen += batch.num_rows
            if counter is not None:
                counter.add(batch.num_rows)
            yield scored.batch.cast(out_arrow)

    out = df.select(*read).mapInArrow(score_partition, out_spark)
    if on_error == "skip":
        out = out.where(out[ERROR_COLUMN].isNull()).drop(ERROR_COLUMN)
    return out


def pipeline_udf(path: str | Path, *, params: Mapping[str, Any] | None = None, on_error: str = "fail",
                 batch_size: int = 64, threads: int | None = None, load: Mapping[str, Any] | None = None,
                 spark: Any = None) -> Any:
    """A vectorized Spark UDF (``arrow_udf``, Spark >= 4.1) running the pipeline at ``path``.

    Call it with one column per required input, in the signature's order; it returns a struct with one field
    per output (plus ``error`` when ``on_error="null"``; ``skip`` is not possible in a UDF, which must return
    a row for every row)::

        df.withColumn("pred", pipeline_udf("digits.onnx")("image")).select("pred.*")
    """
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import arrow_udf

    if on_error == "skip":
        raise InputError("pipeline_udf: on_error='skip' cannot drop rows inside a column expression; use 'null' "
                         "and filter on pred.error, or score_dataframe(..., on_error='skip')")
    spark = spark or SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()
    name, pipe = _ship(spark, path)
    with pipe:
        scorer = Scorer(pipe, params=params, on_error=on_error)
        inputs = [spec.name for spec, _ in scorer.layout.inputs]
        out_arrow, out_spark = _spark_schema(scorer.output_schema(pa.schema([])))
    struct = pa.struct(list(out_arrow))
    params, load = dict(params or {}), dict(load or {})

    def predict(batches: Iterator[Tuple[pa.Array, ...]]) -> Iterator[pa.Array]:
        from pyspark import TaskContext

        worker = Scorer(_worker_pipeline(name, threads, load), params=params, on_error=on_error)
        ctx = TaskContext.get()
        part = ctx.partitionId() if ctx is not None else 0
        seen = 0
        for arrays in batches:
            arrays = (arrays,) if isinstance(arrays, (pa.Array, pa.ChunkedArray)) else arrays
            batch = pa.RecordBatch.from_arrays(list(arrays), names=inputs)
            parts = []
            for chunk in _rebatch([batch], batch_size):
                scored = worker.score(chunk, row_label=_label(part, seen))
                seen += chunk.num_rows
                parts.append(scored.batch.cast(out_arrow))
            table = pa.Table.from_batches(parts, schema=out_arrow).combine_chunks()
            yield pa.StructArray.from_arrays([table.column(i).chunk(0) if table.column(i).num_chunks else
                                              pa.array([], table.schema.field(i).type)
                                              for i in range(table.num_columns)], fields=list(struct))

    if len(inputs) == 1:
        predict.__annotations__["batches"] = Iterator[pa.Array]
    make: Any = arrow_udf  # (its overloads do not describe the iterator-of-tuples form)
    return make(predict, returnType=out_spark)


# -- the CLI's --engine spark ---------------------------------------------------------------------------


def _spark_error(e: Exception) -> InputError | None:
    """The runtime error a failed Spark task raised (its message is in the Python traceback Spark relays)."""
    found = re.findall(r"onnxpipe_runtime\.errors\.(\w+): (.+)", str(e))
    return InputError(found[-1][1]) if found else None


def score_with_spark(model: str | Path, input: str | Path, output: str | Path, *, master: str | None = None,
                     batch_size: int = 64, columns: Mapping[str, str] | None = None,
                     params: Mapping[str, Any] | None = None, keep: Sequence[str] = (), on_error: str = "fail",
                     threads: int | None = None, progress: bool = True,
                     load: Mapping[str, Any] | None = None) -> ScoreSummary:
    """Read ``input`` with Spark, score it with :func:`score_dataframe`, write ``output`` (a folder of part
    files, as Spark writes; Parquet or JSON Lines by the suffix; paths or URLs Spark can read, e.g. ``s3a://``).
    ``master``: e.g. ``local[2]``; default: what ``spark-submit`` set, else ``local[*]``. The model is a local
    file (shipped to the executors)."""
    from pyspark.sql import SparkSession

    input, output = str(input), str(output)  # also URLs (s3a://, hdfs://): Path would fold their '//'
    in_fmt, out_fmt = table_format(Path(input)), table_format(Path(output))
    if "://" not in input and not Path(input).exists():
        raise InputError(f"input {input!r}: no such file or directory")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(f"onnxpipe score {Path(model).name}")
    if master:
        builder = builder.master(master)
    spark = (builder.config("spark.ui.showConsoleProgress", "false")  # ours below counts rows, not tasks
             .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(max(batch_size, 1024)))
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    start = time.perf_counter()
    _spread(spark, input)
    df = spark.read.parquet(input) if in_fmt == "parquet" else spark.read.json(input)
    df = _json_images(df, model, columns) if in_fmt == "jsonl" else df
    rows_in = df.count()
    counter = spark.sparkContext.accumulator(0)
    scored = score_dataframe(df, model, columns=columns, params=params, keep=keep,
                             on_error="null" if on_error == "skip" else on_error, batch_size=batch_size,
                             threads=threads, load=load, counter=counter)
    bar = Progress(f"scoring {Path(model).name} on spark {spark.sparkContext.master}", rows_in, enabled=progress)
    errors_path = output + ".errors.jsonl" if on_error == "skip" else None
    with _polling(bar, counter):
        try:
            rows_out, errors = _write(spark, scored, output, out_fmt, errors_path, keep, on_error, rows_in)
        except Exception as e:
            err = _spark_error(e)
            if err is not None:
                raise err from None
            raise
    summary = ScoreSummary(rows_in, rows_out, errors, time.perf_counter() - start, output,
                           errors_path if errors else None)
    bar.finish(summary.line(f"spark {spark.sparkContext.master}"))
    return summary


def _write(spark: Any, scored: Any, output: str, out_fmt: str, errors_path: str | None, keep: Sequence[str],
           on_error: str, rows_in: int) -> tuple[int, int]:
    """Write the scored rows (and, for ``skip``, the bad ones to ``errors_path``); (rows written, bad rows)."""
    from pyspark.sql import functions as F

    if errors_path is not None:
        scored = scored.persist()
        scored.where(F.col(ERROR_COLUMN).isNotNull()).select(*keep, ERROR_COLUMN).write.mode("overwrite").json(
            errors_path)
        scored = scored.where(F.col(ERROR_COLUMN).isNull()).drop(ERROR_COLUMN)
    writer = scored.write.mode("overwrite")
    writer.parquet(output) if out_fmt == "parquet" else writer.json(output)
    written = spark.read.parquet(output) if out_fmt == "parquet" else spark.read.json(output)
    rows_out = written.count()
    if errors_path is not None:
        return rows_out, rows_in - rows_out
    if on_error == "null" and ERROR_COLUMN in written.columns:  # (JSON leaves out null fields)
        return rows_out, written.where(F.col(ERROR_COLUMN).isNotNull()).count()
    return rows_out, 0


@contextlib.contextmanager
def _polling(bar: Progress, counter: Any, every: float = 0.5) -> Iterator[None]:
    """Feed ``bar`` from the accumulator while the job runs (Spark merges it as tasks finish)."""
    stop = threading.Event()

    def poll() -> None:
        last = 0
        while not stop.wait(every):
            value = min(int(counter.value), bar.total or int(counter.value))
            bar.update(value - last)
            last = value

    thread = threading.Thread(target=poll, name="onnxpipe-spark-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _spread(spark: Any, input: str) -> None:
    """Let a small local input make enough partitions for every core (Spark's default, 128 MB a partition, reads
    a file of a few MB as one task). Parquet splits at row groups, JSON Lines anywhere."""
    path = Path(input)
    if "://" in input or not path.exists():
        return
    files = [f for f in path.rglob("*") if f.is_file()] if path.is_dir() else [path]
    size = sum(f.stat().st_size for f in files)
    target = size // (2 * spark.sparkContext.defaultParallelism) + 1
    current = int(str(spark.conf.get("spark.sql.files.maxPartitionBytes", str(128 << 20))).rstrip("b"))
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(max(64 << 10, min(target, current))))
    spark.conf.set("spark.sql.files.openCostInBytes", "0")


def _json_images(df: Any, model: str | Path, columns: Mapping[str, str] | None) -> Any:
    """JSON has no bytes: base64 strings in a column whose input takes numbers are encoded images."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    with Pipeline.load(model, threads=1) as pipe:
        scorer = Scorer(pipe, columns=columns)
        for spec, column in scorer.layout.inputs:
            if spec.dtype != "string" and column in df.columns and isinstance(df.schema[column].dataType, StringType):
                df = df.withColumn(column, F.unbase64(F.col(column)))
    return df
