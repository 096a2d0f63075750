"""Precision candidates for the model stage, built with ONNX Runtime's quantization tools.

- ``int8 dynamic``: weights int8 (per tensor or per output channel), activations quantized at run time per
  tensor (``DynamicQuantizeMatMul`` / ``QAttention``): no calibration, fast on CPUs with VNNI or AMX.
- ``int8 static``: QuantizeLinear/DequantizeLinear pairs around weights and activations, activation ranges
  calibrated (MinMax) on model-stage inputs: standard ONNX only when the stage itself is (``portable``).
- ``int8 weights``: ``MatMulNBits`` with 8-bit block-wise weights (block 32) and int8 compute: accurate, less fast.
- mixed: one of the above with the nodes that hurt the pipeline's metric most left in fp32 (see ``optimize``).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx

log = logging.getLogger("onnxpipe")

#: op types each method can quantize (dynamic Conv is slower than fp32 on CPUs, so it is not offered)
DYNAMIC_OPS = ("MatMul", "Attention")
STATIC_OPS = ("Conv", "MatMul", "Gemm", "Attention")
WEIGHT_ONLY_OPS = ("MatMul",)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's quantizers log advice and per-tensor notes on the root logger (``logging.warning`` even
    installs a handler there when it has none); a CLI prints one line, so both are undone."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@contextlib.contextmanager
def _keep_root_logger() -> Iterator[None]:
    """``onnxruntime.quantization`` calls ``logging.basicConfig`` when imported (matmul_nbits_quantizer): undo it,
    or every onnxpipe progress line would print twice."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


with _keep_root_logger():
    import onnxruntime.quantization  # noqa: F401  (imported here, once, under the guard)


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """ORT's quantizers move a ModelProto's weights to external data in place: they get a copy."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m


def _const_inputs(model: onnx.ModelProto) -> set[str]:
    g = model.graph
    return {i.name for i in g.initializer} - {vi.name for vi in g.input}


def quantizable(model: onnx.ModelProto, method: str) -> list[str]:
    """Names of the nodes ``method`` ("dynamic", "static", "weights") would quantize: ops of its kind whose
    weight is a constant."""
    consts = _const_inputs(model)
    ops = {"dynamic": DYNAMIC_OPS, "static": STATIC_OPS, "weights": WEIGHT_ONLY_OPS}[method]
    names = []
    for n in model.graph.node:
        if n.op_type not in ops or len(n.input) < 2:
            continue
        if n.input[1] in consts:
            names.append(n.name)
    return names


def dynamic(model: onnx.ModelProto, *, per_channel: bool, nodes: Sequence[str] | None = None) -> onnx.ModelProto:
    """int8 dynamic quantization of ``nodes`` (default: every quantizable node)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    targets = list(nodes) if nodes is not None else quantizable(model, "dynamic")
    with tempfile.TemporaryDirectory() as tmp, _quiet():
        out = Path(tmp) / "q.onnx"
        quantize_dynamic(_copy(model), out, op_types_to_quantize=list(DYNAMIC_OPS), per_channel=per_channel,
                         weight_type=QuantType.QInt8, nodes_to_quantize=targets,
                         extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT})
        return onnx.load(str(out))


class _Reader:
    """ONNX Runtime's CalibrationDataReader over a list of model-stage feeds."""

    def __init__(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> None:
        self._feeds = list(feeds)
        self._it: Iterator[Mapping[str, np.ndarray]] = iter(self._feeds)

    def get_next(self) -> Mapping[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._feeds)


def static(model: onnx.ModelProto, feeds: Sequence[Mapping[str, np.ndarray]], *, per_channel: bool,
           exclude: Sequence[str] = ()) -> onnx.ModelProto:
    """int8 QDQ quantization calibrated on ``feeds`` (uint8 activations, int8 weights: the CPU's fast path) of the
    nodes with constant weights (activation x activation products such as attention scores stay fp32).
    Standard ONNX QuantizeLinear/DequantizeLinear only: no contrib ops are added."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory() as tmp, _quiet():
        out = Path(tmp) / "q.onnx"
        quantize_static(_copy(model), out, _Reader(feeds), quant_format=QuantFormat.QDQ,  # type: ignore[arg-type]
                        op_types_to_quantize=list(STATIC_OPS), per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_quantize=[n for n in quantizable(model, "static") if n not in set(exclude)],
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT, "UseQDQContribOps": False,
                                       "CalibTensorRangeSymmetric": False})
        return onnx.load(str(out))


def weights_int8(model: onnx.ModelProto, *, exclude: Sequence[str] = ()) -> onnx.ModelProto:
    """8-bit block-wise weight quantization of MatMuls (``com.microsoft.MatMulNBits``, int8 compute)."""
    with _keep_root_logger():
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )

    m = onnx.ModelProto()
    m.CopyFrom(model)
    cfg = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, accuracy_level=4, bits=8)
    q = MatMulNBitsQuantizer(m, algo_config=cfg, nodes_to_exclude=list(exclude))
    with _quiet():
        q.process()
    result: onnx.ModelProto = q.model.model
    return result


def splice(fp32: onnx.ModelProto, quantized: onnx.ModelProto, nodes: set[str]) -> onnx.ModelProto:
    """``fp32`` with each node named in ``nodes`` replaced by its quantized form taken from ``quantized`` (the
    same stage with every node quantized): the nodes of ``quantized`` that compute that node's outputs from
    values the fp32 graph has. One quantization run then serves every mix (ONNX Runtime's quantizers keep
    output names, so the pieces fit)."""
    from onnx import helper

    from onnxpipe._optimize._fusion import remove_dead

    g = fp32.graph
    available = {o for n in g.node for o in n.output} | {vi.name for vi in g.input} | {i.name for i in g.initializer}
    q_producer = {o: n for n in quantized.graph.node for o in n.output if o}
    q_inits = {i.name: i for i in quantized.graph.initializer}
    added_inits: dict[str, onnx.TensorProto] = {}
    placed: set[str] = set()
    out_nodes: list[onnx.NodeProto] = []
    missing = [n for n in nodes if n not in {x.name for x in g.node}]
    if missing:
        raise ValueError(f"nodes {missing[:3]} are not in the fp32 model stage")
    for node in g.node:
        if node.name not in nodes:
            out_nodes.append(node)
            continue
        closure: list[onnx.NodeProto] = []
        seen: set[str] = set()
        stack: list[tuple[str, bool]] = [(o, False) for o in reversed(node.output) if o]
        while stack:  # iterative post-order walk from the node's outputs back to values the fp32 graph has
            name, expanded = stack.pop()
            producer = q_producer.get(name)
            if expanded:
                if producer is not None and producer.output[0] not in placed:
                    placed.update(producer.output)
                    closure.append(producer)
                continue
            if name in seen or not name:
                continue
            seen.add(name)
            if name in q_inits and name not in available:
                added_inits[name] = q_inits[name]
                continue
            if name in available and name not in node.output:
                continue
            if producer is None:
                raise ValueError(f"the quantized stage does not compute {name!r} (needed for node {node.name!r})")
            stack.append((name, True))
            stack.extend((i, False) for i in reversed(producer.input) if i)
        out_nodes.extend(closure)
    m = onnx.ModelProto()
    m.CopyFrom(fp32)
    del m.graph.node[:]
    m.graph.node.extend(out_nodes)
    m.graph.initializer.extend(added_inits.values())
    have = {imp.domain: imp.version for imp in m.opset_import}
    for imp in quantized.opset_import:
        if imp.domain not in have:
            m.opset_import.append(helper.make_opsetid(imp.domain, imp.version))
    remove_dead(m)
    return m
