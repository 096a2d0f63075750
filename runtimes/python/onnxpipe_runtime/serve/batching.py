"""Dynamic batching: concurrent requests for one model, merged along its batch axis, run once, split back.

A model is batchable when its signature has a *batch axis*: one named dynamic dimension that leads every
required input and every output and appears nowhere else, and every other output dimension is fixed or
named by an input (so it cannot depend on which rows share a run). Requests merge when they give the
same inputs with the same dtypes and non-batch dimensions, and equal values for inputs without the batch
axis (a per-request threshold); string inputs merge only when their longest strings are within a factor of
two of each other (a text model pads every row of a run to the longest). Rows are assumed independent, as
they are in an inference pipeline.

A batch is cut when it holds ``max_batch`` rows, when its oldest request has waited ``max_delay``, or as
soon as no other request for the model is on its way in (being received and decoded, see ``arriving``) and
it holds as many requests as the last run did (under steady load the callers of the last run come back, so
waiting up to ``max_delay`` for them keeps batches full): a lone request never waits for company that is
not coming, and requests that queue while the model is busy join the next batch without waiting at all.
If a merged run fails, each of its requests is run alone, so a failing request fails alone. A merged batch
also stays within the request limits (``limits.Limits``): its elements and string bytes, summed, are at most
what one request may carry.

A request that finds the model idle (nothing queued, nothing on its way in, a run slot free, and the last
run was of one row) runs at once on its caller's thread: no hand-off to a worker and back, which is most of
the cost of the hop for a small model. Requests that come while it runs queue and merge as above.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Hashable, Iterator, Mapping
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

import numpy as np

from onnxpipe_runtime.errors import PipelineError, RunError
from onnxpipe_runtime.pipeline import Pipeline
from onnxpipe_runtime.serve.limits import Limits
from onnxpipe_runtime.serve.status import RequestError, from_pipeline_error
from onnxpipe_runtime.signature import Signature

__all__ = ["BatchPolicy", "Batcher", "batch_axis"]

log = logging.getLogger("onnxpipe.serve")

#: a request's outputs: name -> array (its own rows only)
Outputs = dict[str, np.ndarray]


def batch_axis(signature: Signature) -> tuple[str | None, str]:
    """The name of the signature's batch axis, or None and the reason there is none."""
    required = signature.required_inputs
    if not required or not signature.outputs:
        return None, "the model has no required inputs or no outputs"
    lead = required[0].shape[0] if required[0].shape else None
    if not isinstance(lead, str):
        return None, f"input {required[0].name!r} does not start with a named dynamic dimension"
    input_dims: set[str] = set()
    for spec in signature.inputs:
        dims = list(spec.shape)
        if spec.optional and lead not in dims:
            input_dims.update(d for d in dims if isinstance(d, str))
            continue  # a per-request parameter: requests merge only when it is equal
        if not dims or dims[0] != lead or lead in dims[1:]:
            return None, f"input {spec.name!r} {dims} does not lead with {lead!r} (and only there)"
        input_dims.update(d for d in dims[1:] if isinstance(d, str))
    for spec in signature.outputs:
        dims = list(spec.shape)
        if not dims or dims[0] != lead or lead in dims[1:]:
            return None, f"output {spec.name!r} {dims} does not lead with {lead!r} (and only there)"
        loose = [d for d in dims[1:] if not isinstance(d, int) and d not in input_dims]
        if loose:
            return None, (
                f"output {spec.name!r} {dims}: dimension {loose[0]!r} is set by the data, so merged requests "
                "could change each other's shapes"
            )
    return lead, ""


@dataclass(frozen=True)
class BatchPolicy:
    """``max_batch`` rows per run (1: no batching), ``max_delay`` seconds a request may wait for others,
    ``max_queue`` requests waiting per model before new ones are refused (RESOURCE_EXHAUSTED), ``limits`` on
    the elements and string bytes of one merged run."""

    max_batch: int = 32
    max_delay: float = 0.002
    max_queue: int = 256
    limits: Limits = field(default_factory=Limits)


@dataclass(eq=False)  # identity: two jobs are never "equal" (and arrays do not compare to a bool)
class _Job:
    feeds: dict[str, np.ndarray]
    rows: int
    key: Hashable
    arrival: float
    elements: int = 0
    string_bytes: int = 0
    future: Future[Outputs] = field(default_factory=Future)


