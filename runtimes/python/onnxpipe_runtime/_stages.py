"""Cut one onnxpipe file into one ONNX model per stage, without the onnx package.

Node names carry their stage as a prefix (``pre/``, ``model/``, ``post/``; docs/manifest.md), so a stage is the
nodes with its prefix, the initializers they read and, as inputs, the graph inputs they read plus the tensors
earlier stages hand over. Only the graph's repeated fields are taken apart (protobuf wire format, as in
``modelfile.py``); nodes, initializers and value infos are copied as bytes, so a cut costs a scan of the file.

A tensor handed over between stages has no type in the file (the exporter does not write value infos at stage
boundaries): :func:`stage_model` takes the types of a stage's hand-over inputs from the stage before it, as
reported by whichever engine compiled that stage.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from onnxpipe_runtime.errors import ModelLoadError
from onnxpipe_runtime.modelfile import _fields

__all__ = ["Stage", "TensorType", "split", "stage_model"]

# ModelProto / GraphProto / NodeProto / AttributeProto field numbers (onnx.proto3)
_M_GRAPH = 7
_G_NODE, _G_INITIALIZER, _G_INPUT, _G_OUTPUT, _G_VALUE_INFO, _G_SPARSE_INITIALIZER = 1, 5, 11, 12, 13, 15
_N_INPUT, _N_OUTPUT, _N_NAME, _N_ATTRIBUTE = 1, 2, 3, 5
_A_G, _A_GRAPHS = 6, 11
_T_NAME = 8  # TensorProto.name
_S_VALUES = 1  # SparseTensorProto.values (a TensorProto, named like the sparse initializer)


@dataclass(frozen=True)
class TensorType:
    """An ONNX element type (``TensorProto.DataType``) and dims: int fixed, str named, None unknown."""

    elem_type: int
    dims: tuple[int | str | None, ...] | None = None  # None: rank unknown


@dataclass
class Stage:
    """One stage of the file: its node, initializer and graph-input bytes and the names it reads and writes."""

    name: str
    nodes: list[bytes] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)  # tensors from outside the stage, first-use order
    writes: list[str] = field(default_factory=list)  # tensors its nodes produce, in order
    inputs: list[str] = field(default_factory=list)  # graph inputs it reads, and hand-overs (set by split)
    outputs: list[str] = field(default_factory=list)  # graph outputs it writes, and hand-overs (set by split)


@dataclass
class _Graph:
    other: list[tuple[int, int, object]]  # fields kept as they are in every stage (name, doc_string, ...)
    nodes: list[bytes]
    initializers: dict[str, tuple[int, bytes]]  # name -> (field number, bytes)
    inputs: dict[str, bytes]
    outputs: dict[str, bytes]
    value_info: dict[str, bytes]


def _name_of(buf: bytes, num: int) -> str:
    for n, w, v in _fields(buf):
        if n == num and w == 2:
            return bytes(v).decode("utf-8")
    return ""


def _node_io(node: bytes) -> tuple[str, list[str], list[str]]:
    """(name, inputs including those its subgraphs read from outside, outputs)."""
    name, ins, outs = "", [], []
    for n, w, v in _fields(node):
        if n == _N_NAME and w == 2:
            name = v.decode("utf-8")
        elif n == _N_INPUT and w == 2:
            ins.append(v.decode("utf-8"))
        elif n == _N_OUTPUT and w == 2:
            outs.append(v.decode("utf-8"))
        elif n == _N_ATTRIBUTE and w == 2:
            for an, aw, av in _fields(v):
                if an in (_A_G, _A_GRAPHS) and aw == 2:
                    ins.extend(_outer_reads(av))
    return name, [i for i in ins if i], outs


def _outer_reads(graph: bytes) -> list[str]:
    """Names a subgraph reads that it neither defines nor receives as an input (outer-scope values)."""
    defined: set[str] = set()
    reads: list[str] = []
    for n, w, v in _fields(graph):
        if n in (_G_INPUT, _G_INITIALIZER) and w == 2:
            defined.add(_name_of(v, 1 if n == _G_INPUT else _T_NAME))
        elif n == _G_NODE and w == 2:
            _, ins, outs = _node_io(v)
            reads.extend(i for i in ins if i not in defined)
            defined.update(outs)
    return reads


def _read_graph(data: bytes, source: str) -> tuple[list[tuple[int, int, object]], _Graph]:
    model: list[tuple[int, int, object]] = []
    graph: _Graph | None = None
    for num, wire, value in _fields(data):
        if num == _M_GRAPH and wire == 2:
            g = _Graph([], [], {}, {}, {}, {})
            for n, w, v in _fields(value):
                if n == _G_NODE:
                    g.nodes.append(v)
                elif n == _G_INITIALIZER:
                    g.initializers[_name_of(v, _T_NAME)] = (n, v)
                elif n == _G_SPARSE_INITIALIZER:
                    g.initializers[_name_of(_sparse_values(v), _T_NAME)] = (n, v)
                elif n == _G_INPUT:
                    g.inputs[_name_of(v, 1)] = v
                elif n == _G_OUTPUT:
                    g.outputs[_name_of(v, 1)] = v
                elif n == _G_VALUE_INFO:
                    g.value_info[_name_of(v, 1)] = v
                else:
                    g.other.append((n, w, v))
            graph = g
            model.append((num, wire, None))  # where the graph goes back
        else:
            model.append((num, wire, value))
    if graph is None:
        raise ModelLoadError(f"{source}: not a valid ONNX model file (no graph)")
    return model, graph


def _sparse_values(sparse: bytes) -> bytes:
    for n, w, v in _fields(sparse):
        if n == _S_VALUES and w == 2:
            return v
    return b""


def split(data: bytes, stage_names: Sequence[str], source: str) -> tuple[list[Stage], _Cut]:
    """The file's nodes grouped by stage prefix, in ``stage_names`` order (the data order of the manifest).

    Raises ModelLoadError when a node has no known stage prefix or a stage reads a tensor a later stage writes
    (the stages would not run one after the other).
    """
    try:
        model, graph = _read_graph(data, source)
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{source}: not a valid ONNX model file ({e})") from e
    stages = {s: Stage(s) for s in stage_names}
    writer: dict[str, str] = {}
    for node in graph.nodes:
        name, ins, outs = _node_io(node)
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
            if src is not None or name in graph.inputs:
                stage.inputs.append(name)
    for stage in kept:
        later = {n for s in kept if order[s.name] > order[stage.name] for n in s.inputs}
        stage.outputs = [n for n in stage.writes if n in graph.outputs or n in later]
    return kept, _Cut(model, graph)


@dataclass
class _Cut:
    model: list[tuple[int, int, object]]
    graph: _Graph


def stage_model(cut: _Cut, stage: Stage, handed_over: Mapping[str, TensorType], *,
                params_as_inputs: bool = False) -> bytes:
    """A standalone ModelProto for ``stage``: same opsets, IR version and functions as the file.

    ``handed_over`` gives the type of each input that an earlier stage produces (graph inputs keep theirs).
    ``params_as_inputs``: run-time parameters (graph inputs backed by an initializer) lose the initializer, so an
    engine that folds initializers into constants (OpenVINO) still reads the caller's value; the caller then
    feeds every parameter, defaults included.
    """
    g = cut.graph
    inputs = []
    for name in stage.inputs:
        if name in g.inputs:
            inputs.append(g.inputs[name])
        elif name in handed_over:
            inputs.append(_value_info(name, handed_over[name]))
        else:
            raise ModelLoadError(f"stage {stage.name!r}: no type known for its input {name!r}")
    outputs = [g.outputs.get(name) or _value_info(name, None) for name in stage.outputs]
    reads = set(stage.reads)
    body = [_encode(n, w, v) for n, w, v in g.other]
    body += [_encode(_G_NODE, 2, n) for n in stage.nodes]
    body += [_encode(num, 2, v) for name, (num, v) in g.initializers.items()
             if name in reads and not (params_as_inputs and name in g.inputs)]
    body += [_encode(_G_INPUT, 2, v) for v in inputs]
    body += [_encode(_G_OUTPUT, 2, v) for v in outputs]
    own = set(stage.writes)
    body += [_encode(_G_VALUE_INFO, 2, v) for name, v in g.value_info.items() if name in own and name not in stage.outputs]
    graph = b"".join(body)
    return b"".join(_encode(n, w, graph if v is None else v) for n, w, v in cut.model)


# -- encoding -------------------------------------------------------------------------------------------------
def _uvarint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _encode(num: int, wire: int, value: object) -> bytes:
    key = _uvarint(num << 3 | wire)
    if isinstance(value, int):
        return key + _uvarint(value)
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"field {num}: cannot encode {type(value).__name__}")
    if wire == 2:
        return key + _uvarint(len(value)) + bytes(value)
    return key + bytes(value)  # fixed 64/32-bit: the raw bytes


def _value_info(name: str, t: TensorType | None) -> bytes:
    """ValueInfoProto {name, type: TypeProto {tensor_type: {elem_type, shape}}}; untyped when ``t`` is None."""
    out = _encode(1, 2, name.encode("utf-8"))
    if t is None:
        return out
    tensor = _encode(1, 0, t.elem_type)
    if t.dims is not None:
        shape = b"".join(_encode(1, 2, _dim(d)) for d in t.dims)
        tensor += _encode(2, 2, shape)
    return out + _encode(2, 2, _encode(1, 2, tensor))


def _dim(d: int | str | None) -> bytes:
    if isinstance(d, int):
        return _encode(1, 0, d)
    if isinstance(d, str):
        return _encode(2, 2, d.encode("utf-8"))
    return b""

