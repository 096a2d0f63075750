"""Offline scoring: a table in (Parquet or JSON Lines), the pipeline run row by row in batches, a table out.

    from onnxpipe_runtime.score import score_file
    summary = score_file("digits.onnx", "images.parquet", "scores.parquet", batch_size=64)

The table is streamed in record batches of ``batch_size`` rows (memory stays bounded by a few batches) and
each batch is decoded (``columns.py``), grouped by row shape, run, and written in input order. Bad rows follow
``on_error``:

- ``fail`` (default): stop at the first one with an :class:`InputError` naming the row, the column and the
  expected dtype and shape; no output file is left behind.
- ``null``: keep it: its outputs are null and the ``error`` column says why (null on good rows). Rows in =
  rows out, order kept.
- ``skip``: leave it out of the output and write it (row index, message) to ``<output>.errors.jsonl``;
  every input row is either in the output or in that file, and the output keeps input order.

A run that ONNX Runtime rejects is retried row by row, so one bad row does not take its batch with it.
The Spark engine (``spark.py``) scores each partition with the same :class:`Scorer`.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa

from onnxpipe_runtime.columns import Decoded, Layout, RowError, encode_output
from onnxpipe_runtime.errors import InputError, PipelineError
from onnxpipe_runtime.pipeline import ClosedError, Pipeline

__all__ = ["ON_ERROR", "Progress", "ScoreSummary", "Scorer", "read_table", "score_file"]

ON_ERROR = ("fail", "skip", "null")
ERROR_COLUMN = "error"


@dataclass
class Scored:
    """One scored batch: the rows to write and the bad rows (row index within the batch, message)."""

    batch: pa.RecordBatch
    errors: list[tuple[int, str]] = field(default_factory=list)


class Scorer:
    """Scores Arrow record batches with one :class:`Pipeline`.

    ``columns`` maps input -> column, ``params`` gives optional inputs one value for every run (thresholds),
    ``keep`` names input columns copied to the output (ids), ``row_label(i)`` names row ``i`` of a batch in
    messages (default ``row <first_row + i>``).
    """

    def __init__(self, pipe: Pipeline, *, columns: Mapping[str, str] | None = None,
                 params: Mapping[str, Any] | None = None, keep: Sequence[str] = (), on_error: str = "fail") -> None:
        if on_error not in ON_ERROR:
            raise InputError(f"on_error: {on_error!r}, expected one of {list(ON_ERROR)}")
        self.pipe = pipe
        self.layout = Layout(pipe.signature, pipe.manifest.metadata if pipe.manifest is not None else {}, columns)
        self.params = _params(pipe, params or {}, self.layout)
        self.keep = list(keep)
        self.on_error = on_error
        clash = [k for k in self.keep if k in {o.name for o in self.layout.outputs} | {ERROR_COLUMN}]
        if clash:
            raise InputError(f"keep: column {clash[0]!r} has the name of an output column")

    @property
    def read_columns(self) -> list[str]:
        return list(dict.fromkeys(self.layout.column_names + self.keep))

    def output_schema(self, input_schema: pa.Schema) -> pa.Schema:
        missing = [k for k in self.keep if k not in input_schema.names]
        if missing:
            raise InputError(f"keep: no column {missing[0]!r} in the data (columns: {input_schema.names})")
        fields = [input_schema.field(k) for k in self.keep] + list(self.layout.output_schema())
        if self.on_error == "null":
            fields.append(pa.field(ERROR_COLUMN, pa.string()))
        return pa.schema(fields)

    def score(self, batch: pa.RecordBatch, first_row: int = 0,
              row_label: Callable[[int], str] | None = None) -> Scored:
        """Score every row of ``batch``; InputError on a bad row when ``on_error`` is ``fail``."""
        label = row_label or (lambda i: f"row {first_row + i}")
        n = batch.num_rows
        decoded = self.layout.decode(batch)
        bad: dict[int, RowError] = {r: RowError(r, c, m) for r, (c, m) in row_errors(batch).items()}
        for (spec, column), dec in zip(self.layout.inputs, decoded):
            for r, reason in dec.bad.items():
                bad.setdefault(r, RowError(r, column, f"{reason}; expected {self.layout.expected(spec)}"))
        self._fail_on(bad, label)
        results: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {o.name: [] for o in self.layout.outputs}
        for rows in _groups(decoded, np.array([r not in bad for r in range(n)], bool)):
            self._run(rows, decoded, results, bad, label)
        valid = np.array([r not in bad for r in range(n)], bool)
        arrays = [batch.column(k) for k in self.keep]
        arrays += [encode_output(o, n, results[o.name], valid) for o in self.layout.outputs]
        names = self.keep + [o.name for o in self.layout.outputs]
        messages = {r: _message(e, label) for r, e in bad.items()}
        if self.on_error == "null":
            arrays.append(pa.array([messages.get(r) for r in range(n)], pa.string()))
            names.append(ERROR_COLUMN)
        out = pa.RecordBatch.from_arrays(arrays, names=names)
        if self.on_error == "skip" and bad:
            out = out.filter(pa.array(valid))
        return Scored(out, sorted(messages.items()))

    def _run(self, rows: np.ndarray, decoded: list[Decoded], results: dict[str, list[tuple[np.ndarray, np.ndarray]]],
             bad: dict[int, RowError], label: Callable[[int], str]) -> None:
        """Run ``rows`` together; if the pipeline refuses them, run them one by one to find the bad ones."""
        feeds = {spec.name: dec.gather(rows) for (spec, _), dec in zip(self.layout.inputs, decoded)}
        try:
            out = self.pipe.run(feeds, **self.params)
            for o in self.layout.outputs:
                if o.fields is None and out[o.name].shape[:1] != (len(rows),):
                    raise InputError(f"output {o.name!r}: {out[o.name].shape[0]} rows for {len(rows)} inputs")
        except PipelineError as e:
            if len(rows) > 1:
                for r in rows:
                    self._run(np.array([r]), decoded, results, bad, label)
                return
            bad[int(rows[0])] = RowError(int(rows[0]), None, f"{type(e).__name__} [{e.code}]: {e}")
            self._fail_on(bad, label)
            return
        for o in self.layout.outputs:
            results[o.name].append((rows, out[o.name]))

    def _fail_on(self, bad: Mapping[int, RowError], label: Callable[[int], str]) -> None:
        if bad and self.on_error == "fail":
            raise InputError(_message(bad[min(bad)], label) + " (--on-error skip|null keeps going)")


def _message(e: RowError, label: Callable[[int], str]) -> str:
    where = f"{label(e.row)}, column {e.column!r}" if e.column else label(e.row)
    return f"{where}: {e.message}"


def _groups(decoded: list[Decoded], good: np.ndarray) -> Iterator[np.ndarray]:
    """Good rows grouped by their shapes across every input (rows of one group can share a run)."""
    keys = np.concatenate([d.shapes for d in decoded], axis=1) if decoded else np.zeros((len(good), 0), np.int64)
    idx = np.nonzero(good)[0]
    if not len(idx):
        return
    if keys.shape[1] == 0 or (keys[idx] == keys[idx[0]]).all():
        yield idx
        return
    _, inverse = np.unique(keys[idx], axis=0, return_inverse=True)
    for g in range(int(inverse.max()) + 1):
        yield idx[inverse.reshape(-1) == g]


def _params(pipe: Pipeline, params: Mapping[str, Any], layout: Layout) -> dict[str, np.ndarray]:
    out = {}
    columns = {spec.name for spec, _ in layout.inputs}
    for name, value in params.items():
        spec = pipe.signature.input(name)
        if spec is None or name in columns:
            optional = [s.name for s in pipe.signature.inputs if s.optional]
            raise InputError(f"param {name!r}: not an optional input of this pipeline; optional inputs: {optional}")
        try:
            out[name] = np.asarray(value, dtype=np.dtype(spec.dtype)).reshape([d for d in spec.shape if isinstance(d, int)])
        except (TypeError, ValueError) as e:
            raise InputError(f"param {name!r}: {value!r} is not {spec.dtype} {list(spec.shape)} ({e})") from e
    return out


# -- tables: Parquet and JSON Lines ----------------------------------------------------------------------------


def table_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise InputError(f"{str(path)!r}: unknown table format; expected a .parquet or .jsonl (JSON Lines) path")


def read_table(path: Path, columns: Sequence[str], batch_size: int,
               types: Mapping[str, pa.DataType | None] | None = None) -> tuple[int | None, Iterator[pa.RecordBatch]]:
    """(number of rows if known, record batches of at most ``batch_size`` rows in file order).

    JSON Lines are parsed line by line into ``types`` (column -> Arrow type; other columns inferred), so a line
    that does not fit is one bad row, not a failed file: its cells are null and the reason is in the batch's
    schema metadata (see :func:`row_errors`)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"input {str(path)!r}: no such file or directory")
    if table_format(path) == "parquet":
        import pyarrow.dataset as ds

        dataset = ds.dataset(path, format="parquet")
        missing = [c for c in columns if c not in dataset.schema.names]
        if missing:
            raise InputError(f"no column {missing[0]!r} in {str(path)!r} (columns: {dataset.schema.names}); "
                             "map inputs to columns with --columns INPUT=COLUMN")
        batches = dataset.to_batches(columns=list(columns), batch_size=batch_size, batch_readahead=1,
                                     fragment_readahead=1)
        return dataset.count_rows(), _rebatch(batches, batch_size)
    files = sorted(path.glob("*.json*")) if path.is_dir() else [path]
    return sum(_count_lines(f) for f in files), _read_jsonl(files, list(columns), dict(types or {}), batch_size)


