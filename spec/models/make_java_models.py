"""Small test models of the conformance suite (spec/README.md), first written for the Java runtime's tests.

    .venv/bin/python spec/models/make_java_models.py

Run by hand, never by the Java build; its outputs are committed beside it. Deterministic.

- ``tokenizer.onnx``: a BertTokenizer from domain ai.onnx.contrib (onnxruntime-extensions) with a manifest
  listing that domain; ``tokenizer_inputs.json`` / ``tokenizer_expected.json`` are Python's answers
  (onnxruntime + onnxruntime-extensions), the Java test must reproduce them.
- ``tokenizer_plain.onnx``: the same graph without a manifest (the opset import alone must trigger loading).
- ``bad_manifest.onnx`` / ``future_manifest.onnx``: basic.onnx's graph with a manifest that is not JSON /
  of format_version 2 (both must be MODEL_LOAD errors).
- ``floats.json``: float32 and float64 values (as bit patterns) with the text Python's tensor JSON writes for
  them (the oracle for the Java writer's shortest round-trip formatting).
- ``dtypes.onnx``: one input per remaining dtype (float64, int32, int8, bool, string) echoed to outputs, and
  optional inputs backed by initializers in both TensorProto encodings (raw_data and typed fields).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import onnxruntime_extensions
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "runtimes" / "python"))
from onnxpipe_runtime import tensor_json  # noqa: E402

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "the", "cat", "sat", "##s", "on", "mat", "!"]


def manifest(name, inputs, outputs, domains):
    return json.dumps({
        "format": "onnxpipe.manifest", "format_version": 1, "sdk_version": "0.1.0", "name": name,
        "inputs": inputs, "outputs": outputs,
        "stages": [{"name": "pre", "kind": "onnx", "exporter": "onnx", "description": name, "nodes": 1}],
        "labels": None, "domains": domains, "precision": "fp32", "opset": 18, "exporter": "onnx",
        "verification": {"passed": True, "skipped": True, "cases": []}, "metadata": {},
    }, sort_keys=True, separators=(",", ":"))


def tokenizer(with_manifest: bool) -> onnx.ModelProto:
    node = helper.make_node(
        "BertTokenizer", ["text"], ["input_ids", "token_type_ids", "attention_mask"], domain="ai.onnx.contrib",
        vocab_file="\n".join(VOCAB), do_lower_case=1, strip_accents=1, name="pre/tokenizer")
    outs = ["input_ids", "token_type_ids", "attention_mask"]
    g = helper.make_graph(
        [node], "tokenizer", [helper.make_tensor_value_info("text", TensorProto.STRING, ["n"])],
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["tokens"]) for n in outs])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("ai.onnx.contrib", 1)],
                          producer_name="onnxpipe-java-tests")
    m.ir_version = 8
    if with_manifest:
        helper.set_model_props(m, {"onnxpipe.manifest": manifest(
            "tokenizer", [{"name": "text", "dtype": "string", "shape": ["n"]}],
            [{"name": n, "dtype": "int64", "shape": ["tokens"]} for n in outs],
            [{"domain": "ai.onnx.contrib", "library": "onnxruntime-extensions"}])})
    return m


def dtypes() -> onnx.ModelProto:
    echo = [("f64", TensorProto.DOUBLE), ("i32", TensorProto.INT32), ("i8", TensorProto.INT8),
            ("flag", TensorProto.BOOL), ("text", TensorProto.STRING)]
    inputs = [helper.make_tensor_value_info(n, t, ["n"]) for n, t in echo]
    inputs += [
        helper.make_tensor_value_info("offset", TensorProto.INT64, [2]),
        helper.make_tensor_value_info("scale", TensorProto.DOUBLE, []),
    ]
    outputs = [helper.make_tensor_value_info(f"{n}_out", t, ["n"]) for n, t in echo]
    outputs += [
        helper.make_tensor_value_info("offset_out", TensorProto.INT64, [2]),
        helper.make_tensor_value_info("scaled", TensorProto.DOUBLE, ["n"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([10, -20], dtype=np.int64), "offset"),  # raw_data
        helper.make_tensor("scale", TensorProto.DOUBLE, [], [2.5], raw=False),  # double_data
    ]
    nodes = [helper.make_node("Identity", [n], [f"{n}_out"], name=f"post/{n}") for n, _ in echo]
    nodes += [
        helper.make_node("Identity", ["offset"], ["offset_out"], name="post/offset"),
        helper.make_node("Mul", ["f64", "scale"], ["scaled"], name="post/scale"),
    ]
    g = helper.make_graph(nodes, "dtypes", inputs, outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], producer_name="onnxpipe-java-tests")
    m.ir_version = 8
    names = {TensorProto.DOUBLE: "float64", TensorProto.INT32: "int32", TensorProto.INT8: "int8",
             TensorProto.BOOL: "bool", TensorProto.STRING: "string"}
    helper.set_model_props(m, {"onnxpipe.manifest": manifest(
        "dtypes",
        [{"name": n, "dtype": names[t], "shape": ["n"]} for n, t in echo]
        + [{"name": "offset", "dtype": "int64", "shape": [2], "optional": True, "default": [10, -20]},
           {"name": "scale", "dtype": "float64", "shape": [], "optional": True, "default": 2.5}],
        [{"name": f"{n}_out", "dtype": names[t], "shape": ["n"]} for n, t in echo]
        + [{"name": "offset_out", "dtype": "int64", "shape": [2]},
           {"name": "scaled", "dtype": "float64", "shape": ["n"]}],
        [])})
    return m


def with_manifest_text(text: str) -> onnx.ModelProto:
    m = onnx.load(ROOT / "tests" / "fixtures" / "plain.onnx")
    helper.set_model_props(m, {"onnxpipe.manifest": text})
    return m


def float_oracle() -> dict:
    rng = np.random.default_rng(7)
    f32 = rng.integers(0, 2**32, size=3000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    f32 = np.concatenate([f32, rng.normal(size=500).astype(np.float32), np.array([
        0.1, 1.0, -1.0, 0.5, 1e-4, 9.999999e-5, 1e-5, 1e16, 9.999999e15, 1e17, 123456789.0, 16777216.0, 1e15,
        100000.0, 3.4028235e38, 1.17549435e-38, 1.4e-45, 3e-45, -0.0, 0.0, 2.9527978e-4, 2.5057761e-05, 0.3671654,
    ], dtype=np.float32)])
    f32 = f32[np.isfinite(f32)]
    f64 = rng.integers(0, 2**63, size=1500, dtype=np.int64).view(np.float64)
    f64 = np.concatenate([f64, -f64[:200], rng.normal(size=300), np.array([
        0.1, 1e-4, 1e16, 1e22, 5e-324, 1.7976931348623157e308, 2.0**-1074 * 3, 0.3, 1 / 3, -0.0, 123.0])])
    f64 = f64[np.isfinite(f64)]

    def text(a: np.ndarray) -> list[str]:
        return [json.dumps(v) for v in tensor_json.encode(a)["data"]]

    return {
        "float32": [[int(b), t] for b, t in zip(f32.view(np.uint32), text(f32))],
        "float64": [[str(int(b)), t] for b, t in zip(f64.view(np.uint64), text(f64))],
    }


def main() -> None:
    (HERE / "floats.json").write_text(json.dumps(float_oracle()) + "\n", encoding="utf-8")
    future = json.loads(onnx.load(ROOT / "tests" / "fixtures" / "basic.onnx").metadata_props[0].value)
    future["format_version"] = 2
    for name, model in [("bad_manifest.onnx", with_manifest_text('{"format": "onnxpipe.manifest", ')),
                        ("future_manifest.onnx", with_manifest_text(json.dumps(future, sort_keys=True))),
                        ("tokenizer.onnx", tokenizer(True)), ("tokenizer_plain.onnx", tokenizer(False)),
                        ("dtypes.onnx", dtypes())]:
        onnx.checker.check_model(model)
        onnx.save(model, HERE / name)
    so = ort.SessionOptions()
    so.register_custom_ops_library(onnxruntime_extensions.get_library_path())
    sess = ort.InferenceSession(str(HERE / "tokenizer.onnx"), so)
    inputs = {"text": np.array(["Hello world! The cats sat on the mat", "unknown words"], dtype=object)}
    # BertTokenizer takes one or two texts (a pair); two give one sequence with both segments
    outputs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, inputs)))
    tensor_json.dump(inputs, HERE / "tokenizer_inputs.json")
    tensor_json.dump(outputs, HERE / "tokenizer_expected.json")


if __name__ == "__main__":
    main()
