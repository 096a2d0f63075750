"""Export one torch segment through torch.onnx (dynamo or TorchScript) to an ONNX ModelProto."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import onnx
import torch

from onnxpipe._segments import Segment, contains_script
from onnxpipe.errors import ExportError, ExportVerificationError
from onnxpipe.stages import RuntimeInput, bind_runtime_inputs, call_step

log = logging.getLogger("onnxpipe")

EXPORTERS = ("auto", "dynamo", "torchscript")


class SegmentModule(torch.nn.Module):
    """A segment as one module: flat tensors in (the boundary, then run-time inputs), a flat tuple out."""

    def __init__(self, seg: Segment) -> None:
        super().__init__()
        self.seg = seg
        self.steps = torch.nn.ModuleList([s for s in seg.steps if isinstance(s, torch.nn.Module)])
        self._callables = list(seg.steps)
        self._n = len(seg.input_names)
        self._runtime = [ri for _, ri in seg.runtime_inputs]

    def forward(self, *flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        values, extra = flat[: self._n], flat[self._n :]
        value: tuple[tuple[Any, ...], dict[str, Any]]
        if self.seg.input_mode == "kwargs":
            value = ((), dict(zip(self.seg.input_local, values)))
        else:
            value = (tuple(values), {})
        with bind_runtime_inputs(dict(zip(self._runtime, extra))):
            for step in self._callables:
                value = call_step(step, value)
        args, kwargs = value
        return tuple(kwargs.values()) if kwargs else tuple(args)


def choose_exporter(seg: Segment, requested: str) -> str:
    if requested not in EXPORTERS:
        raise ExportError(f"exporter: expected one of {list(EXPORTERS)}, got {requested!r}")
    if requested != "auto":
        return requested
    return "torchscript" if any(contains_script(s) for s in seg.steps) else "dynamo"


def _runtime_example(ri: RuntimeInput) -> torch.Tensor:
    return torch.tensor(ri.default, dtype=torch.float32)


def export_segment(
    seg: Segment,
    examples: Sequence[torch.Tensor],
    dynamic: Mapping[str, Mapping[int, str]],
    exporter: str,
    opset: int,
) -> onnx.ModelProto:
    """Export ``seg`` with graph inputs named ``seg.input_names`` (+ its run-time inputs) and outputs
    ``seg.output_names``. ``dynamic``: input name -> {axis: dim name}; those dims get exactly these names."""
    module = SegmentModule(seg).eval()
    runtime_names = [n for n, _ in seg.runtime_inputs]
    args = tuple(examples) + tuple(_runtime_example(ri) for _, ri in seg.runtime_inputs)
    input_names = list(seg.input_names) + runtime_names
    for name, ex in zip(input_names, args):
        if not isinstance(ex, torch.Tensor):
            raise ExportError(f"stage {seg.stage!r}: input {name!r} is {type(ex).__name__}; torch stages take tensors")
    out = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), torch.no_grad():
            warnings.simplefilter("ignore")
            if exporter == "dynamo":
                model = _dynamo(module, args, input_names, seg.output_names, dynamic, opset)
            else:
                model = _torchscript(module, args, input_names, seg.output_names, dynamic, opset)
    except ExportError:
        raise
    except Exception as e:
        reason = _torch_reason(e)
        axis_words = ("specializ", "inferred a static shape", "Constraints violated", "constraint violation", "guard on data-dependent")
        cls = ExportVerificationError if any(w in reason for w in axis_words) and dynamic else ExportError
        hint = (
            " torch could not keep a declared dynamic axis dynamic: a shape or a Python loop over it is "
            "fixed by the code; use torch ops on tensor shapes, torch.jit.script for loops, or the ops catalog."
            if cls is ExportVerificationError else ""
        )
        where = _name_axes(reason, input_names, dynamic)
        raise cls(
            f"stage {seg.stage!r} ({seg.describe()}): the {exporter} exporter failed{where}.{hint}\n"
            f"torch's reason: {_first_lines(reason, 25)}"
        ) from e
    _check_outputs(seg, model)
    return model


_INPUT_AXIS = re.compile(r"inputs\[(\d+)\](?:\[(\d+)\])?\.shape\[(\d+)\]")


def _name_axes(reason: str, input_names: Sequence[str], dynamic: Mapping[str, Mapping[int, str]]) -> str:
    """' on input 'x' axis 1 ('time')' for torch's ``inputs[0].shape[1]`` (our segment takes ``*flat``)."""
    found = []
    for m in _INPUT_AXIS.finditer(reason):
        idx = int(m.group(2) if m.group(2) is not None else m.group(1))
        axis = int(m.group(3))
        if idx < len(input_names):
            name = input_names[idx]
            dim = (dynamic.get(name) or {}).get(axis)
            found.append(f"input {name!r} axis {axis}" + (f" ({dim!r})" if dim else ""))
    return " on " + ", ".join(dict.fromkeys(found)) if found else ""


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _torch_reason(e: BaseException) -> str:
    """torch's own message without its boilerplate: the exception summary when torch.onnx gives one."""
    text = _ANSI.sub("", f"{type(e).__name__}: {e}")
    if "## Exception summary" in text:
        text = text.split("## Exception summary", 1)[1]
        text = text.split("(Refer to the full stack trace", 1)[0]
        text = text.split("The error above occurred when calling", 1)[0]
    return text.strip()


