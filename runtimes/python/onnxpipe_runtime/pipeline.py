"""Load an onnxpipe file and run it with numpy + onnxruntime (no torch)."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from onnxpipe_runtime import signature as sig
from onnxpipe_runtime.errors import (
    ClosedError,
    InputError,
    MissingExtensionError,
    ModelLoadError,
    PipelineError,
    RunError,
    UnverifiedPipelineWarning,
)
from onnxpipe_runtime.format import VECTORS_KEY, Manifest, ModelFile, read_model
from onnxpipe_runtime.tensor_json import DTYPES, WIDENS_FROM
from onnxpipe_runtime.threads import default_threads, parse_threads

__all__ = ["Pipeline", "ClosedError"]

CONTRIB_DOMAIN = "ai.onnx.contrib"



def _extensions_library() -> str:
    """Path of onnxruntime-extensions' custom-op library, found without importing the package (its
    ``__init__`` imports torch and transformers when present and changes the process's protobuf setting)."""
    import importlib.util

    spec = importlib.util.find_spec("onnxruntime_extensions")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    found = sorted(p for folder in folders for p in Path(folder).glob("_extensions_pydll*.so"))
    if not found:
        raise MissingExtensionError(
            f"this model uses custom ops from domain {CONTRIB_DOMAIN!r}, which need the package "
            "'onnxruntime-extensions' (pip install 'onnxpipe-runtime[text]')"
            + (f"; it is installed at {folders[0]} but has no _extensions_pydll library" if folders else "")
        )
    return str(found[0])


def session_options(threads: int) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3  # overridable-initializer notices are expected: thresholds are inputs by design
    return so


