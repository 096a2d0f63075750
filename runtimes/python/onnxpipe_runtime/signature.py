"""A pipeline's signature: from the manifest, else from ONNX Runtime's own input/output info."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import math

import numpy as np

from onnxpipe_runtime.errors import InputError, ModelLoadError
from onnxpipe_runtime.tensor_json import DTYPES

if TYPE_CHECKING:
    from onnxpipe_runtime.format import Manifest

Dim = int | str | None

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(bool)": "bool",
    "tensor(string)": "string",
}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output. ``shape``: int = fixed, str = named dynamic dim, None = unnamed dynamic dim."""

    name: str
    dtype: str
    shape: tuple[Dim, ...]
    optional: bool = False
    default: Any = None
    range: tuple[float, float] | None = None  # inclusive bounds of a run-time parameter (manifest "range")

    @property
    def is_parameter(self) -> bool:
        """A run-time parameter (threshold): an optional float scalar with a default."""
        return self.optional and self.shape == () and self.dtype in ("float32", "float64")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}
        if self.optional:
            d["optional"] = True
            d["default"] = self.default
        if self.range is not None:
            d["range"] = list(self.range)
        return d


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    labels: tuple[str, ...] | None = None
    source: str = "manifest"  # or "onnxruntime" for a plain ONNX file
    domains: tuple[str, ...] = field(default_factory=tuple)

    def input(self, name: str) -> TensorSpec | None:
        return next((s for s in self.inputs if s.name == name), None)

    @property
    def required_inputs(self) -> tuple[TensorSpec, ...]:
        return tuple(s for s in self.inputs if not s.optional)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "labels": list(self.labels) if self.labels is not None else None,
            "domains": list(self.domains),
        }


def _spec_from_manifest(entry: Any, where: str) -> TensorSpec:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise ModelLoadError(f"manifest {where}: expected an object with a name, got {entry!r}")
    dtype = entry.get("dtype")
    if dtype not in DTYPES:
        raise ModelLoadError(f"manifest {where} {entry['name']!r}: dtype {dtype!r} is not one of {sorted(DTYPES)}")
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(d is None or isinstance(d, (int, str)) for d in shape):
        raise ModelLoadError(f"manifest {where} {entry['name']!r}: shape must be a list of int/str/null, got {shape!r}")
    rng = entry.get("range")
    if rng is not None and not (isinstance(rng, list) and len(rng) == 2
                                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in rng)):
        raise ModelLoadError(f"manifest {where} {entry['name']!r}: range must be [low, high], got {rng!r}")
    return TensorSpec(entry["name"], dtype, tuple(shape), bool(entry.get("optional", False)), entry.get("default"),
                      (float(rng[0]), float(rng[1])) if rng is not None else None)


def from_manifest(manifest: Manifest) -> Signature:
    return Signature(
        inputs=manifest.inputs,
        outputs=manifest.outputs,
        labels=manifest.labels,
        source="manifest",
        domains=tuple(d.domain for d in manifest.domains),
    )


def _spec_from_ort(arg: Any, optional: bool = False) -> TensorSpec:
    dtype = _ORT_TYPES.get(arg.type)
    if dtype is None:
        raise ModelLoadError(f"{arg.name!r}: type {arg.type} is not supported; expected one of {sorted(_ORT_TYPES)}")
    shape = tuple(d if isinstance(d, (int, str)) else None for d in arg.shape)
    return TensorSpec(arg.name, dtype, shape, optional)


def from_session(session: Any, domains: tuple[str, ...] = ()) -> Signature:
    inputs = [_spec_from_ort(a) for a in session.get_inputs()]
    inputs += [_spec_from_ort(a, optional=True) for a in session.get_overridable_initializers()]
    return Signature(
        inputs=tuple(inputs),
        outputs=tuple(_spec_from_ort(a) for a in session.get_outputs()),
        labels=None,
        source="onnxruntime",
        domains=domains,
    )


def verification_status(manifest: Manifest | None) -> str:
    """``"passed"``, ``"failed"`` or ``"not run"`` (:attr:`Manifest.verification_status`); ``"unknown"`` for a
    plain ONNX file."""
    return manifest.verification_status if manifest is not None else "unknown"


def convert_parameter(spec: TensorSpec, value: Any) -> np.ndarray:
    """A run-time parameter as a 0-d array of the spec's dtype, checked the same way whatever its Python type.

    Accepted: a real number as a Python int or float, a numpy integer or floating scalar, or a 0-d array of
    those (float64 values are rounded to float32 as the graph computes in float32). Refused: bool, strings,
    arrays with elements, NaN or infinity, and a value outside the manifest's ``range``.
    """
    arr = np.asarray(value) if not isinstance(value, (str, bytes)) else np.asarray(value, dtype=object)
    kind = type(value).__name__ if not isinstance(value, np.ndarray) else f"array of dtype {arr.dtype}"
    rng = f" in [{spec.range[0]:g}, {spec.range[1]:g}]" if spec.range is not None else ""
    expected = f"expected one number{rng} (int, float, a numpy scalar or a 0-d array)"
    if arr.dtype.kind not in "iuf" or isinstance(value, (bool, np.bool_)):
        raise InputError(f"input {spec.name!r}: {kind} {value!r} given, {expected}")
    if arr.shape != ():
        raise InputError(f"input {spec.name!r}: shape {list(arr.shape)} given, {expected}")
    number = float(arr)
    if not math.isfinite(number):
        raise InputError(f"input {spec.name!r}: {number} given, {expected}")
    if spec.range is not None and not spec.range[0] <= number <= spec.range[1]:
        raise InputError(f"input {spec.name!r}: {number:g} given, {expected}")
    return np.asarray(number, dtype=DTYPES[spec.dtype])
