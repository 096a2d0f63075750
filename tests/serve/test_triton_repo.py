"""`onnxpipe triton-repo`: the repository layout, and config.pbtxt valid for Triton's own ModelConfig schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import BASIC, MINILM

from onnxpipe_runtime.triton_repo import main, write_repository

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
from google.protobuf import text_format  # noqa: E402


def parse(folder: Path):
    return text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def test_batched_config(tmp_path, capsys):
    assert main([str(BASIC), str(tmp_path), "--max-batch", "16", "--max-delay-us", "500"]) == 0
    folder = tmp_path / "basic"
    assert (folder / "1" / "model.onnx").read_bytes() == BASIC.read_bytes()
    cfg = parse(folder)
    assert cfg.name == "basic" and cfg.backend == "onnxruntime" and cfg.max_batch_size == 16
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 500
    ins = {i.name: (model_config_pb2.DataType.Name(i.data_type), list(i.dims)) for i in cfg.input}
    assert ins == {"features": ("TYPE_FP32", [3]), "pixels": ("TYPE_UINT8", [-1, -1, 3])}
    outs = {o.name: (model_config_pb2.DataType.Name(o.data_type), list(o.dims), o.HasField("reshape"))
            for o in cfg.output}
    assert outs == {
        "score": ("TYPE_FP32", [3], False),
        "label_id": ("TYPE_INT64", [1], True),  # [batch] -> dims [1] reshaped to [] (Triton's scalar idiom)
        "label": ("TYPE_STRING", [1], True),
        "confident": ("TYPE_BOOL", [1], True),
        "pixel_sum": ("TYPE_INT64", [1], True),
    }
    assert "score_threshold" in (folder / "config.pbtxt").read_text()  # named in a comment: why it is left out
    assert not cfg.model_operations.op_library_filename
    assert "wrote" in capsys.readouterr().out


def test_unbatched_config_keeps_optional_inputs(tmp_path):
    folder = write_repository(BASIC, tmp_path, name="basic_nb", batching=False, threads=2)
    cfg = parse(folder)
    assert cfg.name == "basic_nb" and cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    ins = {i.name: (list(i.dims), i.optional, list(i.reshape.shape) if i.HasField("reshape") else None)
           for i in cfg.input}
    assert ins == {"features": ([-1, 3], False, None), "pixels": ([-1, -1, -1, 3], False, None),
                   "score_threshold": ([1], True, [])}
    assert cfg.parameters["intra_op_thread_count"].string_value == "2"


def _contrib_model(path: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    manifest = {"format": "onnxpipe.manifest", "format_version": 1, "name": "upper",
                "inputs": [{"name": "text", "dtype": "string", "shape": ["batch"]}],
                "outputs": [{"name": "out", "dtype": "string", "shape": ["batch"]}],
                "domains": [{"domain": "ai.onnx.contrib", "library": "onnxruntime-extensions"}]}
    graph = helper.make_graph(
        [helper.make_node("StringUpper", ["text"], ["out"], domain="ai.onnx.contrib")], "upper",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])],
        [helper.make_tensor_value_info("out", TensorProto.STRING, ["batch"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("ai.onnx.contrib", 1)])
    model.ir_version = 8
    helper.set_model_props(model, {"onnxpipe.manifest": json.dumps(manifest)})
    onnx.save(model, path)
    return path


def test_contrib_ops_library_copied_beside_the_model(tmp_path):
    model = _contrib_model(tmp_path / "upper.onnx")
    lib = tmp_path / "libortextensions.so"
    lib.write_bytes(b"\x7fELF not really, but a plain library's name and bytes")
    assert main([str(model), str(tmp_path / "repo"), "--ops-library", str(lib), "--container-repo", "/srv/models"]) == 0
    folder = tmp_path / "repo" / "upper"
    cfg = parse(folder)
    assert list(cfg.model_operations.op_library_filename) == ["/srv/models/upper/libortextensions.so"]
    assert (folder / "libortextensions.so").read_bytes() == lib.read_bytes()
    assert cfg.max_batch_size == 32 and [list(i.dims) for i in cfg.input] == [[1]]


def test_contrib_ops_library_in_the_image(tmp_path):
    model = _contrib_model(tmp_path / "upper.onnx")
    folder = write_repository(model, tmp_path / "repo", ops_library_in_container="/opt/ort/libortextensions.so")
    assert list(parse(folder).model_operations.op_library_filename) == ["/opt/ort/libortextensions.so"]
    assert sorted(p.name for p in folder.iterdir()) == ["1", "config.pbtxt"]


@pytest.mark.parametrize("flags,needle", [
    ([], "Give exactly one of --ops-library FILE"),
    (["--ops-library-in-container", "lib.so"], "expected an absolute path"),
    (["--ops-library", "{pydll}"], "is a Python extension module"),
    (["--ops-library", "/nonexistent/libortextensions.so"], "cannot read it"),
])
def test_contrib_ops_without_a_usable_library_are_refused(tmp_path, capsys, flags, needle):
    """The pip package's _extensions_pydll*.so needs Python: tritonserver cannot dlopen it, so never use it."""
    model = _contrib_model(tmp_path / "upper.onnx")
    pydll = tmp_path / "_extensions_pydll.cpython-311-x86_64-linux-gnu.so"
    pydll.write_bytes(b"...PyInit__extensions_pydll...")
    out = tmp_path / "repo"
    assert main([str(model), str(out), *[f.replace("{pydll}", str(pydll)) for f in flags]]) == 2
    err = capsys.readouterr().err
    assert "[MISSING_EXTENSION]" in err and needle in err
    assert not out.exists()


@pytest.mark.skipif(not MINILM.exists(), reason=f"{MINILM} is absent: run `make vectors`")
def test_minilm_repository(tmp_path):
    folder = write_repository(MINILM, tmp_path, name="minilm", ops_library_in_container="/opt/libortextensions.so")
    cfg = parse(folder)
    assert [(i.name, model_config_pb2.DataType.Name(i.data_type)) for i in cfg.input] == [("text", "TYPE_STRING")]
    assert [(o.name, list(o.dims)) for o in cfg.output] == [("embedding", [384])]
    assert cfg.max_batch_size == 32


@pytest.mark.parametrize("argv,needle", [
    (["tests/fixtures/plain.onnx"], "has no onnxpipe manifest"),
    (["tests/fixtures/corrupt.onnx"], "[MODEL_LOAD]"),
    (["tests/fixtures/nope.onnx"], "cannot read it"),
])
def test_refuses(tmp_path, capsys, argv, needle):
    root = Path(__file__).resolve().parents[2]
    assert main([str(root / argv[0]), str(tmp_path)]) == 2
    assert needle in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