class Pipeline:
    """An exported pipeline, ready to run. Thread-safe ``run``; use as a context manager or ``close()``.

    >>> with Pipeline.load("digits.onnx") as pipe:
    ...     out = pipe.run(image=pixels)          # {"score": ..., "label": ...}
    """

    def __init__(self, session: ort.InferenceSession, file: ModelFile, path: Path, threads: int):
        self._session: Any = session  # an InferenceSession, or a session-like placing stages (accelerators.py)
        #: where the model stage runs ("cpu", "openvino", or "auto" when calls are routed by batch size), its
        #: precision (None: as exported) and each stage's engine
        self.accelerator: str = "cpu"
        self.precision: str | None = None
        manifest = file.manifest
        self.placement: dict[str, str] = {st.name: "cpu" for st in (manifest.stages if manifest else ())}
        #: the file's manifest (None for a plain ONNX file)
        self.manifest: Manifest | None = manifest
        self._embedded_vectors = file.metadata.get(VECTORS_KEY)
        self.path = path
        self.threads = threads
        domains = tuple(d for d in file.domains if d != "ai.onnx")
        self.signature = sig.from_manifest(manifest) if manifest is not None else sig.from_session(session, domains)
        #: "passed", "failed", "not run" (exported with verify=False) or "unknown" (plain ONNX, no manifest)
        self.verification = sig.verification_status(manifest)
        if self.verification in ("failed", "not run"):
            why = ("was exported with verify=False: its outputs were never compared with eager PyTorch"
                   if self.verification == "not run" else "FAILED verification at export: it disagrees with eager PyTorch")
            warnings.warn(f"{path.name} {why}", UnverifiedPipelineWarning, stacklevel=3)
        self._output_names = [o.name for o in self.signature.outputs]
        #: int8 or mixed model stage: empty inputs are refused (spec/README.md, "Inputs")
        self._quantized = manifest is not None and manifest.precision in ("int8", "mixed")
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        accelerator: str = "cpu",
        precision: str | None = None,
    ) -> Pipeline:
        """Open ``path``. ``threads`` defaults to the CPUs this process may use (see ``threads.py``); every engine
        follows it.

        ``accelerator``: ``"cpu"`` (ONNX Runtime's CPU provider runs the whole file), ``"openvino"`` (the model
        stage on OpenVINO, pre/post on the CPU provider; extra ``onnxpipe-runtime[openvino]``) or ``"auto"`` (the
        best of those for this file here: docs/accelerators.md). ``precision``: None (f32) or ``"bf16"``
        (openvino, on CPUs with AVX-512 BF16 or AMX). Impossible combinations raise ``AcceleratorError``; openvino
        without the extra raises ``MissingExtensionError``.
        """
        from onnxpipe_runtime import _auto, accelerators

        accelerator, precision = accelerators.check(accelerator, precision)
        if providers is not None and accelerator != "cpu":
            raise accelerators.AcceleratorError("give providers or accelerator, not both")
        path = Path(path)
        file = read_model(path)  # rejects a bad manifest, or one that does not match the graph, before the session
        data, manifest = file.data, file.manifest
        n_threads = parse_threads(threads) if threads is not None else default_threads()

        def options() -> ort.SessionOptions:
            so = session_options(n_threads)
            if CONTRIB_DOMAIN in file.domains:
                so.register_custom_ops_library(_extensions_library())
            return so

        def placed(name: str, prec: str) -> Any:
            outputs = [o.name for o in manifest.outputs] if manifest is not None else []
            try:
                vectors = _decode_vectors(file.metadata.get(VECTORS_KEY), path.name)
            except ModelLoadError:
                vectors = None
            if vectors is not None:
                return accelerators.open_placed(data, manifest, str(path), name, prec, n_threads, options, outputs,
                                                vectors["inputs"])
            # no embedded example (large inputs are not embedded): a small synthetic one tells the stages' ranks
            example = _synthetic_example(manifest)
            if example is not None:
                try:
                    return accelerators.open_placed(data, manifest, str(path), name, prec, n_threads, options,
                                                    outputs, example)
                except ModelLoadError:
                    pass  # the pipeline refuses made-up data: place it without the probe
            return accelerators.open_placed(data, manifest, str(path), name, prec, n_threads, options, outputs, None)

        if accelerator == "openvino":
            session = placed(accelerator, precision or "f32")
            pipe = cls(session, file, path, n_threads)
            pipe.accelerator, pipe.precision, pipe.placement = accelerator, precision or "f32", session.placement
            return pipe
        so = options()  # MissingExtensionError before the session, not wrapped by it
        try:
            session = ort.InferenceSession(data, so, providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as e:  # onnxruntime raises several unrelated types for a bad model
            raise ModelLoadError(f"model file {str(path)!r}: ONNX Runtime cannot load it: {e}") from e
        pipe = cls(session, file, path, n_threads)
        if accelerator == "auto":
            try:
                vectors = pipe.embedded_vectors()
            except ModelLoadError:
                vectors = None
            cpu = _auto.Choice(session, "cpu", None, {})
            choice = _auto.choose(cpu, placed, manifest, pipe.signature, vectors, precision)
            pipe._session = choice.session
            pipe.accelerator, pipe.precision, pipe.placement = choice.accelerator, choice.precision, choice.placement
        return pipe

    def embedded_vectors(self) -> dict[str, Any] | None:
        """The example inputs, eager outputs and tolerances stored at export (``onnxpipe.vectors``), if any:
        ``{"inputs": {name: array}, "expected": {name: array}, "tolerance": {dtype or output: (atol, rtol)}}``."""
        return _decode_vectors(self._embedded_vectors, self.path.name)

    # -- running -----------------------------------------------------------------------------------------
    def run(self, inputs: Mapping[str, Any] | None = None, /, **kwargs: Any) -> dict[str, np.ndarray]:
        """Run on named inputs (numpy arrays, lists, scalars; strings as str/object arrays or lists).

        Returns ``{output_name: array}`` in the signature's order. Raises :class:`InputError` (naming the input,
        what was given and what is expected) before ONNX Runtime is called.
        """
        session = self._session
        if session is None:
            raise ClosedError(f"pipeline {str(self.path)!r} is closed")
        given = dict(inputs or {})
        overlap = set(given) & set(kwargs)
        if overlap:
            raise InputError(f"inputs {sorted(overlap)} given both in the mapping and as keywords")
        given.update(kwargs)
        feeds = self.validate(given)
        try:
            values = session.run(self._output_names, feeds)
        except Exception as e:
            raise RunError(f"ONNX Runtime failed on {self.path.name}: {e}") from e
        return dict(zip(self._output_names, values))

    __call__ = run

    def validate(self, given: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Check and convert inputs to what the graph expects; InputError on anything else."""
        specs = {s.name: s for s in self.signature.inputs}
        unknown = [n for n in given if n not in specs]
        if unknown:
            raise InputError(
                f"unknown input {unknown[0]!r}; expected one of {[s.name for s in self.signature.inputs]}"
            )
        missing = [s.name for s in self.signature.required_inputs if s.name not in given]
        if missing:
            raise InputError(
                f"missing input {missing[0]!r} ({_describe(specs[missing[0]])}); "
                f"required: {[s.name for s in self.signature.required_inputs]}"
            )
        feeds: dict[str, np.ndarray] = {}
        dims: dict[str, tuple[str, int]] = {}
        for name, value in given.items():
            spec = specs[name]
            arr = sig.convert_parameter(spec, value) if spec.is_parameter else _convert(spec, value)
            if spec.dtype == "string" and CONTRIB_DOMAIN in self.signature.domains:
                _reject_nul(spec, arr)
            if len(arr.shape) != len(spec.shape):
                raise InputError(
                    f"input {name!r}: rank {arr.ndim} (shape {list(arr.shape)}) given, "
                    f"expected rank {len(spec.shape)} {_shape_str(spec.shape)}"
                )
            for axis, (want, got) in enumerate(zip(spec.shape, arr.shape)):
                if isinstance(want, int) and want != got:
                    raise InputError(
                        f"input {name!r}: dimension {axis} is {got} (shape {list(arr.shape)}), "
                        f"expected {want} {_shape_str(spec.shape)}"
                    )
                if isinstance(want, str):
                    seen = dims.setdefault(want, (name, got))
                    if seen[1] != got:
                        raise InputError(
                            f"input {name!r}: dimension {axis} ({want!r}) is {got}, but input {seen[0]!r} "
                            f"has {want!r} = {seen[1]}; inputs sharing a dimension name must agree"
                        )
            if arr.size == 0 and self._quantized and not spec.optional:
                raise InputError(
                    f"input {name!r}: shape {list(arr.shape)} has no elements; this pipeline's model stage is "
                    f"{self.manifest.precision if self.manifest else 'quantized'}, and ONNX Runtime's quantized "
                    "kernels abort the process on empty tensors: give at least one element per dimension"
                )
            feeds[name] = arr
        return feeds

    # -- lifetime ----------------------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._session = None

    @property
    def closed(self) -> bool:
        return self._session is None

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        ins = ", ".join(f"{s.name}:{s.dtype}{_shape_str(s.shape)}" for s in self.signature.inputs)
        return f"Pipeline({self.path.name!r}, inputs=[{ins}])"


def _decode_vectors(text: str | None, source: str) -> dict[str, Any] | None:
    if text is None:
        return None
    import json

    from onnxpipe_runtime import tensor_json

    try:
        doc = json.loads(text)
        return {
            "inputs": {k: tensor_json.decode(k, v) for k, v in doc["inputs"].items()},
            "expected": {k: tensor_json.decode(k, v) for k, v in doc["expected"].items()},
            "tolerance": {k: (float(v["atol"]), float(v["rtol"])) + ((float(v["mismatch"]),) if "mismatch" in v else ())
                          for k, v in doc.get("tolerance", {}).items()},
        }
    except (ValueError, KeyError, TypeError) as e:
        raise ModelLoadError(f"{source}: metadata 'onnxpipe.vectors' is malformed ({e})") from e


def _shape_str(shape: Sequence[Any]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _describe(spec: sig.TensorSpec) -> str:
    return f"{spec.dtype} {_shape_str(spec.shape)}"


def _convert(spec: sig.TensorSpec, value: Any) -> np.ndarray:
    """The value as an array of the spec's dtype; only lossless conversions are made."""
    want = DTYPES[spec.dtype]
    if spec.dtype == "string":
        return _convert_strings(spec, value)
    if isinstance(value, np.ndarray) or np.isscalar(value) and isinstance(value, np.generic):
        arr = np.asarray(value)
        if arr.dtype == want:
            return arr
        if arr.dtype.kind in "USO":
            raise InputError(f"input {spec.name!r}: strings given, expected {_describe(spec)}")
        if arr.dtype.name in WIDENS_FROM[spec.dtype]:
            return arr.astype(want)
        if arr.dtype.name not in DTYPES and arr.dtype.kind in "iuf" and np.can_cast(arr.dtype, want, casting="safe"):
            return arr.astype(want)  # numpy-only dtypes (float16, int16, uint16) have no tensor-JSON name
        accepted = ", ".join((spec.dtype, *WIDENS_FROM[spec.dtype]))
        raise InputError(
            f"input {spec.name!r}: dtype {arr.dtype} given, expected {spec.dtype} {_shape_str(spec.shape)} "
            f"(accepted: {accepted}; convert it explicitly)"
        )
    # Python scalars and (nested) lists: the values must fit the dtype exactly.
    try:
        raw = np.asarray(value)
    except ValueError as e:
        raise InputError(f"input {spec.name!r}: cannot read it as an array ({e}); expected {_describe(spec)}") from e
    if raw.dtype.kind in "USO" or raw.dtype.kind not in "biuf":
        raise InputError(f"input {spec.name!r}: {raw.dtype} values given, expected {_describe(spec)}")
    if want.kind == "b" and raw.dtype.kind != "b":
        raise InputError(f"input {spec.name!r}: numbers given, expected bool {_shape_str(spec.shape)}")
    if want.kind in "iu":
        if raw.dtype.kind == "f":
            raise InputError(f"input {spec.name!r}: floats given, expected integers ({_describe(spec)})")
        info = np.iinfo(want)
        if raw.size and (raw.min() < info.min or raw.max() > info.max):
            raise InputError(
                f"input {spec.name!r}: values in [{raw.min()}, {raw.max()}] given, "
                f"expected {spec.dtype} in [{info.min}, {info.max}]"
            )
    arr = raw.astype(want)
    if want.kind == "f" and raw.dtype.kind in "iu" and raw.size and not np.array_equal(arr.astype(raw.dtype), raw):
        raise InputError(f"input {spec.name!r}: integers too large for {spec.dtype} exactly")
    return arr


def _reject_nul(spec: sig.TensorSpec, arr: np.ndarray) -> None:
    """onnxruntime-extensions' string ops end a string at a NUL character; refuse rather than lose the rest."""
    for i, v in enumerate(arr.reshape(-1)):
        if "\x00" in v:
            raise InputError(
                f"input {spec.name!r}: element {i} contains a NUL character at position {v.index(chr(0))}; "
                f"this pipeline's string ops ({CONTRIB_DOMAIN}) would silently drop everything after it"
            )


def _convert_strings(spec: sig.TensorSpec, value: Any) -> np.ndarray:
    if isinstance(value, str):
        value = np.array(value, dtype=object)
    arr = np.asarray(value, dtype=object) if not isinstance(value, np.ndarray) else value
    if arr.dtype.kind == "U":
        return arr.astype(object)
    if arr.dtype.kind != "O":
        raise InputError(f"input {spec.name!r}: dtype {arr.dtype} given, expected strings {_shape_str(spec.shape)}")
    flat = arr.reshape(-1)
    for i, v in enumerate(flat):
        if not isinstance(v, str):
            raise InputError(
                f"input {spec.name!r}: element {i} is {type(v).__name__} {v!r}, expected str ({_describe(spec)})"
            )
    return arr


def _synthetic_example(manifest: Manifest | None) -> dict[str, np.ndarray] | None:
    """One small input per required input of the manifest (batch 1, other dynamic dims 32, zeros; strings "a"),
    for learning hand-over ranks when the file embeds no example. None when a dtype is unknown."""
    if manifest is None:
        return None
    out: dict[str, np.ndarray] = {}
    for spec in manifest.inputs:
        if spec.optional:
            continue
        dims = [d if isinstance(d, int) else (1 if k == 0 else 32) for k, d in enumerate(spec.shape)]
        if spec.dtype == "string":
            out[spec.name] = np.full(dims, "a", dtype=object)
        else:
            out[spec.name] = np.zeros(dims, dtype=DTYPES[spec.dtype])
    return out
