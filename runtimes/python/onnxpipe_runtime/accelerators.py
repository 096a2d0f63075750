"""Accelerators: which engines can run a file's model stage on this machine, and with which precisions.

    from onnxpipe_runtime import Pipeline, available_accelerators
    available_accelerators()     # [Accelerator('cpu', ('f32',)), Accelerator('openvino', ('f32', 'bf16'))]
    Pipeline.load("minilm.onnx", accelerator="openvino", precision="bf16")

``cpu`` is ONNX Runtime's CPU provider running the whole file (the default). ``openvino`` runs the *model* stage
on OpenVINO's CPU plugin (extra ``onnxpipe-runtime[openvino]``) while ``pre`` and ``post`` (strings, custom ops,
loops, NMS) stay on ONNX Runtime's CPU provider (``_placement``). ``auto`` takes the manifest's recommendation
when this machine can follow it, else measures the candidates on the file's embedded example, keeps those
whose answers pass the accuracy gate and routes each call by batch size to the fastest (docs/accelerators.md).
Every engine uses the thread count of ``threads.py``.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnxpipe_runtime.errors import MissingExtensionError, PipelineError
from onnxpipe_runtime.format import Manifest

__all__ = [
    "ACCELERATORS",
    "PRECISIONS",
    "Accelerator",
    "AcceleratorError",
    "available_accelerators",
    "candidates",
    "check",
    "cpu_features",
    "cpu_name",
]

log = logging.getLogger("onnxpipe.accelerators")

#: what ``Pipeline.load(accelerator=...)`` accepts
ACCELERATORS = ("cpu", "openvino", "auto")
#: what ``Pipeline.load(precision=...)`` accepts (None: the accelerator's exact default, f32)
PRECISIONS = ("f32", "bf16")
#: the accuracy gate of ``auto`` for a reduced precision: cosine of each row of a float output vs the file's
#: eager outputs (the issue's target for bf16); f32 candidates must pass the file's own tolerance instead
REDUCED_PRECISION_MIN_COSINE = 0.9999
#: the stage an accelerator takes; the others stay on the CPU provider
ACCELERATED_STAGE = "model"

_CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile",
              "amx_fp16")


class AcceleratorError(PipelineError, ValueError):
    """An accelerator or precision that does not exist, or that this machine or this file cannot run."""

    code = "INVALID_INPUT"


@dataclass(frozen=True)
class Accelerator:
    """An engine for the model stage: ``name`` (``cpu``, ``openvino``), the precisions it runs here, and where."""

    name: str
    precisions: tuple[str, ...]
    engine: str  # e.g. "onnxruntime 1.31.1 CPUExecutionProvider", "openvino 2026.4.1 CPU"
    device: str


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def cpu_features() -> tuple[str, ...]:
    """The CPU flags that decide precision choices (AVX2, AVX-512, BF16, AMX), as /proc/cpuinfo names them."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ()
    m = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
    flags = set(m.group(1).split()) if m else set()
    return tuple(f for f in _CPU_FLAGS if f in flags)


def available_accelerators() -> list[Accelerator]:
    """The accelerators this process can use now, ``cpu`` first. ``openvino`` appears when the extra is
    installed and its CPU plugin loads; its precisions include ``bf16`` when the CPU runs it natively."""
    import onnxruntime as ort

    found = [Accelerator("cpu", ("f32",), f"onnxruntime {ort.__version__} CPUExecutionProvider", cpu_name())]
    from onnxpipe_runtime import _openvino

    if _openvino.installed():
        try:
            import openvino

            found.append(Accelerator("openvino", _openvino.cpu_precisions(), f"openvino {openvino.__version__.split('-')[0]} CPU",
                                     cpu_name()))
        except Exception as e:  # a broken install is reported, not fatal: the CPU still runs everything
            log.debug("openvino is installed but its CPU plugin does not load: %s", e)
    return found


def candidates() -> list[tuple[str, str | None]]:
    """Every (accelerator, precision) worth measuring on this machine, for ``Pipeline.load`` or the optimizer:
    ``[("cpu", None), ("openvino", "f32"), ("openvino", "bf16")]`` where available."""
    out: list[tuple[str, str | None]] = []
    for acc in available_accelerators():
        if acc.name == "cpu":
            out.append(("cpu", None))
        else:
            out.extend((acc.name, p) for p in acc.precisions)
    return out


