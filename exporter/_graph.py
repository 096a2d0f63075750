"""Compose per-segment ONNX models into one graph, and the small graph utilities around it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxpipe.errors import ExportError

# The IR version that goes with each default-domain opset (onnx's table; newer onnx may write a newer IR
# than the installed onnxruntime, Java's or Go's accepts, so it is set explicitly).
_IR_FOR_OPSET = {17: 8, 18: 8, 19: 9, 20: 9, 21: 10, 22: 10, 23: 11}


def ir_version_for(opset: int) -> int:
    if opset not in _IR_FOR_OPSET:
        raise ExportError(f"opset: expected one of {sorted(_IR_FOR_OPSET)}, got {opset}")
    return _IR_FOR_OPSET[opset]


def _rename_graph(g: onnx.GraphProto, rename: Callable[[str], str], stage: str) -> None:
    for vi in (*g.input, *g.output, *g.value_info):
        vi.name = rename(vi.name)
    for init in g.initializer:
        init.name = rename(init.name)
    for sp in g.sparse_initializer:
        sp.values.name = rename(sp.values.name)
    for node in g.node:
        node.input[:] = [rename(n) if n else n for n in node.input]
        node.output[:] = [rename(n) if n else n for n in node.output]
        node.name = f"{stage}/{node.name or node.op_type}"
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _rename_graph(attr.g, rename, stage)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    _rename_graph(sub, rename, stage)


def _strip(g: onnx.GraphProto) -> None:
    """Drop what makes files differ between runs or machines: stack traces, file paths, doc strings."""
    g.doc_string = ""
    for node in g.node:
        del node.metadata_props[:]
        node.doc_string = ""
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _strip(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    _strip(sub)
    for vi in (*g.input, *g.output, *g.value_info):
        vi.doc_string = ""
        del vi.metadata_props[:]
    for init in g.initializer:
        init.doc_string = ""
        del init.metadata_props[:]
    del g.metadata_props[:]


def _unique_node_names(g: onnx.GraphProto, used: set[str]) -> None:
    for node in g.node:
        base, k = node.name, 1
        while node.name in used:
            node.name = f"{base}_{k}"
            k += 1
        used.add(node.name)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _unique_node_names(attr.g, used)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    _unique_node_names(sub, used)


def split_passthrough(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, str]]:
    """A copy of ``model`` where every graph output that is also a graph input (a value passed through
    unchanged) is produced by an Identity under a new name; returns the copy and {output name: new name}."""
    inputs = {vi.name for vi in model.graph.input}
    shared = [vi.name for vi in model.graph.output if vi.name in inputs]
    if not shared:
        return model, {}
    m = onnx.ModelProto()
    m.CopyFrom(model)
    renamed = {}
    for vi in m.graph.output:
        if vi.name in shared:
            new = f"{vi.name}__passthrough"
            m.graph.node.append(helper.make_node("Identity", [vi.name], [new], name=f"passthrough_{vi.name}"))
            renamed[vi.name] = new
            vi.name = new
    return m, renamed


class Part:
    """One segment's ONNX model and how its boundary names map to the composed graph."""

    def __init__(self, stage: str, prefix: str, model: onnx.ModelProto, boundary: Mapping[str, str]):
        self.stage = stage
        self.prefix = prefix
        self.model = model
        self.boundary = dict(boundary)  # local graph input/output name -> global name


