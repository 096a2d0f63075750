"""Stage placement: the model stage on an accelerator, pre- and post-processing on ONNX Runtime's CPU provider.

The file is cut at load into one model per stage (``_stages``); each runs on its engine and hands its tensors
to the next as numpy arrays that share the producer's memory (ONNX Runtime's outputs, OpenVINO's output
buffers), so a hand-over copies nothing. ``PlacedSession.run`` has the shape of ``InferenceSession.run``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort

from onnxpipe_runtime import _stages
from onnxpipe_runtime._stages import TensorType
from onnxpipe_runtime.errors import ModelLoadError

__all__ = ["PlacedSession", "StageRunner"]

# ONNX Runtime type strings -> ONNX TensorProto.DataType
_ORT_ELEM = {"tensor(float)": 1, "tensor(uint8)": 2, "tensor(int8)": 3, "tensor(uint16)": 4, "tensor(int16)": 5,
             "tensor(int32)": 6, "tensor(int64)": 7, "tensor(string)": 8, "tensor(bool)": 9,
             "tensor(float16)": 10, "tensor(double)": 11, "tensor(uint32)": 12, "tensor(uint64)": 13,
             "tensor(bfloat16)": 16}


class StageRunner(Protocol):
    name: str
    output_names: list[str]
    placement: str  # "cpu", "openvino:bf16", ...
    borrows_outputs: bool  # its outputs live in buffers its next run overwrites

    def output_types(self) -> dict[str, TensorType]: ...

    def run(self, feeds: Mapping[str, np.ndarray], wanted: Sequence[str]) -> dict[str, np.ndarray]: ...


class OrtStage:
    """A stage on ONNX Runtime's CPU provider."""

    def __init__(self, model: bytes, name: str, options: ort.SessionOptions):
        try:
            self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ModelLoadError(f"stage {name!r}: ONNX Runtime cannot load it: {e}") from e
        self.name = name
        self.placement = "cpu"
        self.borrows_outputs = False
        self.output_names = [o.name for o in self._session.get_outputs()]
        # run-time parameters (thresholds) are inputs backed by an initializer: ONNX Runtime lists them apart
        self._input_names = [i.name for i in self._session.get_inputs()] + [
            i.name for i in self._session.get_overridable_initializers()
        ]

    def output_types(self) -> dict[str, TensorType]:
        out = {}
        for o in self._session.get_outputs():
            # ONNX Runtime reports [] both for a scalar and for an unknown rank: take it as unknown
            dims = tuple(d if isinstance(d, (int, str)) else None for d in o.shape) if o.shape else None
            out[o.name] = TensorType(_ORT_ELEM[o.type], dims)
        return out

    def run(self, feeds: Mapping[str, np.ndarray], wanted: Sequence[str]) -> dict[str, np.ndarray]:
        given = {n: feeds[n] for n in self._input_names if n in feeds}
        names = [n for n in self.output_names if n in wanted]
        return dict(zip(names, self._session.run(names, given)))


class PlacedSession:
    """The file's stages in data order, each on its engine; tensors flow between them by name."""

    def __init__(self, stages: list[StageRunner], placement: dict[str, str],
                 defaults: Mapping[str, np.ndarray] | None = None):
        self.stages = stages
        self.defaults = dict(defaults or {})  # run-time parameters' defaults, fed when the caller gives none
        self.placement = placement  # stage name -> "cpu" or "openvino:bf16", ...
        # which tensors each stage must hand on: what later stages read, plus the pipeline's outputs
        self._wanted: list[set[str]] = []
        self._borrowed = {n for s in stages if s.borrows_outputs for n in s.output_names}

    def plan(self, reads: list[list[str]], outputs: Sequence[str]) -> None:
        later: set[str] = set(outputs)
        wanted: list[set[str]] = []
        for stage_reads in reversed(reads):
            wanted.append(set(later))
            later |= set(stage_reads)
        self._wanted = list(reversed(wanted))

    def run(self, output_names: Sequence[str], feeds: Mapping[str, Any],
            timings: list[float] | None = None) -> list[np.ndarray]:
        """Like ``InferenceSession.run``; ``timings`` (a list) receives each stage's seconds, in order."""
        values: dict[str, np.ndarray] = dict(self.defaults)
        values.update(feeds)
        for stage, wanted in zip(self.stages, self._wanted):
            t0 = time.perf_counter()
            values.update(stage.run(values, list(wanted)))
            if timings is not None:
                timings.append(time.perf_counter() - t0)
        # an accelerator's output buffer is reused by its next run: hand the caller arrays of its own
        return [values[n].copy() if n in self._borrowed else values[n] for n in output_names]


def build(
    data: bytes,
    stage_names: Sequence[str],
    source: str,
    accelerated: str,
    make_accelerated: Any,
    make_cpu: Any,
    outputs: Sequence[str],
    example: Mapping[str, np.ndarray] | None = None,
    defaults: Mapping[str, np.ndarray] | None = None,
) -> PlacedSession:
    """Cut ``data`` by stage and compile each: ``accelerated`` (the model stage) with ``make_accelerated(bytes,
    name)``, the others with ``make_cpu(bytes, name)``.

    Hand-over types come from the stage that produces them. ONNX Runtime cannot always infer the rank of a
    tensor a custom op makes (the tokenizer's ids), and OpenVINO needs it: with ``example`` inputs each stage
    runs once at load and an unknown rank is taken from what it actually produced.
    """
    stages, cut = _stages.split(data, stage_names, source)
    if not any(s.name == accelerated for s in stages):
        raise ModelLoadError(f"{source}: no {accelerated!r} stage to place on an accelerator")
    known: dict[str, TensorType] = {}
    runners: list[StageRunner] = []
    placement: dict[str, str] = {}
    probe = dict(defaults or {}) | dict(example) if example is not None else None
    for stage in stages:
        # with ``defaults`` the accelerated stage reads run-time parameters as plain inputs (OpenVINO folds
        # initializer-backed inputs into constants), fed from the caller or these defaults
        model = _stages.stage_model(cut, stage, known,
                                    params_as_inputs=defaults is not None and stage.name == accelerated)
        runner = make_accelerated(model, stage.name) if stage.name == accelerated else make_cpu(model, stage.name)
        runners.append(runner)
        placement[stage.name] = runner.placement
        types = runner.output_types()
        if probe is not None:
            try:
                probe.update(runner.run(probe, stage.outputs))
            except Exception as e:  # the file is still loadable; only the probe failed
                raise ModelLoadError(f"stage {stage.name!r} fails on the file's embedded example: {e}") from e
            types = {n: t if t.dims is not None or n not in probe else TensorType(t.elem_type, (None,) * probe[n].ndim)
                     for n, t in types.items()}
        known.update(types)
    session = PlacedSession(runners, placement, defaults)
    session.plan([s.inputs for s in stages], outputs)
    return session
