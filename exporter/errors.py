"""The SDK's error family."""

from __future__ import annotations

from typing import Any

#: longest message an export error carries; the rest is on ``.details``
MAX_MESSAGE = 2000


class OnnxpipeError(Exception):
    """Base class of every error the onnxpipe SDK raises on purpose. ``code`` is stable across languages.

    ``details``: the full story (torch's whole message, its traceback, its captured logs) when the message
    had to be short; ``None`` otherwise.
    """

    code = "ONNXPIPE"

    def __init__(self, message: str = "", *, details: str | None = None) -> None:
        if len(message.encode("utf-8")) > MAX_MESSAGE:
            details = message if details is None else f"{message}\n\n{details}"
            message = message.encode("utf-8")[: MAX_MESSAGE - 40].decode("utf-8", "ignore") + "\n... (see .details)"
        super().__init__(message)
        self.details = details


class ExportError(OnnxpipeError):
    """torch.onnx (or composing the stages) failed; the message names the stage and keeps torch's reason.

    When torch failed, ``stage`` is the stage (``pre``/``model``/``post``), ``category`` one of
    :data:`onnxpipe._torch_export.CATEGORIES` and ``source`` the ``file:line`` torch failed at.
    """

    code = "EXPORT"

    def __init__(self, message: str = "", *, details: str | None = None, stage: str | None = None,
                 category: str | None = None, source: str | None = None) -> None:
        super().__init__(message, details=details)
        self.stage = stage
        self.category = category
        self.source = source
        #: for verification failures: what export_pipeline's report would have said (status "failed")
        self.report: dict[str, Any] | None = None


class ExportVerificationError(ExportError):
    """The exported file disagrees with the eager pipeline, or a declared dynamic axis is not dynamic.

    No file is left at the export's ``path``; ``report["verification"]["status"]`` is ``"failed"``.
    """

    code = "VERIFICATION"


class OptimizeError(OnnxpipeError):
    """``onnxpipe.optimize`` cannot work with what it was given (the file, the validation inputs, the gate)."""

    code = "OPTIMIZE"


class GateError(OptimizeError):
    """No candidate passed the accuracy gate: nothing was written. ``report`` holds every candidate's figures."""

    code = "GATE"

    def __init__(self, message: str = "", *, report: Any = None) -> None:
        super().__init__(message)
        self.report = report
