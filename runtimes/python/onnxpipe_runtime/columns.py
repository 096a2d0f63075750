"""Tables <-> tensors: how one row of an Arrow table becomes one element of a pipeline's batch, and how the
outputs come back as columns. The rule every scoring engine shares (``score.py``, ``spark.py``).

A pipeline scores row by row when every required input leads with the same named dimension (the batch axis)
and every output either leads with it too or is a *row table*: ``[K, F]`` rows whose first field is the
batch index, named in the manifest's metadata (``{"detections": "batch_index,x1,y1,x2,y2,score,class_id"}``).

Inputs, per row (the batch dimension left out; ``d1..dk`` the input's other dimensions):

==========================  ===========================================================================
column type                 becomes
==========================  ===========================================================================
string                      a string input ``[batch]``
int / float / bool          a numeric input ``[batch]``
(nested) list               ``[batch, d1..dk]``: k levels of lists, or one flat list when d1..dk are all
                            fixed (row-major); values must fit the dtype exactly (ints in range)
binary                      uint8 ``[batch, height, width, C]`` (C = 3: RGB, 1: gray) or ``[batch, height,
                            width]``: an encoded image (PNG, JPEG, ...) decoded with Pillow
==========================  ===========================================================================

Rows whose shapes differ (images of several sizes, sentences of several lengths) run in separate groups,
so no row is padded or resized. Outputs: ``[batch]`` -> a plain column; ``[batch, d1..dk]`` -> nested lists,
fixed-size where the manifest fixes the dimension; a row table -> one list of structs per row.

A value that does not fit (null, wrong length, out of range, undecodable) is a :class:`RowError` naming the
row, the column and what was expected; a column of the wrong type is an :class:`InputError` for the whole job.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from onnxpipe_runtime.errors import InputError
from onnxpipe_runtime.signature import Signature, TensorSpec

__all__ = ["Decoded", "Layout", "OutputColumn", "RowError", "arrow_type"]

_ARROW = {
    "float32": pa.float32(), "float64": pa.float64(), "int64": pa.int64(), "int32": pa.int32(),
    "uint8": pa.uint8(), "int8": pa.int8(), "bool": pa.bool_(), "string": pa.string(),
}
_IMAGE_MODES: dict[tuple[Any, ...], str] = {(3,): "RGB", (1,): "L", (): "L"}


@dataclass(frozen=True)
class RowError:
    """A row that cannot be scored: ``row`` within the batch being decoded, the column, the reason."""

    row: int
    column: str | None
    message: str


@dataclass(frozen=True)
class OutputColumn:
    """One output as a column: ``spec`` its tensor, ``fields`` set for a row table (``[K, F]``)."""

    spec: TensorSpec
    fields: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def arrow_type(self) -> pa.DataType:
        if self.fields is not None:
            value = _ARROW[self.spec.dtype]
            return pa.list_(pa.struct([(f, value) for f in self.fields[1:]]))
        return arrow_type(self.spec.dtype, self.spec.shape[1:])


def arrow_type(dtype: str, dims: Sequence[Any]) -> pa.DataType:
    """The column type of one row of a tensor: nested lists, fixed-size where the dimension is an int."""
    t = _ARROW[dtype]
    for d in reversed(list(dims)):
        t = pa.list_(t, d) if isinstance(d, int) else pa.list_(t)
    return t


def arrow_type_var(leaf: pa.DataType, depth: int) -> pa.DataType:
    for _ in range(depth):
        leaf = pa.list_(leaf)
    return leaf


def _dims(spec: TensorSpec) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in spec.shape[1:]) + "]"


def _row_table_fields(spec: TensorSpec, metadata: Mapping[str, Any]) -> tuple[str, ...] | None:
    raw = metadata.get(spec.name)
    if not isinstance(raw, str) or len(spec.shape) != 2:
        return None
    fields = tuple(f.strip() for f in raw.split(","))
    if fields[0] != "batch_index" or spec.shape[1] != len(fields) or spec.dtype not in ("float32", "float64"):
        return None
    return fields


@dataclass(frozen=True)
class Decoded:
    """One input column of a batch: ``values`` flat (rows one after another, row-major), ``shapes`` [n, k]
    each row's dimensions, ``bad`` the rows that could not be read."""

    values: np.ndarray
    shapes: np.ndarray
    bad: dict[int, str]

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """The given rows (same shape) stacked into one tensor ``[len(rows), *shape]``."""
        sizes = np.prod(self.shapes, axis=1, dtype=np.int64) if self.shapes.shape[1] else np.ones(len(self.shapes), np.int64)
        shape = tuple(int(d) for d in self.shapes[rows[0]]) if len(rows) else ()
        if len(rows) == len(self.shapes):
            return self.values.reshape((len(rows), *shape))
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        size = int(sizes[rows[0]]) if len(rows) else 0
        index = (starts[rows][:, None] + np.arange(size)[None, :]).reshape(-1)
        return self.values[index].reshape((len(rows), *shape))