def _read_jsonl(files: list[Path], columns: list[str], types: dict[str, pa.DataType | None],
                batch_size: int) -> Iterator[pa.RecordBatch]:
    rows: list[Any] = []
    for f in files:
        with open(f, encoding="utf-8") as lines:
            for line in lines:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    rows.append(row if isinstance(row, dict) else ValueError(f"a JSON {type(row).__name__}, "
                                                                              "expected an object"))
                except ValueError as e:
                    rows.append(e)
                if len(rows) == batch_size:
                    yield _json_batch(rows, columns, types)
                    rows = []
    if rows:
        yield _json_batch(rows, columns, types)


def _json_batch(rows: list[Any], columns: list[str], types: dict[str, pa.DataType | None]) -> pa.RecordBatch:
    errors: dict[int, tuple[str | None, str]] = {}
    for i, row in enumerate(rows):
        if isinstance(row, Exception):
            errors[i] = (None, f"not a JSON object ({row})")
    arrays = []
    for c in columns:
        values = [None if isinstance(r, Exception) else r.get(c) for r in rows]
        want = types.get(c)
        first = next((v for v in values if v is not None), None)
        if want is not None and isinstance(first, str) and not pa.types.is_string(want):
            want = pa.binary()  # base64 strings where numbers are expected: encoded images (the decoder checks)
        if want is not None and pa.types.is_binary(want):
            values = [_unbase64(v, c, i, errors) for i, v in enumerate(values)]
        try:
            arrays.append(pa.array(values, type=want))
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            arrays.append(_json_column(values, c, want, errors))
    batch = pa.RecordBatch.from_arrays(arrays, names=columns)
    if errors:
        doc = {str(i): [c, m] for i, (c, m) in errors.items()}
        batch = batch.replace_schema_metadata({b"onnxpipe.row_errors": json.dumps(doc).encode()})
    return batch


