"""``export_pipeline``: pre + model + post -> one verified ONNX file with a manifest."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from onnxpipe import _graph, _segments, _torch_export
from onnxpipe._version import __version__
from onnxpipe.errors import ExportError, ExportVerificationError
from onnxpipe.stages import OnnxStage
from onnxpipe.verify import Tolerance, resolve_tolerances, verify
from onnxpipe_runtime.format import MANIFEST_KEY, VECTORS_KEY, VERIFICATION_STATES, Domain, Manifest, StageInfo
from onnxpipe_runtime.signature import TensorSpec

__all__ = ["ExportedPipeline", "Tolerance", "export_pipeline", "MANIFEST_KEY", "DEFAULT_OPSET"]

log = logging.getLogger("onnxpipe")

MAX_EMBEDDED_VECTORS = 256 * 1024  # bytes of JSON; larger examples are not embedded
DEFAULT_OPSET = 18
DOMAIN_LIBRARIES = {"ai.onnx.contrib": "onnxruntime-extensions"}


@dataclass
class ExportedPipeline:
    """What ``export_pipeline`` wrote: the file, its manifest, and a report (verification, op counts, size)."""

    path: Path
    manifest: Manifest
    report: dict[str, Any] = field(default_factory=dict)

    def load(self, **kwargs: Any) -> Any:
        """Open the file with the torch-free runtime (``onnxpipe_runtime.Pipeline``)."""
        from onnxpipe_runtime import Pipeline

        return Pipeline.load(self.path, **kwargs)


def _normalize_inputs(example_inputs: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(example_inputs, Mapping) or not example_inputs:
        raise ExportError(
            f"example_inputs: expected a non-empty dict {{input_name: tensor}}, got {type(example_inputs).__name__}"
        )
    out: dict[str, Any] = {}
    for name, value in example_inputs.items():
        if not isinstance(name, str) or not name:
            raise ExportError(f"example_inputs: input names must be non-empty strings, got {name!r}")
        if isinstance(value, torch.Tensor):
            out[name] = value.detach()
        elif isinstance(value, np.ndarray):
            out[name] = value.astype(object) if value.dtype.kind == "U" else _segments.to_torch(value)
        else:
            raise ExportError(
                f"example_inputs[{name!r}]: expected a torch.Tensor (or a numpy array; numpy str/object arrays for "
                f"strings), got {type(value).__name__}"
            )
    return out


def _normalize_axes(dynamic_axes: Mapping[str, Any] | None, inputs: Mapping[str, Any],
                    outputs: Sequence[str] = ()) -> dict[str, dict[int, str]]:
    """torch.onnx's form ({name: {axis: dim}} or {name: [axes]}) -> {name: {axis: dim}}; checks names and axes."""
    result: dict[str, dict[int, str]] = {}
    for name, axes in (dynamic_axes or {}).items():
        if name in inputs:
            rank = len(np.shape(inputs[name]))
        elif name in outputs:
            rank = None
        else:
            raise ExportError(
                f"dynamic_axes: {name!r} is not an input or output; inputs are {list(inputs)}"
                + (f", outputs {list(outputs)}" if outputs else "")
            )
        if isinstance(axes, Mapping):
            items = [(int(a), str(d)) for a, d in axes.items()]
        elif isinstance(axes, (list, tuple)):
            items = [(int(a), f"{name}_dim{int(a)}") for a in axes]
        else:
            raise ExportError(f"dynamic_axes[{name!r}]: expected {{axis: name}} or a list of axes, got {axes!r}")
        norm: dict[int, str] = {}
        for a, d in items:
            if rank is not None:
                if not -rank <= a < rank:
                    raise ExportError(f"dynamic_axes[{name!r}]: axis {a} is out of range for rank {rank}")
                a %= rank
            norm[a] = d
        result[name] = dict(sorted(norm.items()))
    return result


def say(msg: str) -> None:
    """Progress of a long export: logged to the ``onnxpipe`` logger (the CLI prints it on stderr)."""
    log.info(msg)


