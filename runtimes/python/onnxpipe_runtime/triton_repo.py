"""``onnxpipe triton-repo MODEL OUT_DIR``: the same exported file as a Triton model repository.

Writes ``OUT_DIR/NAME/1/model.onnx`` (a byte copy) and ``OUT_DIR/NAME/config.pbtxt`` for Triton's
ONNX Runtime backend, from the manifest:

- when the model has a batch axis (the rule the sidecar uses, ``serve.batching.batch_axis``):
  ``max_batch_size`` + ``dynamic_batching``, dims without the batch dimension. Optional inputs without the
  batch axis (a per-request threshold) cannot be batched by Triton, so they are left out of the config and
  the graph's default applies; ``--no-batching`` keeps them (and turns batching off).
- otherwise ``max_batch_size: 0`` and full dims (-1 for dynamic ones).
- ``model_operations { op_library_filename }`` when the graph needs ``ai.onnx.contrib`` ops. Triton loads
  them from a plain shared library (``libortextensions.so``, onnxruntime-extensions built with CMake). The
  pip package's ``_extensions_pydll*.so`` is a Python extension module: it needs a Python interpreter's
  symbols and tritonserver cannot load it, so it is never used here. ``--ops-library FILE`` copies a
  library beside the model (referenced under ``--container-repo``, default /models);
  ``--ops-library-in-container PATH`` names one already in the image. Without either, nothing is written.

The config is written with protobuf's text format from ``tritonclient.grpc.model_config_pb2`` when
tritonclient is installed (validating it against Triton's schema), else by the same fields as plain text.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxpipe_runtime.errors import ModelLoadError, PipelineError
from onnxpipe_runtime.format import read_model
from onnxpipe_runtime.signature import Signature, TensorSpec, from_manifest

__all__ = ["TritonConfig", "build_config", "main", "write_repository"]

CONTRIB_DOMAIN = "ai.onnx.contrib"
_TYPES = {
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
    "int64": "TYPE_INT64",
    "int32": "TYPE_INT32",
    "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8",
    "bool": "TYPE_BOOL",
    "string": "TYPE_STRING",
}


@dataclass
class TritonTensor:
    name: str
    data_type: str
    dims: list[int]
    reshape: list[int] | None = None  # Triton's way to say "scalar": dims [1], reshape []
    optional: bool = False


@dataclass
class TritonConfig:
    """What config.pbtxt says, before it is written."""

    name: str
    max_batch_size: int
    inputs: list[TritonTensor]
    outputs: list[TritonTensor]
    max_queue_delay_us: int | None = None
    op_library: str | None = None
    threads: int | None = None
    notes: list[str] = field(default_factory=list)

    def to_text(self) -> str:
        lines = [f"# {n}" for n in self.notes]
        lines += [f'name: "{self.name}"', 'backend: "onnxruntime"', f"max_batch_size: {self.max_batch_size}"]
        for key, tensors in (("input", self.inputs), ("output", self.outputs)):
            for t in tensors:
                parts = [f'name: "{t.name}"', f"data_type: {t.data_type}", f"dims: {_list(t.dims)}"]
                if t.reshape is not None:
                    parts.append(f"reshape: {{ shape: {_list(t.reshape)} }}")
                if t.optional:
                    parts.append("optional: true")
                lines.append(f"{key} {{ {' '.join(parts)} }}")
        if self.max_queue_delay_us is not None:
            lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {self.max_queue_delay_us} }}")
        if self.op_library is not None:
            lines.append(f'model_operations {{ op_library_filename: "{self.op_library}" }}')
        if self.threads is not None:
            lines.append(f'parameters {{ key: "intra_op_thread_count" value {{ string_value: "{self.threads}" }} }}')
        return "\n".join(lines) + "\n"


def _list(values: Sequence[int]) -> str:
    return "[ " + ", ".join(map(str, values)) + " ]" if values else "[ ]"


def _dims(shape: Sequence[Any]) -> tuple[list[int], list[int] | None]:
    dims = [d if isinstance(d, int) else -1 for d in shape]
    if not dims:
        return [1], []
    return dims, None


def build_config(
    name: str,
    signature: Signature,
    *,
    source: str | None = None,
    batching: bool = True,
    max_batch: int = 32,
    max_delay_us: int = 2000,
    op_library: str | None = None,
    threads: int | None = None,
) -> TritonConfig:
    """The Triton config for a signature (see the module docstring for the rules)."""
    from onnxpipe_runtime.serve.batching import batch_axis  # the sidecar's rule, so both batch the same models

    axis, why = batch_axis(signature) if batching else (None, "--no-batching")
    notes = [f"Written by `onnxpipe triton-repo` from the manifest of {source or name}."]
    inputs: list[TritonTensor] = []
    outputs: list[TritonTensor] = []
    if axis is not None:
        notes.append(f"Batch axis {axis!r}: dims below omit it; Triton merges requests up to max_batch_size.")
        for spec in signature.inputs:
            if spec.shape[:1] != (axis,):
                notes.append(
                    f"Optional input {spec.name!r} {list(spec.shape)} has no batch axis: left out, the graph's "
                    f"default ({spec.default!r}) applies. Use --no-batching to expose it."
                )
                continue
            inputs.append(_tensor(spec, spec.shape[1:]))
        outputs = [_tensor(spec, spec.shape[1:]) for spec in signature.outputs]
        return TritonConfig(name, max_batch, inputs, outputs, max_delay_us, op_library, threads, notes)
    notes.append(f"No dynamic batching: {why}.")
    inputs = [_tensor(spec, spec.shape) for spec in signature.inputs]
    outputs = [_tensor(spec, spec.shape) for spec in signature.outputs]
    return TritonConfig(name, 0, inputs, outputs, None, op_library, threads, notes)


def _tensor(spec: TensorSpec, shape: Sequence[Any]) -> TritonTensor:
    dims, reshape = _dims(shape)
    return TritonTensor(spec.name, _TYPES[spec.dtype], dims, reshape, spec.optional)


def _check_with_triton_schema(text: str) -> None:
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        return
    try:
        text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as e:  # a bug here, not user input: say so plainly
        raise RuntimeError(f"triton-repo wrote a config Triton's schema rejects: {e}\n{text}") from e


def write_repository(
    model: str | Path,
    out_dir: str | Path,
    *,
    name: str | None = None,
    batching: bool = True,
    max_batch: int = 32,
    max_delay_us: int = 2000,
    container_repo: str = "/models",
    threads: int | None = None,
    ops_library: str | Path | None = None,
    ops_library_in_container: str | None = None,
) -> Path:
    """Write ``out_dir/NAME/{config.pbtxt, 1/model.onnx}``; returns the model's folder."""
    model = Path(model)
    file = read_model(model)
    data, manifest = file.data, file.manifest
    if manifest is None:
        raise ModelLoadError(
            f"model file {str(model)!r} has no onnxpipe manifest; triton-repo writes the config from it "
            "(export it with onnxpipe.export_pipeline)"
        )
    signature = from_manifest(manifest)
    name = name or model.stem
    if not name or "/" in name or name in (".", ".."):
        raise ModelLoadError(f"model name {name!r}: expected a plain folder name")
    folder = Path(out_dir) / name
    op_library = None
    needs_ops = CONTRIB_DOMAIN in file.domains or CONTRIB_DOMAIN in signature.domains
    if needs_ops:
        op_library = _op_library(name, ops_library, ops_library_in_container, container_repo)
    config = build_config(
        name, signature, source=model.name, batching=batching, max_batch=max_batch, max_delay_us=max_delay_us,
        op_library=op_library, threads=threads,
    )
    text = config.to_text()
    _check_with_triton_schema(text)
    (folder / "1").mkdir(parents=True, exist_ok=True)  # only now: a refused model leaves nothing behind
    if needs_ops and ops_library is not None:
        shutil.copyfile(ops_library, folder / Path(ops_library).name)
    (folder / "1" / "model.onnx").write_bytes(data)
    (folder / "config.pbtxt").write_text(text, encoding="utf-8")
    return folder


