"""Split a pipeline into segments and run it eagerly.

A *segment* is a run of consecutive torch steps of one stage (exported together by torch.onnx) or one
ONNX-native step. Values between segments are named: a dict's keys, or ``out0, out1, ...`` for a tuple.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from onnxpipe.errors import ExportError
from onnxpipe.stages import (
    OnnxStage,
    RuntimeInput,
    as_call_value,
    bind_runtime_inputs,
    call_step,
    describe,
    find_runtime_inputs,
    flatten_stage,
)

STAGE_NAMES = ("pre", "model", "post")
# modules whose output depends on train/eval mode; exporting them in training mode is almost surely a mistake
_TRAINING_SENSITIVE = (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._BatchNorm,
                       torch.nn.modules.instancenorm._InstanceNorm)


@dataclass
class Segment:
    stage: str  # pre | model | post
    name: str  # unique: "pre", "post", "post.1", ...
    steps: list[Any]
    onnx_native: bool
    # filled while tracing the example through the pipeline
    input_names: list[str] = field(default_factory=list)
    input_mode: str = "args"  # how the segment's first step is called: "args" or "kwargs"
    input_local: list[str] = field(default_factory=list)  # keyword names the first step sees (kwargs mode)
    output_names: list[str] = field(default_factory=list)
    output_mode: str = "args"
    runtime_inputs: list[tuple[str, RuntimeInput]] = field(default_factory=list)  # (graph name, RuntimeInput)

    def describe(self) -> str:
        return " -> ".join(describe(s) for s in self.steps)


def _is_script(v: Any) -> bool:
    return isinstance(v, (torch.jit.ScriptModule, torch.jit.ScriptFunction))


def _script_globals(fn: Any) -> bool:
    """True when a Python function's code names a scripted function of its module (``@torch.jit.script def``)."""
    code, glb = getattr(fn, "__code__", None), getattr(fn, "__globals__", None)
    if code is None or glb is None:
        return False
    return any(_is_script(glb.get(n)) for n in code.co_names)


def contains_script(obj: Any) -> bool:
    """True when torch.jit.script code is reachable from the step: a ScriptModule/ScriptFunction, an attribute
    holding one, or one called by name from a ``forward`` (or the step function itself)."""
    if _is_script(obj):
        return True
    mods = list(obj.modules()) if isinstance(obj, torch.nn.Module) else [obj]
    for m in mods:
        if _is_script(m):
            return True
        if any(_is_script(v) for v in getattr(m, "__dict__", {}).values()):
            return True
        fn = getattr(type(m), "forward", None) if isinstance(m, torch.nn.Module) else m
        if _script_globals(fn):
            return True
    return False


def split(pre: Any, model: Any, post: Any) -> list[Segment]:
    segments: list[Segment] = []
    for stage_name, stage in zip(STAGE_NAMES, (pre, model, post)):
        current: list[Any] = []
        count = 0

        def close(steps: list[Any], native: bool) -> None:
            nonlocal count
            name = stage_name if count == 0 else f"{stage_name}.{count}"
            segments.append(Segment(stage_name, name, steps, native))
            count += 1

        for step in flatten_stage(stage):
            if isinstance(step, OnnxStage):
                if current:
                    close(current, False)
                    current = []
                close([step], True)
            elif callable(step):
                if isinstance(step, torch.nn.Module) and any(m.training and isinstance(m, _TRAINING_SENSITIVE)
                                                             for m in step.modules()):
                    raise ExportError(
                        f"stage {stage_name!r}: {describe(step)} is in training mode; call .eval() before "
                        "exporting (dropout and batch-norm behave differently in training)"
                    )
                current.append(step)
            else:
                raise ExportError(
                    f"stage {stage_name!r}: expected an nn.Module, a callable, an OnnxStage or a Chain, "
                    f"got {type(step).__name__}"
                )
        if current:
            close(current, False)
    if not segments:
        raise ExportError("export_pipeline: pre, model and post are all None; expected at least one stage")
    return segments


def assign_runtime_inputs(segments: Sequence[Segment], taken: set[str]) -> None:
    """Give each RuntimeInput its graph input name: its own, or prefixed by its path when two share one."""
    found = [(seg, path, ri) for seg in segments if not seg.onnx_native for step in seg.steps
             for path, ri in find_runtime_inputs(step)]
    counts: dict[str, int] = {}
    for _, _, ri in found:
        counts[ri.name] = counts.get(ri.name, 0) + 1
    used = set(taken)
    for seg, path, ri in found:
        name = ri.name
        if counts[name] > 1 or name in used:
            name = f"{seg.name}_{path}".replace(".", "_")
        if name in used:
            raise ExportError(f"run-time input {ri.name!r} at {seg.name}.{path}: name {name!r} is already taken")
        used.add(name)
        seg.runtime_inputs.append((name, ri))


