"""``accelerator="auto"``: pick the engine for this file on this machine, by measuring when nothing says.

1. The manifest's recommendation (``manifest["accelerator"]``, written by ``onnxpipe optimize``) when this
   machine can follow it (``accelerators.recommended``).
2. Else every candidate (``accelerators.candidates()``) runs the file's embedded example (``onnxpipe.vectors``);
   a candidate whose answers fail the accuracy gate (``accelerators.gate``) is dropped; the others are timed,
   alternating, on the example's rows repeated to batch 1 and to batch ``LARGE`` (fastest of ``RUNS``). The fastest
   at each size wins, the CPU provider unless another beats it by ``MARGIN``; when the two sizes have different
   winners, calls are routed by batch size at the point where the two lines cross.
3. Without the extra, without an example, or when nothing beats it: the CPU provider. Every step is logged at
   debug level on the ``onnxpipe.accelerators`` logger.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from onnxpipe_runtime import accelerators as acc
from onnxpipe_runtime.errors import PipelineError
from onnxpipe_runtime.format import Manifest
from onnxpipe_runtime.signature import Signature

LARGE = 8
RUNS = 7
#: an accelerator must beat the CPU provider by this much to be chosen: on a busy host one lucky measurement
#: should not move a call off the engine that needs no extra
MARGIN = 0.05

log = acc.log


@dataclass
class Choice:
    session: Any  # .run(output_names, feeds) like an InferenceSession
    accelerator: str
    precision: str | None
    placement: dict[str, str]


class RoutedSession:
    """Calls with fewer than ``threshold`` rows go to ``small``, the others to ``large``."""

    def __init__(self, small: Choice, large: Choice, threshold: int, axis_input: str):
        self.small, self.large, self.threshold, self.axis_input = small, large, threshold, axis_input

    def run(self, output_names: Sequence[str], feeds: Mapping[str, Any]) -> list[np.ndarray]:
        rows = np.shape(feeds[self.axis_input])[0]
        chosen = self.small if rows < self.threshold else self.large
        return chosen.session.run(output_names, feeds)  # type: ignore[no-any-return]


def choose(
    cpu: Choice,
    open_accelerated: Callable[[str, str], Any],
    manifest: Manifest | None,
    signature: Signature,
    vectors: dict[str, Any] | None,
    precision: str | None,
) -> Choice:
    """The engine (or the batch-size routing between two) for ``accelerator="auto"``; ``cpu`` is the CPU provider's
    session, already open; ``open_accelerated(name, precision)`` opens a placed one."""
    rec = acc.recommended(manifest)
    if rec is not None and (precision is None or rec[1] in (None, precision)):
        name, prec = rec
        log.debug("auto: following the manifest's recommendation: %s %s", name, prec)
        return cpu if name == "cpu" else _open(open_accelerated, name, prec)  # type: ignore[arg-type]
    wanted = [(n, p) for n, p in acc.candidates() if n != "cpu" and p is not None and precision in (None, p)]
    if not wanted:
        log.debug("auto: no accelerator besides the CPU provider (pip install 'onnxpipe-runtime[openvino]'); cpu")
        return cpu
    if vectors is None:
        log.debug("auto: the file has no embedded example to measure %s on; cpu", wanted)
        return cpu
    choices = [cpu]
    for name, prec in wanted:
        try:
            choice = _open(open_accelerated, name, prec)
        except PipelineError as e:
            log.debug("auto: %s %s cannot run this file: %s", name, prec, e)
            continue
        problems = acc.gate(_run(choice, signature, vectors["inputs"]), vectors["expected"], vectors["tolerance"], prec)
        if problems:
            log.debug("auto: %s %s fails the accuracy gate: %s", name, prec, "; ".join(problems))
            continue
        choices.append(choice)
    if len(choices) == 1:
        return cpu
    return _fastest(choices, signature, vectors["inputs"])


def _open(open_accelerated: Callable[[str, str], Any], name: str, precision: str) -> Choice:
    session = open_accelerated(name, precision)
    return Choice(session, name, precision, dict(session.placement))


def _run(choice: Choice, signature: Signature, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [o.name for o in signature.outputs]
    return dict(zip(names, choice.session.run(names, dict(feeds))))


def _rows(feeds: Mapping[str, np.ndarray], signature: Signature, axis: str, n: int) -> dict[str, np.ndarray]:
    """The example with its rows repeated (or cut) to ``n`` along the batch axis."""
    out = {}
    for spec in signature.inputs:
        if spec.name not in feeds:
            continue
        arr = feeds[spec.name]
        if spec.shape and spec.shape[0] == axis and arr.shape[0] > 0:
            arr = arr[np.arange(n) % arr.shape[0]]
        out[spec.name] = arr
    return out


def _fastest(choices: list[Choice], signature: Signature, example: Mapping[str, np.ndarray]) -> Choice:
    from onnxpipe_runtime.serve.batching import batch_axis

    axis, _ = batch_axis(signature)
    sizes = (1, LARGE) if axis is not None else (0,)
    fastest: dict[int, list[float]] = {}
    for size in sizes:
        feeds = _rows(example, signature, axis, size) if axis is not None else dict(example)
        times: list[list[float]] = [[] for _ in choices]
        for r in range(RUNS + 1):
            order = range(len(choices)) if r % 2 == 0 else reversed(range(len(choices)))
            for i in order:
                t0 = time.perf_counter()
                _run(choices[i], signature, feeds)
                if r:  # the first round warms up
                    times[i].append(time.perf_counter() - t0)
        # the fastest run, not the median: interference from other processes only ever adds time
        fastest[size] = [float(np.min(t)) for t in times]
        log.debug("auto: batch %s, fastest of %d runs, ms: %s", size or "as in the example", RUNS,
                  {_label(c): round(t * 1000, 2) for c, t in zip(choices, fastest[size])})
    best = {size: _best(t) for size, t in fastest.items()}
    if axis is None or best[1] == best[LARGE]:
        chosen = choices[best[sizes[-1]]]
        log.debug("auto: %s", _label(chosen))
        return chosen
    small, large = best[1], best[LARGE]
    threshold = _crossing(fastest[1][small], fastest[LARGE][small], fastest[1][large], fastest[LARGE][large])
    required = signature.required_inputs[0].name
    log.debug("auto: %s below %d rows, %s from there", _label(choices[small]), threshold, _label(choices[large]))
    routed = RoutedSession(choices[small], choices[large], threshold, required)
    placement = {}
    for stage, there in choices[large].placement.items():
        here = choices[small].placement.get(stage, "cpu")
        placement[stage] = there if here == there else f"{here} below {threshold} rows, {there} from {threshold}"
    return Choice(routed, "auto", None, placement)


def _best(times: list[float]) -> int:
    """Index of the fastest; the CPU provider (index 0) unless another beats it by MARGIN."""
    i = int(np.argmin(times))
    return 0 if times[0] <= times[i] * (1 + MARGIN) else i


def _crossing(small_at_1: float, small_at_n: float, large_at_1: float, large_at_n: float) -> int:
    """The batch size from which the large-batch winner is faster, with both times linear in the batch size."""
    slope_small = (small_at_n - small_at_1) / (LARGE - 1)
    slope_large = (large_at_n - large_at_1) / (LARGE - 1)
    if slope_small <= slope_large:
        return LARGE
    rows = 1 + (large_at_1 - small_at_1) / (slope_small - slope_large)
    return int(min(max(np.ceil(rows), 2), LARGE))


def _label(choice: Choice) -> str:
    return choice.accelerator if choice.precision is None else f"{choice.accelerator} {choice.precision}"
