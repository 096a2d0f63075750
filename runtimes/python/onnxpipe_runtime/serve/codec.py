"""Tensors between the Open Inference Protocol and numpy: datatypes, typed ``contents``, raw bytes.

Raw data is little-endian and row-major; a BYTES tensor's raw data is, per element, a 4-byte little-endian
length followed by that many bytes. Nothing is allocated from a client's claimed shape before the shape has
been checked against the limits (``limits.Budget``) and the data actually sent, so a malformed request costs
no more memory than its size; raw numeric data is used in place (a read-only view of the request), not copied.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from onnxpipe_runtime.serve.limits import Budget, Limits
from onnxpipe_runtime.serve.status import RequestError, clip
from onnxpipe_runtime.signature import TensorSpec
from onnxpipe_runtime.tensor_json import DTYPES as DTYPES_NUMPY
from onnxpipe_runtime.tensor_json import WIDENS_FROM

__all__ = ["DATATYPES", "datatype_of", "decode_input", "encode_output", "metadata_shape", "pack_bytes", "unpack_bytes"]

#: tensor-JSON dtype name -> protocol datatype
DATATYPES: dict[str, str] = {
    "float32": "FP32",
    "float64": "FP64",
    "int64": "INT64",
    "int32": "INT32",
    "uint8": "UINT8",
    "int8": "INT8",
    "bool": "BOOL",
    "string": "BYTES",
}
_NUMPY: dict[str, np.dtype] = {
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "INT64": np.dtype("<i8"),
    "INT32": np.dtype("<i4"),
    "UINT8": np.dtype("u1"),
    "INT8": np.dtype("i1"),
    "BOOL": np.dtype("?"),
}
_DTYPE_OF_DATATYPE: dict[str, str] = {v: k for k, v in DATATYPES.items()}
_DATATYPE_OF: dict[np.dtype, str] = {dt.newbyteorder("="): name for name, dt in _NUMPY.items()}
#: protocol datatype -> the InferTensorContents field that carries it when typed
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_ALL_FIELDS = sorted(set(CONTENTS_FIELD.values()))


def datatype_of(array: np.ndarray) -> str:
    """The protocol datatype of an output array (strings -> BYTES)."""
    name = _DATATYPE_OF.get(array.dtype)
    if name is not None:
        return name
    if array.dtype.kind in "USO":
        return "BYTES"
    raise RequestError("RUNTIME", f"the model produced dtype {array.dtype}, which has no protocol datatype")


def metadata_shape(spec: TensorSpec) -> list[int]:
    """The manifest shape with every dynamic dimension as -1."""
    return [d if isinstance(d, int) else -1 for d in spec.shape]


def _describe(spec: TensorSpec) -> str:
    return f"{DATATYPES[spec.dtype]} {metadata_shape(spec)}"


def unpack_bytes(name: str, raw: bytes, count: int) -> list[bytes]:
    """Split a raw BYTES tensor into its ``count`` elements; errors name the input and the offset."""
    out: list[bytes] = []
    pos, n = 0, len(raw)
    view = memoryview(raw)
    while pos < n:
        if len(out) == count:
            raise RequestError(
                "INVALID_INPUT",
                f"input {name!r}: raw BYTES data has {n - pos} bytes left after the {count} element(s) its shape "
                "holds; expected exactly one 4-byte length + bytes per element",
            )
        if pos + 4 > n:
            raise RequestError(
                "INVALID_INPUT",
                f"input {name!r}: raw BYTES data ends inside the 4-byte length of element {len(out)} (offset {pos})",
            )
        (size,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + size > n:
            raise RequestError(
                "INVALID_INPUT",
                f"input {name!r}: element {len(out)} claims {size} bytes but only {n - pos} remain in raw data",
            )
        out.append(bytes(view[pos : pos + size]))
        pos += size
    if len(out) != count:
        raise RequestError(
            "INVALID_INPUT", f"input {name!r}: raw BYTES data holds {len(out)} element(s), its shape needs {count}"
        )
    return out


def pack_bytes(values: Iterable[Any]) -> bytes:
    """Elements (str as UTF-8, or bytes) -> raw BYTES data."""
    parts: list[bytes] = []
    for v in values:
        b = v if isinstance(v, bytes) else str(v).encode("utf-8")
        parts.append(struct.pack("<I", len(b)))
        parts.append(b)
    return b"".join(parts)


def _strings(name: str, elements: Sequence[bytes]) -> list[str]:
    out = []
    for i, b in enumerate(elements):
        try:
            out.append(b.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise RequestError(
                "INVALID_INPUT", f"input {name!r}: element {i} is not valid UTF-8 ({e.reason} at byte {e.start})"
            ) from e
    return out


def decode_input(spec: TensorSpec, tensor: Any, raw: bytes | None, budget: Budget | None = None) -> np.ndarray:
    """One request input -> an array of the spec's dtype and the tensor's shape.

    ``tensor`` is a ``ModelInferRequest.InferInputTensor``; ``raw`` its ``raw_input_contents`` entry or None
    when the request sends typed ``contents``; ``budget`` the request's limits (default: spec/limits.json's),
    charged before allocating.
    Raises RequestError(INVALID_INPUT, or TOO_LARGE over a limit) naming the input. A raw numeric input is
    a read-only view of ``raw``.
    """
    name = spec.name
    want = DATATYPES[spec.dtype]
    if tensor.datatype != want:
        narrow = _DTYPE_OF_DATATYPE.get(tensor.datatype)
        if narrow in WIDENS_FROM[spec.dtype]:  # a lossless widening (spec/dtypes.json), as in every runtime
            given_spec = dataclasses.replace(spec, dtype=narrow)
            return decode_input(given_spec, tensor, raw, budget).astype(DTYPES_NUMPY[spec.dtype])
        given = clip(tensor.datatype, quote=False) if tensor.datatype else "(empty)"
        accepted = ", ".join(DATATYPES[d] for d in (spec.dtype, *WIDENS_FROM[spec.dtype]))
        raise RequestError("INVALID_INPUT", f"input {name!r}: datatype {given} given, expected {_describe(spec)} "
                                            f"(accepted: {accepted})")
    shape = list(tensor.shape)
    if any(d < 0 for d in shape):
        raise RequestError("INVALID_INPUT", f"input {name!r}: shape {_clip_shape(shape)} has a negative dimension")
    if len(shape) != len(spec.shape):
        raise RequestError(
            "INVALID_INPUT",
            f"input {name!r}: rank {len(shape)} (shape {_clip_shape(shape)}) given, expected {_describe(spec)}",
        )
    budget = budget if budget is not None else Budget(Limits())
    count = budget.elements(name, shape)
    if raw is not None:
        if want == "BYTES":
            budget.string_bytes(name, max(0, len(raw) - 4 * count))
            return _object_array(_strings(name, unpack_bytes(name, raw, count)), shape)
        dt = _NUMPY[want]
        if len(raw) != count * dt.itemsize:
            raise RequestError(
                "INVALID_INPUT",
                f"input {name!r}: raw data has {len(raw)} bytes, shape {shape} of {want} needs {count * dt.itemsize}",
            )
        if want == "BOOL":
            bad = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) > 1)
            if bad.size:
                raise RequestError(
                    "INVALID_INPUT", f"input {name!r}: raw BOOL element {int(bad[0])} is {raw[bad[0]]}; expected 0 or 1"
                )
        view = np.frombuffer(raw, dtype=dt)  # read-only: nothing downstream writes into inputs
        if not dt.isnative:  # a big-endian host: one copy into native order
            view = view.astype(dt.newbyteorder("="))
        return view.reshape(shape)
    return _decode_typed(spec, tensor, shape, count, budget)


def _clip_shape(shape: list[int]) -> str:
    return str(shape) if len(shape) <= 8 else f"[{', '.join(map(str, shape[:8]))}, ...] ({len(shape)} dims)"


def _decode_typed(spec: TensorSpec, tensor: Any, shape: list[int], count: int, budget: Budget) -> np.ndarray:
    name, want = spec.name, DATATYPES[spec.dtype]
    field = CONTENTS_FIELD[want]
    contents = tensor.contents
    wrong = [f for f in _ALL_FIELDS if f != field and len(getattr(contents, f))]
    if wrong:
        raise RequestError(
            "INVALID_INPUT", f"input {name!r}: values given in contents.{wrong[0]}, expected {want} values in contents.{field}"
        )
    values = getattr(contents, field)
    if len(values) != count:
        raise RequestError(
            "INVALID_INPUT",
            f"input {name!r}: contents.{field} has {len(values)} value(s), shape {shape} needs {count}",
        )
    if want == "BYTES":
        elements = list(values)
        budget.string_bytes(name, sum(len(b) for b in elements))
        return _object_array(_strings(name, elements), shape)
    dt = _NUMPY[want].newbyteorder("=")
    if field in ("int_contents", "uint_contents") and dt.itemsize < 4 and count:
        wide = np.array(values, dtype=np.int64)
        info = np.iinfo(dt)
        if wide.min() < info.min or wide.max() > info.max:
            raise RequestError(
                "INVALID_INPUT",
                f"input {name!r}: values in [{wide.min()}, {wide.max()}] given, expected {want} in [{info.min}, {info.max}]",
            )
        return wide.astype(dt).reshape(shape)
    return np.array(values, dtype=dt).reshape(shape)


def _object_array(values: list[str], shape: list[int]) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr.reshape(shape)


def encode_output(name: str, array: np.ndarray, tensor: Any, raw: bool) -> bytes | None:
    """Fill ``tensor`` (a ``ModelInferResponse.InferOutputTensor``); returns its raw bytes when ``raw``."""
    datatype = datatype_of(array)
    tensor.name = name
    tensor.datatype = datatype
    tensor.shape.extend(int(d) for d in array.shape)
    flat = array.reshape(-1)
    if raw:
        if datatype == "BYTES":
            return pack_bytes(flat)
        return np.ascontiguousarray(flat, dtype=_NUMPY[datatype]).tobytes()
    contents = tensor.contents
    field = getattr(contents, CONTENTS_FIELD[datatype])
    if datatype == "BYTES":
        field.extend(v if isinstance(v, bytes) else str(v).encode("utf-8") for v in flat)
    else:
        field.extend(flat.tolist())
    return None