def check(accelerator: str, precision: str | None) -> tuple[str, str | None]:
    """``(accelerator, precision)`` normalized, or AcceleratorError / MissingExtensionError saying why not."""
    if accelerator not in ACCELERATORS:
        raise AcceleratorError(f"accelerator {accelerator!r}: expected one of {list(ACCELERATORS)}")
    if precision is not None and precision not in PRECISIONS:
        raise AcceleratorError(f"precision {precision!r}: expected one of {list(PRECISIONS)} or None")
    if accelerator == "cpu":
        if precision not in (None, "f32"):
            raise AcceleratorError(
                f"precision {precision!r} with accelerator 'cpu': the CPU provider runs the file as exported "
                "(f32); reduced precisions run on accelerator 'openvino' (or export a quantized file)"
            )
        return "cpu", None
    if accelerator == "openvino":
        from onnxpipe_runtime import _openvino

        _openvino.core()  # MissingExtensionError naming the extra
        supported = _openvino.cpu_precisions()
        precision = precision or "f32"
        if precision not in supported:
            raise AcceleratorError(
                f"precision {precision!r} on accelerator 'openvino': this CPU ({cpu_name()}) runs {list(supported)}; "
                "bf16 needs AVX-512 BF16 or AMX"
            )
        return "openvino", precision
    return "auto", precision


# -- opening a session -------------------------------------------------------------------------------------------
def open_placed(
    data: bytes,
    manifest: Manifest | None,
    source: str,
    accelerator: str,
    precision: str,
    threads: int,
    cpu_options: Callable[[], Any],
    outputs: Sequence[str],
    example: Mapping[str, np.ndarray] | None = None,
) -> Any:
    """A session-like object running the model stage on ``accelerator`` and the other stages on the CPU provider."""
    from onnxpipe_runtime import _openvino, _placement

    if manifest is None:
        raise AcceleratorError(
            f"{source}: accelerator {accelerator!r} places the file's stages, and a plain ONNX file (no onnxpipe "
            "manifest) has none; use accelerator='cpu'"
        )
    stage_names = manifest.stage_names()
    if ACCELERATED_STAGE not in stage_names:
        raise AcceleratorError(f"{source}: no {ACCELERATED_STAGE!r} stage (stages: {stage_names}) to accelerate")
    domains = {d.domain for d in manifest.domains}
    if "com.microsoft" in domains:
        chosen = (manifest.optimization or {}).get("chosen", "?")
        raise AcceleratorError(
            f"{source}: its model stage uses ONNX Runtime's com.microsoft ops (written by onnxpipe optimize for the "
            f"CPU: {chosen}), which {accelerator} cannot run; load it with accelerator='cpu', or put the fp32 file "
            f"it came from on {accelerator}"
        )
    defaults: dict[str, np.ndarray] = {}
    for spec in manifest.inputs:
        if spec.optional and spec.default is not None:
            defaults[spec.name] = np.asarray(spec.default, dtype=np.dtype(spec.dtype))
    return _placement.build(
        data, stage_names, source, ACCELERATED_STAGE,
        make_accelerated=lambda model, name: _openvino.OpenVinoStage(model, name, threads, precision),
        make_cpu=lambda model, name: _placement.OrtStage(model, name, cpu_options()),
        outputs=outputs,
        example=example,
        defaults=defaults,
    )


# -- auto -------------------------------------------------------------------------------------------------------
def recommended(manifest: Manifest | None) -> tuple[str, str | None] | None:
    """The manifest's ``accelerator`` recommendation when this machine can follow it (same accelerator available,
    the precision supported, the CPU features it was measured with present), else None."""
    rec = manifest.accelerator if manifest is not None else None
    if not isinstance(rec, dict) or not isinstance(rec.get("recommended"), str):
        return None
    name, precision = rec["recommended"], rec.get("precision")
    here = {a.name: a for a in available_accelerators()}
    if name not in here or (name != "cpu" and (precision or "f32") not in here[name].precisions):
        log.debug("auto: the manifest recommends %s %s, not available here", name, precision)
        return None
    missing = set(rec.get("cpu_features") or ()) - set(cpu_features())
    if missing:
        log.debug("auto: the manifest's recommendation was measured with CPU features %s this CPU lacks",
                  sorted(missing))
        return None
    return name, (None if name == "cpu" else precision or "f32")


def gate(got: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray],
         tolerance: Mapping[str, tuple[float, float]], precision: str | None) -> list[str]:
    """Why ``got`` fails the accuracy gate of ``precision`` (empty: it passes). f32: the file's tolerance;
    a reduced precision: each row of a float output within cosine REDUCED_PRECISION_MIN_COSINE, others exact."""
    from onnxpipe_runtime.vectors import mismatches

    if precision in (None, "f32"):
        return mismatches(got, expected, tolerance)
    problems = []
    for name, want in expected.items():
        g = np.asarray(got.get(name))
        if want.dtype.kind != "f" or g.shape != want.shape:
            problems += mismatches({name: g}, {name: want}, tolerance)
            continue
        if g.size == 0:
            continue
        a = g.reshape(len(g), -1).astype(np.float64) if g.ndim else g.reshape(1, 1).astype(np.float64)
        b = want.reshape(a.shape).astype(np.float64)
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        cos = np.where((na == 0) & (nb == 0), 1.0, (a * b).sum(1) / np.maximum(na * nb, 1e-30))
        if cos.min() < REDUCED_PRECISION_MIN_COSINE:
            problems.append(f"{name}: cosine {cos.min():.6f} < {REDUCED_PRECISION_MIN_COSINE}")
    return problems