def _first_lines(text: str, n: int) -> str:
    lines = text.strip().splitlines()
    return "\n".join(lines[:n]) + ("\n..." if len(lines) > n else "")


def _dynamo(module: torch.nn.Module, args: tuple[torch.Tensor, ...], input_names: list[str],
            output_names: list[str], dynamic: Mapping[str, Mapping[int, str]], opset: int) -> onnx.ModelProto:
    shapes: list[dict[int, Any] | None] = []
    for name in input_names:
        axes = dynamic.get(name)
        shapes.append({a: torch.export.Dim.DYNAMIC for a in axes} if axes else None)
    program = torch.onnx.export(
        module, args, dynamo=True, input_names=input_names, output_names=output_names,
        dynamic_shapes=(tuple(shapes),), opset_version=opset, optimize=True, verbose=False,
        external_data=False, report=False,
    )
    if program is None:
        raise ExportError("torch.onnx.export(dynamo=True) returned no program")
    model = program.model_proto
    _rename_dims(model, dynamic)
    return model


def _torchscript(module: torch.nn.Module, args: tuple[torch.Tensor, ...], input_names: list[str],
                 output_names: list[str], dynamic: Mapping[str, Mapping[int, str]], opset: int) -> onnx.ModelProto:
    buf = io.BytesIO()
    axes = {n: dict(a) for n, a in dynamic.items() if a}
    torch.onnx.export(
        module, args, buf,  # type: ignore[arg-type]  # a file object works; the stub says path only
        dynamo=False, input_names=input_names, output_names=output_names,
        dynamic_axes=axes, opset_version=opset, do_constant_folding=True,
    )
    return onnx.load_from_string(buf.getvalue())


_SYMBOL = re.compile(r"\b[a-zA-Z_][a-zA-Z0-9_]*\b")


def _rename_dims(model: onnx.ModelProto, dynamic: Mapping[str, Mapping[int, str]]) -> None:
    """Give torch.export's symbols (s0, s77, ...) the user's dim names everywhere in the graph."""
    mapping: dict[str, str] = {}
    for vi in model.graph.input:
        axes = dynamic.get(vi.name) or {}
        dims = vi.type.tensor_type.shape.dim
        for axis, name in axes.items():
            if axis < len(dims) and dims[axis].HasField("dim_param"):
                mapping.setdefault(dims[axis].dim_param, name)
    if not mapping:
        return

    def fix(vi: onnx.ValueInfoProto) -> None:
        if not vi.type.HasField("tensor_type"):
            return
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param"):
                d.dim_param = _SYMBOL.sub(lambda m: mapping.get(m.group(0), m.group(0)), d.dim_param)

    g = model.graph
    for vi in (*g.input, *g.output, *g.value_info):
        fix(vi)


def _check_outputs(seg: Segment, model: onnx.ModelProto) -> None:
    got = [o.name for o in model.graph.output]
    if got != list(seg.output_names):
        raise ExportError(
            f"stage {seg.stage!r} ({seg.describe()}): exported outputs {got}, expected {seg.output_names}"
        )
