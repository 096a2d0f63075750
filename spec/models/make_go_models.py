"""Build the small test models that came from the Go runtime's tests into spec/models/, with their
conformance cases in spec/cases/ (spec/README.md), for what the shared vector sets may not cover:

- ``contrib_tokenizer``: a graph that needs ai.onnx.contrib (BertTokenizer), so loading onnxruntime-extensions
  is tested without the large MiniLM model;
- ``scalars``: rank-0 outputs of every kind (float32, int64, bool, string) and an optional int64 input;
- ``strings``: strings in and out (standard ops), cheap enough for many-runs memory tests;
- ``slow_loop.onnx`` (no cases): a Loop whose trip count is an input, to cancel a run while ONNX Runtime is
  inside it.

The expected outputs come from the Python runtime; the error cases are written here. Deterministic; run from
the repository root:

    .venv/bin/python spec/models/make_go_models.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxpipe_runtime import Pipeline, tensor_json

HERE = Path(__file__).resolve().parent
CASES = HERE.parent / "cases"
ROOT = HERE.parent.parent
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "go", "runtime", "##s", ",", "!", "on", "##nx"]
TOLERANCE = {"float32": {"atol": 1e-5, "rtol": 1e-4}, "float64": {"atol": 1e-9, "rtol": 1e-7}}


def manifest(name: str, inputs: list, outputs: list, domains: list) -> str:
    return json.dumps(
        {
            "format": "onnxpipe.manifest",
            "format_version": 1,
            "sdk_version": "0.1.0",
            "name": name,
            "inputs": inputs,
            "outputs": outputs,
            "stages": [{"name": "post", "kind": "onnx", "exporter": "onnx", "description": name, "nodes": 1}],
            "labels": None,
            "domains": [{"domain": d, "library": "onnxruntime-extensions"} for d in domains],
            "precision": "fp32",
            "opset": 18,
            "exporter": "onnx",
            "verification": {"passed": True, "skipped": True, "cases": []},
            "metadata": {},
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def finish(graph: onnx.GraphProto, man: str, contrib: bool) -> onnx.ModelProto:
    opsets = [helper.make_opsetid("", 18)] + ([helper.make_opsetid("ai.onnx.contrib", 1)] if contrib else [])
    m = helper.make_model(graph, opset_imports=opsets, producer_name="onnxpipe-spec-models")
    m.ir_version = 8
    helper.set_model_props(m, {"onnxpipe.manifest": man})
    return m


def contrib() -> tuple[onnx.ModelProto, list]:
    node = helper.make_node(
        "BertTokenizer", ["text"], ["input_ids", "token_type_ids", "attention_mask"], domain="ai.onnx.contrib",
        name="post/tokenizer", vocab_file="\n".join(VOCAB), do_lower_case=1, strip_accents=1,
    )
    graph = helper.make_graph(
        [node], "contrib",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])],
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [None]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [None])],
    )
    man = manifest(
        "contrib",
        [{"name": "text", "dtype": "string", "shape": ["batch"]}],
        [{"name": "input_ids", "dtype": "int64", "shape": [None]}, {"name": "attention_mask", "dtype": "int64", "shape": [None]}],
        ["ai.onnx.contrib"],
    )
    cases = [
        ("two", {"text": np.array(["Hello, world!", "Go runtimes on ONNX"], dtype=object)}),
        ("one-empty", {"text": np.array([""], dtype=object)}),
    ]
    return finish(graph, man, True), cases


def scalars() -> tuple[onnx.ModelProto, list]:
    """x float32 [n], offset int64 [] (optional, default 2) -> total float32 [], count int64 [] (n + offset),
    positive bool [], verdict string []."""
    inits = [
        numpy_helper.from_array(np.array(2, dtype=np.int64), "offset"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
        numpy_helper.from_array(np.array(["negative", "positive"], dtype=object), "words"),
    ]
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0, name="post/sum"),
        helper.make_node("Size", ["x"], ["size"], name="post/size"),
        helper.make_node("Add", ["size", "offset"], ["count"], name="post/count"),
        helper.make_node("Greater", ["total", "zero"], ["positive"], name="post/gt"),
        helper.make_node("Cast", ["positive"], ["index"], to=TensorProto.INT64, name="post/cast"),
        helper.make_node("Gather", ["words", "index"], ["verdict"], axis=0, name="post/word"),
    ]
    graph = helper.make_graph(
        nodes, "scalars",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"]),
         helper.make_tensor_value_info("offset", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, []),
         helper.make_tensor_value_info("count", TensorProto.INT64, []),
         helper.make_tensor_value_info("positive", TensorProto.BOOL, []),
         helper.make_tensor_value_info("verdict", TensorProto.STRING, [])],
        initializer=inits,
    )
    man = manifest(
        "scalars",
        [{"name": "x", "dtype": "float32", "shape": ["n"]},
         {"name": "offset", "dtype": "int64", "shape": [], "optional": True, "default": 2}],
        [{"name": "total", "dtype": "float32", "shape": []}, {"name": "count", "dtype": "int64", "shape": []},
         {"name": "positive", "dtype": "bool", "shape": []}, {"name": "verdict", "dtype": "string", "shape": []}],
        [],
    )
    cases = [
        ("default-offset", {"x": np.array([0.5, -0.25, 1.0], dtype=np.float32)}),
        ("offset", {"x": np.array([-3.0], dtype=np.float32), "offset": np.array(40, dtype=np.int64)}),
        ("empty", {"x": np.zeros(0, dtype=np.float32)}),
        ("widen-int8-x-int32-offset", {"x": np.array([-2, 5], dtype=np.int8), "offset": np.array(7, dtype=np.int32)}),
    ]
    return finish(graph, man, False), cases


def strings() -> tuple[onnx.ModelProto, list]:
    """text string [n] -> reversed string [n] (Slice with step -1), echo string [n] (Identity)."""
    inits = [
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "starts"),
        numpy_helper.from_array(np.array([np.iinfo(np.int64).min], dtype=np.int64), "ends"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "axes"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "steps"),
    ]
    nodes = [
        helper.make_node("Slice", ["text", "starts", "ends", "axes", "steps"], ["reversed"], name="post/reverse"),
        helper.make_node("Identity", ["text"], ["echo"], name="post/echo"),
    ]
    graph = helper.make_graph(
        nodes, "strings",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["n"])],
        [helper.make_tensor_value_info("reversed", TensorProto.STRING, ["n"]),
         helper.make_tensor_value_info("echo", TensorProto.STRING, ["n"])],
        initializer=inits,
    )
    man = manifest(
        "strings",
        [{"name": "text", "dtype": "string", "shape": ["n"]}],
        [{"name": "reversed", "dtype": "string", "shape": ["n"]}, {"name": "echo", "dtype": "string", "shape": ["n"]}],
        [],
    )
    cases = [
        ("mixed", {"text": np.array(["héllo wörld", "", "Tab\tand\nnewline", "東京 😀", "a" * 1000], dtype=object)}),
        ("empty-batch", {"text": np.array([], dtype=object)}),
    ]
    return finish(graph, man, False), cases


def slow() -> onnx.ModelProto:
    """iterations int64 [] -> state float32 [1, 64]: iterations x (state = Tanh(state @ W))."""
    w = np.linspace(-0.05, 0.05, 64 * 64, dtype=np.float32).reshape(64, 64)
    body = helper.make_graph(
        [helper.make_node("MatMul", ["state_in", "W"], ["product"]),
         helper.make_node("Tanh", ["product"], ["state_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("state_in", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [1, 64])],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["iterations", "true", "state0"], ["state"], body=body, name="model/loop")],
        "slow",
        [helper.make_tensor_value_info("iterations", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("state", TensorProto.FLOAT, [1, 64])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.array(True), "true"),
                     numpy_helper.from_array(np.ones((1, 64), dtype=np.float32), "state0")],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="onnxpipe-spec-models")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def write(name: str, model: onnx.ModelProto, cases: list, errors: list) -> None:
    """The model as spec/models/<name>.onnx; spec/cases/<name>.json: the valid cases with the Python runtime's
    outputs, then the error cases ``(name, inputs_text, code)``."""
    path = HERE / f"{name}.onnx"
    onnx.checker.check_model(model)
    onnx.save(model, path)
    requires = ["onnxruntime-extensions"] if any(o.domain == "ai.onnx.contrib" for o in model.opset_import) else []
    entries = []
    with Pipeline.load(path) as pipe:
        for case, inputs in cases:
            doc = {k: tensor_json.encode(v) for k, v in inputs.items()}
            entries.append({"name": case, "inputs": doc, "expected": json.loads(tensor_json.dumps(pipe.run(inputs)))})
    for case, text, code in errors:
        entries.append({"name": case, "inputs_text": text, "error": code})
    spec = {"model": path.relative_to(ROOT).as_posix(), **({"requires": requires} if requires else {}),
            "tolerance": TOLERANCE, "cases": entries}
    (CASES / f"{name}.json").write_text(json.dumps(spec, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


STRING_ERRORS = [
    ("lone-surrogate", '{"text": {"dtype": "string", "shape": [1], "data": ["\\ud800"]}}', "INVALID_INPUT"),
    ("reversed-surrogates", '{"text": {"dtype": "string", "shape": [1], "data": ["\\udc00\\ud800"]}}', "INVALID_INPUT"),
    ("number-for-string", '{"text": {"dtype": "string", "shape": [1], "data": [1]}}', "INVALID_INPUT"),
    ("string-over-limit", '{"text": {"dtype": "string", "shape": [0, 16777217], "data": []}}', "TOO_LARGE"),
    ("rank-2", '{"text": {"dtype": "string", "shape": [1, 1], "data": ["a"]}}', "INVALID_INPUT"),
]

SCALAR_ERRORS = [
    ("offset-float", '{"x": {"dtype": "float32", "shape": [1], "data": [1]}, "offset": {"dtype": "float32", "shape": [], "data": [1.0]}}', "INVALID_INPUT"),
    ("offset-fraction", '{"x": {"dtype": "float32", "shape": [1], "data": [1]}, "offset": {"dtype": "int64", "shape": [], "data": [1.5]}}', "INVALID_INPUT"),
    ("offset-not-scalar", '{"x": {"dtype": "float32", "shape": [1], "data": [1]}, "offset": {"dtype": "int64", "shape": [1], "data": [1]}}', "INVALID_INPUT"),
    ("x-narrowing", '{"x": {"dtype": "float64", "shape": [1], "data": [1]}}', "INVALID_INPUT"),
    ("x-scalar", '{"x": {"dtype": "float32", "shape": [], "data": [1]}}', "INVALID_INPUT"),
]

CONTRIB_ERRORS = [
    ("lone-surrogate", '{"text": {"dtype": "string", "shape": [1], "data": ["a\\ud834b"]}}', "INVALID_INPUT"),
    ("missing-text", '{}', "INVALID_INPUT"),
]


def main() -> None:
    write("contrib_tokenizer", *contrib(), CONTRIB_ERRORS)
    write("scalars", *scalars(), SCALAR_ERRORS)
    write("strings", *strings(), STRING_ERRORS)
    onnx.save(slow(), HERE / "slow_loop.onnx")


if __name__ == "__main__":
    main()
