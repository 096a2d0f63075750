"""Tensor JSON: the language-neutral named-tensor format (docs/tensor-json.md)."""

from __future__ import annotations

import json
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnxpipe_runtime.errors import InputError, TooLargeError

__all__ = ["DTYPES", "LIMITS", "WIDENS_FROM", "Limits", "decode", "encode", "dumps", "loads", "load", "dump"]

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
#: dtype -> the dtypes an input of that dtype also accepts, converted losslessly (``spec/dtypes.json``)
WIDENS_FROM: dict[str, tuple[str, ...]] = {
    "float32": ("uint8", "int8"),
    "float64": ("float32", "uint8", "int8", "int32"),
    "int64": ("uint8", "int8", "int32"),
    "int32": ("uint8", "int8"),
    "uint8": (),
    "int8": (),
    "bool": (),
    "string": (),
}
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_FIELDS = ("dtype", "shape", "data")
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Limits:
    """What a reader of untrusted tensor JSON accepts (``spec/limits.json``), checked from the declared shapes
    and string lengths before any array is built; over a limit is :class:`TooLargeError`."""

    max_elements: int = 16_777_216
    max_string_bytes: int = 67_108_864
    max_document_bytes: int = 268_435_456


#: the contract's default limits
LIMITS = Limits()


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
        raise InputError(f"tensor {_clip(name)!r}: expected an object with dtype, shape and data, got {type(obj).__name__}")
    missing = [k for k in _FIELDS if k not in obj]
    if missing:
        raise InputError(f"tensor {_clip(name)!r}: missing field(s) {missing}; expected dtype, shape and data")
    unknown = [k for k in obj if k not in _FIELDS]
    if unknown:
        raise InputError(f"tensor {_clip(name)!r}: unknown field(s) {[_clip(k) for k in unknown]}; expected only dtype, shape "
                         "and data")
    dtype = obj["dtype"]
    if dtype not in DTYPES:
        raise InputError(f"tensor {_clip(name)!r}: dtype {_clip(repr(dtype))} is not one of {sorted(DTYPES)}")
    shape = obj["shape"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InputError(f"tensor {_clip(name)!r}: shape must be a list of non-negative integers, got {_clip(repr(shape))}")
    data = obj["data"]
    if not isinstance(data, list):
        raise InputError(f"tensor {_clip(name)!r}: data must be a flat list, got {type(data).__name__}")
    count = math.prod(shape)
    if len(data) != count:
        raise InputError(f"tensor {_clip(name)!r}: shape {shape} needs {count} values but data has {len(data)}")
    values = [_decode_value(name, dtype, i, v) for i, v in enumerate(data)]
    if dtype == "string":
        arr = np.empty(count, dtype=object)
        arr[:] = values
        return arr.reshape(shape)
    try:
        return np.array(values, dtype=DTYPES[dtype]).reshape(shape)
    except OverflowError as e:
        raise InputError(f"tensor {_clip(name)!r}: a value does not fit {dtype}: {e}") from e


def _decode_value(name: str, dtype: str, i: int, v: Any) -> Any:
    where = f"tensor {_clip(name)!r}: data[{i}]"
    if dtype == "string":
        if not isinstance(v, str):
            raise InputError(f"{where} is {_clip(repr(v))}; expected a string")
        _check_utf8(where, v)
        return v
    if dtype == "bool":
        if not isinstance(v, bool):
            raise InputError(f"{where} is {_clip(repr(v))}; expected true or false")
        return v
    if dtype in ("float32", "float64"):
        if isinstance(v, str):
            if v not in _SPECIAL:
                raise InputError(f"{where} is {_clip(repr(v))}; expected a number, 'NaN', 'Infinity' or '-Infinity'")
            return _SPECIAL[v]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InputError(f"{where} is {_clip(repr(v))}; expected a number")
        if not _finite_at(v, dtype):
            raise InputError(f"{where} is {_clip(str(v))}; out of range for {dtype} (the largest finite {dtype} is "
                             f"{np.finfo(DTYPES[dtype]).max}); write \"Infinity\" for infinity")
        return v
    if isinstance(v, bool) or not isinstance(v, int):
        raise InputError(f"{where} is {_clip(repr(v))}; expected an integer for {dtype} (no fraction or exponent)")
    info = np.iinfo(DTYPES[dtype])
    if not info.min <= v <= info.max:
        raise InputError(f"{where} is {v}; out of range for {dtype} [{info.min}, {info.max}]")
    return v


def _finite_at(v: float, dtype: str) -> bool:
    """Whether a JSON number stays finite at ``dtype`` (1e39 does not at float32, 1e400 not even at float64)."""
    try:
        f = float(v)
    except OverflowError:
        return False
    if math.isinf(f):
        return False
    with np.errstate(over="ignore"):
        return dtype != "float32" or bool(np.isfinite(np.float32(f)))


def dumps(tensors: Mapping[str, Any], *, indent: int | None = None) -> str:
    return json.dumps({k: encode(v) for k, v in tensors.items()}, indent=indent, ensure_ascii=False, allow_nan=False)


def loads(text: str, *, limits: Limits = LIMITS) -> dict[str, np.ndarray]:
    """Read a tensor-JSON document by the contract's rules (spec/README.md): a duplicate key, an unknown field,
    a number out of its dtype's range or a lone surrogate is :class:`InputError`; a document over ``limits`` is
    :class:`TooLargeError`, from the declared shapes before any array is built.

    Numeric ``data`` lists of large documents are read compactly: each is cut out of the text and parsed by numpy
    straight into its array (no Python object per element) after a linear syntax check; a list that check does
    not pass (strings, NaN, a malformed or out-of-range number) takes the element-by-element path, which names the
    element.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limits.max_document_bytes:
        raise TooLargeError(f"tensor JSON: the document has {size} bytes; the limit max_document_bytes is "
                            f"{limits.max_document_bytes}")
    skeleton, spans = _cut_numeric_data(text)
    try:
        doc = _parse(skeleton)
    except InputError:
        if not spans:
            raise
        doc = _parse(text)  # report the error at its place in the caller's text
    if not isinstance(doc, dict):
        raise InputError(f"tensor JSON: expected an object of named tensors, got {type(doc).__name__}")
    _check_limits(doc, limits, spans)
    out: dict[str, np.ndarray] = {}
    for name, obj in doc.items():
        span = _span_of(obj, spans)
        if span is not None:
            fast = _decode_span(name, obj, span)
            if fast is not None:
                out[name] = fast
                continue
            try:
                data = json.loads(f"[{span}]")
            except json.JSONDecodeError as e:
                raise InputError(f"tensor {_clip(name)!r}: data is not a valid JSON list ({e})") from e
            obj = dict(obj, data=data)
        out[name] = decode(name, obj)
    return out


def _parse(text: str) -> Any:
    """The JSON value of ``text``; duplicate keys and lone surrogates in keys refused."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise InputError(f"tensor JSON: not valid JSON ({e})") from e
    except RecursionError as e:
        raise InputError("tensor JSON: nested too deeply; a tensor's data is a flat list") from e


# ``"data": [ ... ]`` holding only number characters (no strings, no nesting): cut out and parsed by numpy
_DATA_LIST = re.compile(r'"data"\s*:\s*\[([-+0-9.eE,\s]*)\]')
# a list element that is not a JSON integer (at most 18 digits: int64 without overflow) / not a JSON number,
# found by a linear scan that keeps no state per element
_BAD_INT = re.compile(r"(?:^|,)\s*+(?!-?(?:0|[1-9][0-9]{0,17})\s*(?:,|$))")
_BAD_NUMBER = re.compile(r"(?:^|,)\s*+(?!-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?\s*(?:,|$))")
_COMPACT_FROM = 4096  # bytes: smaller documents take the plain path, as fast


def _cut_numeric_data(text: str) -> tuple[str, dict[str, str]]:
    spans: dict[str, str] = {}
    if len(text) < _COMPACT_FROM:
        return text, spans
    parts: list[str] = []
    last = 0
    mark = f"onnxpipe-span-{secrets.token_hex(8)}-"  # cannot collide with a string the caller sent
    for m in _DATA_LIST.finditer(text):
        key = f"{mark}{len(spans)}"
        spans[key] = m.group(1)
        parts += [text[last:m.start()], f'"data": "{key}"']
        last = m.end()
    parts.append(text[last:])
    return "".join(parts), spans


def _span_of(obj: Any, spans: Mapping[str, str]) -> str | None:
    if isinstance(obj, Mapping) and isinstance(obj.get("data"), str) and obj["data"] in spans:
        return spans[obj["data"]]
    return None


def _decode_span(name: str, obj: Mapping[str, Any], span: str) -> np.ndarray | None:
    """The array of a numeric data list parsed by numpy, or None to take the element-by-element path."""
    dtype, shape = obj.get("dtype"), obj.get("shape")
    if dtype not in DTYPES or dtype in ("string", "bool") or not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape) or set(obj) - set(_FIELDS):
        return None
    integer = dtype not in ("float32", "float64")
    if span.strip() and (_BAD_INT if integer else _BAD_NUMBER).search(span) is not None:
        return None
    # floats are parsed at their own dtype (numpy rounds through float64, as the element-by-element path does)
    parsed = np.dtype(np.int64) if integer else DTYPES[dtype]
    with np.errstate(over="ignore"):
        values = np.fromstring(span, dtype=parsed, sep=",") if span.strip() else np.empty(0, parsed)
    count = math.prod(shape)
    if values.size != count:
        raise InputError(f"tensor {_clip(name)!r}: shape {shape} needs {count} values but data has {values.size}")
    if integer:
        info = np.iinfo(DTYPES[dtype])
        bad = np.flatnonzero((values < info.min) | (values > info.max))
        if bad.size:
            raise InputError(f"tensor {_clip(name)!r}: data[{bad[0]}] is {values[bad[0]]}; out of range for {dtype} "
                             f"[{info.min}, {info.max}]")
        return values.astype(DTYPES[dtype], copy=False).reshape(shape)
    if not np.isfinite(values).all():
        return None  # out of range at this dtype: the element-by-element path says which and why
    return values.reshape(shape)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        _check_utf8("tensor JSON: a key", k)
        if k in out:
            raise InputError(f"tensor JSON: duplicate key {_clip(k)!r}; every key appears once")
        out[k] = v
    return out