def _op_library(name: str, local: str | Path | None, in_container: str | None, container_repo: str) -> str:
    """The op_library_filename for a model needing ai.onnx.contrib ops; MissingExtensionError if none fits."""
    from onnxpipe_runtime.errors import MissingExtensionError

    if (local is None) == (in_container is None):
        raise MissingExtensionError(
            f"model {name!r} uses custom ops from domain {CONTRIB_DOMAIN!r}: Triton needs the onnxruntime-extensions "
            "ops as a plain shared library (libortextensions.so, built from onnxruntime-extensions with CMake; the "
            "pip package's _extensions_pydll*.so needs Python and tritonserver cannot load it). Give exactly one of "
            "--ops-library FILE (copied beside the model) or --ops-library-in-container PATH (already in the image)"
        )
    if in_container is not None:
        if not in_container.startswith("/"):
            raise MissingExtensionError(f"--ops-library-in-container {in_container!r}: expected an absolute path")
        return in_container
    path = Path(local)  # type: ignore[arg-type]
    try:
        data = path.read_bytes()
    except OSError as e:
        raise MissingExtensionError(f"--ops-library {str(path)!r}: cannot read it ({e.strerror})") from e
    if b"PyInit_" in data:
        raise MissingExtensionError(
            f"--ops-library {str(path)!r} is a Python extension module (it defines PyInit_): tritonserver cannot "
            "load it; expected libortextensions.so built from onnxruntime-extensions with CMake"
        )
    return f"{container_repo.rstrip('/')}/{name}/{path.name}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="onnxpipe triton-repo",
        description="Write a Triton model repository (OUT_DIR/NAME/1/model.onnx + config.pbtxt) for an exported file.",
        epilog="Docs: docs/scale-out.md",
    )
    p.add_argument("model", type=Path, metavar="MODEL", help="an exported .onnx file")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="the model repository folder (created if needed)")
    p.add_argument("--name", default=None, help="model name (default: the file stem)")
    p.add_argument("--max-batch", type=int, default=32, help="max_batch_size when batching (default 32)")
    p.add_argument("--max-delay-us", type=int, default=2000, help="dynamic_batching max_queue_delay_microseconds")
    p.add_argument("--no-batching", action="store_true", help="max_batch_size 0; keeps per-request optional inputs")
    p.add_argument("--container-repo", default="/models",
                   help="where OUT_DIR is mounted in the Triton container (for --ops-library; default /models)")
    p.add_argument("--ops-library", type=Path, default=None, metavar="FILE",
                   help="libortextensions.so to copy beside the model (models with ai.onnx.contrib ops)")
    p.add_argument("--ops-library-in-container", default=None, metavar="PATH",
                   help="absolute path of libortextensions.so inside the Triton image (instead of --ops-library)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads per model instance")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code) if isinstance(e.code, int) else 2
    if args.max_batch < 1 or args.max_delay_us < 0 or (args.threads is not None and args.threads < 1):
        print("onnxpipe triton-repo: --max-batch and --threads must be >= 1, --max-delay-us >= 0", file=sys.stderr)
        return 2
    try:
        folder = write_repository(
            args.model, args.out_dir, name=args.name, batching=not args.no_batching, max_batch=args.max_batch,
            max_delay_us=args.max_delay_us, container_repo=args.container_repo, threads=args.threads,
            ops_library=args.ops_library, ops_library_in_container=args.ops_library_in_container,
        )
    except PipelineError as e:
        print(f"onnxpipe triton-repo: [{e.code}] {e}", file=sys.stderr)
        return 2
    print(f"wrote {folder / 'config.pbtxt'} and {folder / '1' / 'model.onnx'}")
    print((folder / "config.pbtxt").read_text(encoding="utf-8"), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
