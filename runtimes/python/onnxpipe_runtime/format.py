"""The onnxpipe file format: the typed manifest (metadata ``onnxpipe.manifest``) the exporter writes and every
runtime reads, and how a model file is read — with classes generated from the official ``onnx.proto``
(``_onnx_pb2``, see proto/generate.py), never a hand-written protobuf parser.

The manifest's JSON Schema is ``spec/manifest.schema.json``; docs/manifest.md explains each field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError

from onnxpipe_runtime import _onnx_pb2 as pb
from onnxpipe_runtime.errors import ModelLoadError
from onnxpipe_runtime.signature import TensorSpec, _spec_from_manifest

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST_KEY", "VECTORS_KEY", "Domain", "Manifest", "ModelFile", "StageInfo",
           "VERIFICATION_STATES", "check_graph", "parse_model", "read_model", "read_header"]

MANIFEST_KEY = "onnxpipe.manifest"
VECTORS_KEY = "onnxpipe.vectors"
FORMAT = "onnxpipe.manifest"
FORMAT_VERSION = 1  # the newest this code reads and the one it writes

#: ``verification.status`` values (docs/manifest.md)
VERIFICATION_STATES = ("passed", "failed", "not run")

#: ONNX ``TensorProto.DataType`` -> tensor-JSON dtype (``spec/dtypes.json``)
ONNX_DTYPES: dict[int, str] = {1: "float32", 11: "float64", 7: "int64", 6: "int32", 2: "uint8", 3: "int8", 9: "bool",
                               8: "string"}


@dataclass(frozen=True)
class StageInfo:
    """One stage of the file, in data order: ``pre``, ``model`` or ``post``."""

    name: str
    kind: str  # "torch", or "onnx" for a stage written directly in ONNX
    exporter: str  # "dynamo", "torchscript", "onnx", joined by "+" when mixed
    description: str
    nodes: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "exporter": self.exporter, "description": self.description,
                "nodes": self.nodes}

    def replace(self, **changes: Any) -> StageInfo:
        return replace(self, **changes)


@dataclass(frozen=True)
class Domain:
    """A custom-op domain the graph needs and the library that provides it."""

    domain: str
    library: str

    def to_dict(self) -> dict[str, Any]:
        return {"domain": self.domain, "library": self.library}


@dataclass(frozen=True)
class Manifest:
    """The manifest of an onnxpipe file. Sections written by later tools (``verification``, ``optimization``,
    ``accelerator``) are JSON objects documented in docs/manifest.md; ``extra`` keeps fields this version does not
    know, so a newer file's manifest reads and writes back unchanged."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    sdk_version: str = ""
    stages: tuple[StageInfo, ...] = ()
    labels: tuple[str, ...] | None = None
    domains: tuple[Domain, ...] = ()
    precision: str = "fp32"
    opset: int | None = None
    exporter: str = ""
    verification: Mapping[str, Any] = field(default_factory=lambda: {"status": "not run", "passed": False})
    metadata: Mapping[str, str] = field(default_factory=dict)
    optimization: Mapping[str, Any] | None = None
    accelerator: Mapping[str, Any] | None = None
    format_version: int = FORMAT_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)

    # -- reading -------------------------------------------------------------------------------------------
    @classmethod
    def from_json(cls, text: str, source: str = "manifest") -> Manifest:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ModelLoadError(f"{source}: metadata {MANIFEST_KEY!r} is not valid JSON: {e}") from e
        return cls.from_dict(doc, source)

    @classmethod
    def from_dict(cls, doc: Any, source: str = "manifest") -> Manifest:
        """Validate and type a parsed manifest; ModelLoadError names the field."""
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ModelLoadError(f"{source}: metadata {MANIFEST_KEY!r}: expected an object with format {FORMAT!r}")
        version = doc.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
            raise ModelLoadError(f"{source}: manifest format_version {version!r} is not supported; this runtime reads "
                                 f"up to {FORMAT_VERSION} (upgrade onnxpipe-runtime)")
        for key in ("inputs", "outputs"):
            if not isinstance(doc.get(key), list):
                raise ModelLoadError(f"{source}: manifest {key!r} must be a list, got {type(doc.get(key)).__name__}")
        labels = doc.get("labels")
        if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
            raise ModelLoadError(f"{source}: manifest 'labels' must be a list of strings or null")
        known = {f.name for f in fields(cls)} | {"format"}
        return cls(
            name=_str(doc, "name", source),
            inputs=tuple(_spec_from_manifest(e, "input") for e in doc["inputs"]),
            outputs=tuple(_spec_from_manifest(e, "output") for e in doc["outputs"]),
            sdk_version=_str(doc, "sdk_version", source, ""),
            stages=tuple(_stage(s, source) for s in _list(doc, "stages", source)),
            labels=tuple(labels) if labels is not None else None,
            domains=tuple(_domain(d, source) for d in _list(doc, "domains", source)),
            precision=_str(doc, "precision", source, "fp32"),
            opset=doc.get("opset") if isinstance(doc.get("opset"), int) else None,
            exporter=_str(doc, "exporter", source, ""),
            verification=_obj(doc, "verification", source) or {"status": "not run", "passed": False},
            metadata={str(k): str(v) for k, v in (_obj(doc, "metadata", source) or {}).items()},
            optimization=_obj(doc, "optimization", source),
            accelerator=_obj(doc, "accelerator", source),
            format_version=version,
            extra={k: v for k, v in doc.items() if k not in known},
        )

    # -- writing -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = dict(self.extra)
        doc.update({
            "format": FORMAT,
            "format_version": self.format_version,
            "sdk_version": self.sdk_version,
            "name": self.name,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "stages": [s.to_dict() for s in self.stages],
            "labels": list(self.labels) if self.labels is not None else None,
            "domains": [d.to_dict() for d in self.domains],
            "precision": self.precision,
            "opset": self.opset,
            "exporter": self.exporter,
            "verification": dict(self.verification),
            "metadata": dict(sorted(self.metadata.items())),
        })
        if self.optimization is not None:
            doc["optimization"] = dict(self.optimization)
        if self.accelerator is not None:
            doc["accelerator"] = dict(self.accelerator)
        return doc

    def to_json(self) -> str:
        """The text written under ``onnxpipe.manifest``: sorted keys, compact separators (byte-identical when
        repeated)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def replace(self, **changes: Any) -> Manifest:
        return replace(self, **changes)

    # -- questions -----------------------------------------------------------------------------------------
    @property
    def verification_status(self) -> str:
        """``"passed"``, ``"failed"`` or ``"not run"``. Files from before ``status`` existed: ``passed: true`` is
        passed, ``skipped: true`` not run, else failed."""
        ver = self.verification
        status = ver.get("status")
        if status in VERIFICATION_STATES:
            return str(status)
        if ver.get("passed") is True:
            return "passed"
        return "not run" if ver.get("skipped") else "failed"

    def stage_names(self) -> list[str]:
        return [s.name for s in self.stages]


def _str(doc: Mapping[str, Any], key: str, source: str, default: str | None = None) -> str:
    value = doc.get(key, default)
    if not isinstance(value, str):
        raise ModelLoadError(f"{source}: manifest {key!r} must be a string, got {value!r}")
    return value


def _list(doc: Mapping[str, Any], key: str, source: str) -> list[Any]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise ModelLoadError(f"{source}: manifest {key!r} must be a list, got {type(value).__name__}")
    return value


def _obj(doc: Mapping[str, Any], key: str, source: str) -> dict[str, Any] | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, dict):
        raise ModelLoadError(f"{source}: manifest {key!r} must be an object, got {type(value).__name__}")
    return value


def _stage(entry: Any, source: str) -> StageInfo:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise ModelLoadError(f"{source}: manifest stage {entry!r}: expected an object with a name")
    nodes = entry.get("nodes", 0)
    return StageInfo(entry["name"], str(entry.get("kind", "")), str(entry.get("exporter", "")),
                     str(entry.get("description", "")), nodes if isinstance(nodes, int) else 0)


def _domain(entry: Any, source: str) -> Domain:
    if not isinstance(entry, dict) or not isinstance(entry.get("domain"), str):
        raise ModelLoadError(f"{source}: manifest domain {entry!r}: expected an object with a domain")
    return Domain(entry["domain"], str(entry.get("library", "")))


# -- the model file ----------------------------------------------------------------------------------------
@dataclass
class ModelFile:
    """What the runtime needs from a file before ONNX Runtime sees it: its bytes, opset domains, metadata and
    manifest (None for plain ONNX)."""

    path: Path
    data: bytes
    domains: dict[str, int]
    metadata: dict[str, str]
    manifest: Manifest | None


def read_model(path: Path) -> ModelFile:
    """Read and check a file: ModelLoadError naming it when it cannot be read, is not ONNX, or its manifest is
    invalid or does not match the graph."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelLoadError(f"model file {str(path)!r}: cannot read it ({e.strerror})") from e
    model = parse_model(data, str(path))
    metadata = {p.key: p.value for p in model.metadata_props}
    text = metadata.get(MANIFEST_KEY)
    manifest = Manifest.from_json(text, str(path)) if text is not None else None
    if manifest is not None:
        check_graph(manifest, model.graph, str(path))
    domains = {imp.domain or "ai.onnx": imp.version for imp in model.opset_import}
    return ModelFile(path, data, domains, metadata, manifest)


