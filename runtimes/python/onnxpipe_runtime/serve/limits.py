"""Per-request and per-batch size limits, checked from the declared shapes and string lengths before any
array is allocated (``spec/limits.json``; over a limit is ``TOO_LARGE``, gRPC ``RESOURCE_EXHAUSTED``).

    budget = Budget(Limits())
    count = budget.elements("pixels", [1, 28, 28, 3])    # TOO_LARGE past --max-elements, before allocating
    budget.string_bytes("text", 1024)                     # TOO_LARGE past --max-string-bytes

A request's elements are the sum over its tensors; a zero-size tensor counts 0, but every dimension must
still be at most ``max_elements`` (a shape like ``[0, 2**40]`` says nothing useful and is refused).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from onnxpipe_runtime.serve.status import RequestError, clip

__all__ = ["DEFAULT_MAX_ELEMENTS", "DEFAULT_MAX_STRING_BYTES", "Budget", "Limits"]

#: the defaults of spec/limits.json (a test keeps them equal)
DEFAULT_MAX_ELEMENTS = 16_777_216
DEFAULT_MAX_STRING_BYTES = 67_108_864


@dataclass(frozen=True)
class Limits:
    """``max_elements``: elements in one request (and in one merged batch); ``max_string_bytes``: UTF-8 bytes
    over all string elements of one request (and batch)."""

    max_elements: int = DEFAULT_MAX_ELEMENTS
    max_string_bytes: int = DEFAULT_MAX_STRING_BYTES


class Budget:
    """What one request has used of its limits so far; each call adds one tensor's share or raises."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.used_elements = 0
        self.used_string_bytes = 0

    def elements(self, name: str, shape: Sequence[int]) -> int:
        """The element count of ``shape`` (already checked non-negative), added to the request's total."""
        cap = self.limits.max_elements
        count = 1
        for axis, d in enumerate(shape):
            if d > cap:
                raise RequestError(
                    "TOO_LARGE",
                    f"input {clip(name)}: dimension {axis} is {d:,}, above --max-elements {cap:,} (limit max_elements)",
                )
            count *= d
            if count > cap:  # stop multiplying early: a long shape of large dims stays a small number
                break
        if count > cap or self.used_elements + count > cap:
            raise RequestError(
                "TOO_LARGE",
                f"input {clip(name)}: shape {_shape(shape)} brings the request to over {self.used_elements + count:,} "
                f"elements, above --max-elements {cap:,} (limit max_elements)",
            )
        self.used_elements += count
        return count

    def string_bytes(self, name: str, size: int) -> None:
        """Add ``size`` bytes of string data from input ``name``."""
        cap = self.limits.max_string_bytes
        self.used_string_bytes += size
        if self.used_string_bytes > cap:
            raise RequestError(
                "TOO_LARGE",
                f"input {clip(name)}: the request's strings reach {self.used_string_bytes:,} bytes, above "
                f"--max-string-bytes {cap:,} (limit max_string_bytes)",
            )


def _shape(shape: Sequence[int]) -> str:
    dims = list(shape)
    return str(dims) if len(dims) <= 8 else f"[{', '.join(map(str, dims[:8]))}, ...] ({len(dims)} dims)"