def compose(
    parts: Sequence[Part],
    inputs: Sequence[str],
    outputs: Sequence[str],
    runtime_inputs: Mapping[str, float],
    opset: int,
    graph_name: str,
) -> onnx.ModelProto:
    """One model: every part's nodes (renamed), graph inputs ``inputs`` + run-time inputs (each backed by an
    initializer holding its default), graph outputs ``outputs``."""
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    value_info: list[onnx.ValueInfoProto] = []
    functions: dict[tuple[str, str], onnx.FunctionProto] = {}
    opsets: dict[str, int] = {"": opset}
    infos: dict[str, onnx.ValueInfoProto] = {}

    for part in parts:
        m = onnx.ModelProto()
        m.CopyFrom(part.model)
        g = m.graph
        boundary = part.boundary

        def rename(name: str, _p: str = part.prefix, _b: Mapping[str, str] = boundary) -> str:
            return _b.get(name, f"{_p}/{name}")

        _strip(g)
        _rename_graph(g, rename, part.stage)
        for imp in m.opset_import:
            domain = imp.domain or ""
            if domain in ("", "ai.onnx"):
                if imp.version != opset:
                    raise ExportError(f"stage {part.stage!r}: graph uses opset {imp.version}, expected {opset}")
                continue
            opsets[domain] = max(opsets.get(domain, 0), imp.version)
        for f in m.functions:
            key = (f.domain, f.name)
            if key in functions and functions[key].SerializeToString() != f.SerializeToString():
                raise ExportError(f"stage {part.stage!r}: two different ONNX functions named {f.domain}::{f.name}")
            functions[key] = f
        for vi in (*g.input, *g.output):
            infos.setdefault(vi.name, vi)
        # run-time inputs are graph inputs of the segment; their initializer is added once below
        inits.extend(i for i in g.initializer if i.name not in runtime_inputs)
        nodes.extend(g.node)
        value_info.extend(g.value_info)

    graph_inputs = []
    for name in list(inputs) + list(runtime_inputs):
        if name in infos:
            graph_inputs.append(infos[name])
        elif name in runtime_inputs:
            graph_inputs.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, []))
        else:
            raise ExportError(f"input {name!r} is not used by any stage")
    missing = [n for n in outputs if n not in infos]
    if missing:
        raise ExportError(f"outputs {missing} are not produced by the composed graph")
    consumed = _consumed_names(nodes)
    for name, default in runtime_inputs.items():
        if name not in consumed:
            raise ExportError(
                f"run-time input {name!r} is not used by the exported graph: the op's value() was folded into a "
                "constant or never reached the output, so a caller's value would be ignored. Read it with "
                "RuntimeInput.value() inside forward and use the tensor in the computation."
            )
        inits.append(numpy_helper.from_array(np.array(default, dtype=np.float32), name))

    graph = helper.make_graph(nodes, graph_name, graph_inputs, [infos[n] for n in outputs], initializer=inits,
                              value_info=value_info)
    _unique_node_names(graph, set())
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())],
        producer_name="onnxpipe",
        functions=[functions[k] for k in sorted(functions)],
    )
    model.ir_version = ir_version_for(opset)
    return model


def _consumed_names(nodes: Iterable[onnx.NodeProto]) -> set[str]:
    """Every value name a node (or a node in a subgraph, which may read outer values) takes as input."""
    names: set[str] = set()
    for n in nodes:
        names.update(n.input)
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                names |= _consumed_names(a.g.node)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for sub in a.graphs:
                    names |= _consumed_names(sub.node)
    return names


def op_counts(model: onnx.ModelProto) -> dict[str, dict[str, int]]:
    """Per stage (node-name prefix), how many nodes of each op type, subgraphs included."""
    counts: dict[str, Counter[str]] = {}

    def walk(nodes: Iterable[onnx.NodeProto]) -> None:
        for n in nodes:
            stage = n.name.split("/", 1)[0] if "/" in n.name else ""
            counts.setdefault(stage, Counter())[n.op_type] += 1
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g.node)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for sub in a.graphs:
                        walk(sub.node)

    walk(model.graph.node)
    return {s: dict(sorted(c.items())) for s, c in counts.items()}


def dims_of(vi: onnx.ValueInfoProto) -> list[int | str | None] | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    out: list[int | str | None] = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


ELEM_TO_DTYPE: dict[int, str] = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.DOUBLE: "float64",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.BOOL: "bool",
    onnx.TensorProto.STRING: "string",
}


def dtype_of(vi: onnx.ValueInfoProto) -> str:
    elem = vi.type.tensor_type.elem_type
    if elem not in ELEM_TO_DTYPE:
        raise ExportError(
            f"{vi.name!r}: element type {onnx.TensorProto.DataType.Name(elem)} is not supported at the pipeline's "
            f"boundary; expected one of {sorted(ELEM_TO_DTYPE.values())}"
        )
    return ELEM_TO_DTYPE[elem]


def symbols(expr: str) -> list[str]:
    """The identifiers in a symbolic dim such as ``batch*2`` or ``s77``."""
    import re

    return re.findall(r"[A-Za-z_][A-Za-z0-9_]*", expr)


_GENERATED_DIM = __import__("re").compile(r"^(?:[su]\d+|unk__\d+|.*_dim_\d+)$")


def is_generated_dim(expr: str) -> bool:
    """True for a dim an exporter named on its own (``s77``, ``u0``, ``unk__3``, ``Divoutput_dim_0``) or an
    expression over such symbols (``2*s77``)."""
    return any(_GENERATED_DIM.match(t) for t in symbols(expr))


def set_dim_names(vi: onnx.ValueInfoProto, axes: Mapping[int, str]) -> None:
    dims = vi.type.tensor_type.shape.dim
    for axis, name in axes.items():
        if axis < len(dims):
            dims[axis].Clear()
            dims[axis].dim_param = name


def with_metadata(model: onnx.ModelProto, entries: Mapping[str, str | None]) -> onnx.ModelProto:
    """A copy of ``model`` whose metadata is exactly ``entries`` in order (a None value is left out)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.metadata_props[:]
    for key, value in entries.items():
        if value is not None:
            entry = m.metadata_props.add()
            entry.key = key
            entry.value = value
    return m