def read_header(data: bytes, source: str) -> tuple[dict[str, str], Manifest | None]:
    """Metadata and manifest of serialized model bytes."""
    model = parse_model(data, source)
    metadata = {p.key: p.value for p in model.metadata_props}
    text = metadata.get(MANIFEST_KEY)
    return metadata, Manifest.from_json(text, source) if text is not None else None


def parse_model(data: bytes, source: str) -> pb.ModelProto:
    """The ModelProto of serialized bytes; ModelLoadError naming ``source`` if they are not an ONNX model."""
    model = pb.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise ModelLoadError(f"{source}: not a valid ONNX model file ({e})") from e
    if not model.HasField("graph"):
        raise ModelLoadError(f"{source}: not a valid ONNX model file (no graph)")
    return model


def check_graph(manifest: Manifest, graph: pb.GraphProto, source: str) -> None:
    """The manifest must describe the graph: every manifest input and output exists with the same dtype and
    rank, optional inputs are backed by an initializer, and every graph input is in the manifest."""
    initializers = {t.name for t in graph.initializer}
    graph_inputs = {vi.name: vi for vi in graph.input}
    graph_outputs = {vi.name: vi for vi in graph.output}
    problems: list[str] = []
    for kind, specs, values in (("input", manifest.inputs, graph_inputs), ("output", manifest.outputs, graph_outputs)):
        for spec in specs:
            vi = values.get(spec.name)
            if vi is None:
                problems.append(f"manifest {kind} {spec.name!r} is not a graph {kind}")
                continue
            dtype, rank = _type_of(vi)
            if dtype is not None and dtype != spec.dtype:
                problems.append(f"{kind} {spec.name!r} is {spec.dtype} in the manifest but {dtype} in the graph")
            if rank is not None and rank != len(spec.shape):
                problems.append(f"{kind} {spec.name!r} has rank {len(spec.shape)} in the manifest but {rank} in the "
                                "graph")
            if kind == "input" and spec.optional and spec.name not in initializers:
                problems.append(f"optional input {spec.name!r} has no initializer giving its default in the graph")
    declared = {s.name for s in manifest.inputs}
    problems += [f"graph input {name!r} is not in the manifest" for name in graph_inputs
                 if name not in declared and name not in initializers]
    declared_out = {s.name for s in manifest.outputs}
    problems += [f"graph output {name!r} is not in the manifest" for name in graph_outputs if name not in declared_out]
    if problems:
        raise ModelLoadError(f"{source}: the manifest does not match the graph: {'; '.join(problems[:5])}"
                             + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))


def _type_of(vi: pb.ValueInfoProto) -> tuple[str | None, int | None]:
    if not vi.type.HasField("tensor_type"):
        return None, None
    t = vi.type.tensor_type
    dtype = ONNX_DTYPES.get(t.elem_type, f"ONNX type {t.elem_type}")
    return dtype, len(t.shape.dim) if t.HasField("shape") else None
