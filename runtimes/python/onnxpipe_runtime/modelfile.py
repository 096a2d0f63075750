"""Read what the runtime needs from an ONNX file before ONNX Runtime sees it, without the onnx package.

Only two top-level fields of ``ModelProto`` are decoded (protobuf wire format): ``opset_import`` (to know
which custom-op libraries to register) and ``metadata_props`` (the manifest). Everything else is skipped by
length, so even a large model is scanned in microseconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxpipe_runtime.errors import ModelLoadError

MANIFEST_KEY = "onnxpipe.manifest"
SUPPORTED_FORMAT_VERSION = 1

_OPSET_IMPORT = 8
_METADATA_PROPS = 14
_GRAPH = 7


@dataclass
class ModelHeader:
    domains: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def manifest(self) -> dict[str, Any] | None:
        text = self.metadata.get(MANIFEST_KEY)
        if text is None:
            return None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ModelLoadError(f"metadata {MANIFEST_KEY!r} is not valid JSON: {e}") from e
        if not isinstance(doc, dict) or doc.get("format") != "onnxpipe.manifest":
            raise ModelLoadError(f"metadata {MANIFEST_KEY!r}: expected an object with format 'onnxpipe.manifest'")
        version = doc.get("format_version")
        if not isinstance(version, int) or version > SUPPORTED_FORMAT_VERSION:
            raise ModelLoadError(
                f"manifest format_version {version!r} is not supported; this runtime reads up to "
                f"{SUPPORTED_FORMAT_VERSION} (upgrade onnxpipe-runtime)"
            )
        return doc


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) for each field; length-delimited values as bytes."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        value: Any
        if num == 0:
            raise ValueError("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if pos + n > len(buf):
                raise ValueError("length-delimited field runs past the end")
            value, pos = buf[pos : pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise ValueError("truncated field")
        out.append((num, wire, value))
    return out


def read_model(path: Path) -> tuple[bytes, ModelHeader]:
    """The file's bytes and header; ModelLoadError naming the file when it cannot be read or is not a model."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelLoadError(f"model file {str(path)!r}: cannot read it ({e.strerror})") from e
    return data, read_header(data, str(path))


def read_header(data: bytes, source: str) -> ModelHeader:
    """Opset imports and metadata of a serialized ModelProto; ModelLoadError if it is not one."""
    header = ModelHeader()
    has_graph = False
    try:
        for num, wire, value in _fields(data):
            if num == _GRAPH and wire == 2:
                has_graph = True
            elif num == _OPSET_IMPORT and wire == 2:
                domain, version = "", 0
                for n, w, v in _fields(value):
                    if n == 1 and w == 2:
                        domain = v.decode("utf-8")
                    elif n == 2 and w == 0:
                        version = v
                header.domains[domain or "ai.onnx"] = version
            elif num == _METADATA_PROPS and wire == 2:
                kv = {n: v.decode("utf-8") for n, w, v in _fields(value) if w == 2}
                header.metadata[kv.get(1, "")] = kv.get(2, "")
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{source}: not a valid ONNX model file ({e})") from e
    if not has_graph:
        raise ModelLoadError(f"{source}: not a valid ONNX model file (no graph)")
    return header