class Layout:
    """Which column feeds which input, and which columns the outputs become, for one pipeline.

    ``columns`` maps input name -> column name (default: the input's own name). Optional inputs without the
    batch axis (thresholds) are not columns: give them in ``params``, one value for the whole job.
    """

    def __init__(self, signature: Signature, metadata: Mapping[str, Any] | None = None,
                 columns: Mapping[str, str] | None = None) -> None:
        columns = dict(columns or {})
        known = {s.name for s in signature.inputs}
        unknown = [k for k in columns if k not in known]
        if unknown:
            raise InputError(f"column mapping names unknown input {unknown[0]!r}; inputs are {sorted(known)}")
        optional = [k for k in columns if k not in {s.name for s in signature.required_inputs}]
        if optional:
            raise InputError(f"column mapping names optional input {optional[0]!r}: optional inputs take one value "
                             "for the whole job (--param NAME=VALUE), not a column")
        required = signature.required_inputs
        lead = required[0].shape[0] if required and required[0].shape else None
        if not isinstance(lead, str):
            raise InputError("this pipeline cannot score row by row: its first required input "
                             f"{required[0].name if required else '(none)'!r} does not lead with a named batch "
                             "dimension")
        for spec in required:
            if not spec.shape or spec.shape[0] != lead:
                raise InputError(f"input {spec.name!r} {list(spec.shape)} does not lead with the batch dimension "
                                 f"{lead!r}: rows cannot be scored one batch element each")
        self.batch_dim = lead
        self.inputs: list[tuple[TensorSpec, str]] = [(s, columns.get(s.name, s.name)) for s in required]
        self.outputs: list[OutputColumn] = []
        for spec in signature.outputs:
            if spec.shape and spec.shape[0] == lead:
                self.outputs.append(OutputColumn(spec))
                continue
            fields = _row_table_fields(spec, metadata or {})
            if fields is None:
                raise InputError(
                    f"output {spec.name!r} {list(spec.shape)} neither leads with the batch dimension {lead!r} nor "
                    "is a row table (its fields, first 'batch_index', named in the manifest metadata)")
            self.outputs.append(OutputColumn(spec, fields))

    @property
    def column_names(self) -> list[str]:
        return [c for _, c in self.inputs]

    def expected(self, spec: TensorSpec) -> str:
        whole = "[" + ", ".join("?" if d is None else str(d) for d in spec.shape) + "]"
        return f"{spec.dtype} {_dims(spec)} per row (input {spec.name!r} is {spec.dtype} {whole})"

    def json_types(self) -> dict[str, pa.DataType | None]:
        """Column types to parse JSON Lines into: lists of int64 / float64 / strings at the input's depth (an
        image input may also come as base64 strings of encoded images, read as binary)."""
        out: dict[str, pa.DataType | None] = {}
        for spec, column in self.inputs:
            per_row = spec.shape[1:]
            leaf = {"string": pa.string(), "bool": pa.bool_()}.get(
                spec.dtype, pa.float64() if spec.dtype.startswith("float") else pa.int64())
            out[column] = arrow_type_var(leaf, len(per_row))
        return out

    def output_schema(self) -> pa.Schema:
        return pa.schema([(o.name, o.arrow_type) for o in self.outputs])

    # -- inputs ------------------------------------------------------------------------------------------
    def decode(self, table: pa.RecordBatch | pa.Table) -> list[Decoded]:
        """Every input's column of ``table``; InputError when a column is missing or of the wrong type."""
        out = []
        for spec, column in self.inputs:
            if column not in table.schema.names:
                raise InputError(f"input {spec.name!r}: no column {column!r} in the data (columns: "
                                 f"{table.schema.names}); map it with --columns {spec.name}=COLUMN")
            array = table.column(column)
            if isinstance(array, pa.ChunkedArray):
                array = array.combine_chunks()
            out.append(decode_column(spec, column, array))
        return out