class Batcher:
    """Queues a model's requests and runs them on ``workers`` threads, merged when ``axis`` is set.

    ``slots`` is shared by every model's batcher: at most that many runs at once across the server, each
    sized for its share of the threads the container allows.
    """

    def __init__(
        self,
        name: str,
        pipe: Pipeline,
        axis: str | None,
        policy: BatchPolicy,
        slots: threading.BoundedSemaphore,
        workers: int = 1,
    ):
        self.name = name
        self.pipe = pipe
        self.axis = axis
        self.policy = policy
        self._slots = slots
        self._queue: collections.deque[_Job] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._arriving = 0
        self._running = 0  # runs of this model going on (workers and callers running inline)
        self._last_requests = 1  # requests in the last run: the load the next batch can expect
        self._workers = workers
        batched = {s.name for s in pipe.signature.inputs if axis is not None and s.shape[:1] == (axis,)}
        self._batched_inputs = frozenset(batched)
        self.runs = 0  # model runs, for tests and logs (merged runs that failed count too)
        self.requests = 0  # requests answered
        self.rows = 0  # rows answered
        self._threads = [
            threading.Thread(target=self._work, name=f"onnxpipe-batch-{name}-{i}", daemon=True) for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    @property
    def batching(self) -> bool:
        return self.axis is not None and self.policy.max_batch > 1

    # -- submitting ----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Hold while a request is being received and decoded (then ``submit`` it): batches wait for it."""
        with self._cond:
            self._arriving += 1
        try:
            yield
        finally:
            with self._cond:
                self._arriving -= 1
                if self._queue:  # a batch being formed may be waiting for this request; else wake no one
                    self._cond.notify_all()

    def submit(
        self, inputs: Mapping[str, np.ndarray], elements: int = 0, string_bytes: int = 0, inline: bool = False
    ) -> Future[Outputs]:
        """Validate and queue decoded inputs (``elements``, ``string_bytes``: their size, for the batch limits);
        the future resolves to the outputs or a RequestError. ``inline``: when the model is idle and no other
        request is queued or arriving, run now on this thread (the future is then done on return). Called
        inside the request's own ``arriving()``; an invalid input raises (INVALID_INPUT) before queueing."""
        if inline and self._claim_inline():
            lead = [a.shape[0] for n, a in inputs.items() if n in self._batched_inputs and a.ndim]
            job = _Job(dict(inputs), int(lead[0]) if lead else 1, None, 0.0)
            try:
                self._run_alone(job)  # Pipeline.run validates: once, not twice
            finally:
                self._slots.release()
                with self._cond:
                    self._running -= 1
            return job.future
        try:
            feeds = self.pipe.validate(inputs)
        except PipelineError as e:
            raise from_pipeline_error(e) from e
        job = self._job(feeds)
        job.elements, job.string_bytes = elements, string_bytes
        with self._cond:
            if self._closed:
                raise RequestError("CLOSED", f"model {self.name!r}: the server is shutting down")
            return self._enqueue(job).future

    def _claim_inline(self) -> bool:
        with self._cond:
            if self._closed:
                raise RequestError("CLOSED", f"model {self.name!r}: the server is shutting down")
            busy = self._queue or self._arriving > 1 or self._running >= self._workers
            if busy or (self.batching and self._last_requests > 1):  # after a merged run its callers return: batch
                return False
            if not self._slots.acquire(blocking=False):
                return False
            self._running += 1
            return True

    def _enqueue(self, job: _Job) -> _Job:
        """Queue ``job`` (called holding the lock); OVERLOADED when the queue is full."""
        if len(self._queue) >= self.policy.max_queue:
            raise RequestError(
                "OVERLOADED",
                f"model {self.name!r}: {len(self._queue)} requests already queued (limit --max-queue "
                f"{self.policy.max_queue}); retry later",
            )
        self._queue.append(job)
        self._cond.notify()
        return job

    def _job(self, feeds: dict[str, np.ndarray]) -> _Job:
        now = time.monotonic()
        if not self.batching:
            return _Job(feeds, 1, None, now)
        rows = next((int(feeds[n].shape[0]) for n in self._batched_inputs if n in feeds), 0)
        key: list[Hashable] = []
        for n in sorted(feeds):
            a = feeds[n]
            if n in self._batched_inputs:
                key.append((n, a.dtype.str, a.shape[1:], _length_class(a) if a.dtype == object else 0))
            elif a.dtype == object:
                key.append((n, a.shape, tuple(a.reshape(-1).tolist())))
            else:
                key.append((n, a.dtype.str, a.shape, a.tobytes()))
        return _Job(feeds, rows, tuple(key), now)

    # -- working -------------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            batch: list[_Job] = []
            try:
                with self._cond:
                    while not self._queue and not self._closed:
                        self._cond.wait()
                    if not self._queue:
                        return
                # a slot first, then the batch: requests keep joining it while the model is busy
                with self._slots:
                    with self._cond:
                        try:
                            batch = self._take()
                        except BaseException:
                            batch = list(self._queue)  # the queue's state is unknown: answer everyone, hang no one
                            self._queue.clear()
                            raise
                        self._running += 1
                    try:
                        self._run(batch)
                    finally:
                        with self._cond:
                            self._running -= 1
            except BaseException as e:
                log.exception("model %r: batch of %d failed unexpectedly", self.name, len(batch))
                for job in batch:
                    _fail(job, RequestError("RUNTIME", f"model {self.name!r}: internal error: {e}"))

    def _take(self) -> list[_Job]:
        """The next batch (called holding the lock; may wait, releasing it, until the oldest job's deadline)."""
        while True:
            self._drop_cancelled()
            if not self._queue:
                return []
            first = self._queue[0]
            if not self.batching or first.rows == 0 or first.rows >= self.policy.max_batch:
                return [self._queue.popleft()]
            deadline = first.arrival + self.policy.max_delay
            limits = self.policy.limits
            chosen: list[_Job] = []
            rows, elements, strings, full = 0, 0, 0, False
            for job in self._queue:
                if job.key == first.key and job.rows > 0:
                    fits = (rows + job.rows <= self.policy.max_batch
                            and elements + job.elements <= limits.max_elements
                            and strings + job.string_bytes <= limits.max_string_bytes)
                    if fits or not chosen:
                        chosen.append(job)
                        rows, elements, strings = rows + job.rows, elements + job.elements, strings + job.string_bytes
                    else:
                        full = True  # the next one waiting does not fit: waiting gains nothing
            now = time.monotonic()
            # under steady load the callers of the last run come back: wait (at most the delay) for as many
            done_waiting = not self._arriving and len(chosen) >= self._last_requests
            if full or rows >= self.policy.max_batch or now >= deadline or self._closed or done_waiting:
                for job in chosen:
                    self._queue.remove(job)
                return chosen
            self._cond.wait(deadline - now)
            if not self._queue:  # another worker took them
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return []

    def _drop_cancelled(self) -> None:
        """Forget queued requests whose caller gave up (deadline passed, client cancelled or disconnected)."""
        if any(j.future.cancelled() for j in self._queue):
            self._queue = collections.deque(j for j in self._queue if not j.future.cancelled())

    def _run(self, batch: list[_Job]) -> None:
        if not batch:
            return
        if len(batch) == 1:
            self._run_alone(batch[0])
            return
        merged = {
            n: np.concatenate([j.feeds[n] for j in batch], axis=0) if n in self._batched_inputs else batch[0].feeds[n]
            for n in batch[0].feeds
        }
        total = sum(j.rows for j in batch)
        try:
            self.runs += 1
            outputs = self.pipe.run(merged)
        except PipelineError as e:
            log.info("model %r: merged run of %d requests failed (%s); running each alone", self.name, len(batch), e)
            for job in batch:
                self._run_alone(job)
            return
        odd = [n for n, a in outputs.items() if a.ndim == 0 or a.shape[0] != total]
        if odd:  # the graph broke the batch-axis contract its signature states: do not guess
            log.warning("model %r: output %r does not follow the batch axis; running requests alone", self.name, odd[0])
            for job in batch:
                self._run_alone(job)
            return
        start = 0
        for job in batch:
            _resolve(job, {n: a[start : start + job.rows] for n, a in outputs.items()})
            start += job.rows
        self.requests += len(batch)
        self.rows += total
        self._last_requests = len(batch)

    def _run_alone(self, job: _Job) -> None:
        try:
            self.runs += 1
            _resolve(job, self.pipe.run(job.feeds))
            self.requests += 1
            self.rows += job.rows
            self._last_requests = 1
        except RunError as e:
            empty = next((n for n, a in job.feeds.items() if a.size == 0), None)
            if empty is None:
                _fail(job, from_pipeline_error(e))
            else:  # the graph cannot run on no data: the request's fault, not the server's
                shape = list(job.feeds[empty].shape)
                _fail(job, RequestError(
                    "INVALID_INPUT", f"input {empty!r}: shape {shape} has no elements, and model {self.name!r} "
                                     f"cannot run on an empty tensor ({e})"))
        except PipelineError as e:
            _fail(job, from_pipeline_error(e))

    # -- lifetime ------------------------------------------------------------------------------------------
    def close(self, timeout: float = 30.0) -> None:
        """Run what is queued, then stop the workers (waiting at most ``timeout`` seconds)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
        with self._cond:
            while self._queue:
                job = self._queue.popleft()
                _fail(job, RequestError("CLOSED", f"model {self.name!r}: the server stopped"))
        if self.requests:
            log.info("model %r: %d requests (%d rows) answered in %d runs, %.1f requests per run",
                     self.name, self.requests, self.rows, self.runs, self.requests / max(1, self.runs))


def _length_class(strings: np.ndarray) -> int:
    """Strings merge only with strings of a similar length (the longest within a factor of two): a text model
    pads every row of a run to its longest, so one long sentence would make a merged run cost many."""
    return max((len(v) for v in strings.reshape(-1)), default=0).bit_length()


def _resolve(job: _Job, outputs: dict[str, np.ndarray]) -> None:
    try:
        job.future.set_result(outputs)
    except InvalidStateError:  # cancelled by its caller meanwhile: nobody is listening
        pass


def _fail(job: _Job, error: BaseException) -> None:
    try:
        job.future.set_exception(error)
    except InvalidStateError:
        pass
