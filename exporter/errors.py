"""The SDK's error family."""

from __future__ import annotations


class OnnxpipeError(Exception):
    """Base class of every error the onnxpipe SDK raises on purpose. ``code`` is stable across languages."""

    code = "ONNXPIPE"


class ExportError(OnnxpipeError):
    """torch.onnx (or composing the stages) failed; the message names the stage and keeps torch's reason."""

    code = "EXPORT"


class ExportVerificationError(ExportError):
    """The exported file disagrees with the eager pipeline, or a declared dynamic axis is not dynamic."""

    code = "VERIFICATION"