# -- decoding one column -----------------------------------------------------------------------------------


def decode_column(spec: TensorSpec, column: str, array: pa.Array) -> Decoded:
    """One column -> the rows of one input (see the module docstring for the rules)."""
    t = array.type
    rank = len(spec.shape) - 1
    if pa.types.is_dictionary(t):
        array, t = array.dictionary_decode(), t.value_type
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return _decode_images(spec, column, array)
    depth = 0
    while pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        t, depth = t.value_type, depth + 1
    _check_leaf_type(spec, column, array.type, t)
    flat_ok = depth == 1 and rank > 1 and all(isinstance(d, int) for d in spec.shape[1:])
    if depth != rank and not flat_ok:
        raise InputError(
            f"column {column!r} ({array.type}) holds {depth} level(s) of lists per row; input {spec.name!r} "
            f"expects {spec.dtype} {_dims(spec)} per row: {rank} level(s) of lists"
            + (", or one flat list of the fixed size" if rank > 1 and all(isinstance(d, int) for d in spec.shape[1:])
               else ""))
    bad: dict[int, str] = {}
    n = len(array)
    owner = np.arange(n)
    dims: list[np.ndarray] = []
    cur: pa.Array = array
    for _level in range(depth):
        _mark(bad, owner, np.asarray(cur.is_null().to_numpy(zero_copy_only=False)), "a null list")
        lengths = pc.list_value_length(cur).fill_null(0).to_numpy().astype(np.int64)
        first = np.full(n, -1, np.int64)
        first[owner[::-1]] = lengths[::-1]
        _mark(bad, owner, lengths != first[owner], "ragged nested lists (rows of different lengths inside)")
        dims.append(np.maximum(first, 0))
        owner = np.repeat(owner, lengths)
        cur = pc.list_flatten(cur)
    _mark(bad, owner, np.asarray(cur.is_null().to_numpy(zero_copy_only=False)), "a null value")
    values = _leaf_values(spec, cur, owner, bad)
    shapes = np.stack(dims, axis=1) if dims else np.zeros((n, 0), np.int64)
    if flat_ok:
        fixed = [d for d in spec.shape[1:] if isinstance(d, int)]
        size = int(np.prod(fixed))
        wrong = np.nonzero(shapes[:, 0] != size)[0]
        for r in wrong:
            bad.setdefault(int(r), f"a flat list of {int(shapes[r, 0])} values; expected {size} = "
                                   f"{' x '.join(map(str, fixed))}")
        shapes = np.tile(np.array(fixed, np.int64), (n, 1))
        shapes[wrong] = 0
        if len(wrong):  # drop the wrong rows' values so the others stay aligned
            keep = ~np.isin(owner, wrong)
            values = values[keep]
            owner = owner[keep]
    _check_fixed_dims(spec, shapes, bad)
    return _without_bad(values, owner, shapes, bad)


def _check_leaf_type(spec: TensorSpec, column: str, column_type: pa.DataType, leaf: pa.DataType) -> None:
    want = spec.dtype
    ok = (pa.types.is_string(leaf) or pa.types.is_large_string(leaf)) if want == "string" else (
        pa.types.is_boolean(leaf) if want == "bool" else
        pa.types.is_integer(leaf) if want in ("int64", "int32", "int8", "uint8") else
        pa.types.is_integer(leaf) or pa.types.is_floating(leaf))
    if not ok or pa.types.is_null(leaf):
        raise InputError(f"column {column!r} is {column_type}; input {spec.name!r} expects {spec.dtype} {_dims(spec)} "
                         "per row" + (" (integers, not floats)" if pa.types.is_floating(leaf) else ""))


