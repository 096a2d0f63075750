"""The runtime's error family. Each error carries a ``code`` shared with the Java and Go runtimes and the
gRPC sidecar: INVALID_INPUT, MODEL_LOAD, MISSING_EXTENSION, RUNTIME."""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error the runtime raises on purpose."""

    code = "RUNTIME"


class InputError(PipelineError, ValueError):
    """An input is missing, unknown, or of the wrong dtype, rank or dimension; the message names it."""

    code = "INVALID_INPUT"


class ModelLoadError(PipelineError):
    """The file cannot be read or is not a valid ONNX model / manifest."""

    code = "MODEL_LOAD"


class MissingExtensionError(ModelLoadError):
    """The model needs a custom-op library (e.g. onnxruntime-extensions) that is not installed."""

    code = "MISSING_EXTENSION"


class RunError(PipelineError):
    """ONNX Runtime failed while running a validated input."""

    code = "RUNTIME"


class UnverifiedPipelineWarning(UserWarning):
    """The file was exported without verification (``verify=False``), or its verification failed."""