def _check_limits(doc: Mapping[str, Any], limits: Limits, spans: Mapping[str, str]) -> None:
    elements = string_bytes = 0
    for name, obj in doc.items():
        if not isinstance(obj, Mapping):
            continue  # decode names the problem
        shape = obj.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            continue
        for d in shape:
            if d > limits.max_elements:
                raise TooLargeError(f"tensor {_clip(name)!r}: shape {_clip(str(shape))} has a dim of {d}; the limit "
                                    f"max_elements is {limits.max_elements}")
        elements += math.prod(shape) if all(d >= 0 for d in shape) else 0
        if elements > limits.max_elements:
            raise TooLargeError(f"tensor {_clip(name)!r}: the document holds {elements} elements up to here; the "
                                f"limit max_elements is {limits.max_elements}")
        if obj.get("dtype") == "string" and isinstance(obj.get("data"), list) and _span_of(obj, spans) is None:
            string_bytes += sum(len(v.encode("utf-8", "surrogatepass")) for v in obj["data"] if isinstance(v, str))
            if string_bytes > limits.max_string_bytes:
                raise TooLargeError(f"tensor {_clip(name)!r}: the document holds {string_bytes} bytes of strings up to "
                                    f"here; the limit max_string_bytes is {limits.max_string_bytes}")


def _check_utf8(where: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(f"{where}: {_clip(repr(text))} holds a lone surrogate at {e.start}; expected valid UTF-8 "
                         "text") from None


def _clip(text: str, limit: int = 200) -> str:
    """Echo at most ``limit`` characters of something the caller sent."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def load(path: str | Path, *, limits: Limits = LIMITS) -> dict[str, np.ndarray]:
    try:
        size = Path(path).stat().st_size
        if size > limits.max_document_bytes:
            raise TooLargeError(f"tensor JSON file {str(path)!r} has {size} bytes; the limit max_document_bytes is "
                                f"{limits.max_document_bytes}")
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as e:
        raise InputError(f"tensor JSON file {str(path)!r}: cannot read it ({e.strerror})") from e
    except UnicodeDecodeError as e:
        raise InputError(f"tensor JSON file {str(path)!r}: byte {e.start} is not valid UTF-8 ({e.reason})") from None
    return loads(text, limits=limits)


def dump(tensors: Mapping[str, Any], path: str | Path) -> None:
    Path(path).write_text(dumps(tensors) + "\n", encoding="utf-8")