def _leaf_values(spec: TensorSpec, leaf: pa.Array, owner: np.ndarray, bad: dict[int, str]) -> np.ndarray:
    """The leaf values as the input's dtype; values that do not fit make their row bad (no rounding, no wrap)."""
    if spec.dtype == "string":
        return np.asarray(leaf.fill_null("").to_numpy(zero_copy_only=False), dtype=object)
    zero: Any = False if spec.dtype == "bool" else 0
    raw = leaf.fill_null(zero).to_numpy(zero_copy_only=False) if leaf.null_count else leaf.to_numpy(zero_copy_only=False)
    want = np.dtype(spec.dtype)
    if want.kind in "iu" and raw.dtype != want:
        info = np.iinfo(want)
        _mark(bad, owner, (raw < info.min) | (raw > info.max), f"a value outside {spec.dtype} [{info.min}, {info.max}]")
        return np.clip(raw, info.min, info.max).astype(want)
    if want.kind == "f" and raw.dtype.kind in "iu":
        conv = raw.astype(want)
        _mark(bad, owner, conv.astype(raw.dtype) != raw, f"an integer too large for {spec.dtype} exactly")
        return conv
    return raw.astype(want, copy=False)


def _decode_images(spec: TensorSpec, column: str, array: pa.Array) -> Decoded:
    per_row = spec.shape[1:]
    mode = _IMAGE_MODES.get(tuple(per_row[2:])) if spec.dtype == "uint8" and len(per_row) in (2, 3) else None
    if mode is None:
        raise InputError(f"column {column!r} holds bytes (encoded images); input {spec.name!r} expects "
                         f"{spec.dtype} {_dims(spec)} per row, not an image (uint8 [height, width, 3 or 1])")
    try:
        from PIL import Image
    except ImportError as e:
        raise InputError(f"column {column!r} holds encoded images: decoding them needs Pillow "
                         "(pip install 'onnxpipe-runtime[image]')") from e
    bad: dict[int, str] = {}
    arrays: list[np.ndarray] = []
    shapes = np.zeros((len(array), len(per_row)), np.int64)
    for i, blob in enumerate(array.to_pylist()):
        if blob is None:
            bad[i] = "a null value"
            continue
        try:
            with Image.open(io.BytesIO(blob)) as img:
                pixels = np.asarray(img if img.mode == mode else img.convert(mode), dtype=np.uint8)
        except Exception as e:  # Pillow raises many types for bad data
            detail = re.sub(r" <_io\.BytesIO object at 0x[0-9a-f]+>", "", str(e))  # (an address: no help)
            bad[i] = f"an image Pillow cannot decode ({type(e).__name__}: {detail})"
            continue
        if len(per_row) == 3:
            pixels = pixels.reshape(*pixels.shape[:2], -1)
        shapes[i] = pixels.shape
        arrays.append(pixels.reshape(-1))
    values = np.concatenate(arrays) if arrays else np.zeros(0, np.uint8)
    _check_fixed_dims(spec, shapes, bad)
    owner = np.repeat(np.arange(len(array)), np.prod(shapes, axis=1))
    return _without_bad(values, owner, shapes, bad)


def _check_fixed_dims(spec: TensorSpec, shapes: np.ndarray, bad: dict[int, str]) -> None:
    for axis, want in enumerate(spec.shape[1:]):
        if isinstance(want, int):
            for r in np.nonzero(shapes[:, axis] != want)[0]:
                bad.setdefault(int(r), f"shape {shapes[r].tolist()}: dimension {axis} is {int(shapes[r, axis])}, "
                                       f"expected {want}")


def _mark(bad: dict[int, str], owner: np.ndarray, mask: np.ndarray, reason: str) -> None:
    for r in np.unique(owner[mask]):
        bad.setdefault(int(r), reason)


def _without_bad(values: np.ndarray, owner: np.ndarray, shapes: np.ndarray, bad: dict[int, str]) -> Decoded:
    """Zero the bad rows' shapes and drop their values, so every good row's values stay where gather looks."""
    if bad and shapes.shape[1]:  # (one value per row when rank 0: keep the bad rows' placeholders)
        rows = np.fromiter(bad, np.int64)
        values = values[~np.isin(owner, rows)]
        shapes = shapes.copy()
        shapes[rows] = 0
    return Decoded(values, shapes, bad)


