"""Export one torch segment through torch.onnx (dynamo or TorchScript) to an ONNX ModelProto."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
import traceback
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
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
    try:
        with _captured_output() as logs:
            model = _export(module, args, input_names, seg.output_names, dynamic, exporter, opset)
    except ExportError:
        raise
    except Exception as e:
        raise _failure(seg, e, logs.text(), module, args, input_names, dynamic, exporter, opset) from e
    log.debug("torch output while exporting %s:\n%s", seg.name, logs.text())
    _check_outputs(seg, model)
    return model


def _export(module: torch.nn.Module, args: tuple[torch.Tensor, ...], input_names: list[str],
            output_names: list[str], dynamic: Mapping[str, Mapping[int, str]], exporter: str,
            opset: int) -> onnx.ModelProto:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            return _dynamo(module, args, input_names, output_names, dynamic, opset)
        return _torchscript(module, args, input_names, output_names, dynamic, opset)


class _Captured:
    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile(mode="w+b")

    def text(self) -> str:
        self.file.seek(0)
        return self.file.read().decode("utf-8", "replace")


@contextlib.contextmanager
def _captured_output() -> Iterator[_Captured]:
    """torch's own output while exporting (FX graphs, warnings from C++, logging handlers bound to the
    original stderr) goes to a file instead of the user's terminal: file descriptors 1 and 2 are redirected,
    and so are ``sys.stdout``/``sys.stderr``."""
    cap = _Captured()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = []
    try:
        for fd in (1, 2):
            saved.append((fd, os.dup(fd)))
            os.dup2(cap.file.fileno(), fd)
    except OSError:  # no real descriptors (embedded interpreters): Python-level redirection only
        pass
    text = io.TextIOWrapper(cap.file, encoding="utf-8", errors="replace", write_through=True)
    try:
        with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
            yield cap
    finally:
        with contextlib.suppress(Exception):
            text.flush()
        text.detach()
        for fd, old in saved:
            os.dup2(old, fd)
            os.close(old)


#: why torch failed, from its message (first match wins); "other" when nothing matches
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("data-dependent control flow", ("data-dependent", "data dependent", "GuardOnDataDependent",
                                     "Could not guard on", "unbacked", "Could not extract specialized integer")),
    ("frozen shape", ("specializ", "inferred a static shape", "Constraints violated", "constraint violation",
                      "not dynamic")),
    ("unsupported op", ("Unsupported", "unsupported", "not supported", "No decomposition", "not implemented",
                        "NotImplementedError", "No ONNX function", "Cannot find symbolic", "is not a registered")),
    ("dtype", ("dtype", "scalar type", "Expected object of scalar type", "doesn't define __round__", "type Tensor",
               "must have the same type")),
)


def categorize(reason: str) -> str:
    for name, words in CATEGORIES:
        if any(w in reason for w in words):
            return name
    return "other"


_TORCH_DIRS = tuple(
    str(Path(str(m.__file__)).resolve().parent) + os.sep
    for m in (torch, onnx, contextlib) if getattr(m, "__file__", None)
)
_OWN_FILES = {str(Path(__file__).resolve()), str(Path(__file__).resolve().parent / "stages.py"),
              str(Path(__file__).resolve().parent / "_segments.py")}
_FILE_LINE = re.compile(r'File "([^"]+)", line (\d+)')


def _is_user_file(filename: str) -> bool:
    f = str(Path(filename).resolve()) if not filename.startswith("<") else filename
    if f.startswith("<") or f in _OWN_FILES:
        return False
    return not any(f.startswith(d) for d in _TORCH_DIRS) and "onnxscript" not in f


def user_source(e: BaseException, text: str) -> str | None:
    """``file:line`` of the innermost frame in the user's code (not torch, onnx or the exporter itself):
    from the traceback of the exception and its causes, else from torch's "from user code" listing."""
    found: str | None = None
    seen: set[int] = set()
    exc: BaseException | None = e
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for frame in traceback.extract_tb(exc.__traceback__):
            if _is_user_file(frame.filename):
                found = f"{frame.filename}:{frame.lineno}"
        if found:
            return found
        exc = exc.__cause__ or exc.__context__
    for m in _FILE_LINE.finditer(text):
        if _is_user_file(m.group(1)):
            found = f"{m.group(1)}:{m.group(2)}"
    return found


def _failure(seg: Segment, e: Exception, logs: str, module: torch.nn.Module, args: tuple[torch.Tensor, ...],
             input_names: list[str], dynamic: Mapping[str, Mapping[int, str]], exporter: str,
             opset: int) -> ExportError:
    """The error to raise for a failed torch export: first line stage / source line / category."""
    reason = _torch_reason(e)
    full = "".join(traceback.format_exception(e))
    category = categorize(reason)
    axes_cause = False
    if dynamic:
        # Blame the dynamic axes only when the same export succeeds without them.
        try:
            with _captured_output():
                _export(module, args, input_names, seg.output_names, {}, exporter, opset)
            axes_cause = True
        except Exception:
            axes_cause = False
    source = user_source(e, full + "\n" + reason)
    where = _name_axes(reason, input_names, dynamic) if axes_cause else ""
    if axes_cause:
        category = "frozen shape" if category not in ("data-dependent control flow",) else category
        hint = (f" It exports without the declared dynamic axes, so torch could not keep a dynamic axis "
                f"dynamic{where}: a shape or a Python loop over it is fixed by the code; use torch ops on tensor "
                "shapes, torch.jit.script for loops, or the onnxpipe.ops catalog.")
    else:
        hint = _HINTS.get(category, "")
    cls = ExportVerificationError if axes_cause else ExportError
    head = f"stage {seg.stage!r} ({seg.describe()}): {category}" + (f" at {source}" if source else "")
    short = _first_lines(reason, 12)
    message = f"{head}: the {exporter} exporter failed.{hint}\ntorch's reason: {short}"
    details = f"{message}\n\n--- traceback ---\n{full}\n--- torch's output while exporting ---\n{logs}"
    return cls(message, details=details, stage=seg.stage, category=category, source=source)


_HINTS = {
    "data-dependent control flow": (" A Python `if`/loop depends on tensor values, which an exported graph cannot "
                                    "branch on; use torch.where / masks, or torch.cond."),
    "unsupported op": " An op has no ONNX lowering in this exporter; try exporter='torchscript'/'dynamo' or "
                      "replace it (the onnxpipe.ops catalog).",
    "dtype": " A value has a dtype torch cannot export here (e.g. round() on a tensor, mixed integer/float math).",
}


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
