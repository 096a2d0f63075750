"""Dynamic batching on its own: which models batch, merging, the delay bound, failure isolation, the queue."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from conftest import BASIC, basic_inputs

from onnxpipe_runtime import Pipeline, RunError
from onnxpipe_runtime.serve.batching import Batcher, BatchPolicy, batch_axis
from onnxpipe_runtime.serve.status import RequestError
from onnxpipe_runtime.signature import Signature, TensorSpec


def sig(inputs, outputs) -> Signature:
    return Signature(
        tuple(TensorSpec(n, "float32", tuple(s), optional=o) for n, s, o in inputs),
        tuple(TensorSpec(n, "float32", tuple(s)) for n, s in outputs),
    )


@pytest.mark.parametrize("inputs,outputs,axis,why", [
    ([("x", ["b", 3], False), ("t", [], True)], [("y", ["b", 3])], "b", ""),
    ([("x", ["b", "h", "w"], False)], [("y", ["b", "h"])], "b", ""),
    ([("x", [2, 3], False)], [("y", [2, 3])], None, "named dynamic"),
    ([("x", ["b", 3], False), ("z", ["n", 3], False)], [("y", ["b"])], None, "input 'z'"),
    ([("x", ["b", 3], False)], [("y", ["b", "n"])], None, "dimension 'n' is set by the data"),
    ([("x", ["b", 3], False)], [("y", [3])], None, "output 'y'"),
    ([("x", ["b", "b"], False)], [("y", ["b"])], None, "input 'x'"),
])
def test_batch_axis_rule(inputs, outputs, axis, why):
    got, reason = batch_axis(sig(inputs, outputs))
    assert got == axis and why in reason


class FakePipe:
    """Runs like a pipeline, with a hook: NaN rows fail the run; `gate` can hold a run."""

    def __init__(self):
        self.signature = sig([("x", ["b", 2], False)], [("y", ["b", 2])])
        self.calls: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # a run has started (and may be held at the gate)

    def validate(self, given):
        return dict(given)

    def run(self, feeds):
        self.entered.set()
        assert self.gate.wait(10)
        x = feeds["x"]
        self.calls.append(x.shape[0])
        if np.isnan(x).any():
            raise RunError("NaN in x")
        return {"y": x * 2}


def _held(pipe: FakePipe, b: Batcher) -> None:
    """Wait until the worker is inside a run, held at the gate, with nothing left in the queue."""
    assert pipe.entered.wait(10)
    end = time.monotonic() + 10
    while b._queue:
        assert time.monotonic() < end
        time.sleep(0.001)


def _batcher(pipe, **policy) -> Batcher:
    axis, _ = batch_axis(pipe.signature)
    return Batcher("fake", pipe, axis, BatchPolicy(**policy), threading.BoundedSemaphore(1))


def test_requests_queued_while_busy_merge_and_split_back():
    pipe = FakePipe()
    b = _batcher(pipe, max_batch=8, max_delay=0.0)
    try:
        pipe.gate.clear()
        first = b.submit({"x": np.zeros((1, 2), np.float32)})
        _held(pipe, b)  # the worker now holds `first` at the gate
        xs = [np.full((1 + i % 2, 2), i, np.float32) for i in range(5)]
        futures = [b.submit({"x": x}) for x in xs]
        pipe.gate.set()
        first.result(10)
        for x, f in zip(xs, futures):
            np.testing.assert_array_equal(f.result(10)["y"], x * 2)
        assert pipe.calls == [1, sum(x.shape[0] for x in xs)]
    finally:
        b.close(5)


def test_max_batch_caps_rows():
    pipe = FakePipe()
    b = _batcher(pipe, max_batch=3, max_delay=0.0)
    try:
        pipe.gate.clear()
        futures = [b.submit({"x": np.ones((1, 2), np.float32)}) for _ in range(7)]
        time.sleep(0.05)
        pipe.gate.set()
        for f in futures:
            f.result(10)
        assert max(pipe.calls) <= 3 and sum(pipe.calls) == 7
    finally:
        b.close(5)


def test_delay_is_an_upper_bound():
    """While another request is on its way in, a batch waits for it, but never longer than max_delay."""
    pipe = FakePipe()
    b = _batcher(pipe, max_batch=64, max_delay=0.05)
    try:
        with b.arriving():  # a request being decoded that never completes: the batch must not wait for ever
            t0 = time.monotonic()
            b.submit({"x": np.ones((1, 2), np.float32)}).result(10)
            waited = time.monotonic() - t0
        assert 0.04 <= waited < 0.5, waited
        t0 = time.monotonic()  # nothing on its way: no waiting at all
        b.submit({"x": np.ones((1, 2), np.float32)}).result(10)
        assert time.monotonic() - t0 < 0.04
    finally:
        b.close(5)


def test_batch_waits_for_an_arriving_request():
    pipe = FakePipe()
    b = _batcher(pipe, max_batch=64, max_delay=5.0)
    try:
        with b.arriving():
            first = b.submit({"x": np.ones((1, 2), np.float32)})
            time.sleep(0.05)
            assert not first.done()
            second = b.submit({"x": np.ones((2, 2), np.float32)})
        first.result(10), second.result(10)
        assert pipe.calls == [3]
    finally:
        b.close(5)


def test_failing_request_fails_alone():
    pipe = FakePipe()
    b = _batcher(pipe, max_batch=8, max_delay=0.0)
    try:
        pipe.gate.clear()
        b.submit({"x": np.zeros((1, 2), np.float32)})
        _held(pipe, b)
        good = [b.submit({"x": np.full((1, 2), i, np.float32)}) for i in range(3)]
        bad = b.submit({"x": np.full((1, 2), np.nan, np.float32)})
        pipe.gate.set()
        for i, f in enumerate(good):
            np.testing.assert_array_equal(f.result(10)["y"], np.full((1, 2), 2 * i))
        with pytest.raises(RequestError) as e:
            bad.result(10)
        assert e.value.code == "RUNTIME" and "NaN in x" in e.value.message
        assert 4 in pipe.calls  # the merged run was tried first
    finally:
        b.close(5)


def test_bounded_queue_refuses_with_overloaded():
    pipe = FakePipe()
    b = _batcher(pipe, max_batch=1, max_delay=0.0, max_queue=2)
    try:
        pipe.gate.clear()
        held = b.submit({"x": np.ones((1, 2), np.float32)})
        _held(pipe, b)
        queued = [b.submit({"x": np.ones((1, 2), np.float32)}) for _ in range(2)]
        with pytest.raises(RequestError) as e:
            b.submit({"x": np.ones((1, 2), np.float32)})
        assert e.value.code == "OVERLOADED" and e.value.grpc_status.name == "RESOURCE_EXHAUSTED"
        assert "--max-queue 2" in e.value.message
        pipe.gate.set()
        for f in [held, *queued]:
            f.result(10)
    finally:
        b.close(5)


def test_close_answers_everyone_and_refuses_new():
    pipe = FakePipe()
    b = _batcher(pipe, max_batch=4, max_delay=0.0)
    futures = [b.submit({"x": np.ones((1, 2), np.float32)}) for _ in range(5)]
    b.close(5)
    assert all(f.done() for f in futures)
    with pytest.raises(RequestError) as e:
        b.submit({"x": np.ones((1, 2), np.float32)})
    assert e.value.code == "CLOSED"


def test_real_pipeline_merged_equals_alone():
    """basic.onnx through the batcher, merged, equals running each request alone."""
    with Pipeline.load(BASIC, threads=1) as pipe:
        b = Batcher("basic", pipe, "batch", BatchPolicy(max_batch=16, max_delay=0.2), threading.BoundedSemaphore(1))
        try:
            xs = [pipe.validate(basic_inputs(1 + i % 3, seed=i)) for i in range(5)]
            futures = [b.submit(x) for x in xs]
            results = [f.result(10) for f in futures]
            assert b.runs == 1
            for x, got in zip(xs, results):
                want = pipe.run(x)
                for name in want:
                    if want[name].dtype == object:
                        assert list(got[name]) == list(want[name])
                    else:
                        np.testing.assert_allclose(got[name], want[name], rtol=1e-6)
        finally:
            b.close(5)


def test_cancelled_requests_are_dropped_not_run():
    pipe = FakePipe()
    b = _batcher(pipe, max_batch=8, max_delay=0.0)
    try:
        pipe.gate.clear()
        first = b.submit({"x": np.zeros((1, 2), np.float32)})
        _held(pipe, b)
        gone = b.submit({"x": np.ones((3, 2), np.float32)})
        kept = b.submit({"x": np.ones((1, 2), np.float32)})
        assert gone.cancel()
        pipe.gate.set()
        first.result(10), kept.result(10)
        assert pipe.calls == [1, 1]  # the cancelled request's 3 rows never ran
    finally:
        b.close(5)