def _json_column(values: list[Any], column: str, want: pa.DataType | None,
                 errors: dict[int, tuple[str | None, str]]) -> pa.Array:
    """Values one by one: a value that does not convert becomes null and its row an error."""
    if want is None:  # a kept column of mixed types: keep it as JSON text
        return pa.array([None if v is None else json.dumps(v, ensure_ascii=False) for v in values], pa.string())
    out = []
    for i, v in enumerate(values):
        try:
            pa.array([v], type=want)
            out.append(v)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
            errors.setdefault(i, (column, f"a JSON value that is not {want} ({type(e).__name__}: {e})"))
            out.append(None)
    return pa.array(out, type=want)


def _unbase64(value: Any, column: str, row: int, errors: dict[int, tuple[str | None, str]]) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as e:
        errors.setdefault(row, (column, f"a string that is not base64 (an encoded image in JSON Lines) ({e})"))
        return None


def row_errors(batch: pa.RecordBatch) -> dict[int, tuple[str | None, str]]:
    """Rows the reader could not parse: row -> (column or None, reason)."""
    raw = (batch.schema.metadata or {}).get(b"onnxpipe.row_errors")
    return {int(k): (v[0], v[1]) for k, v in json.loads(raw).items()} if raw else {}


def _count_lines(path: Path) -> int:
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def _rebatch(batches: Iterable[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    pending: list[pa.RecordBatch] = []
    count = 0
    for b in batches:
        while b.num_rows:
            take = b.slice(0, size - count)
            b = b.slice(take.num_rows)
            pending.append(take)
            count += take.num_rows
            if count == size:
                yield _concat(pending)
                pending, count = [], 0
    if count:
        yield _concat(pending)


def _concat(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


class TableWriter:
    """Writes to ``path + '.partial'`` and renames on :meth:`commit`, so a failed job leaves no output."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.format = table_format(self.path)
        self.schema = schema
        self.rows = 0
        self._pq: Any = None
        self._file: IO[str] | None = None
        if self.format == "parquet":
            import pyarrow.parquet as pq

            self._pq = pq.ParquetWriter(self.partial, schema)
        else:
            self._file = open(self.partial, "w", encoding="utf-8")

    def write(self, batch: pa.RecordBatch) -> None:
        parquet, lines = self._pq, self._file
        if parquet is None and lines is None:
            raise ClosedError(f"writer for {str(self.path)!r} is closed; it takes no more rows")
        if batch.schema != self.schema:
            batch = batch.cast(self.schema)
        self.rows += batch.num_rows
        if parquet is not None:
            parquet.write_batch(batch)
        elif lines is not None:
            for row in batch.to_pylist():
                lines.write(json.dumps(row, ensure_ascii=False, default=_json_default) + "\n")

    def commit(self) -> None:
        self._close()
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        self._close()
        self.partial.unlink(missing_ok=True)

    def _close(self) -> None:
        if self._pq is not None:
            self._pq.close()
            self._pq = None
        if self._file is not None:
            self._file.close()
            self._file = None


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# -- progress ------------------------------------------------------------------------------------------------


class Progress:
    """Rows done, rows/s and ETA on one line of ``stream`` (redrawn on a terminal, a line every few seconds
    otherwise)."""

    def __init__(self, label: str, total: int | None, stream: IO[str] | None = None, enabled: bool = True) -> None:
        self.label, self.total, self.done = label, total, 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = self._last = time.perf_counter()

    def update(self, rows: int) -> None:
        self.done += rows
        now = time.perf_counter()
        if self.enabled and now - self._last >= (0.2 if self.tty else 5.0):
            self._last = now
            self._write(self.line(now), end="\r" if self.tty else "\n")

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.perf_counter()) - self.start, 1e-9)
        rate = self.done / elapsed
        if self.total:
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            pct = 100.0 * self.done / self.total
            width = 24
            bar = "#" * int(width * self.done / self.total)
            return (f"{self.label} [{bar:<{width}}] {self.done:,}/{self.total:,} rows ({pct:.0f}%) "
                    f"{rate:,.0f} rows/s ETA {_clock(eta)}")
        return f"{self.label} {self.done:,} rows {rate:,.0f} rows/s"

    def finish(self, message: str) -> None:
        if self.enabled:
            self._write(message, end="\n", clear=self.tty)

    def _write(self, text: str, end: str, clear: bool = False) -> None:
        self.stream.write(("\r\x1b[K" if clear or self.tty else "") + text + end)
        self.stream.flush()


def _clock(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


# -- the local engine ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreSummary:
    rows_in: int
    rows_out: int
    errors: int
    seconds: float
    output: Path | str
    errors_file: Path | str | None = None

    @property
    def rows_per_second(self) -> float:
        return self.rows_in / self.seconds if self.seconds > 0 else float("inf")

    def line(self, engine: str = "local") -> str:
        extra = f", {self.errors} bad rows" + (f" (listed in {self.errors_file})" if self.errors_file else "")
        return (f"scored {self.rows_in:,} rows in {self.seconds:.1f} s ({self.rows_per_second:,.0f} rows/s, "
                f"{engine}): wrote {self.rows_out:,} rows to {self.output}" + (extra if self.errors else ""))


def score_file(model: str | Path | Pipeline, input: str | Path, output: str | Path, *, batch_size: int = 64,
               columns: Mapping[str, str] | None = None, params: Mapping[str, Any] | None = None,
               keep: Sequence[str] = (), on_error: str = "fail", threads: int | None = None,
               progress: bool | IO[str] = True, load: Mapping[str, Any] | None = None) -> ScoreSummary:
    """Score the table at ``input`` into ``output`` (Parquet or JSON Lines, by suffix), streaming.
    ``load``: more :meth:`Pipeline.load` options (``accelerator``, ``precision``)."""
    if batch_size < 1:
        raise InputError(f"batch_size: expected >= 1, got {batch_size}")
    input, output = Path(input), Path(output)
    if output.resolve() == input.resolve():
        raise InputError(f"output {str(output)!r} is the input: write the scores elsewhere")
    if output.is_dir():
        raise InputError(f"output {str(output)!r} is a folder (written by --engine spark?): the local engine "
                         "writes one file; remove it or choose another path")
    table_format(output)
    own = not isinstance(model, Pipeline)
    pipe = model if isinstance(model, Pipeline) else Pipeline.load(model, threads=threads, **dict(load or {}))
    try:
        scorer = Scorer(pipe, columns=columns, params=params, keep=keep, on_error=on_error)
        return _score_stream(scorer, input, output, batch_size, progress)
    finally:
        if own:
            pipe.close()


def _score_stream(scorer: Scorer, input: Path, output: Path, batch_size: int,
                  progress: bool | IO[str]) -> ScoreSummary:
    total, batches = read_table(input, scorer.read_columns, batch_size, scorer.layout.json_types())
    stream = progress if not isinstance(progress, bool) else None
    bar = Progress(f"scoring {scorer.pipe.path.name}", total, stream, enabled=progress is not False)
    errors_file = output.with_name(output.name + ".errors.jsonl") if scorer.on_error == "skip" else None
    writer: TableWriter | None = None
    errors_out: IO[str] | None = None
    start, rows_in, n_errors = time.perf_counter(), 0, 0
    try:
        for batch in batches:
            scored = scorer.score(batch, first_row=rows_in)
            if writer is None:
                writer = TableWriter(output, scorer.output_schema(batch.schema))
            writer.write(scored.batch)
            if scored.errors and errors_file is not None:
                errors_out = errors_out or open(errors_file, "w", encoding="utf-8")
                for r, message in scored.errors:
                    errors_out.write(json.dumps({"row": rows_in + r, "error": message}, ensure_ascii=False) + "\n")
            rows_in += batch.num_rows
            n_errors += len(scored.errors)
            bar.update(batch.num_rows)
        if writer is None:  # no rows in, no rows out: still a table with the output columns
            empty = pa.schema([(k, pa.null()) for k in scorer.keep])
            writer = TableWriter(output, scorer.output_schema(empty))
        writer.commit()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        if errors_out is not None:
            errors_out.close()
    if errors_file is not None and not n_errors:
        errors_file.unlink(missing_ok=True)
    summary = ScoreSummary(rows_in, writer.rows, n_errors, time.perf_counter() - start, output,
                           errors_file if n_errors else None)
    bar.finish(summary.line())
    return summary

