"""Give memory back after large requests, and log refused requests without flooding the log.

glibc keeps freed heap memory for reuse, and after a few large (mmap-sized) buffers are freed it raises its
mmap threshold (up to 32 MiB), so the next large buffers come from the heap and stay there: idle RSS then
stays at the high-water mark of the largest requests (+100 MiB after two 24 MiB requests, measured).
``fix_mmap_threshold`` pins the threshold at 1 MiB, so every large buffer (a request, its decoded copies, a
response) is its own mapping, returned when freed; ``Trimmer`` calls ``malloc_trim(0)`` shortly after a large
request, off the request's path, for what smaller allocations leave. Both are no-ops where glibc is absent.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["RejectLog", "Trimmer", "fix_mmap_threshold"]

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def fix_mmap_threshold(nbytes: int = 1 << 20) -> bool:
    """Serve every allocation of ``nbytes`` or more from its own mapping (and stop glibc raising the threshold)."""
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    return bool(mallopt is not None and mallopt(_M_MMAP_THRESHOLD, nbytes) == 1)


def _malloc_trim() -> Callable[[], None] | None:
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


class Trimmer:
    """``note(nbytes)`` after each request; ``threshold`` bytes or more schedules a trim ``delay`` s later."""

    def __init__(self, threshold: int = 8 << 20, delay: float = 0.2):
        self.threshold = threshold
        self.delay = delay
        self.trims = 0
        self._trim = _malloc_trim()
        self._due = threading.Event()
        self._closed = False
        if self._trim is not None:
            threading.Thread(target=self._loop, name="onnxpipe-trim", daemon=True).start()

    def note(self, nbytes: int) -> None:
        if nbytes >= self.threshold and self._trim is not None:
            self._due.set()

    def _loop(self) -> None:
        trim = self._trim
        if trim is None:  # started only when malloc_trim exists
            return
        while True:
            self._due.wait()
            if self._closed:
                return
            time.sleep(self.delay)  # let the request's buffers be released first
            self._due.clear()
            trim()
            self.trims += 1

    def close(self) -> None:
        self._closed = True
        self._due.set()


class RejectLog:
    """One log line per refused request, at most ``per_window`` lines per ``window`` seconds; the rest are
    counted and summed up in one line when the next window opens."""

    def __init__(self, log: logging.Logger, per_window: int = 20, window: float = 10.0):
        self._log = log
        self._per_window = per_window
        self._window = window
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._lines = 0
        self._dropped = 0

    def __call__(self, level: int, msg: str, *args: object) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._start >= self._window:
                if self._dropped:
                    self._log.warning("%d more refused requests were not logged (at most %d lines per %g s)",
                                      self._dropped, self._per_window, self._window)
                self._start, self._lines, self._dropped = now, 0, 0
            if self._lines >= self._per_window:
                self._dropped += 1
                return
            self._lines += 1
        self._log.log(level, msg, *args)