def export_pipeline(
    pre: Any,
    model: Any,
    post: Any,
    *,
    example_inputs: Mapping[str, Any],
    dynamic_axes: Mapping[str, Any] | None = None,
    path: str | os.PathLike[str],
    output_names: Sequence[str] | None = None,
    metadata: Mapping[str, str] | None = None,
    opset: int | None = None,
    verify: bool = True,
    exporter: str = "auto",
    verify_inputs: Sequence[Mapping[str, Any]] | None = None,
    tolerances: Mapping[str, Any] | None = None,
    embed_vectors: bool = True,
) -> ExportedPipeline:
    """Export ``inputs -> pre -> model -> post`` as ONE ONNX file at ``path`` and verify it.

    Args:
        pre, model, post: torch modules / callables, :class:`onnxpipe.OnnxStage` objects, :class:`onnxpipe.Chain`
            of those, or None. A tuple result is passed on positionally, a dict as keywords.
        example_inputs: ``{input_name: tensor}`` in graph-input order (strings: numpy str/object arrays).
        dynamic_axes: torch.onnx's form, e.g. ``{"image": {0: "batch", 1: "height"}}`` (inputs; outputs optional).
            Every declared input axis is dynamic in the file, or the export fails.
        output_names: names of the final outputs (default: the last stage's dict keys, else ``output_<i>``).
        metadata: extra string key/values stored in the manifest (``name`` names the pipeline).
        opset: default-domain opset (default 18; the IR version is chosen to match).
        verify: compare the file with the eager pipeline on the example and on generated variants along every
            dynamic axis, plus ``verify_inputs``; raise :class:`onnxpipe.ExportVerificationError` on a mismatch.
        exporter: ``"auto"`` (dynamo; TorchScript for stages containing ``torch.jit.script`` code), ``"dynamo"``
            or ``"torchscript"``.
        tolerances: ``{"float32": (atol, rtol)}`` or ``{"<output>": (atol, rtol)}`` overriding the defaults.
        embed_vectors: store the example inputs and the eager outputs in the file (metadata
            ``onnxpipe.vectors``, when under 256 KB of JSON) so ``onnxpipe verify FILE`` can check a deployed copy.

    Returns:
        :class:`ExportedPipeline` with ``path``, ``manifest`` and ``report``.
    """
    opset = DEFAULT_OPSET if opset is None else int(opset)
    _graph.ir_version_for(opset)
    if exporter not in _torch_export.EXPORTERS:
        raise ExportError(f"exporter: expected one of {list(_torch_export.EXPORTERS)}, got {exporter!r}")
    tols = resolve_tolerances(tolerances)
    path = Path(path)
    inputs = _normalize_inputs(example_inputs)
    if metadata is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ExportError(f"metadata: expected str -> str, got {dict(metadata)!r}")

    segments = _segments.split(pre, model, post)
    say("running the eager pipeline on the example inputs")
    values = _segments.trace_names(segments, inputs, output_names)
    final_outputs = list(segments[-1].output_names)
    axes = _normalize_axes(dynamic_axes, inputs, final_outputs)
    input_axes = {k: v for k, v in axes.items() if k in inputs}
    _segments.assign_runtime_inputs(segments, set(inputs) | set(final_outputs))

    # -- export each segment, threading dynamic dims from one boundary to the next ----------------------
    parts: list[_graph.Part] = []
    boundary_dims: dict[str, dict[int, str]] = dict(input_axes)
    exporters: list[str] = []
    for seg in segments:
        if seg.onnx_native:
            stage: OnnxStage = seg.steps[0]
            say(f"building {seg.name} ({stage.describe()}) as ONNX")
            part_model, renamed = _graph.split_passthrough(stage.build(opset))
            local_in = list(stage.input_names)
            local_out = [renamed.get(n, n) for n in stage.output_names]
            if seg.input_mode == "kwargs":
                bound_in = [seg.input_names[seg.input_local.index(n)] for n in local_in]
            else:
                bound_in = seg.input_names[: len(local_in)]
            boundary = dict(zip(local_in, bound_in)) | dict(zip(local_out, seg.output_names))
            exporters.append("onnx")
        else:
            kind = _torch_export.choose_exporter(seg, exporter)
            say(f"exporting {seg.name} ({seg.describe()}) with the {kind} exporter")
            examples = [values[n] for n in seg.input_names]
            dyn = {n: boundary_dims[n] for n in seg.input_names if boundary_dims.get(n)}
            part_model = _torch_export.export_segment(seg, examples, dyn, kind, opset)
            names = list(seg.input_names) + [n for n, _ in seg.runtime_inputs] + list(seg.output_names)
            boundary = {n: n for n in names}
            exporters.append(kind)
        for vi in part_model.graph.output:
            global_name = boundary.get(vi.name, vi.name)
            dims = _graph.dims_of(vi) or []
            boundary_dims[global_name] = {a: d for a, d in enumerate(dims) if isinstance(d, str)}
        parts.append(_graph.Part(seg.stage, seg.name, part_model, boundary))

    runtime_defaults = {n: ri.default for seg in segments for n, ri in seg.runtime_inputs}
    composed = _graph.compose(parts, list(inputs), final_outputs, runtime_defaults, opset,
                              graph_name=(metadata or {}).get("name", path.stem))
    for vi in composed.graph.output:
        if vi.name in axes:
            _graph.set_dim_names(vi, axes[vi.name])
    _check_dynamic(composed, input_axes)

    manifest = _manifest(composed, segments, exporters, runtime_defaults, opset, metadata, path)
    vectors = _embedded_vectors(segments, inputs, tols) if embed_vectors else None
    report: dict[str, Any] = {
        "op_counts": _graph.op_counts(composed),
        "exporters": {seg.name: kind for seg, kind in zip(segments, exporters)},
        "verification": dict(manifest.verification),
    }
    # The file is written beside ``path`` and renamed onto it only once it is final: a failed verification
    # (or an interrupted export) never leaves a file at ``path``, and an older file there stays untouched.
    staged = _staging_path(path)
    try:
        _write(composed, manifest, staged, vectors)
        if verify:
            try:
                results = _verify(staged, segments, inputs, input_axes, verify_inputs or [], tols, say)
            except ExportVerificationError as e:
                e.report = report | {"verification": verification_state("failed", reason=str(e).splitlines()[0])}
                raise
            if _name_output_dims(composed, results, input_axes):
                manifest = _manifest(composed, segments, exporters, runtime_defaults, opset, metadata, path)
            manifest = manifest.replace(verification=verification_state("passed", [r.to_dict() for r in results]))
            _write(composed, manifest, staged, vectors)
            report["verification"] = dict(manifest.verification)
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)
    report["file_size"] = path.stat().st_size
    say(f"wrote {path} ({report['file_size']:,} bytes)" + ("" if verify else "; NOT verified (verify=False)"))
    return ExportedPipeline(path=path, manifest=manifest, report=report)


