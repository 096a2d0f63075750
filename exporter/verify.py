"""Export-time verification: the file must agree with the eager pipeline on shapes other than the example.

Variants are generated along every dynamic axis (dims sharing a name change together): all axes grown, each
axis grown on its own, and all axes shrunk. Integer, boolean and string inputs are tiled/cropped from the
example (so ids, pixel values and lengths stay meaningful); float inputs are drawn uniformly from the example's
range. A seeded generator keeps the report identical from one export to the next.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from onnxpipe.errors import ExportVerificationError

#: default (atol, rtol) per dtype; integers, booleans and strings must match exactly
DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "float32": (1e-4, 1e-3),
    "float64": (1e-7, 1e-6),
    "float16": (1e-2, 1e-2),
}


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float


def resolve_tolerances(overrides: Mapping[str, Any] | None) -> dict[str, Tolerance]:
    """``{"float32": (atol, rtol), "<output name>": (atol, rtol)}`` merged over the defaults."""
    out = {k: Tolerance(*v) for k, v in DEFAULT_TOLERANCES.items()}
    for key, val in (overrides or {}).items():
        if isinstance(val, Tolerance):
            out[key] = val
            continue
        try:
            atol, rtol = (float(v) for v in val)
        except (TypeError, ValueError) as e:
            raise ValueError(f"tolerances[{key!r}]: expected (atol, rtol), got {val!r}") from e
        if atol < 0 or rtol < 0:
            raise ValueError(f"tolerances[{key!r}]: expected non-negative (atol, rtol), got {val!r}")
        out[key] = Tolerance(atol, rtol)
    return out


def _resample(x: np.ndarray, axis: int, n: int) -> np.ndarray:
    size = x.shape[axis]
    if size == 0:
        shape = list(x.shape)
        shape[axis] = n
        return np.zeros(shape, dtype=x.dtype) if x.dtype.kind not in "USO" else np.full(shape, "", dtype=object)
    return np.take(x, np.arange(n) % size, axis=axis)


def make_variant(example: Mapping[str, np.ndarray], dynamic: Mapping[str, Mapping[int, str]],
                 sizes: Mapping[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, x in example.items():
        y = x
        for axis, dim in (dynamic.get(name) or {}).items():
            if dim in sizes:
                y = _resample(y, axis, sizes[dim])
        if y.dtype.kind == "f" and y.size:
            lo = float(np.nanmin(x)) if x.size else 0.0
            hi = float(np.nanmax(x)) if x.size else 1.0
            if not np.isfinite(lo) or not np.isfinite(hi):
                lo, hi = -1.0, 1.0
            if hi == lo:
                hi = lo + 1.0
            y = rng.uniform(lo, hi, size=y.shape).astype(y.dtype)
        out[name] = np.ascontiguousarray(y)
    return out


def plan_variants(example: Mapping[str, np.ndarray], dynamic: Mapping[str, Mapping[int, str]]) -> list[tuple[str, dict[str, int]]]:
    """(description, {dim name: size}) for each generated case."""
    base: dict[str, int] = {}
    for name, axes in dynamic.items():
        for axis, dim in axes.items():
            base.setdefault(dim, int(example[name].shape[axis]))
    if not base:
        return []
    grow = {d: s + max(2, s // 2 + 1) for d, s in base.items()}
    plans = [("all dynamic axes grown", grow)]
    if len(base) > 1:
        for d, s in base.items():
            plans.append((f"only {d!r} changed", {**base, d: s + 3}))
    shrink = {d: max(1, s // 2) for d, s in base.items()}
    if shrink != base:
        plans.append(("all dynamic axes shrunk", shrink))
    return plans


@dataclass
class CaseResult:
    label: str
    shapes: dict[str, list[int]]
    diffs: dict[str, dict[str, float]]
    skipped: str | None = None  # why a generated case could not be used (the eager pipeline rejected it)
    output_shapes: dict[str, list[int]] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"case": self.label, "inputs": self.shapes, "outputs": self.diffs}
        if self.skipped is not None:
            d["skipped"] = self.skipped
        return d


#: columns of a detection table (ops/detect.py): batch index, box, score, class
_BATCH, _SCORE, _CLASS = 0, 5, 6


def match_detections(want: np.ndarray, got: np.ndarray, tol: Tolerance,
                     max_detections: int | None = None) -> tuple[int, int, float] | None:
    """Compare two ``[K, 7]`` detection tables whose order among near-equal scores is float noise.

    Per image, every row must find a row of the same class with all values within ``tol`` (any position).
    When both tables hold ``max_detections`` rows for an image (the list was cut), a row left without a
    partner is accepted if its score is within ``tol`` of the lowest score kept: noise decided which of two
    near-equal detections took the last place. Returns ``(rows out of order, rows swapped at the cut-off,
    largest difference between matched rows)``, or None when the tables differ otherwise.
    """
    if want.ndim != 2 or want.shape[1:] != (7,) or got.ndim != 2 or got.shape[1:] != (7,):
        return None
    moved = cut = 0
    worst = 0.0
    for b in np.union1d(want[:, _BATCH], got[:, _BATCH]):
        w, g = want[want[:, _BATCH] == b], got[got[:, _BATCH] == b]
        if len(w) != len(g):
            return None
        full = max_detections is not None and len(w) == max_detections
        floor = min([float(t[:, _SCORE].min()) for t in (w, g) if len(t)] or [0.0])
        used = np.zeros(len(g), bool)
        left = []
        for i, row in enumerate(w):
            close = np.all(np.abs(g - row) <= tol.atol + tol.rtol * np.abs(row), axis=1) & ~used
            close &= g[:, _CLASS] == row[_CLASS]
            if close.any():
                j = int(np.flatnonzero(close)[0])
                used[j] = True
                worst = max(worst, float(np.abs(g[j] - row).max()))
                moved += j != i
            else:
                left.append(row)
        unmatched = left + list(g[~used])
        near_cut = [abs(r[_SCORE] - floor) <= tol.atol + tol.rtol * abs(floor) + 1e-6 for r in unmatched]
        if unmatched and not (full and all(near_cut)):
            return None
        cut += len(left)
    return moved, cut, worst


def compare_outputs(
    label: str,
    inputs: Mapping[str, np.ndarray],
    want: Mapping[str, np.ndarray],
    got: Mapping[str, np.ndarray],
    tolerances: Mapping[str, Tolerance],
    is_example: bool,
    detection_outputs: Mapping[str, int | None] | None = None,
    label_maps: Mapping[str, float] | None = None,
) -> CaseResult:
    shapes = {k: [int(d) for d in np.shape(v)] for k, v in inputs.items()}
    diffs: dict[str, dict[str, float]] = {}
    for name, w in want.items():
        w, g = np.asarray(w), np.asarray(got[name])
        where = f"output {name!r} on {label} (input shapes {shapes})"
        if detection_outputs and name in detection_outputs:
            tol = tolerances.get(name) or tolerances.get(str(w.dtype)) or tolerances["float32"]
            matched = match_detections(w.astype(np.float64), g.astype(np.float64), tol, detection_outputs[name])
            if matched is not None:
                moved, cut, worst = matched
                diffs[name] = {"rows": int(len(g)), "max_abs_diff": float(f"{worst:.3g}")}
                if moved or cut:
                    diffs[name] |= {"rows_reordered": moved, "rows_swapped_at_cutoff": cut}
                continue
        if w.shape != g.shape:
            raise ExportVerificationError(
                f"{where}: the file gives shape {list(g.shape)}, eager PyTorch gives {list(w.shape)}. "
                + _cause(is_example)
            )
        if w.dtype.kind in "USO" or g.dtype.kind in "USO":
            ws, gs = w.astype(str), g.astype(str)
            bad = np.flatnonzero(ws.reshape(-1) != gs.reshape(-1))
            if bad.size:
                i = int(bad[0])
                raise ExportVerificationError(
                    f"{where}: {bad.size} of {w.size} strings differ; first at flat index {i}: "
                    f"file {gs.reshape(-1)[i]!r} vs eager {ws.reshape(-1)[i]!r}. " + _cause(is_example)
                )
            diffs[name] = {"mismatches": 0}
            continue
        if w.dtype.kind in "biu" and g.dtype.kind in "biu":
            bad = np.flatnonzero(w.reshape(-1) != g.reshape(-1))
            allowed = int((label_maps or {}).get(name, 0.0) * w.size)
            if 0 < bad.size <= allowed:  # arg-max label maps: flips where two classes tie within float noise
                diffs[name] = {"mismatches": int(bad.size)}
                continue
            if bad.size:
                i = int(bad[0])
                raise ExportVerificationError(
                    f"{where}: {bad.size} of {w.size} values differ (integers must match exactly); first at flat "
                    f"index {i}: file {g.reshape(-1)[i]} vs eager {w.reshape(-1)[i]}. " + _cause(is_example)
                )
            diffs[name] = {"mismatches": 0}
            continue
        tol = tolerances.get(name) or tolerances.get(str(w.dtype)) or tolerances["float32"]
        wf, gf = w.astype(np.float64), g.astype(np.float64)
        nan_ok = np.isnan(wf) == np.isnan(gf)
        both = ~np.isnan(wf) & ~np.isnan(gf)
        abs_diff = np.where(both, np.abs(wf - gf), 0.0)
        inf_same = np.where(np.isinf(wf) | np.isinf(gf), wf == gf, True)
        abs_diff = np.where(inf_same, np.nan_to_num(abs_diff, nan=0.0, posinf=0.0), np.inf)
        rel = abs_diff / np.maximum(np.abs(wf), 1e-12)
        max_abs = float(abs_diff.max()) if abs_diff.size else 0.0
        max_rel = float(np.where(both, rel, 0).max()) if rel.size else 0.0
        ok = nan_ok & (abs_diff <= tol.atol + tol.rtol * np.abs(np.nan_to_num(wf)))
        if not ok.all():
            raise ExportVerificationError(
                f"{where}: max abs diff {max_abs:.3g}, max rel diff {max_rel:.3g} exceed atol={tol.atol:g}, "
                f"rtol={tol.rtol:g} ({int((~ok).sum())} of {w.size} values). " + _cause(is_example)
                + " (tolerances=... overrides per dtype or per output)"
            )
        diffs[name] = {"max_abs_diff": float(f"{max_abs:.3g}"), "max_rel_diff": float(f"{max_rel:.3g}")}
    return CaseResult(label, shapes, diffs)


def _cause(is_example: bool) -> str:
    if is_example:
        return ("Likely cause: an op lowers to ONNX differently from its eager behaviour "
                "(check that op's export, or loosen tolerances if the difference is numerical noise).")
    return ("Likely cause: a loop length or a shape was traced as a constant at the example's size; "
            "write loops with torch.jit.script (or torch's scan/while_loop), compute sizes with tensor ops, "
            "or use the onnxpipe.ops catalog, which is exact under dynamic shapes.")


def verify(
    run_file: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    run_eager: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    example: Mapping[str, np.ndarray],
    dynamic: Mapping[str, Mapping[int, str]],
    extra: Sequence[Mapping[str, Any]],
    tolerances: Mapping[str, Tolerance],
    progress: Callable[[str], None],
    runtime_defaults: Mapping[str, float] | None = None,
    seed: int = 0,
    detection_outputs: Mapping[str, int | None] | None = None,
    label_maps: Mapping[str, float] | None = None,
) -> list[CaseResult]:
    """Run every case (the example, run-time inputs halved, generated variants, ``extra``) through both.

    ``detection_outputs``: ``{name: max_detections per image or None}`` for outputs that are ``[K, 7]``
    detection tables, compared with :func:`match_detections`. ``label_maps``: ``{name: fraction}`` for integer
    arg-max maps where that fraction of elements may differ.
    """
    rng = np.random.default_rng(seed)
    cases: list[tuple[str, dict[str, np.ndarray], bool]] = [("the example inputs", dict(example), True)]
    if runtime_defaults:
        # half the default stays inside [0, default]: valid for thresholds, and a value the graph must honour
        halved = {n: np.array(d / 2, dtype=np.float32) for n, d in runtime_defaults.items()}
        cases.append((f"the example inputs with run-time inputs at half their defaults {dict(sorted((n, float(v)) for n, v in halved.items()))}",
                      dict(example) | halved, True))
    for desc, sizes in plan_variants(example, dynamic):
        cases.append((f"generated variant ({desc}: {sizes})", make_variant(example, dynamic, sizes, rng), False))
    for i, user in enumerate(extra):
        cases.append((f"verify_inputs[{i}]", {k: np.asarray(v) if not hasattr(v, "numpy") else v.numpy()
                                             for k, v in user.items()}, False))
    results = []
    for k, (label, inputs, is_example) in enumerate(cases, 1):
        progress(f"verifying {k}/{len(cases)}: {label}")
        generated = label.startswith("generated")
        try:
            want = run_eager(inputs)
        except Exception as e:
            if not generated:
                raise
            # A generated input can be invalid for the pipeline (e.g. lengths larger than a shrunk time axis):
            # the case proves nothing either way. It is reported, and at least one other shape must pass below.
            shapes = {n: [int(d) for d in np.shape(v)] for n, v in inputs.items()}
            progress(f"  skipped: the eager pipeline rejects this generated input ({e})")
            results.append(CaseResult(label, shapes, {}, skipped=f"eager pipeline rejected it: {e}"))
            continue
        try:
            got = run_file(inputs)
        except Exception as e:
            shapes = {n: list(np.shape(v)) for n, v in inputs.items()}
            raise ExportVerificationError(
                f"the exported file fails on {label} (input shapes {shapes}) where eager PyTorch succeeds: {e}. "
                + _cause(is_example)
            ) from e
        result = compare_outputs(label, inputs, want, got, tolerances, is_example, detection_outputs, label_maps)
        result.output_shapes = {n: [int(d) for d in np.shape(v)] for n, v in got.items()}
        results.append(result)
    if len(cases) > 1 and not [r for r, c in zip(results, cases) if not c[2] and r.skipped is None]:
        reasons = "; ".join(f"{r.label}: {r.skipped}" for r in results if r.skipped)
        raise ExportVerificationError(
            "verification could not try any shape other than the example: the eager pipeline rejected every "
            f"generated input ({reasons}). Pass verify_inputs=[...] with valid inputs of other shapes."
        )
    return results