def _names_for(value: tuple[tuple[Any, ...], dict[str, Any]], prefix: str) -> tuple[list[str], list[Any], str]:
    args, kwargs = value
    if kwargs:
        return [f"{prefix}{k}" for k in kwargs], list(kwargs.values()), "kwargs"
    return [f"{prefix}out{i}" for i in range(len(args))], list(args), "args"


def run_segment(seg: Segment, names: Sequence[str], values: Sequence[Any], mode: str,
                runtime_values: Mapping[RuntimeInput, torch.Tensor] | None = None) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Eagerly run one segment on named values (keys are the local names the first step expects)."""
    value = (tuple(values), {}) if mode == "args" else ((), dict(zip(names, values)))
    with torch.no_grad(), bind_runtime_inputs(runtime_values or {}):
        for step in seg.steps:
            try:
                value = call_step(step, value)
            except ExportError:
                raise
            except Exception as e:
                shapes = [tuple(getattr(v, "shape", ())) for v in (*value[0], *value[1].values())]
                raise ExportError(
                    f"stage {seg.stage!r} ({describe(step)}) failed eagerly on input shapes {shapes}: "
                    f"{type(e).__name__}: {e}"
                ) from e
    return value


def trace_names(
    segments: Sequence[Segment],
    inputs: Mapping[str, Any],
    output_names: Sequence[str] | None,
) -> dict[str, Any]:
    """Run the example through every segment, recording each boundary's names and example values.

    Returns every named value seen (graph inputs, boundaries, outputs) -> example value.
    """
    values: dict[str, Any] = dict(inputs)
    cur_names, cur_mode = list(inputs), "args"
    local_names = list(inputs)  # the names the next step sees (kwargs keys)
    for i, seg in enumerate(segments):
        seg.input_names, seg.input_mode, seg.input_local = list(cur_names), cur_mode, list(local_names)
        result = run_segment(seg, local_names, [values[n] for n in cur_names], cur_mode)
        last = i == len(segments) - 1
        local, outs, mode = _names_for(result, "")
        if last:
            if output_names is not None:
                if len(output_names) != len(outs):
                    raise ExportError(
                        f"output_names: {len(output_names)} names {list(output_names)} given, but the last stage "
                        f"returns {len(outs)} values" + (f" ({local})" if mode == "kwargs" else "")
                    )
                global_names = list(output_names)
            elif mode == "kwargs":
                global_names = list(local)
            else:
                global_names = ["output"] if len(outs) == 1 else [f"output_{k}" for k in range(len(outs))]
            dup = {n for n in global_names if global_names.count(n) > 1 or n in inputs}
            if dup:
                raise ExportError(f"output names {sorted(dup)} are not unique (or clash with input names)")
        else:
            global_names = [f"{seg.name}/{n}" for n in local]
        for n, v in zip(global_names, outs):
            if not isinstance(v, (torch.Tensor, np.ndarray)):
                raise ExportError(
                    f"stage {seg.stage!r} ({seg.describe()}) returned {type(v).__name__} for {n!r}; "
                    "expected tensors (or numpy string arrays from ONNX-native stages)"
                )
            values[n] = v
        seg.output_names, seg.output_mode = global_names, mode
        cur_names, cur_mode, local_names = global_names, mode, local
    return values


def run_eager(segments: Sequence[Segment], inputs: Mapping[str, Any],
              runtime_values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The eager pipeline on graph inputs (by name); returns the final outputs by name."""
    bound: dict[RuntimeInput, torch.Tensor] = {}
    for seg in segments:
        for name, ri in seg.runtime_inputs:
            if runtime_values and name in runtime_values:
                bound[ri] = torch.as_tensor(np.asarray(runtime_values[name], dtype=np.float32))
    values = dict(inputs)
    for seg in segments:
        result = run_segment(seg, seg.input_local, [values[n] for n in seg.input_names], seg.input_mode, bound)
        _, outs, _ = _names_for(result, "")
        if len(outs) != len(seg.output_names):
            raise ExportError(
                f"stage {seg.stage!r} ({seg.describe()}) returned {len(outs)} values here but "
                f"{len(seg.output_names)} on the example inputs"
            )
        values.update(zip(seg.output_names, outs))
    return {n: values[n] for n in segments[-1].output_names}


def to_torch(x: Any) -> Any:
    if isinstance(x, np.ndarray) and x.dtype.kind not in "USO":
        return torch.from_numpy(np.ascontiguousarray(x))
    return x


def to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


__all__ = ["Segment", "split", "trace_names", "run_eager", "assign_runtime_inputs", "contains_script",
           "as_call_value", "to_torch", "to_numpy"]
