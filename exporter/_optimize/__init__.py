"""``onnxpipe.optimize``: a faster file for the same pipeline, chosen under an accuracy gate.

    report = onnxpipe.optimize("minilm.onnx", validation=held_out, calibration=calib, path_out="minilm.opt.onnx")
    print(report.table())

Only the model stage changes: pre- and post-processing (tokenizer, resize, NMS, Viterbi, label lookup) keep
their nodes byte for byte, and thresholds stay run-time inputs. Candidates for the model stage:

| candidate            | what                                                                     |
|----------------------|--------------------------------------------------------------------------|
| ``fp32``             | the file as it is (the reference)                                        |
| ``fp32-fused``       | transformer fusions (Attention, SkipLayerNormalization, BiasGelu, ...)   |
| ``int8-dynamic``     | int8 weights per tensor, activations quantized at run time               |
| ``int8-dynamic-pc``  | the same with per-channel weights                                        |
| ``int8-static``      | QDQ int8, activations calibrated on ``calibration`` (standard ONNX ops)  |
| ``int8-weights``     | 8-bit block-wise weights (MatMulNBits), int8 compute                     |
| ``mixed``            | the fastest int8 candidate that failed the gate, with the nodes that hurt the pipeline's metric most kept in fp32 until it passes |
| ``openvino-f32/bf16``| the fp32 file with its model stage on OpenVINO (``onnxpipe-runtime[openvino]``, where this machine has it): no new graph, a recommendation in the manifest that ``Pipeline.load(accelerator="auto")`` follows |

Each candidate's final outputs (after post-processing) are compared with the fp32 file's on ``validation``
(``_gate``), its latency is measured with the runtime's own thread rule at batch 1 and a larger batch, and the
fastest that passes is written with an ``optimization`` entry in its manifest. If none passes, nothing is
written and :class:`onnxpipe.errors.GateError` carries the report.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxpipe._graph import with_metadata
from onnxpipe.errors import GateError, OptimizeError
from onnxpipe._optimize import _fusion, _quantize, _stage
from onnxpipe._optimize._gate import Gate, evaluate, margin, parse_gate, passes
from onnxpipe._optimize._harness import Harness, max_difference
from onnxpipe_runtime.errors import ModelLoadError
from onnxpipe_runtime.format import MANIFEST_KEY, VECTORS_KEY, Domain, Manifest

__all__ = ["ALL_CANDIDATES", "DEFAULT_CANDIDATES", "Candidate", "Gate", "OptimizeReport", "load_cases", "optimize", "parse_gate"]

log = logging.getLogger("onnxpipe")

ALL_CANDIDATES = ("fp32", "fp32-fused", "int8-dynamic", "int8-dynamic-pc", "int8-static", "int8-weights", "mixed",
                  "openvino-f32", "openvino-bf16")
DEFAULT_CANDIDATES = ALL_CANDIDATES
#: a fusion must reproduce the unfused stage this closely (max |difference| of the pipeline's float outputs)
FUSION_ATOL = 1e-4


@dataclass
class Candidate:
    """One row of the status table."""

    name: str
    precision: str
    method: str
    accelerator: str = "cpu"
    fusions: dict[str, int] = field(default_factory=dict)
    fp32_nodes: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    passed: bool | None = None
    p50_ms: dict[int, float] = field(default_factory=dict)
    eager_p50_ms: dict[int, float] = field(default_factory=dict)
    size: int = 0
    note: str = ""
    model: onnx.ModelProto | None = field(default=None, repr=False)

    def to_dict(self, reference: Candidate | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "candidate": self.name, "precision": self.precision, "method": self.method,
            "accelerator": self.accelerator,
            "fusions": dict(self.fusions), "metrics": {k: round(v, 6) for k, v in self.metrics.items()},
            "passed": self.passed, "p50_ms": {str(b): round(v, 3) for b, v in self.p50_ms.items()},
            "size": self.size,
        }
        if self.fp32_nodes:
            d["fp32_nodes"] = list(self.fp32_nodes)
        if reference is not None and reference.p50_ms:
            d["speedup_vs_fp32"] = {str(b): round(reference.p50_ms[b] / v, 3)
                                    for b, v in self.p50_ms.items() if b in reference.p50_ms and v > 0}
        if self.eager_p50_ms:
            d["speedup_vs_eager"] = {str(b): round(self.eager_p50_ms[b] / v, 3)
                                     for b, v in self.p50_ms.items() if b in self.eager_p50_ms and v > 0}
        if self.note:
            d["note"] = self.note
        return d


@dataclass
class OptimizeReport:
    """What ``optimize`` tried and chose. ``table()`` is the status table; ``to_dict()`` is JSON-ready."""

    source: Path
    path_out: Path | None
    gate: Gate
    candidates: list[Candidate]
    chosen: str | None
    batches: tuple[int, ...]
    seconds: float = 0.0
    validation_cases: int = 0
    calibration: str = ""

    def candidate(self, name: str) -> Candidate:
        return next(c for c in self.candidates if c.name == name)

    def to_dict(self) -> dict[str, Any]:
        ref = next((c for c in self.candidates if c.name == "fp32"), None)
        return {
            "source": str(self.source), "path_out": str(self.path_out) if self.path_out else None,
            "gate": self.gate.describe(), "chosen": self.chosen, "batches": list(self.batches),
            "validation_cases": self.validation_cases, "calibration": self.calibration,
            "seconds": round(self.seconds, 1), "candidates": [c.to_dict(ref) for c in self.candidates],
        }

    def table(self) -> str:
        """The status table: candidate, precision, fusions, p50 per batch, speedups, metrics, gate, size."""
        ref = next((c for c in self.candidates if c.name == "fp32"), None)
        has_eager = any(c.eager_p50_ms for c in self.candidates)
        head = ["candidate", "accelerator", "precision", "fusions"]
        head += [f"p50 ms b{b}" for b in self.batches]
        head += [f"x fp32 b{b}" for b in self.batches]
        if has_eager:
            head += [f"x eager b{b}" for b in self.batches]
        head += ["metric", "gate", "MB"]
        rows = [head]
        for c in self.candidates:
            fus = ", ".join(f"{k} {v}" for k, v in c.fusions.items()) or "-"
            row = [c.name + (" *" if c.name == self.chosen else ""), c.accelerator, c.precision, fus]
            row += [f"{c.p50_ms[b]:.2f}" if b in c.p50_ms else "-" for b in self.batches]
            row += [f"{ref.p50_ms[b] / c.p50_ms[b]:.2f}x" if ref and b in c.p50_ms and b in ref.p50_ms else "-"
                    for b in self.batches]
            if has_eager:
                row += [f"{c.eager_p50_ms[b] / c.p50_ms[b]:.2f}x" if b in c.p50_ms and b in c.eager_p50_ms else "-"
                        for b in self.batches]
            row.append(", ".join(f"{k} {v:.5f}" for k, v in c.metrics.items()) or "-")
            row.append({True: "pass", False: "FAIL", None: "-"}[c.passed] + (f" ({c.note})" if c.note else ""))
            row.append(f"{c.size / 1e6:.1f}" if c.size else "-")
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        foot = f"gate: {self.gate.describe()} on {self.validation_cases} validation case(s), against the fp32 file"
        foot += f"; chosen: {self.chosen or 'none'} (* above)"
        return "\n".join(lines + [foot])


# -- inputs ---------------------------------------------------------------------------------------------
def load_cases(source: Any, what: str = "validation") -> list[dict[str, np.ndarray]]:
    """Validation/calibration cases: a dict of arrays, a list of them, a tensor-JSON file (one object or a list
    of objects), or a folder of tensor-JSON files (sorted by name)."""
    from onnxpipe_runtime import tensor_json

    if source is None:
        raise OptimizeError(f"{what}: no inputs given; expected tensor-JSON cases (a file, a folder or a list)")
    if isinstance(source, Mapping):
        return [{k: np.asarray(v) if not isinstance(v, np.ndarray) else v for k, v in source.items()}]
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix == ".json")
            if not files:
                raise OptimizeError(f"{what}: folder {str(path)!r} has no .json files")
            out = []
            for f in files:
                out.extend(load_cases(f, what))
            return out
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise OptimizeError(f"{what}: cannot read {str(path)!r}: {e}") from e
        try:
            doc = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as e:
            raise OptimizeError(f"{what}: {str(path)!r} is not JSON: {e}") from e
        docs = doc if isinstance(doc, list) else [doc]
        cases = []
        for i, d in enumerate(docs):
            if not isinstance(d, dict) or not d:
                raise OptimizeError(f"{what}: {str(path)!r} case {i}: expected a tensor-JSON object "
                                    "{name: {dtype, shape, data}}, got " + type(d).__name__)
            try:
                cases.append({k: tensor_json.decode(k, v) for k, v in d.items()})
            except ValueError as e:
                raise OptimizeError(f"{what}: {str(path)!r} case {i}: {e}") from e
        return cases
    if isinstance(source, Sequence) and not isinstance(source, (bytes, str)):
        out = []
        for item in source:
            out.extend(load_cases(item, what))
        if not out:
            raise OptimizeError(f"{what}: the list of cases is empty")
        return out
    raise OptimizeError(f"{what}: expected a tensor-JSON file, a folder or a list of {{name: array}} dicts, got "
                        f"{type(source).__name__}")


def _check_cases(pipe: Any, cases: Sequence[Mapping[str, np.ndarray]], what: str) -> list[dict[str, np.ndarray]]:
    from onnxpipe_runtime.errors import InputError

    out = []
    for i, case in enumerate(cases):
        try:
            out.append(pipe.validate(case))
        except InputError as e:
            raise OptimizeError(f"{what} case {i}: {e}") from e
    return out


# -- measuring --------------------------------------------------------------------------------------------
def _batch_of(case: Mapping[str, np.ndarray], batch_inputs: Sequence[str], n: int) -> dict[str, np.ndarray]:
    """``case`` with its batch-axis inputs' rows cycled to ``n`` rows."""
    out = {}
    for k, v in case.items():
        if k in batch_inputs and v.ndim >= 1 and v.shape[0] > 0:
            idx = np.arange(n) % v.shape[0]
            out[k] = v[idx]
        else:
            out[k] = v
    return out


