"""onnxpipe: export pre-processing + a PyTorch model + post-processing as one verified ONNX graph.

    from onnxpipe import export_pipeline
    exported = export_pipeline(pre, model, post, example_inputs={"image": pixels},
                               dynamic_axes={"image": {0: "batch", 1: "height", 2: "width"}}, path="p.onnx")

torch is imported on first use of an exporting name, so ``onnxpipe run`` / ``inspect`` start fast.
"""

from typing import TYPE_CHECKING, Any

from onnxpipe._version import __version__
from onnxpipe.errors import ExportError, ExportVerificationError, OnnxpipeError

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
    "optimize",
]

_LAZY = {
    "Chain": "onnxpipe.stages",
    "OnnxStage": "onnxpipe.stages",
    "RuntimeInput": "onnxpipe.stages",
    "export_pipeline": "onnxpipe.export",
    "optimize": "onnxpipe._optimize",
    "ExportedPipeline": "onnxpipe.export",
    "Tolerance": "onnxpipe.verify",
}

if TYPE_CHECKING:
    from onnxpipe._optimize import optimize
    from onnxpipe.export import ExportedPipeline, export_pipeline
    from onnxpipe.stages import Chain, OnnxStage, RuntimeInput
    from onnxpipe.verify import Tolerance


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'onnxpipe' has no attribute {name!r}")
