"""onnxpipe-runtime: run onnxpipe pipelines with numpy + onnxruntime only (no torch).

    from onnxpipe_runtime import Pipeline
    with Pipeline.load("digits.onnx") as pipe:
        out = pipe.run(image=pixels)
"""

from onnxpipe_runtime._version import __version__
from onnxpipe_runtime.accelerators import AcceleratorError, available_accelerators
from onnxpipe_runtime.errors import (
    ClosedError,
    InputError,
    MissingExtensionError,
    ModelLoadError,
    PipelineError,
    RunError,
    TooLargeError,
    UnverifiedPipelineWarning,
)
from onnxpipe_runtime.pipeline import Pipeline
from onnxpipe_runtime.signature import Signature, TensorSpec
from onnxpipe_runtime.threads import default_threads

__all__ = [
    "AcceleratorError",
    "ClosedError",
    "InputError",
    "MissingExtensionError",
    "ModelLoadError",
    "Pipeline",
    "PipelineError",
    "RunError",
    "Signature",
    "TensorSpec",
    "TooLargeError",
    "UnverifiedPipelineWarning",
    "__version__",
    "available_accelerators",
    "default_threads",
]