def _measure(files: Mapping[str, Path | tuple[Path, dict[str, Any]]], feeds: Mapping[int, dict[str, np.ndarray]], threads: int, runs: int,
             eager: Callable[[dict[str, np.ndarray]], Any] | None, say: Callable[[str], None]
             ) -> tuple[dict[str, dict[int, float]], dict[int, float]]:
    """p50 latency (ms) of each file per batch size, runs interleaved file by file; eager alongside if given."""
    from onnxpipe_runtime import Pipeline

    pipes = {}
    for name, target in files.items():
        path, kwargs = target if isinstance(target, tuple) else (target, {})
        pipes[name] = Pipeline.load(path, threads=threads, **kwargs)
    try:
        result: dict[str, dict[int, float]] = {name: {} for name in files}
        eager_ms: dict[int, float] = {}
        for b, feed in feeds.items():
            say(f"measuring {len(pipes)} candidate file(s) at batch {b} ({runs} runs each, interleaved)")
            samples: dict[str, list[float]] = {name: [] for name in pipes}
            eager_samples: list[float] = []
            for name, pipe in pipes.items():  # warm-up
                pipe.run(feed)
            if eager is not None:
                eager(feed)
            for _ in range(runs):
                for name, pipe in pipes.items():
                    t = time.perf_counter()
                    pipe.run(feed)
                    samples[name].append(time.perf_counter() - t)
                if eager is not None:
                    t = time.perf_counter()
                    eager(feed)
                    eager_samples.append(time.perf_counter() - t)
            for name, s in samples.items():
                result[name][b] = float(np.median(s) * 1000)
            if eager_samples:
                eager_ms[b] = float(np.median(eager_samples) * 1000)
        return result, eager_ms
    finally:
        for p in pipes.values():
            p.close()


