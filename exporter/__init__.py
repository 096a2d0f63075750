"""onnxpipe: export pre-processing + a PyTorch model + post-processing as one verified ONNX graph."""

from onnxpipe._version import __version__
from onnxpipe.errors import ExportError, ExportVerificationError, OnnxpipeError
from onnxpipe.stages import Chain, OnnxStage, RuntimeInput

__all__ = [
    "Chain",
    "ExportError",
    "ExportVerificationError",
    "ExportedPipeline",
    "OnnxStage",
    "OnnxpipeError",
    "RuntimeInput",
    "Tolerance",
    "__version__",
    "export_pipeline",
]


def __getattr__(name: str):  # lazy: `import onnxpipe.stages` (used by ops) stays light
    if name in ("export_pipeline", "ExportedPipeline", "Tolerance"):
        from onnxpipe import export

        return getattr(export, name)
    raise AttributeError(name)
