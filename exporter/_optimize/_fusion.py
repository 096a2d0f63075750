"""Graph-level optimization of the model stage: transformer fusions, ONNX Runtime's rewrites, padding removal.

Why our own attention fusion: ``torch.onnx``'s dynamo exporter decomposes ``scaled_dot_product_attention``
as ``Mul(Q, √s) @ Mul(Kᵀ, √s) + Where(mask, 0, -inf) -> Softmax -> Where(IsNaN, 0, ·) @ V``, with Kᵀ written as
Reshape/Transpose/Reshape. ONNX Runtime's BERT optimizer and onnxscript's rewriter both look for the
TorchScript-era shape (one Div by √d after the MatMul, an additive float mask) and fuse nothing in it.
``fuse_sdpa_attention`` matches the dynamo form and writes ``com.microsoft.Attention`` (packed QKV weights,
the raw 2-D padding mask); everything else (SkipLayerNormalization, BiasGelu, EmbedLayerNormalization,
Attention in TorchScript graphs) is left to ONNX Runtime's optimizer, which handles those shapes.

Every fusion is checked numerically by the caller (``optimize`` compares the fused model stage with the
original on the validation inputs) before it is kept.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

log = logging.getLogger("onnxpipe")

MS_DOMAIN = "com.microsoft"


class _Index:
    """Producers, consumers and constants of a graph, for pattern matching."""

    def __init__(self, g: onnx.GraphProto) -> None:
        self.g = g
        self.producer = {o: n for n in g.node for o in n.output if o}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.inits = {i.name: i for i in g.initializer}
        self.inputs = {vi.name for vi in g.input}

    def const(self, name: str) -> np.ndarray | None:
        if name in self.inits and name not in self.inputs:
            return numpy_helper.to_array(self.inits[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Identity":
            return self.const(node.input[0])
        if node is not None and node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
        return None

    def node(self, name: str, op: str) -> onnx.NodeProto | None:
        n = self.producer.get(name)
        return n if n is not None and n.op_type == op else None


def _perm(n: onnx.NodeProto) -> list[int]:
    return next((list(a.ints) for a in n.attribute if a.name == "perm"), [])


def _scalar(idx: _Index, name: str) -> float | None:
    v = idx.const(name)
    return float(v.reshape(-1)[0]) if v is not None and v.size == 1 else None


def _projection(idx: _Index, name: str, perm: Sequence[int] = (0, 2, 1, 3)) -> tuple[str, str, str, str] | None:
    """``name`` = Transpose(perm)(Reshape(Add(MatMul(x, W), b))) -> (x, W, b, reshape shape)."""
    t = idx.node(name, "Transpose")
    if t is None or _perm(t) != list(perm):
        return None
    r = idx.node(t.input[0], "Reshape")
    if r is None:
        return None
    add = idx.node(r.input[0], "Add")
    if add is None:
        return None
    for mm_name, b in ((add.input[0], add.input[1]), (add.input[1], add.input[0])):
        mm = idx.node(mm_name, "MatMul")
        if mm is not None and idx.const(mm.input[1]) is not None and idx.const(b) is not None:
            return mm.input[0], mm.input[1], b, r.input[1]
    return None


def _key_projection(idx: _Index, name: str) -> tuple[str, str, str, str] | None:
    """Kᵀ -> K's projection. Three spellings: dynamo's SDPA (Reshape(Transpose(0,2,1)(Reshape(K)))), a
    transpose of K (Transpose(0,1,3,2)(K)), or eager attention's one Transpose(0,2,3,1) of the reshaped K."""
    direct = _projection(idx, name, (0, 2, 3, 1))
    if direct is not None:
        return direct
    r2 = idx.node(name, "Reshape")
    if r2 is not None:
        t = idx.node(r2.input[0], "Transpose")
        if t is not None and _perm(t) == [0, 2, 1]:
            r1 = idx.node(t.input[0], "Reshape")
            if r1 is not None:
                return _projection(idx, r1.input[0])
        return None
    t = idx.node(name, "Transpose")
    if t is not None and _perm(t) == [0, 1, 3, 2]:
        return _projection(idx, t.input[0])
    return None


def _scaled(idx: _Index, name: str) -> tuple[str, float]:
    """``Mul(x, c)`` or ``Div(x, c)`` with a constant scalar c -> (x, factor); anything else -> (name, 1)."""
    for op in ("Mul", "Div"):
        n = idx.node(name, op)
        if n is None:
            continue
        pairs = [(n.input[0], n.input[1])] + ([(n.input[1], n.input[0])] if op == "Mul" else [])
        for a, b in pairs:  # Div's constant must be the divisor
            c = _scalar(idx, b)
            if c is not None and c != 0:
                return a, (c if op == "Mul" else 1.0 / c)
    return name, 1.0