def _cpu_features() -> dict[str, Any]:
    flags: list[str] = []
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name") and model in ("", platform.machine()):
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    flags = sorted(have & {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16",
                                           "amx_bf16", "amx_int8", "fma"})
                    break
    except OSError:
        pass
    import onnxruntime as ort

    return {"cpu": model, "flags": flags, "onnxruntime": ort.__version__}


# -- the file ---------------------------------------------------------------------------------------------
def _manifest_of(model: onnx.ModelProto) -> Manifest:
    for p in model.metadata_props:
        if p.key == MANIFEST_KEY:
            try:
                return Manifest.from_json(p.value)
            except ModelLoadError as e:
                raise OptimizeError(str(e)) from e
    raise OptimizeError(f"the file has no onnxpipe manifest (metadata {MANIFEST_KEY!r}): optimize works on files "
                        "written by export_pipeline, whose stages it can tell apart")


def _write_atomic(model: onnx.ModelProto, path: Path) -> None:
    data = model.SerializeToString(deterministic=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _with_metadata(model: onnx.ModelProto, manifest: Manifest, vectors: str | None) -> onnx.ModelProto:
    return with_metadata(model, {MANIFEST_KEY: manifest.to_json(), VECTORS_KEY: vectors})


def _refresh_vectors(text: str | None, path: Path, threads: int) -> str | None:
    """The embedded example inputs with the optimized file's own outputs, so ``onnxpipe verify`` checks a
    deployed copy against what this file computed (the fp32 export was checked against eager PyTorch)."""
    if text is None:
        return None
    from onnxpipe_runtime import Pipeline, tensor_json

    doc = json.loads(text)
    inputs = {k: tensor_json.decode(k, v) for k, v in doc["inputs"].items()}
    with Pipeline.load(path, threads=threads) as pipe:
        outputs = pipe.run(inputs)
    doc["expected"] = {k: tensor_json.encode(v) for k, v in outputs.items()}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def _node_counts(model: onnx.ModelProto) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in model.graph.node:
        stage = n.name.split("/", 1)[0] if "/" in n.name else ""
        counts[stage] = counts.get(stage, 0) + 1
    return counts


# -- the search -------------------------------------------------------------------------------------------
def optimize(
    path: str | os.PathLike[str],
    *,
    validation: Any,
    calibration: Any = None,
    gate: str | Gate | None = None,
    candidates: Sequence[str] | None = None,
    path_out: str | os.PathLike[str] | None = None,
    batch_sizes: Sequence[int] = (1, 8),
    threads: int | None = None,
    runs: int = 15,
    portable: bool = False,
    include_fp32: bool = True,
    eager: Callable[[dict[str, np.ndarray]], Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> OptimizeReport:
    """Try optimized versions of the model stage of ``path`` and write the fastest that passes ``gate``.

    Args:
        path: a file written by ``export_pipeline`` (it must carry the manifest; optimized files are refused).
        validation: held-out inputs for the gate (see :func:`load_cases`): the candidates' final outputs are
            compared with the fp32 file's on these.
        calibration: inputs to calibrate static int8 on (default: ``validation``, which the report says).
        gate: ``"cosine>=0.99,agreement>=0.99"`` or a :class:`Gate` (defaults: cosine 0.99, agreement 0.99,
            detection recall/precision 0.98).
        candidates: names from :data:`ALL_CANDIDATES` (default: all; ``fp32`` is always measured).
        path_out: where to write the chosen file (default: ``<name>.opt.onnx`` beside ``path``). Nothing is
            written when no candidate passes, nor when the fp32 file itself is the fastest.
        batch_sizes: latency is measured at each (the first case's rows cycled to the size).
        threads: threads per session (default: the runtime's rule, ``onnxpipe_runtime.threads``).
        portable: standard ONNX only in the model stage (no com.microsoft ops: no fusions, QDQ int8 only),
            for fixed-point backends and ``onnx.reference``.
        include_fp32: the fp32 file competes too (default); False writes the fastest optimized candidate that
            passes even when the fp32 file is faster (e.g. for size, or an integer-only backend).
        eager: optional callable running the eager pipeline on a feed, for the "x eager" column.
        progress: called with one line per step (default: the ``onnxpipe`` logger).

    Raises:
        OptimizeError: the file, the inputs or the options are not usable (the message says which).
        GateError: no candidate passed; ``.report`` holds the table. Nothing was written.
    """
    from onnxpipe_runtime import Pipeline
    from onnxpipe_runtime.threads import default_threads, parse_threads

    say = progress or log.info
    start = time.perf_counter()
    src = Path(path)
    gate_ = parse_gate(gate)
    wanted = list(candidates) if candidates is not None else list(DEFAULT_CANDIDATES)
    unknown = [c for c in wanted if c not in ALL_CANDIDATES]
    if unknown:
        raise OptimizeError(f"candidates: unknown {unknown}; expected some of {list(ALL_CANDIDATES)}")
    if portable:
        dropped = [c for c in wanted if c not in ("fp32", "int8-static", "mixed")]
        wanted = [c for c in wanted if c not in dropped]
        if dropped:
            say(f"portable: skipping {dropped} (they use com.microsoft ops)")
    sizes = sorted({int(b) for b in batch_sizes})
    if not sizes or sizes[0] < 1:
        raise OptimizeError(f"batch_sizes: expected positive integers, got {list(batch_sizes)}")
    n_threads = parse_threads(threads) if threads is not None else default_threads()
    if not src.is_file():
        raise OptimizeError(f"model file {str(src)!r} does not exist")
    try:
        full = onnx.load(str(src))
    except Exception as e:
        raise OptimizeError(f"model file {str(src)!r} is not an ONNX model: {e}") from e
    manifest = _manifest_of(full)
    if manifest.optimization:
        raise OptimizeError(
            f"{src.name} is already optimized ({manifest.optimization.get('chosen', '?')}, precision "
            f"{manifest.precision}); optimize the fp32 file it came from "
            f"({manifest.optimization.get('source', {}).get('name', 'unknown')})")
    out_path = Path(path_out) if path_out is not None else src.with_suffix(".opt.onnx")
    if out_path.resolve() == src.resolve():
        raise OptimizeError(f"path_out {str(out_path)!r} is the input file; write the optimized file elsewhere")

    with Pipeline.load(src, threads=n_threads) as pipe:
        val = _check_cases(pipe, load_cases(validation, "validation"), "validation")
        if calibration is None:
            calib = val
            calib_note = "the validation set (no calibration set given)"
        else:
            calib = _check_cases(pipe, load_cases(calibration, "calibration"), "calibration")
            calib_note = f"{len(calib)} calibration case(s)"
        batch_inputs = [s.name for s in pipe.signature.inputs if s.shape and not isinstance(s.shape[0], int)]
    say(f"optimizing {src.name}: model stage only; gate {gate_.describe()} on {len(val)} validation case(s)")

    stage = _stage.extract(full)
    harness = Harness(full, stage, val, n_threads)
    calib_feeds = harness.model_feeds if calibration is None else Harness(full, stage, calib, n_threads).model_feeds
    reference = harness.reference
    rows: list[Candidate] = []
    base = Candidate("fp32", "fp32", "as exported", model=stage.model, passed=True,
                     metrics=evaluate(reference, reference, manifest, gate_))
    rows.append(base)

    def judge(c: Candidate) -> Candidate:
        outs = harness.run(_model_of(c))
        c.metrics = evaluate(reference, outs, manifest, gate_)
        c.passed = passes(c.metrics, gate_)
        say(f"  {c.name}: {', '.join(f'{k} {v:.5f}' for k, v in c.metrics.items())} -> "
            f"{'pass' if c.passed else 'fail'}")
        return c

    # graph level: fusions, checked numerically against the unfused stage
    fp32_model = stage.model
    if not portable:
        say("fusing the model stage (attention, skip-layer-norm, bias-GELU, embedding layer norm, padding removal)")
        fused, counts = _fusion.transformer_fusions(stage.model)
        if counts:
            diff = max_difference(reference, harness.run(fused))
            if diff <= FUSION_ATOL:
                fp32_model = fused
            else:
                say(f"  fusions rejected: the fused stage differs by {diff:.2e} (> {FUSION_ATOL:g})")
        packed = onnx.ModelProto()
        packed.CopyFrom(fp32_model)
        n_packed = _fusion.pack_tokens(packed)
        if n_packed:
            diff = max_difference(reference, harness.run(packed))
            if diff <= FUSION_ATOL:
                say(f"  padding removal: {n_packed} token-wise nodes run on the valid tokens only")
                fp32_model = packed
            else:
                say(f"  padding removal rejected: the pipeline's outputs moved by {diff:.2e} (they read padded "
                    "positions)")
        if fp32_model is not stage.model and "fp32-fused" in wanted:
            rows.append(judge(Candidate("fp32-fused", "fp32", "fused", fusions=_fusion.fused_counts(fp32_model),
                                        model=fp32_model)))
    fusions = _fusion.fused_counts(fp32_model)

    # precision
    builders: list[tuple[str, str, Callable[[], onnx.ModelProto]]] = []
    if _quantize.quantizable(fp32_model, "dynamic"):
        builders.append(("int8-dynamic", "int8 dynamic, per-tensor weights",
                         lambda: _quantize.dynamic(fp32_model, per_channel=False)))
        builders.append(("int8-dynamic-pc", "int8 dynamic, per-channel weights",
                         lambda: _quantize.dynamic(fp32_model, per_channel=True)))
    static_base = stage.model if portable else fp32_model
    if _quantize.quantizable(static_base, "static"):
        builders.append(("int8-static", f"int8 static QDQ, per-channel, calibrated on {calib_note}",
                         lambda: _quantize.static(static_base, calib_feeds, per_channel=True)))
    if _quantize.quantizable(fp32_model, "weights"):
        builders.append(("int8-weights", "8-bit block-wise weights (MatMulNBits)",
                         lambda: _quantize.weights_int8(fp32_model)))
    for name, method, build in builders:
        if name not in wanted:
            continue
        say(f"building {name} ({method})")
        try:
            model = build()
        except Exception as e:  # a quantizer that cannot handle this graph is a finding, not a crash
            rows.append(Candidate(name, "int8", method, fusions=fusions, passed=False,
                                  note=f"quantizer failed: {str(e).splitlines()[0][:120]}"))
            continue
        rows.append(judge(Candidate(name, "int8", method, fusions=_fusion.fused_counts(model), model=model)))

    accel_targets = _accelerator_rows(src, wanted, portable, rows, val, reference, manifest, gate_, n_threads, say)
    finalists = [c for c in rows if c.passed and (c.model is not None or c.name in accel_targets)]
    failed_int8 = [c for c in rows if c.passed is False and c.model is not None and c.precision == "int8"
                   and c.name in ("int8-dynamic-pc", "int8-dynamic", "int8-static")]
    files: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="onnxpipe-optimize-") as tmp:
        def write_full(c: Candidate) -> Path:
            p = Path(tmp) / f"{c.name}.onnx"
            _write_atomic(_stage.replace(full, stage, _model_of(c)), p)
            c.size = p.stat().st_size
            return p

        # mixed precision: only when an int8 candidate failed and the user asked for it
        if "mixed" in wanted and failed_int8:
            for c in rows:
                if c.model is not None:
                    files[c.name] = write_full(c)
            times, _ = _measure({c.name: files[c.name] for c in failed_int8}, {sizes[-1]: _batch_of(
                val[0], batch_inputs, sizes[-1])}, n_threads, max(3, runs // 3), None, lambda s: None)
            fastest = min(failed_int8, key=lambda c: times[c.name][sizes[-1]])
            source = static_base if fastest.name == "int8-static" else fp32_model
            mixed = _mixed_search(fastest, source, harness, reference, manifest, gate_, say)
            if mixed is not None:
                rows.append(mixed)
                finalists.append(mixed)

        for c in rows:
            if c.model is not None and c.name not in files:
                files[c.name] = write_full(c)
        base.size = src.stat().st_size
        files["fp32"] = src
        timed: dict[str, Path | tuple[Path, dict[str, Any]]] = {
            c.name: files[c.name] for c in rows if c.passed and c.name in files}
        for name, kwargs in accel_targets.items():
            if rows[[c.name for c in rows].index(name)].passed:
                timed[name] = (src, kwargs)
        feeds = {b: _batch_of(val[0], batch_inputs, b) for b in sizes}
        say(f"measuring latency with {n_threads} thread(s) at batch {', '.join(map(str, sizes))}")
        times, eager_ms = _measure(timed, feeds, n_threads, runs, eager, say)
        for c in rows:
            if c.name in times:
                c.p50_ms = times[c.name]
                c.eager_p50_ms = dict(eager_ms)

        # the finalists as whole files: the gate is re-checked on the real thing
        for c in list(finalists):
            if c.name == "fp32" or c.name in accel_targets:  # those ran as the whole file already
                continue
            with Pipeline.load(files[c.name], threads=n_threads) as p:
                outs = [p.run(case) for case in val]
            c.metrics = evaluate(reference, outs, manifest, gate_)
            if not passes(c.metrics, gate_):
                c.passed = False
                c.note = "failed as a whole file"
                finalists.remove(c)

        def speed(c: Candidate) -> float:
            return float(np.exp(np.mean([np.log(c.p50_ms[b]) for b in sizes])))

        report = OptimizeReport(source=src, path_out=None, gate=gate_, candidates=rows, chosen=None,
                                batches=tuple(sizes), validation_cases=len(val), calibration=calib_note)
        ranked = sorted((c for c in finalists if c.p50_ms and (include_fp32 or c.name != "fp32")), key=speed)
        if not any(c.name != "fp32" for c in ranked):
            report.seconds = time.perf_counter() - start
            raise GateError(
                f"no candidate passed the gate {gate_.describe()} on {len(val)} validation case(s); nothing was "
                f"written to {str(out_path)!r}", report=report)
        best = ranked[0]
        report.chosen = best.name
        if best.name == "fp32":
            report.seconds = time.perf_counter() - start
            say("the fp32 file is the fastest that passes: nothing to write")
            return report

        chosen_file = files.get(best.name, src)  # an accelerator row keeps the fp32 graph
        optimized = onnx.load(str(chosen_file))
        vectors = next((p.value for p in full.metadata_props if p.key == VECTORS_KEY), None)
        vectors = _refresh_vectors(vectors, chosen_file, n_threads)
        counts = _node_counts(optimized)
        on_cpu = best.accelerator == "cpu"
        precision = (best.precision if not best.fp32_nodes else "mixed") if on_cpu else "fp32"
        domains = list(manifest.domains)
        if any(imp.domain == _fusion.MS_DOMAIN for imp in optimized.opset_import) and \
                not any(d.domain == _fusion.MS_DOMAIN for d in domains):
            domains.append(Domain(_fusion.MS_DOMAIN, "onnxruntime"))
        ref = rows[0]
        optimization = {
            "chosen": best.name,
            "source": {"name": src.name, "sha256": hashlib.sha256(src.read_bytes()).hexdigest()},
            "stages": {
                "pre": {"precision": "unchanged", "method": "unchanged"},
                "model": {"precision": precision if on_cpu else best.precision, "method": best.method,
                          "accelerator": best.accelerator,
                          "fusions": dict(best.fusions), **({"fp32_nodes": best.fp32_nodes} if best.fp32_nodes
                                                           else {})},
                "post": {"precision": "unchanged", "method": "unchanged"},
            },
            "gate": {"rule": gate_.describe(), "against": "the fp32 file's final outputs",
                     "validation_cases": len(val), "metrics": {k: round(v, 6) for k, v in best.metrics.items()},
                     "passed": True},
            "calibration": calib_note,
            "portable": portable,
            "measured_on": dict(_cpu_features(), threads=n_threads),
            "candidates": [c.to_dict(ref) for c in rows],
        }
        new_manifest = manifest.replace(
            stages=tuple(s.replace(nodes=counts.get(s.name, s.nodes)) for s in manifest.stages),
            precision=precision,
            accelerator=_recommendation(best) or manifest.accelerator,
            domains=tuple(sorted(domains, key=lambda d: d.domain)),
            optimization=optimization,
        )
        final = _with_metadata(optimized, new_manifest, vectors)
        _write_atomic(final, out_path)
    report.path_out = out_path
    report.seconds = time.perf_counter() - start
    say(f"wrote {out_path} ({out_path.stat().st_size:,} bytes): {best.name}, {report.seconds:.0f} s in all")
    return report


def _model_of(c: Candidate) -> onnx.ModelProto:
    """The candidate's model stage; only accelerator rows have none (they run the fp32 file as it is)."""
    if c.model is None:
        raise OptimizeError(f"candidate {c.name!r} ({c.method}) has no model stage of its own to evaluate or write")
    return c.model


def _accelerator_rows(src: Path, wanted: Sequence[str], portable: bool, rows: list[Candidate],
                      val: Sequence[Mapping[str, np.ndarray]], reference: Sequence[Mapping[str, np.ndarray]],
                      manifest: Manifest, gate: Gate, threads: int,
                      say: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """Rows for the fp32 file with its model stage on each accelerator this machine has (precision x accelerator),
    gated on the whole file's outputs. Returns {candidate name: Pipeline.load keyword arguments}."""
    from onnxpipe_runtime import Pipeline
    from onnxpipe_runtime.errors import PipelineError

    names = [c for c in wanted if c.startswith("openvino-")]
    if portable or not names:
        return {}
    try:
        from onnxpipe_runtime import accelerators

        available = [(a, p) for a, p in accelerators.candidates() if a != "cpu"]
    except ImportError:  # a runtime without accelerator support
        available = []
    targets: dict[str, dict[str, Any]] = {}
    for acc, prec in available:
        name = f"{acc}-{prec}"
        if name not in names:
            continue
        say(f"trying {name}: the fp32 file with its model stage on {acc} in {prec}, pre/post on the CPU")
        c = Candidate(name, str(prec), f"fp32 file, model stage on {acc} ({prec})", accelerator=acc)
        try:
            with Pipeline.load(src, threads=threads, accelerator=acc, precision=prec) as p:
                outs = [p.run(case) for case in val]
        except PipelineError as e:
            c.passed, c.note = False, f"{acc} failed: {str(e).splitlines()[0][:120]}"
            rows.append(c)
            continue
        c.metrics = evaluate(reference, outs, manifest, gate)
        c.passed = passes(c.metrics, gate)
        c.size = src.stat().st_size
        say(f"  {name}: {', '.join(f'{k} {v:.5f}' for k, v in c.metrics.items())} -> "
            f"{'pass' if c.passed else 'fail'}")
        rows.append(c)
        targets[name] = {"accelerator": acc, "precision": prec}
    missing = [n for n in names if n not in {f"{a}-{p}" for a, p in available}]
    if missing:
        say(f"  not available on this machine: {missing}")
    return targets


def _recommendation(best: Candidate) -> dict[str, Any] | None:
    """The manifest's ``accelerator`` entry that ``Pipeline.load(accelerator="auto")`` follows."""
    try:
        from onnxpipe_runtime import accelerators
    except ImportError:
        return None
    return {"recommended": best.accelerator, "precision": None if best.accelerator == "cpu" else best.precision,
            "cpu_features": list(accelerators.cpu_features())}


def _mixed_search(base: Candidate, fp32_model: onnx.ModelProto, harness: Harness, reference: Sequence[Mapping[str, np.ndarray]], manifest: Manifest,
                  gate: Gate, say: Callable[[str], None]) -> Candidate | None:
    """Keep the nodes that hurt the pipeline's metric most in fp32 until ``base``'s method passes the gate.

    Each quantizable node's harm is measured end to end: the pipeline with only that node quantized, scored by
    the gate's margin. Then the fewest most-harmful nodes are kept in fp32 (binary search over the count) and
    the result is checked as a whole. Mixes are spliced from ``base``'s fully quantized stage
    (``_quantize.splice``), so the quantizer runs once."""
    method = "static" if base.name == "int8-static" else "dynamic"
    nodes = _quantize.quantizable(fp32_model, method)
    if len(nodes) < 2:
        return None

    full_int8 = _model_of(base)

    def build(quantized: Sequence[str]) -> onnx.ModelProto:
        return _quantize.splice(fp32_model, full_int8, set(quantized))

    say(f"mixed precision from {base.name}: measuring each of {len(nodes)} nodes' effect on the pipeline's metric")
    harm: dict[str, float] = {}
    for i, n in enumerate(nodes, 1):
        metrics = evaluate(reference, harness.run(build([n])), manifest, gate)
        harm[n] = -margin(metrics, gate)
        if i % 6 == 0 or i == len(nodes):
            say(f"  {i}/{len(nodes)} nodes measured")
    order = sorted(nodes, key=lambda n: (-harm[n], nodes.index(n)))
    lo, hi = 1, len(nodes) - 1  # keep k most harmful in fp32; k = len(nodes) is plain fp32
    best: tuple[int, onnx.ModelProto, dict[str, float]] | None = None
    while lo <= hi:
        k = (lo + hi) // 2
        model = build(order[k:])
        metrics = evaluate(reference, harness.run(model), manifest, gate)
        ok = passes(metrics, gate)
        say(f"  {k} node(s) in fp32: margin {margin(metrics, gate):+.5f} -> {'pass' if ok else 'fail'}")
        if ok:
            best = (k, model, metrics)
            hi = k - 1
        else:
            lo = k + 1
    if best is None:
        say("  no mix passes short of leaving every node in fp32")
        return None
    k, model, metrics = best
    return Candidate("mixed", "int8", f"{base.method}; {k} of {len(nodes)} nodes kept in fp32 by measured harm",
                     fusions=_fusion.fused_counts(model), fp32_nodes=sorted(order[:k]), metrics=metrics,
                     passed=True, model=model)