# -- encoding outputs ------------------------------------------------------------------------------------


def encode_output(column: OutputColumn, n: int, results: Sequence[tuple[np.ndarray, np.ndarray]],
                  valid: np.ndarray) -> pa.Array:
    """One output column for ``n`` rows from ``results`` [(rows, output array of those rows)]; rows not in
    ``valid`` are null."""
    if column.fields is not None:
        return _encode_table(column, n, results, valid)
    spec = column.spec
    rank = len(spec.shape) - 1
    # fixed dimensions hold for null rows too (their slots exist in a fixed-size list); others are 0 there
    shapes = np.tile(np.array([d if isinstance(d, int) else 0 for d in spec.shape[1:]], np.int64), (n, 1))
    chunks: list[tuple[np.ndarray, np.ndarray]] = []
    for rows, arr in results:
        if rank:
            shapes[rows] = arr.shape[1:]
        chunks.append((rows, arr.reshape(len(rows), -1)))
    values = _in_row_order(n, chunks, np.prod(shapes, axis=1, dtype=np.int64) if rank else np.ones(n, np.int64),
                           spec.dtype)
    return _nest(pa.array(values, type=_ARROW[spec.dtype]), shapes, spec.shape[1:], ~valid)


def _in_row_order(n: int, chunks: list[tuple[np.ndarray, np.ndarray]], sizes: np.ndarray, dtype: str) -> np.ndarray:
    np_dtype = object if dtype == "string" else np.dtype(dtype)
    if len(chunks) == 1 and len(chunks[0][0]) == n and np.array_equal(chunks[0][0], np.arange(n)):
        return chunks[0][1].reshape(-1).astype(np_dtype, copy=False)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    out = np.empty(int(sizes.sum()), dtype=np_dtype)
    for rows, flat in chunks:
        if flat.size:
            index = (starts[rows][:, None] + np.arange(flat.shape[1])[None, :]).reshape(-1)
            out[index] = flat.reshape(-1)
    return out


def _nest(values: pa.Array, shapes: np.ndarray, dims: Sequence[Any], null_rows: np.ndarray) -> pa.Array:
    mask = pa.array(null_rows) if null_rows.any() else None
    if not dims:
        return pa.array(values.to_numpy(zero_copy_only=False), type=values.type, mask=null_rows) if mask else values
    arr = values
    for k in reversed(range(len(dims))):
        outer = mask if k == 0 else None
        if isinstance(dims[k], int):
            arr = pa.FixedSizeListArray.from_arrays(arr, dims[k], mask=outer)
        else:
            counts = np.prod(shapes[:, :k], axis=1, dtype=np.int64) if k else np.ones(len(shapes), np.int64)
            offsets = np.concatenate([[0], np.cumsum(np.repeat(shapes[:, k], counts))]).astype(np.int32)
            arr = pa.ListArray.from_arrays(pa.array(offsets), arr, mask=outer)
    return arr


def _encode_table(column: OutputColumn, n: int, results: Sequence[tuple[np.ndarray, np.ndarray]],
                  valid: np.ndarray) -> pa.Array:
    """A row table [K, F] (first field the batch index within each run) -> one list of structs per row."""
    fields = column.fields or ()
    parts, owners = [], []
    for rows, table in results:
        index = table[:, 0]
        if table.size and (np.any(index != np.round(index)) or index.min() < 0 or index.max() >= len(rows)):
            raise InputError(f"output {column.name!r}: batch_index outside [0, {len(rows)}) in a run of {len(rows)} rows")
        owners.append(rows[index.astype(np.int64)])
        parts.append(table[:, 1:])
    owner = np.concatenate(owners) if owners else np.zeros(0, np.int64)
    body = np.concatenate(parts) if parts else np.zeros((0, len(fields) - 1), np.dtype(column.spec.dtype))
    order = np.argsort(owner, kind="stable")
    owner, body = owner[order], body[order]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=n))]).astype(np.int32)
    struct = pa.StructArray.from_arrays([pa.array(body[:, j]) for j in range(body.shape[1])], names=list(fields[1:]))
    return pa.ListArray.from_arrays(pa.array(offsets), struct, mask=pa.array(~valid) if (~valid).any() else None)
