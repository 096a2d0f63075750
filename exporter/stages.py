"""Stage building blocks shared by the exporter and the operator catalog.

A pipeline is ``inputs -> pre -> model -> post``. Each of the three may be

* a torch stage: an ``nn.Module`` or a callable of torch ops, exported through torch.onnx;
* an ONNX-native stage: an :class:`OnnxStage`, written directly as an ONNX graph for steps torch cannot
  trace (strings: tokenization, label lookup), with a numpy reference used in eager runs and verification;
* a :class:`Chain` of the above, run in order.

Data between steps: a tuple is passed on as positional arguments, a dict as keyword arguments, a single
tensor as one argument. ONNX-native stages always return a dict (their output names).

Run-time parameters (thresholds) are :class:`RuntimeInput` attributes of a module: the exported graph gets a
float32 scalar input of that name backed by an initializer holding the default, so a caller may override it
per run without re-exporting.
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import torch

__all__ = ["Chain", "OnnxStage", "RuntimeInput", "flatten_stage"]

_BOUND: contextvars.ContextVar[dict[int, torch.Tensor] | None] = contextvars.ContextVar(
    "onnxpipe_runtime_inputs", default=None
)


class RuntimeInput:
    """A float32 scalar the caller can override per run (e.g. ``score_threshold``).

    Declare it as an attribute of the op module and read it with :meth:`value` inside ``forward``::

        self.score_threshold = RuntimeInput("score_threshold", 0.25)
        ...
        keep = scores > self.score_threshold.value()

    Eagerly ``value()`` is the default; during export it is the graph input of the same name.
    """

    def __init__(self, name: str, default: float, range: tuple[float, float] | None = None) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"RuntimeInput name: expected an identifier, got {name!r}")
        if isinstance(default, bool) or not isinstance(default, (int, float)) or not math.isfinite(default):
            raise ValueError(f"RuntimeInput {name!r}: default: expected a finite number, got {default!r}")
        if range is not None:
            lo, hi = (float(v) for v in range)
            if not lo <= hi:
                raise ValueError(f"RuntimeInput {name!r}: range: expected (low, high) with low <= high, got {range!r}")
            if not lo <= default <= hi:
                raise ValueError(f"RuntimeInput {name!r}: default: expected a number in [{lo:g}, {hi:g}], got {default!r}")
            range = (lo, hi)
        self.name = name
        self.default = float(default)
        #: inclusive (low, high) every runtime checks a value against (the manifest's ``range``), or None
        self.range = range

    def value(self) -> torch.Tensor:
        bound = _BOUND.get()
        if bound is not None and id(self) in bound:
            return bound[id(self)]
        return torch.tensor(self.default, dtype=torch.float32)

    def __repr__(self) -> str:
        rng = f", range={self.range!r}" if self.range is not None else ""
        return f"RuntimeInput({self.name!r}, {self.default!r}{rng})"


@contextlib.contextmanager
def bind_runtime_inputs(values: Mapping[RuntimeInput, torch.Tensor]) -> Iterator[None]:
    """Make ``RuntimeInput.value()`` return the given tensors (used by the exporter while tracing)."""
    current = dict(_BOUND.get() or {})
    current.update({id(k): v for k, v in values.items()})
    token = _BOUND.set(current)
    try:
        yield
    finally:
        _BOUND.reset(token)


def find_runtime_inputs(obj: Any) -> list[tuple[str, RuntimeInput]]:
    """``(attribute path, RuntimeInput)`` for every RuntimeInput reachable from a stage, in module order."""
    found: list[tuple[str, RuntimeInput]] = []
    seen: set[int] = set()
    modules: list[tuple[str, Any]]
    if isinstance(obj, torch.nn.Module):
        modules = list(obj.named_modules())
    else:
        modules = [("", obj)]
    for path, mod in modules:
        for attr, val in sorted(vars(mod).items()):
            if isinstance(val, RuntimeInput) and id(val) not in seen:
                seen.add(id(val))
                found.append((f"{path}.{attr}" if path else attr, val))
    return found


class OnnxStage(abc.ABC):
    """A stage written directly in ONNX, composed with the torch stages at graph level.

    Subclasses set ``input_names`` / ``output_names`` and implement :meth:`build` (the ONNX graph) and
    :meth:`reference` (the same computation in numpy: used for eager runs and export verification).
    Inputs are bound by name when the previous step returned a dict, else by position.
    """

    input_names: Sequence[str] = ()
    output_names: Sequence[str] = ()
    #: custom-op domains the graph uses, e.g. ``("ai.onnx.contrib",)``
    domains: Sequence[str] = ()
    #: class labels embedded by this stage (reported in the manifest), if any
    onnxpipe_labels: Sequence[str] | None = None

    @abc.abstractmethod
    def build(self, opset: int) -> onnx.ModelProto:
        """The stage as an ONNX model whose graph inputs/outputs are ``input_names`` / ``output_names``.

        Input and output value infos must carry element types and shapes (dynamic dims as ``dim_param``),
        and ``opset_import`` must list every domain used.
        """

    @abc.abstractmethod
    def reference(self, *inputs: np.ndarray) -> dict[str, np.ndarray]:
        """The eager behaviour: numpy arrays in (in ``input_names`` order), ``{output_name: array}`` out."""

    def describe(self) -> str:
        return type(self).__name__

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        arrays = _bind_inputs(self, args, kwargs)
        out = self.reference(*[_to_numpy(a) for a in arrays])
        missing = [n for n in self.output_names if n not in out]
        if missing:
            raise RuntimeError(f"{self.describe()}.reference did not return outputs {missing}")
        return {n: _from_numpy(out[n]) for n in self.output_names}


def _bind_inputs(stage: OnnxStage, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
    names = list(stage.input_names)
    if kwargs:
        missing = [n for n in names if n not in kwargs]
        if missing:
            raise ValueError(
                f"{stage.describe()}: missing inputs {missing}; got {sorted(kwargs)}, expected {names}"
            )
        return [kwargs[n] for n in names]
    if len(args) < len(names):
        raise ValueError(f"{stage.describe()}: expected {len(names)} inputs {names}, got {len(args)}")
    return list(args[: len(names)])


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _from_numpy(x: np.ndarray) -> Any:
    """Numeric arrays become torch tensors (so torch stages can consume them); strings stay numpy."""
    x = np.asarray(x)
    if x.dtype.kind in "USO":
        return x
    return torch.from_numpy(np.ascontiguousarray(x))


class Chain(torch.nn.Module):
    """Run steps in order, passing tuples positionally and dicts as keyword arguments.

    A Chain may mix torch modules/callables and :class:`OnnxStage` objects; the exporter splits it into
    torch and ONNX-native segments.
    """

    def __init__(self, *steps: Any) -> None:
        super().__init__()
        if not steps:
            raise ValueError("Chain: expected at least one step, got none")
        self.steps = list(steps)
        for i, step in enumerate(steps):
            if isinstance(step, torch.nn.Module):
                self.add_module(str(i), step)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        value: Any = (args, kwargs)
        for step in self.steps:
            value = call_step(step, value)
        return value[0][0] if not value[1] and len(value[0]) == 1 else _unpack(value)

    def describe(self) -> str:
        return " -> ".join(describe(s) for s in self.steps)


def _unpack(value: tuple[tuple[Any, ...], dict[str, Any]]) -> Any:
    args, kwargs = value
    return kwargs if kwargs else args


def call_step(step: Any, value: tuple[tuple[Any, ...], dict[str, Any]]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Call one step on ``(args, kwargs)`` and normalise its result back to ``(args, kwargs)``."""
    args, kwargs = value
    out = step(*args, **kwargs)
    return as_call_value(out)


