"""Golden vectors (docs/vectors.md): load a set and check a pipeline's outputs against it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnxpipe_runtime import tensor_json
from onnxpipe_runtime.errors import InputError

DEFAULT_TOLERANCE = {"float32": (1e-5, 1e-4), "float64": (1e-9, 1e-7)}


@dataclass
class Case:
    name: str
    inputs: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]


@dataclass
class VectorSet:
    name: str
    folder: Path
    model: Path
    requires: list[str]
    tolerance: dict[str, tuple[float, float]]
    cases: list[Case]

    @property
    def generated(self) -> bool:
        return self.model.name.endswith(".generated.onnx")


def load_set(folder: str | Path) -> VectorSet:
    folder = Path(folder)
    spec_path = folder / "vector.json"
    try:
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"vector set {str(folder)!r}: cannot read vector.json ({e})") from e
    tol = {k: (float(v["atol"]), float(v["rtol"])) for k, v in spec.get("tolerance", {}).items()}
    cases = [
        Case(c["name"], tensor_json.load(folder / c["inputs"]), tensor_json.load(folder / c["expected"]))
        for c in spec["cases"]
    ]
    return VectorSet(spec["name"], folder, folder / spec["model"], list(spec.get("requires", [])),
                     tol or dict(DEFAULT_TOLERANCE), cases)


def mismatches(
    got: Mapping[str, Any],
    expected: Mapping[str, np.ndarray],
    tolerance: Mapping[str, tuple[float, ...]] | None = None,
) -> list[str]:
    """Human-readable differences (empty when ``got`` matches): exact for integers, booleans and strings,
    ``|got - want| <= atol + rtol * |want|`` for floats, NaN matching NaN. ``tolerance`` is keyed by dtype or
    by output name (the name wins); an output's third value, ``mismatch``, is the fraction of an integer
    output (an arg-max label map) that may differ."""
    tol = dict(DEFAULT_TOLERANCE) | dict(tolerance or {})
    problems: list[str] = []
    extra = sorted(set(got) - set(expected))
    if extra:
        problems.append(f"unexpected outputs {extra}")
    for name, want in expected.items():
        if name not in got:
            problems.append(f"{name}: missing")
            continue
        g = np.asarray(got[name])
        wd, gd = tensor_json.dtype_name(want), tensor_json.dtype_name(g)
        if wd != gd:
            problems.append(f"{name}: dtype {gd}, expected {wd}")
            continue
        if g.shape != want.shape:
            problems.append(f"{name}: shape {list(g.shape)}, expected {list(want.shape)}")
            continue
        if wd in ("float32", "float64"):
            atol, rtol = (tol.get(name) or tol.get(wd, (0.0, 0.0)))[:2]
            w64, g64 = want.astype(np.float64), g.astype(np.float64)
            close = np.isclose(g64, w64, atol=atol, rtol=rtol, equal_nan=True)
            if not close.all():
                i = int(np.flatnonzero(~close.reshape(-1))[0])
                problems.append(
                    f"{name}: {int((~close).sum())} of {want.size} values outside atol={atol:g} rtol={rtol:g}; "
                    f"first at flat index {i}: got {g64.reshape(-1)[i]!r}, expected {w64.reshape(-1)[i]!r}"
                )
        else:
            eq = g.reshape(-1) == want.reshape(-1)
            named = tol.get(name) or ()
            if len(named) > 2 and int((~eq).sum()) <= named[2] * want.size:
                continue
            if not np.all(eq):
                i = int(np.flatnonzero(~eq)[0])
                problems.append(
                    f"{name}: {int((~eq).sum())} of {want.size} values differ; first at flat index {i}: "
                    f"got {g.reshape(-1)[i]!r}, expected {want.reshape(-1)[i]!r}"
                )
    return problems
