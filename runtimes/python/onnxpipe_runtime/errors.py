"""The runtime's error family. Each error carries a ``code`` from the contract's error table
(``spec/errors.json``), shared with the Java and Go runtimes, the gRPC sidecar and its clients; the CLIs exit
with that code's status (:data:`EXIT_STATUS`)."""

from __future__ import annotations

__all__ = [
    "EXIT_STATUS",
    "ClosedError",
    "InputError",
    "MissingExtensionError",
    "ModelLoadError",
    "PipelineError",
    "RunError",
    "TooLargeError",
    "UnverifiedPipelineWarning",
    "exit_status",
]


class PipelineError(Exception):
    """Base of every error the runtime raises on purpose."""

    code = "RUNTIME"


class InputError(PipelineError, ValueError):
    """An input is missing, unknown, or of the wrong dtype, rank or dimension; the message names it."""

    code = "INVALID_INPUT"


class TooLargeError(InputError):
    """An input or inputs file is over a configured limit (``spec/limits.json``); refused before allocating.
    The message names the limit, its value and the value given."""

    code = "TOO_LARGE"


class ModelLoadError(PipelineError):
    """The file cannot be read or is not a valid ONNX model / manifest."""

    code = "MODEL_LOAD"


class MissingExtensionError(ModelLoadError):
    """The model needs a custom-op library (e.g. onnxruntime-extensions) that is not installed."""

    code = "MISSING_EXTENSION"


class RunError(PipelineError):
    """ONNX Runtime failed while running a validated input."""

    code = "RUNTIME"


class ClosedError(PipelineError):
    """The pipeline (or a writer) was closed; it cannot run any more."""

    code = "CLOSED"


class UnverifiedPipelineWarning(UserWarning):
    """The file was exported without verification (``verify=False``), or its verification failed."""


#: error code -> CLI exit status (``spec/errors.json``; a test keeps the two equal)
EXIT_STATUS: dict[str, int] = {
    "MISMATCH": 1,
    "USAGE": 2,
    "INVALID_INPUT": 3,
    "TOO_LARGE": 3,
    "MODEL_LOAD": 4,
    "MISSING_EXTENSION": 4,
    "RUNTIME": 5,
    "CLOSED": 5,
}


def exit_status(code: str) -> int:
    """The CLI exit status of an error code; an unknown code is a runtime failure."""
    return EXIT_STATUS.get(code, EXIT_STATUS["RUNTIME"])