def as_call_value(out: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(out, Mapping):
        return (), dict(out)
    if isinstance(out, (tuple, list)):
        return tuple(out), {}
    return (out,), {}


def flatten_stage(stage: Any) -> list[Any]:
    """The steps of a stage, with Chains (and ops that split themselves) expanded.

    An op may define ``onnxpipe_steps() -> list`` to split itself into torch and ONNX-native parts (e.g. a
    TopK whose label strings are gathered in ONNX); the parts must together compute what ``forward`` does.
    """
    if stage is None:
        return []
    if isinstance(stage, Chain):
        return [s for step in stage.steps for s in flatten_stage(step)]
    if type(stage).__module__.startswith("torchvision.transforms"):
        from onnxpipe.ops.torchvision import translate  # torchvision's transforms as written (docs/ops.md)

        return [translate(stage)]
    if type(stage).__module__.startswith(("torchvision.models.detection", "torchvision.models.segmentation")):
        from onnxpipe.ops.torchvision_detection import translate_model  # detectors as written (docs/ops.md)

        return [translate_model(stage)]
    split = getattr(stage, "onnxpipe_steps", None)
    if callable(split):
        return [s for step in split() for s in flatten_stage(step)]
    return [stage]


def describe(step: Any) -> str:
    """A short name for messages and the manifest: onnxpipe's own ``describe()`` (ops, Chain, OnnxStage),
    else the class name (other libraries' ``describe()`` may return prose: torchvision's presets do)."""
    d = getattr(step, "describe", None)
    if callable(d) and (isinstance(step, OnnxStage) or type(step).__module__.split(".")[0] == "onnxpipe"):
        return str(d())
    if isinstance(step, torch.nn.Module):
        return type(step).__name__
    return getattr(step, "__name__", type(step).__name__)
