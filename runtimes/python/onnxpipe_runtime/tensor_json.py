"""Tensor JSON: the language-neutral named-tensor format (docs/tensor-json.md)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from onnxpipe_runtime.errors import InputError

__all__ = ["DTYPES", "decode", "encode", "dumps", "loads", "load", "dump"]

#: tensor-JSON dtype name -> numpy dtype (strings are numpy object arrays of ``str``)
DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "int64": np.dtype(np.int64),
    "int32": np.dtype(np.int32),
    "uint8": np.dtype(np.uint8),
    "int8": np.dtype(np.int8),
    "bool": np.dtype(np.bool_),
    "string": np.dtype(object),
}
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def dtype_name(array: np.ndarray) -> str:
    """The tensor-JSON name of an array's dtype."""
    if array.dtype.kind in "USO":
        return "string"
    for name, dt in DTYPES.items():
        if name != "string" and array.dtype == dt:
            return name
    raise InputError(f"dtype {array.dtype} has no tensor-JSON name; expected one of {sorted(DTYPES)}")


def _float_out(v: float, single: bool) -> Any:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    if single:
        # shortest decimal that round-trips at float32 precision
        return float(np.format_float_positional(np.float32(v), unique=True, trim="-"))
    return float(v)


def encode(array: Any) -> dict[str, Any]:
    """One array -> ``{"dtype", "shape", "data"}``."""
    a = np.asarray(array)
    name = dtype_name(a)
    flat = a.reshape(-1)
    if name in ("float32", "float64"):
        single = name == "float32"
        data: list[Any] = [_float_out(float(v), single) for v in flat]
    elif name == "bool":
        data = [bool(v) for v in flat]
    elif name == "string":
        data = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in flat]
    else:
        data = [int(v) for v in flat]
    return {"dtype": name, "shape": [int(d) for d in a.shape], "data": data}


def decode(name: str, obj: Any) -> np.ndarray:
    """``{"dtype", "shape", "data"}`` -> array; errors name the tensor and the field."""
    if not isinstance(obj, Mapping):
        raise InputError(f"tensor {name!r}: expected an object with dtype, shape and data, got {type(obj).__name__}")
    missing = [k for k in ("dtype", "shape", "data") if k not in obj]
    if missing:
        raise InputError(f"tensor {name!r}: missing field(s) {missing}; expected dtype, shape and data")
    dtype = obj["dtype"]
    if dtype not in DTYPES:
        raise InputError(f"tensor {name!r}: dtype {dtype!r} is not one of {sorted(DTYPES)}")
    shape = obj["shape"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InputError(f"tensor {name!r}: shape must be a list of non-negative integers, got {shape!r}")
    data = obj["data"]
    if not isinstance(data, list):
        raise InputError(f"tensor {name!r}: data must be a flat list, got {type(data).__name__}")
    count = math.prod(shape)
    if len(data) != count:
        raise InputError(f"tensor {name!r}: shape {shape} needs {count} values but data has {len(data)}")
    values = [_decode_value(name, dtype, i, v) for i, v in enumerate(data)]
    if dtype == "string":
        arr = np.empty(count, dtype=object)
        arr[:] = values
        return arr.reshape(shape)
    try:
        return np.array(values, dtype=DTYPES[dtype]).reshape(shape)
    except OverflowError as e:
        raise InputError(f"tensor {name!r}: a value does not fit {dtype}: {e}") from e


def _decode_value(name: str, dtype: str, i: int, v: Any) -> Any:
    where = f"tensor {name!r}: data[{i}]"
    if dtype == "string":
        if not isinstance(v, str):
            raise InputError(f"{where} is {v!r}; expected a string")
        return v
    if dtype == "bool":
        if not isinstance(v, bool):
            raise InputError(f"{where} is {v!r}; expected true or false")
        return v
    if dtype in ("float32", "float64"):
        if isinstance(v, str):
            if v not in _SPECIAL:
                raise InputError(f"{where} is {v!r}; expected a number, 'NaN', 'Infinity' or '-Infinity'")
            return _SPECIAL[v]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InputError(f"{where} is {v!r}; expected a number")
        return v
    if isinstance(v, bool) or not isinstance(v, int):
        raise InputError(f"{where} is {v!r}; expected an integer for {dtype}")
    info = np.iinfo(DTYPES[dtype])
    if not info.min <= v <= info.max:
        raise InputError(f"{where} is {v}; out of range for {dtype} [{info.min}, {info.max}]")
    return v


def dumps(tensors: Mapping[str, Any], *, indent: int | None = None) -> str:
    return json.dumps({k: encode(v) for k, v in tensors.items()}, indent=indent, ensure_ascii=False, allow_nan=False)


def loads(text: str) -> dict[str, np.ndarray]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"tensor JSON: not valid JSON ({e})") from e
    if not isinstance(doc, dict):
        raise InputError(f"tensor JSON: expected an object of named tensors, got {type(doc).__name__}")
    return {k: decode(k, v) for k, v in doc.items()}


def load(path: str | Path) -> dict[str, np.ndarray]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"tensor JSON file {str(path)!r}: cannot read it ({e.strerror})") from e
    return loads(text)


def dump(tensors: Mapping[str, Any], path: str | Path) -> None:
    Path(path).write_text(dumps(tensors) + "\n", encoding="utf-8")