def verification_state(status: str, cases: Sequence[Mapping[str, Any]] = (), reason: str | None = None) -> dict[str, Any]:
    """The manifest's ``verification`` object. ``passed`` stays for readers of the first manifests."""
    if status not in VERIFICATION_STATES:
        raise ValueError(f"verification status: expected one of {list(VERIFICATION_STATES)}, got {status!r}")
    state: dict[str, Any] = {"status": status, "passed": status == "passed", "cases": list(cases)}
    if reason is not None:
        state["reason"] = reason
    return state


def _staging_path(path: Path) -> Path:
    """A fresh file name beside ``path`` (same directory, so the final rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".partial.onnx")
    os.close(fd)
    return Path(tmp)


def _check_dynamic(model: onnx.ModelProto, input_axes: Mapping[str, Mapping[int, str]]) -> None:
    for vi in model.graph.input:
        dims = _graph.dims_of(vi) or []
        for axis, name in (input_axes.get(vi.name) or {}).items():
            d = dims[axis] if axis < len(dims) else None
            if not isinstance(d, str):
                raise ExportVerificationError(
                    f"input {vi.name!r}: axis {axis} was declared dynamic ({name!r}) but the exported file fixes it "
                    f"to {d}; the code ties that size to the example (a shape used as a Python int, or a loop "
                    "over it). Compute sizes with tensor ops, script loops, or use the onnxpipe.ops catalog."
                )
            if d != name:
                _graph.set_dim_names(vi, {axis: name})


def _name_output_dims(model: onnx.ModelProto, results: Sequence[Any],
                      input_axes: Mapping[str, Mapping[int, str]]) -> bool:
    """Name output dims the exporters left anonymous (TorchScript's ``Divoutput_dim_0``, dynamo's ``s12`` or
    unbacked ``u0``; names given by the user or an ONNX-native stage are kept) from what verification observed: a dim equal to a named input dim in every case gets its name; one
    that stayed the same positive size while the inputs changed is fixed. Anything else becomes unnamed."""
    known = {d for axes in input_axes.values() for d in axes.values()}
    ran = [r for r in results if r.skipped is None and r.output_shapes is not None]
    if len(ran) < 2:
        return False
    dim_sizes: dict[str, list[int]] = {}
    for name in sorted(known):
        sizes = []
        for r in ran:
            where = next(((inp, a) for inp, axes in input_axes.items() for a, d in axes.items() if d == name), None)
            sizes.append(r.shapes[where[0]][where[1]] if where else -1)
        dim_sizes[name] = sizes
    inputs_varied = len({json.dumps(r.shapes, sort_keys=True) for r in ran}) > 1
    changed = False
    for vi in model.graph.output:
        dims = vi.type.tensor_type.shape.dim
        for axis, d in enumerate(dims):
            current = d.dim_param if d.HasField("dim_param") else None
            if d.HasField("dim_value") or (current and not _graph.is_generated_dim(current)):
                continue
            observed = [r.output_shapes[vi.name][axis] for r in ran]
            named = next((n for n, sizes in dim_sizes.items() if sizes == observed and len(set(sizes)) > 1), None)
            d.Clear()
            if named is not None:
                d.dim_param = named
            elif len(set(observed)) == 1 and observed[0] > 0 and inputs_varied:
                d.dim_value = observed[0]
            changed = True
    return changed


def _manifest(model: onnx.ModelProto, segments: Sequence[_segments.Segment], exporters: Sequence[str],
              runtime_defaults: Mapping[str, float], opset: int, metadata: Mapping[str, str] | None,
              path: Path) -> Manifest:
    def entry(vi: onnx.ValueInfoProto) -> TensorSpec:
        if vi.name in runtime_defaults:
            rng = runtime_ranges.get(vi.name)
            return TensorSpec(vi.name, _graph.dtype_of(vi), (), optional=True, default=runtime_defaults[vi.name],
                              range=(rng[0], rng[1]) if rng is not None else None)
        return TensorSpec(vi.name, _graph.dtype_of(vi), tuple(_graph.dims_of(vi) or ()))

    runtime_ranges = {n: ri.range for seg in segments for n, ri in seg.runtime_inputs}
    node_counts = {s: sum(c.values()) for s, c in _graph.op_counts(model).items()}
    stages = []
    for stage_name in _segments.STAGE_NAMES:
        segs = [(s, k) for s, k in zip(segments, exporters) if s.stage == stage_name]
        if not segs:
            continue
        kinds = sorted({k for _, k in segs})
        stages.append(StageInfo(
            name=stage_name,
            kind="onnx" if kinds == ["onnx"] else "torch",
            exporter="+".join(kinds),
            description=" -> ".join(s.describe() for s, _ in segs),
            nodes=node_counts.get(stage_name, 0),
        ))
    labels = None
    domains: set[str] = set()
    for seg in segments:
        for step in seg.steps:
            objs = step.modules() if isinstance(step, torch.nn.Module) else [step]
            for m in objs:
                found = getattr(m, "onnxpipe_labels", None)
                if found is not None and labels is None:
                    labels = [str(x) for x in found]
            domains.update(getattr(step, "domains", ()) or ())
    domains.update(imp.domain for imp in model.opset_import if imp.domain not in ("", "ai.onnx"))
    used = sorted({k for k in exporters})
    return Manifest(
        sdk_version=__version__,
        name=(metadata or {}).get("name", path.stem),
        inputs=tuple(entry(vi) for vi in model.graph.input),
        outputs=tuple(entry(vi) for vi in model.graph.output),
        stages=tuple(stages),
        labels=tuple(labels) if labels is not None else None,
        domains=tuple(Domain(d, DOMAIN_LIBRARIES.get(d, "")) for d in sorted(domains)),
        precision="fp32",
        opset=opset,
        exporter=used[0] if len(used) == 1 else "+".join(used),
        verification=verification_state("not run"),
        metadata=dict(sorted((metadata or {}).items())),
    )


def _declared_outputs(segments: Sequence[_segments.Segment]) -> tuple[dict[str, int | None], dict[str, float]]:
    """Outputs ops declare as ``[K, 7]`` detection tables (``onnxpipe_detection_outputs``: name -> rows per image)
    and as arg-max label maps (``onnxpipe_label_map_outputs``: name -> fraction that may flip)."""
    detections: dict[str, int | None] = {}
    label_maps: dict[str, float] = {}
    for seg in segments:
        for step in seg.steps:
            for m in (step.modules() if isinstance(step, torch.nn.Module) else [step]):
                detections.update(getattr(m, "onnxpipe_detection_outputs", None) or {})
                label_maps.update(getattr(m, "onnxpipe_label_map_outputs", None) or {})
    return detections, label_maps


def _embedded_vectors(segments: Sequence[_segments.Segment], inputs: Mapping[str, Any],
                      tols: Mapping[str, Tolerance]) -> str | None:
    from onnxpipe_runtime import tensor_json

    outputs = _segments.run_eager(segments, inputs)
    doc = {
        "inputs": {k: tensor_json.encode(_segments.to_numpy(v)) for k, v in inputs.items()},
        "expected": {k: tensor_json.encode(_segments.to_numpy(v)) for k, v in outputs.items()},
        "tolerance": {k: {"atol": t.atol, "rtol": t.rtol} for k, t in sorted(tols.items())}
        | {k: {"atol": 0.0, "rtol": 0.0, "mismatch": f} for k, f in sorted(_declared_outputs(segments)[1].items())},
    }
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    return text if len(text.encode("utf-8")) <= MAX_EMBEDDED_VECTORS else None


def _write(model: onnx.ModelProto, manifest: Manifest, path: Path, vectors: str | None) -> None:
    m = _graph.with_metadata(model, {MANIFEST_KEY: manifest.to_json(), VECTORS_KEY: vectors})
    m.producer_version = __version__
    try:
        onnx.checker.check_model(m)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"the composed graph is not valid ONNX: {e}") from e
    data = m.SerializeToString(deterministic=True)
    with open(path, "wb") as f:
        f.write(data)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # mkstemp creates 0600; the file is an ordinary artifact


def _verify(path: Path, segments: Sequence[_segments.Segment], inputs: Mapping[str, Any],
            input_axes: Mapping[str, Mapping[int, str]], extra: Sequence[Mapping[str, Any]],
            tols: Mapping[str, Tolerance], say: Any) -> list[Any]:
    from onnxpipe_runtime import Pipeline, UnverifiedPipelineWarning

    runtime_names = {n for seg in segments for n, _ in seg.runtime_inputs}
    with warnings.catch_warnings():  # the staged file says "not run" until this verification passes
        warnings.simplefilter("ignore", UnverifiedPipelineWarning)
        pipe = Pipeline.load(path, threads=max(1, min(4, os.cpu_count() or 1)))
    with pipe:
        def run_file(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return pipe.run(feed)

        def run_eager(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            graph_in = {k: _segments.to_torch(v) for k, v in feed.items() if k not in runtime_names}
            rt = {k: v for k, v in feed.items() if k in runtime_names}
            out = _segments.run_eager(segments, graph_in, rt)
            return {k: _segments.to_numpy(v) for k, v in out.items()}

        example = {k: _segments.to_numpy(v) for k, v in inputs.items()}
        defaults = {n: ri.default for seg in segments for n, ri in seg.runtime_inputs}
        # ops that return the [K, 7] detection table say so (onnxpipe_detection_outputs): rows compared as sets
        detections, label_maps = _declared_outputs(segments)
        return verify(run_file, run_eager, example, input_axes, extra, tols, say, runtime_defaults=defaults,
                      detection_outputs=detections, label_maps=label_maps)
