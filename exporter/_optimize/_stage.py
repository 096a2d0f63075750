"""Cut the model stage out of a pipeline file and put a transformed one back, leaving pre/ and post/ as they were.

Node names carry their stage (``pre/``, ``model/``, ``post/``: see ``_graph.compose``). The model stage's
boundary is what its nodes read from outside (graph inputs or values the pre stage made) and what the rest of
the graph reads from it. Only nodes, initializers and value infos of the model stage change on the way back;
every other node keeps its bytes and its place.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import onnx
from onnx import helper

from onnxpipe.errors import OptimizeError

MODEL_PREFIX = "model/"


@dataclass
class ModelStage:
    """The model stage as a standalone model: ``model`` reads ``inputs`` and writes ``outputs`` (global names)."""

    model: onnx.ModelProto
    inputs: list[str]
    outputs: list[str]
    #: every value's type and shape in the whole file (ONNX shape inference, run once here)
    infos: dict[str, onnx.ValueInfoProto]


def _subgraph_reads(node: onnx.NodeProto) -> Iterable[str]:
    yield from (n for n in node.input if n)
    for a in node.attribute:
        graphs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
        for g in graphs:
            for n in g.node:
                yield from _subgraph_reads(n)


def is_model_node(node: onnx.NodeProto) -> bool:
    return node.name.startswith(MODEL_PREFIX)


def extract(full: onnx.ModelProto) -> ModelStage:
    """The model stage of ``full`` as its own model (types and shapes from ONNX shape inference)."""
    g = full.graph
    nodes = [n for n in g.node if is_model_node(n)]
    if not nodes:
        raise OptimizeError("the file has no model stage (no node named 'model/...'): nothing to optimize")
    produced = {o for n in nodes for o in n.output if o}
    inits = {i.name: i for i in g.initializer}
    graph_inputs = {vi.name for vi in g.input}
    inputs: list[str] = []
    used_inits: list[str] = []
    for n in nodes:
        for name in _subgraph_reads(n):
            if name in produced:
                continue
            if name in inits and name not in graph_inputs:
                if name not in used_inits:
                    used_inits.append(name)
            elif name not in inputs:
                inputs.append(name)
    outputs: list[str] = []
    for n in g.node:
        if is_model_node(n):
            continue
        for name in _subgraph_reads(n):
            if name in produced and name not in outputs:
                outputs.append(name)
    for vi in g.output:
        if vi.name in produced and vi.name not in outputs:
            outputs.append(vi.name)
    shared = [i for i in used_inits if any(i in set(_subgraph_reads(n)) for n in g.node if not is_model_node(n))]
    if shared:
        raise OptimizeError(f"initializers {shared[:5]} are shared between the model stage and pre/post")

    typed = onnx.shape_inference.infer_shapes(full, strict_mode=False)
    infos = {vi.name: vi for vi in (*typed.graph.input, *typed.graph.value_info, *typed.graph.output)}
    missing = [n for n in inputs + outputs if n not in infos or not infos[n].type.tensor_type.elem_type]
    if missing:
        raise OptimizeError(f"cannot tell the type of the model stage's boundary values {missing}")
    sub = helper.make_graph(nodes, "model", [infos[n] for n in inputs], [infos[n] for n in outputs],
                            initializer=[inits[n] for n in used_inits])
    model = helper.make_model(sub, opset_imports=list(full.opset_import), functions=list(full.functions))
    model.ir_version = full.ir_version
    return ModelStage(model=model, inputs=inputs, outputs=outputs, infos=infos)


def _rename_internal(model: onnx.ModelProto, keep: set[str]) -> None:
    """Prefix every value and node of a transformed model stage with ``model/`` (tools name new values freely);
    boundary names in ``keep`` stay."""
    g = model.graph

    def fix(name: str) -> str:
        return name if not name or name in keep or name.startswith(MODEL_PREFIX) else MODEL_PREFIX + "opt/" + name

    for n in g.node:
        n.input[:] = [fix(x) for x in n.input]
        n.output[:] = [fix(x) for x in n.output]
        if not n.name.startswith(MODEL_PREFIX):
            n.name = MODEL_PREFIX + "opt/" + (n.name or n.op_type)
    for i in g.initializer:
        i.name = fix(i.name)
    for vi in g.value_info:
        vi.name = fix(vi.name)


def replace(full: onnx.ModelProto, stage: ModelStage, new_model: onnx.ModelProto) -> onnx.ModelProto:
    """``full`` with its model stage replaced by ``new_model`` (same boundary names); pre/post untouched."""
    g = full.graph
    new = onnx.ModelProto()
    new.CopyFrom(new_model)
    got_in = [vi.name for vi in new.graph.input]
    got_out = [vi.name for vi in new.graph.output]
    if set(got_out) != set(stage.outputs) or not set(got_in) <= set(stage.inputs):
        raise OptimizeError(f"the transformed model stage reads {got_in} and writes {got_out}; expected to read "
                            f"(some of) {stage.inputs} and write {stage.outputs}")
    _rename_internal(new, set(stage.inputs) | set(stage.outputs))
    old_model_inits = {i.name for n in g.node if is_model_node(n) for i in g.initializer if i.name in n.input}

    nodes: list[onnx.NodeProto] = []
    placed = False
    for n in g.node:
        if is_model_node(n):
            if not placed:
                nodes.extend(new.graph.node)
                placed = True
            continue
        nodes.append(n)
    out = onnx.ModelProto()
    out.CopyFrom(full)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    kept = [i for i in g.initializer if i.name not in old_model_inits or i.name in {vi.name for vi in g.input}]
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept + list(new.graph.initializer))
    model_values = {o for n in g.node if is_model_node(n) for o in n.output}
    vis = [vi for vi in g.value_info if vi.name not in model_values or vi.name in stage.outputs]
    del out.graph.value_info[:]
    out.graph.value_info.extend(vis)
    domains = {imp.domain: imp.version for imp in full.opset_import}
    for imp in new.opset_import:
        if imp.domain not in domains:
            domains[imp.domain] = imp.version
        elif imp.version != domains[imp.domain]:
            raise OptimizeError(f"the transformed model stage imports {imp.domain or 'ai.onnx'} opset {imp.version};"
                                f" the file has {domains[imp.domain]}")
    del out.opset_import[:]
    out.opset_import.extend(helper.make_opsetid(d, v) for d, v in sorted(domains.items()))
    funcs = {(f.domain, f.name): f for f in full.functions}
    for f in new.functions:
        funcs.setdefault((f.domain, f.name), f)
    del out.functions[:]
    out.functions.extend(funcs[k] for k in sorted(funcs))
    return out


def stage_fingerprint(model: onnx.ModelProto, stages: Sequence[str] = ("pre", "post")) -> dict[str, bytes]:
    """The serialized nodes and initializers of each stage in ``stages``: equal fingerprints = the same graph."""
    g = model.graph
    result: dict[str, bytes] = {}
    for stage in stages:
        nodes = [n for n in g.node if n.name.startswith(stage + "/")]
        reads = {x for n in nodes for x in _subgraph_reads(n)}
        inits = sorted((i for i in g.initializer if i.name in reads), key=lambda i: i.name)
        result[stage] = b"".join(n.SerializeToString(deterministic=True) for n in nodes) + b"|" + b"".join(
            i.SerializeToString(deterministic=True) for i in inits)
    return result
