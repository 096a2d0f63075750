"""Cut one onnxpipe file into one ONNX model per stage, with the classes generated from onnx.proto (``_onnx_pb2``).

Node names carry their stage as a prefix (``pre/``, ``model/``, ``post/``; docs/manifest.md), so a stage is the
nodes with its prefix, the initializers they read and, as inputs, the graph inputs they read plus the tensors
earlier stages hand over.

A tensor handed over between stages has no type in the file (the exporter does not write value infos at stage
boundaries): :func:`stage_model` takes the types of a stage's hand-over inputs from the stage before it, as
reported by whichever engine compiled that stage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from onnxpipe_runtime import _onnx_pb2 as pb
from onnxpipe_runtime.errors import ModelLoadError
from onnxpipe_runtime.format import parse_model

__all__ = ["Stage", "TensorType", "split", "stage_model"]



@dataclass(frozen=True)
class TensorType:
    """An ONNX element type (``TensorProto.DataType``) and dims: int fixed, str named, None unknown."""

    elem_type: int
    dims: tuple[int | str | None, ...] | None = None  # None: rank unknown


@dataclass
class Stage:
    """One stage of the file: its nodes and the names it reads and writes."""

    name: str
    nodes: list[pb.NodeProto] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)  # tensors from outside the stage, first-use order
    writes: list[str] = field(default_factory=list)  # tensors its nodes produce, in order
    inputs: list[str] = field(default_factory=list)  # graph inputs it reads, and hand-overs (set by split)
    outputs: list[str] = field(default_factory=list)  # graph outputs it writes, and hand-overs (set by split)


def _node_io(node: pb.NodeProto) -> tuple[list[str], list[str]]:
    """(inputs including those its subgraphs read from outside, outputs)."""
    ins = list(node.input)
    for attr in node.attribute:
        for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            ins.extend(_outer_reads(g))
    return [i for i in ins if i], list(node.output)


def _outer_reads(graph: pb.GraphProto) -> list[str]:
    """Names a subgraph reads that it neither defines nor receives as an input (outer-scope values)."""
    defined = {vi.name for vi in graph.input} | {t.name for t in graph.initializer}
    reads: list[str] = []
    for node in graph.node:
        ins, outs = _node_io(node)
        reads.extend(i for i in ins if i not in defined)
        defined.update(outs)
    return reads


def split(data: bytes, stage_names: Sequence[str], source: str) -> tuple[list[Stage], pb.ModelProto]:
    """The file's nodes grouped by stage prefix, in ``stage_names`` order (the data order of the manifest).

    Raises ModelLoadError when a node has no known stage prefix or a stage reads a tensor a later stage writes
    (the stages would not run one after the other).
    """
    model = parse_model(data, source)
    graph = model.graph
    graph_inputs = {vi.name for vi in graph.input}
    graph_outputs = {vi.name for vi in graph.output}
    stages = {s: Stage(s) for s in stage_names}
    writer: dict[str, str] = {}
    for node in graph.node:
        name = node.name
        ins, outs = _node_io(node)
        prefix = name.split("/", 1)[0] if "/" in name else ""
        stage = stages.get(prefix)
        if stage is None:
            raise ModelLoadError(
                f"{source}: node {name!r} has no stage prefix among {[s + '/' for s in stage_names]}; "
                "its stage cannot be placed"
            )
        stage.nodes.append(node)
        own = set(stage.writes)
        for i in ins:
            if i not in own and i not in stage.reads:
                stage.reads.append(i)
        stage.writes.extend(outs)
        for o in outs:
            writer[o] = prefix
    order = {s: k for k, s in enumerate(stage_names)}
    kept = [stages[s] for s in stage_names if stages[s].nodes]
    for stage in kept:
        for name in stage.reads:
            src = writer.get(name)
            if src is not None and order[src] > order[stage.name]:
                raise ModelLoadError(
                    f"{source}: stage {stage.name!r} reads {name!r}, which the later stage {src!r} writes"
                )
            if src is not None or name in graph_inputs:
                stage.inputs.append(name)
    for stage in kept:
        later = {n for s in kept if order[s.name] > order[stage.name] for n in s.inputs}
        stage.outputs = [n for n in stage.writes if n in graph_outputs or n in later]
    return kept, model


def stage_model(cut: pb.ModelProto, stage: Stage, handed_over: Mapping[str, TensorType], *,
                params_as_inputs: bool = False) -> bytes:
    """A standalone ModelProto for ``stage``: same opsets, IR version, metadata and functions as the file.

    ``handed_over`` gives the type of each input that an earlier stage produces (graph inputs keep theirs).
    ``params_as_inputs``: run-time parameters (graph inputs backed by an initializer) lose the initializer, so an
    engine that folds initializers into constants (OpenVINO) still reads the caller's value; the caller then
    feeds every parameter, defaults included.
    """
    g = cut.graph
    graph_inputs = {vi.name: vi for vi in g.input}
    graph_outputs = {vi.name: vi for vi in g.output}
    out = pb.ModelProto()
    out.CopyFrom(cut)
    og = out.graph
    for name in ("node", "initializer", "sparse_initializer", "input", "output", "value_info"):
        og.ClearField(name)
    og.node.extend(stage.nodes)
    reads = set(stage.reads)
    og.initializer.extend(t for t in g.initializer if t.name in reads and not (params_as_inputs and t.name in graph_inputs))
    og.sparse_initializer.extend(t for t in g.sparse_initializer if t.values.name in reads)
    for name in stage.inputs:
        if name in graph_inputs:
            og.input.append(graph_inputs[name])
        elif name in handed_over:
            og.input.append(_value_info(name, handed_over[name]))
        else:
            raise ModelLoadError(f"stage {stage.name!r}: no type known for its input {name!r}")
    og.output.extend(graph_outputs.get(name) or pb.ValueInfoProto(name=name) for name in stage.outputs)
    own = set(stage.writes) - set(stage.outputs)
    og.value_info.extend(vi for vi in g.value_info if vi.name in own)
    return out.SerializeToString(deterministic=True)


def _value_info(name: str, t: TensorType | None) -> pb.ValueInfoProto:
    """ValueInfoProto {name, type: tensor_type {elem_type, shape}}; untyped when ``t`` is None."""
    vi = pb.ValueInfoProto(name=name)
    if t is None:
        return vi
    vi.type.tensor_type.elem_type = t.elem_type
    if t.dims is not None:
        shape = vi.type.tensor_type.shape
        shape.SetInParent()
        for d in t.dims:
            dim = shape.dim.add()
            if isinstance(d, int):
                dim.dim_value = d
            elif isinstance(d, str):
                dim.dim_param = d
    return vi