def _head_dim(idx: _Index, shape_name: str) -> int | None:
    """The last entry of a [batch, seq, heads, head_dim] reshape target, constant or from a constant Concat."""
    v = idx.const(shape_name)
    if v is not None and v.size == 4 and int(v[3]) > 0:
        return int(v[3])
    c = idx.node(shape_name, "Concat")
    if c is not None and len(c.input) == 4:
        last = idx.const(c.input[3])
        if last is not None and last.size == 1 and int(last.reshape(-1)[0]) > 0:
            return int(last.reshape(-1)[0])
    return None


def _mask_source(idx: _Index, name: str) -> str | None:
    """The one integer/bool graph input a boolean mask is computed from (reads through Shape do not count)."""
    seen: set[str] = set()
    found: set[str] = set()
    stack = [name]
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        if v in idx.inputs and v not in idx.inits:
            found.add(v)
            continue
        n = idx.producer.get(v)
        if n is None or n.op_type == "Shape":
            continue
        stack.extend(i for i in n.input if i)
    return found.pop() if len(found) == 1 else None


def fuse_sdpa_attention(model: onnx.ModelProto) -> int:
    """Rewrite dynamo-exported multi-head self-attention blocks as ``com.microsoft.Attention``; in place.
    Returns how many were fused. Unmatched blocks are left alone."""
    g = model.graph
    idx = _Index(g)
    fused = 0
    remove: set[int] = set()
    new_nodes: list[tuple[onnx.NodeProto, list[onnx.NodeProto]]] = []  # (anchor, nodes to insert before it)
    mask_cast: dict[str, str] = {}
    for softmax in list(g.node):
        if softmax.op_type != "Softmax":
            continue
        axis = next((a.i for a in softmax.attribute if a.name == "axis"), -1)
        if axis not in (-1, 3):
            continue
        scores = softmax.input[0]
        mask_input = None
        add = idx.node(scores, "Add")
        if add is not None:
            for s_name, m_name in ((add.input[0], add.input[1]), (add.input[1], add.input[0])):
                if idx.node(s_name, "MatMul") is not None or idx.node(s_name, "Div") is not None or \
                        idx.node(s_name, "Mul") is not None:
                    w = idx.node(m_name, "Where")
                    if w is None:
                        continue
                    zero, low = idx.const(w.input[1]), idx.const(w.input[2])
                    if zero is None or low is None or np.any(zero != 0) or np.any(low > -1e4):
                        continue
                    mask_input = _mask_source(idx, w.input[0])
                    scores = s_name
                    break
            if mask_input is None:
                continue
        qk_raw, post_scale = _scaled(idx, scores)
        qk = idx.node(qk_raw, "MatMul")
        if qk is None:
            continue
        q_name, q_scale = _scaled(idx, qk.input[0])
        kt_name, k_scale = _scaled(idx, qk.input[1])
        q, k = _projection(idx, q_name), _key_projection(idx, kt_name)
        if q is None or k is None:
            continue
        probs = softmax.output[0]
        users = idx.consumers.get(probs, [])
        nan_guard = next((u for u in users if u.op_type == "IsNaN"), None)
        if nan_guard is not None:
            guard_users = idx.consumers.get(nan_guard.output[0], [])
            where = next((u for u in guard_users if u.op_type == "Where" and u.input[2] == probs), None)
            if where is None or _scalar(idx, where.input[1]) != 0.0:
                continue
            probs = where.output[0]
        pv = next((u for u in idx.consumers.get(probs, []) if u.op_type == "MatMul" and u.input[0] == probs), None)
        if pv is None:
            continue
        v = _projection(idx, pv.input[1])
        head_out = pv.output[0]
        same_shape = [u for u in idx.consumers.get(head_out, []) if u.op_type != "Shape"]
        if len(same_shape) == 1 and same_shape[0].op_type == "Reshape":  # TorchScript's SDPA re-states [B,H,S,d]
            head_out = same_shape[0].output[0]
        t_out = next((u for u in idx.consumers.get(head_out, []) if u.op_type == "Transpose"), None)
        if v is None or t_out is None or _perm(t_out) != [0, 2, 1, 3]:
            continue
        r_out = next((u for u in idx.consumers.get(t_out.output[0], []) if u.op_type == "Reshape"), None)
        if r_out is None or not (q[0] == k[0] == v[0]):
            continue
        head_dim = _head_dim(idx, q[3])
        wq, wk, wv = (idx.const(p[1]) for p in (q, k, v))
        bq, bk, bv = (idx.const(p[2]) for p in (q, k, v))
        if head_dim is None or wq is None or wk is None or wv is None or bq is None or bk is None or bv is None:
            continue
        if wq.ndim != 2:
            continue
        hidden = wq.shape[1]
        if hidden % head_dim or wk.shape != wq.shape or wv.shape != wq.shape or bq.shape != (hidden,):
            continue
        num_heads = hidden // head_dim
        scale = q_scale * k_scale * post_scale

        tag = f"model/fused_attention_{fused}"
        inserts: list[onnx.NodeProto] = []
        w_name, b_name = f"{tag}/qkv_weight", f"{tag}/qkv_bias"
        g.initializer.append(numpy_helper.from_array(np.concatenate([wq, wk, wv], axis=1).astype(wq.dtype), w_name))
        g.initializer.append(numpy_helper.from_array(np.concatenate([bq, bk, bv]).astype(bq.dtype), b_name))
        attn_inputs = [q[0], w_name, b_name]
        if mask_input is not None:
            if mask_input not in mask_cast:
                mask_cast[mask_input] = f"model/fused_attention/mask_index_{len(mask_cast)}"
                inserts.append(helper.make_node("Cast", [mask_input], [mask_cast[mask_input]],
                                                name=f"{mask_cast[mask_input]}_cast", to=onnx.TensorProto.INT32))
            attn_inputs.append(mask_cast[mask_input])
        inserts.append(helper.make_node("Attention", attn_inputs, [r_out.output[0]], name=tag, domain=MS_DOMAIN,
                                        num_heads=num_heads, scale=float(scale)))
        remove.add(id(r_out))
        new_nodes.append((r_out, inserts))
        fused += 1
    if not fused:
        return 0
    anchors = {id(a): ins for a, ins in new_nodes}
    nodes: list[onnx.NodeProto] = []
    casts_placed: set[str] = set()
    for n in g.node:
        for ins in anchors.get(id(n), []):
            if ins.op_type == "Cast":
                if ins.output[0] in casts_placed:
                    continue
                casts_placed.add(ins.output[0])
            nodes.append(ins)
        if id(n) not in remove:
            nodes.append(n)
    del g.node[:]
    g.node.extend(_topological(nodes, g))
    remove_dead(model)
    if not any(imp.domain == MS_DOMAIN for imp in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return fused


def _topological(nodes: Sequence[onnx.NodeProto], g: onnx.GraphProto) -> list[onnx.NodeProto]:
    """``nodes`` in an order where every value is produced before it is read (stable for the rest)."""
    available = {vi.name for vi in g.input} | {i.name for i in g.initializer} | {""}
    pending = list(nodes)
    ordered: list[onnx.NodeProto] = []
    while pending:
        rest = []
        for n in pending:
            reads = [i for i in n.input]
            for a in n.attribute:  # subgraphs may read outer values
                if a.type == onnx.AttributeProto.GRAPH:
                    reads += [i for sn in a.g.node for i in sn.input if i not in {o for x in a.g.node for o in x.output}]
            if all(r in available for r in reads):
                ordered.append(n)
                available.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            ordered.extend(rest)  # a cycle or an outer-scope read we cannot see: keep the given order
            break
        pending = rest
    return ordered


def remove_dead(model: onnx.ModelProto) -> None:
    """Drop nodes whose outputs nobody reads and initializers no node reads."""
    g = model.graph
    needed = {vi.name for vi in g.output}
    keep: list[onnx.NodeProto] = []
    for n in reversed(list(g.node)):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
            for a in n.attribute:
                graphs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
                for sg in graphs:
                    needed.update(i for sn in sg.node for i in sn.input if i)
    keep.reverse()
    del g.node[:]
    g.node.extend(keep)
    inits = [i for i in g.initializer if i.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)
    vis = [vi for vi in g.value_info if vi.name in needed]
    del g.value_info[:]
    g.value_info.extend(vis)


def transformer_fusions(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
    """Our SDPA attention fusion, then ONNX Runtime's BERT fusions (SkipLayerNormalization, BiasGelu,
    EmbedLayerNormalization; Attention for TorchScript graphs). Returns the fused model and the counts of fused
    op types in it."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    fuse_sdpa_attention(m)
    try:
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_by_fusion
    except ImportError:  # pragma: no cover - onnxruntime always ships transformers tools
        return m, fused_counts(m)
    options = FusionOptions("bert")
    # our graph already carries the raw mask into Attention; ORT's mask rewrite would read a different input
    options.enable_attention = not any(n.op_type == "Attention" for n in m.graph.node)
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    for name in ("fusion_base", "onnx_model", "fusion_utils", "optimizer", "fusion_attention", "onnx_model_bert"):
        logging.getLogger(name).setLevel(logging.ERROR)
    opt = optimize_by_fusion(m, model_type="bert", num_heads=0, hidden_size=0, optimization_options=options)
    out = opt if isinstance(opt, onnx.ModelProto) else opt.model  # an OnnxModel (ORT imports it two ways)
    return out, fused_counts(out)


FUSED_OPS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "BiasGelu", "FastGelu", "Gelu",
             "EmbedLayerNormalization", "FusedMatMul", "FusedConv", "QuickGelu", "BiasSoftmax")


def fused_counts(model: onnx.ModelProto) -> dict[str, int]:
    """Fused op types and their counts; ``packed`` = token-wise nodes that run without padding."""
    c = Counter(n.op_type for n in model.graph.node if n.domain == MS_DOMAIN or n.op_type in FUSED_OPS)
    out = {k: c[k] for k in sorted(c)}
    packed = sum(1 for n in model.graph.node if any(o.endswith("/packed") and not o.startswith("model/packed/")
                                                    for o in n.output))
    if packed:
        out["packed"] = packed
    return out


# -- padding removal ------------------------------------------------------------------------------------------
#: ops that act on each token alone (so they can run on the valid tokens only): op -> which inputs carry tokens
_TOKENWISE = {"MatMul": (0,), "BiasGelu": (0,), "FastGelu": (0,), "Gelu": (0,), "SkipLayerNormalization": (0, 1),
              "LayerNormalization": (0,)}


def pack_tokens(model: onnx.ModelProto) -> int:
    """Run the token-wise layers between attention blocks (projections, feed-forward, GELU, layer norms) on the
    valid tokens only, in place; returns how many nodes now run packed.

    A padded batch [B, S, H] wastes the padding's share of every token-wise matmul (a third to a half for batches
    of sentences of unequal length). After each ``Attention`` node the valid tokens are gathered into [T, H]
    (T = number of 1s in the padding mask); they are scattered back, zeros elsewhere, only where a full tensor is
    needed: the next attention's input and the stage's outputs. Padded positions of the stage's outputs become 0
    (a mask-aware post stage ignores them; the caller checks the pipeline's outputs are unchanged)."""
    g = model.graph
    idx = _Index(g)
    attentions = [n for n in g.node if n.op_type == "Attention" and n.domain == MS_DOMAIN and len(n.input) >= 4]
    masks = {n.input[3] for n in attentions}
    if not attentions or len(masks) != 1:
        return 0
    cast = idx.node(next(iter(masks)), "Cast")
    if cast is None:
        return 0
    source = cast.input[0]  # the [B, S] padding mask the attention blocks read
    attention_io = {n.input[0] for n in attentions} | {n.output[0] for n in attentions}

    def tokenwise(n: onnx.NodeProto) -> tuple[int, ...] | None:
        if n.op_type not in _TOKENWISE or n.domain not in ("", MS_DOMAIN):
            return None
        if n.op_type == "MatMul":
            w = idx.const(n.input[1])
            return (0,) if w is not None and w.ndim == 2 else None
        if n.op_type == "LayerNormalization" and next((a.i for a in n.attribute if a.name == "axis"), -1) != -1:
            return None
        if n.op_type == "SkipLayerNormalization" and any(o for o in n.output[1:]):
            return None
        slots = _TOKENWISE[n.op_type]
        others = [i for k, i in enumerate(n.input) if k not in slots and i]
        return slots if all(idx.const(i) is not None for i in others) else None

    pre = "model/packed"
    new: list[onnx.NodeProto] = [
        helper.make_node("Reshape", [source, f"{pre}/minus_one"], [f"{pre}/mask_flat"], name=f"{pre}/mask_flat"),
        helper.make_node("Cast", [f"{pre}/mask_flat"], [f"{pre}/mask_bool"], name=f"{pre}/mask_bool",
                         to=onnx.TensorProto.BOOL),
        helper.make_node("NonZero", [f"{pre}/mask_bool"], [f"{pre}/nonzero"], name=f"{pre}/nonzero"),
        helper.make_node("Reshape", [f"{pre}/nonzero", f"{pre}/minus_one"], [f"{pre}/index"], name=f"{pre}/index"),
        helper.make_node("Transpose", [f"{pre}/nonzero"], [f"{pre}/index2"], name=f"{pre}/index2", perm=[1, 0]),
        helper.make_node("Shape", [source], [f"{pre}/bs"], name=f"{pre}/bs"),
        helper.make_node("ReduceProd", [f"{pre}/bs"], [f"{pre}/rows"], name=f"{pre}/rows", keepdims=1),
    ]
    g.initializer.extend([numpy_helper.from_array(np.array([-1], np.int64), f"{pre}/minus_one"),
                          numpy_helper.from_array(np.array([1], np.int64), f"{pre}/one"),
                          numpy_helper.from_array(np.array([2], np.int64), f"{pre}/two"),
                          numpy_helper.from_array(np.array([3], np.int64), f"{pre}/three")])
    packed: dict[str, str] = {}  # full name -> packed name
    full_again: dict[str, str] = {}  # full name whose producer now writes packed -> name of its unpacked copy
    converted: set[str] = set()  # outputs (full names) of nodes that now run packed
    counter = [0]

    def pack(name: str) -> str:
        if name not in packed:
            k = counter[0] = counter[0] + 1
            p = f"{pre}/{k}"
            new.extend([
                helper.make_node("Shape", [name], [f"{p}/shape"], name=f"{p}/shape"),
                helper.make_node("Slice", [f"{p}/shape", f"{pre}/two", f"{pre}/three"], [f"{p}/width"],
                                 name=f"{p}/width"),
                helper.make_node("Concat", [f"{pre}/minus_one", f"{p}/width"], [f"{p}/2d"], name=f"{p}/2d", axis=0),
                helper.make_node("Reshape", [name, f"{p}/2d"], [f"{p}/flat"], name=f"{p}/flat"),
                helper.make_node("Gather", [f"{p}/flat", f"{pre}/index"], [f"{p}/packed"], name=f"{p}/gather",
                                 axis=0),
            ])
            packed[name] = f"{p}/packed"
        return packed[name]

    def unpack(name: str) -> str:
        """The full [B, S, W] tensor for a value that is only held packed (zeros at padded positions)."""
        if name not in full_again:
            k = counter[0] = counter[0] + 1
            p = f"{pre}/{k}"
            src = packed[name]
            new.extend([
                helper.make_node("Shape", [src], [f"{p}/shape"], name=f"{p}/shape"),
                helper.make_node("Slice", [f"{p}/shape", f"{pre}/one", f"{pre}/two"], [f"{p}/width"],
                                 name=f"{p}/width"),
                helper.make_node("Concat", [f"{pre}/rows", f"{p}/width"], [f"{p}/2d"], name=f"{p}/2d", axis=0),
                helper.make_node("ConstantOfShape", [f"{p}/2d"], [f"{p}/zeros"], name=f"{p}/zeros",
                                 value=numpy_helper.from_array(np.zeros(1, np.float32))),
                helper.make_node("ScatterND", [f"{p}/zeros", f"{pre}/index2", src], [f"{p}/flat"],
                                 name=f"{p}/scatter"),
                helper.make_node("Concat", [f"{pre}/bs", f"{p}/width"], [f"{p}/3d"], name=f"{p}/3d", axis=0),
                helper.make_node("Reshape", [f"{p}/flat", f"{p}/3d"], [name], name=f"{p}/reshape"),
            ])
            full_again[name] = name
        return name

    nodes = list(g.node)
    first = next(i for i, n in enumerate(nodes) if n is attentions[0] or n == attentions[0])
    out_nodes = nodes[:first]
    n_packed = 0
    for n in nodes[first:]:
        slots = tokenwise(n)
        token_inputs = [n.input[k] for k in slots] if slots is not None else []
        ok = slots is not None and all(i in packed or i in attention_io for i in token_inputs)
        if ok:
            node = onnx.NodeProto()
            node.CopyFrom(n)
            for k in slots or ():
                node.input[k] = pack(node.input[k]) if node.input[k] not in packed else packed[node.input[k]]
            full_out = node.output[0]
            packed[full_out] = f"{full_out}/packed"
            node.output[0] = packed[full_out]
            converted.add(full_out)
            new.append(node)
            n_packed += 1
            continue
        for i in n.input:  # a consumer that needs the full tensor of a value now held packed
            if i in converted:
                unpack(i)
        new.append(n)
    for vi in g.output:
        if vi.name in converted:
            unpack(vi.name)
    if n_packed == 0:
        return 0
    del g.node[:]
    g.node.extend(_topological(out_nodes + new, g))
    remove_dead(model)
    return n_packed
