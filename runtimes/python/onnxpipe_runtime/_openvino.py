"""The model stage on OpenVINO's CPU plugin (the ``openvino`` package: ``onnxpipe-runtime[openvino]``).

Imported only when an accelerator other than the CPU provider is asked for, so the runtime keeps working
without the extra.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from onnxpipe_runtime._stages import TensorType
from onnxpipe_runtime.errors import MissingExtensionError, ModelLoadError

EXTRA = "onnxpipe-runtime[openvino]"
PRECISION_HINT = {"f32": "f32", "bf16": "bf16"}

# OpenVINO element type name -> ONNX TensorProto.DataType
_ONNX_ELEM = {"f32": 1, "u8": 2, "i8": 3, "u16": 4, "i16": 5, "i32": 6, "i64": 7, "boolean": 9, "f16": 10,
              "f64": 11, "u32": 12, "u64": 13, "bf16": 16}

_core: Any = None
_core_lock = threading.Lock()


def core() -> Any:
    """The process's one ``openvino.Core`` (it caches plugins); MissingExtensionError without the package."""
    global _core
    with _core_lock:
        if _core is None:
            try:
                import openvino
            except ImportError as e:
                raise MissingExtensionError(
                    f"accelerator 'openvino' needs the package 'openvino' (pip install '{EXTRA}')"
                ) from e
            _core = openvino.Core()
        return _core


def installed() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("openvino") is not None
    except ValueError:  # in sys.modules as None: imports of it are blocked
        return False


def cpu_capabilities() -> list[str]:
    """OpenVINO's OPTIMIZATION_CAPABILITIES of the CPU, e.g. ['BF16', 'FP32', 'INT8', ...]."""
    return [str(c) for c in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


def cpu_precisions() -> tuple[str, ...]:
    """Inference precisions the CPU plugin runs natively here: f32 always, bf16 with AVX-512 BF16 or AMX."""
    caps = set(cpu_capabilities())
    return ("f32", "bf16") if "BF16" in caps else ("f32",)


class OpenVinoStage:
    """One stage compiled for OpenVINO's CPU plugin; ``run`` is thread-safe (an infer request per thread)."""

    def __init__(self, model: bytes, name: str, threads: int, precision: str):
        config = {
            "INFERENCE_NUM_THREADS": threads,  # OpenVINO, like ONNX Runtime, would size itself from the host
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "ENABLE_CPU_PINNING": False,  # a container shares its cores; pinning would fight the neighbours
            "INFERENCE_PRECISION_HINT": PRECISION_HINT[precision],
        }
        try:
            self._compiled = core().compile_model(core().read_model(model), "CPU", config)
        except MissingExtensionError:
            raise
        except Exception as e:  # openvino raises RuntimeError/OVError subclasses without a common base
            raise ModelLoadError(f"stage {name!r}: OpenVINO cannot compile it ({e})") from e
        self.name = name
        self.placement = f"openvino:{precision}"
        self.borrows_outputs = True
        self._outputs = list(self._compiled.outputs)
        self.output_names = [o.get_any_name() for o in self._outputs]
        self.input_names = [i.get_any_name() for i in self._compiled.inputs]
        self._local = threading.local()

    def output_types(self) -> dict[str, TensorType]:
        out = {}
        for port, name in zip(self._outputs, self.output_names):
            shape = port.get_partial_shape()
            dims = None if shape.rank.is_dynamic else tuple(
                d.get_length() if d.is_static else None for d in shape
            )
            out[name] = TensorType(_ONNX_ELEM[port.get_element_type().get_type_name()], dims)
        return out

    def run(self, feeds: Mapping[str, np.ndarray], wanted: Sequence[str]) -> dict[str, np.ndarray]:
        """Outputs as numpy views of OpenVINO's buffers: valid until this thread's next ``run``."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        result = request.infer({n: _ov_friendly(feeds[n]) for n in self.input_names}, share_inputs=True,
                               share_outputs=True)
        return {n: result[p] for p, n in zip(self._outputs, self.output_names) if n in wanted}


def _ov_friendly(arr: np.ndarray) -> np.ndarray:
    """The same memory as OpenVINO's bindings accept it: they know int64 as numpy's 'l', not 'q' (which ONNX
    Runtime returns); both are 8-byte signed integers, so a view, not a copy."""
    if arr.dtype.char == "q":
        return arr.view("l")
    if arr.dtype.char == "Q":
        return arr.view("L")
    return arr
