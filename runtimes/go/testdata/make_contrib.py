"""Build testdata/contrib.onnx: a tiny onnxpipe file whose graph needs ai.onnx.contrib (BertTokenizer),
plus the Python runtime's answers for it, so the Go runtime's extensions loading is tested without the
large MiniLM vectors.

    .venv/bin/python runtimes/go/testdata/make_contrib.py     # from the repository root; deterministic
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from onnxpipe_runtime import Pipeline, tensor_json

HERE = Path(__file__).resolve().parent
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "go", "runtime", "##s", ",", "!", "on", "##nx"]

MANIFEST = {
    "format": "onnxpipe.manifest",
    "format_version": 1,
    "sdk_version": "0.1.0",
    "name": "contrib",
    "inputs": [{"name": "text", "dtype": "string", "shape": ["batch"]}],
    "outputs": [
        {"name": "input_ids", "dtype": "int64", "shape": [None]},
        {"name": "attention_mask", "dtype": "int64", "shape": [None]},
    ],
    "stages": [{"name": "pre", "kind": "onnx", "description": "BertTokenizer", "nodes": 1}],
    "labels": None,
    "domains": [{"domain": "ai.onnx.contrib", "library": "onnxruntime-extensions"}],
    "precision": "fp32",
    "opset": 18,
    "exporter": "onnx",
    "verification": {"passed": True, "skipped": True, "cases": []},
    "metadata": {},
}


def model() -> onnx.ModelProto:
    node = helper.make_node(
        "BertTokenizer",
        ["text"],
        ["input_ids", "token_type_ids", "attention_mask"],
        domain="ai.onnx.contrib",
        name="pre/tokenizer",
        vocab_file="\n".join(VOCAB),
        do_lower_case=1,
        strip_accents=1,
    )
    graph = helper.make_graph(
        [node],
        "contrib",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])],
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [None]),
        ],
    )
    m = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("ai.onnx.contrib", 1)],
        producer_name="onnxpipe-go-testdata",
    )
    m.ir_version = 8
    helper.set_model_props(m, {"onnxpipe.manifest": json.dumps(MANIFEST, sort_keys=True, separators=(",", ":"))})
    return m


def main() -> None:
    path = HERE / "contrib.onnx"
    onnx.save(model(), path)
    inputs = {"text": np.array(["Hello, world!", "Go runtimes on ONNX"], dtype=object)}
    with Pipeline.load(path) as pipe:
        outputs = pipe.run(inputs)
    tensor_json.dump(inputs, HERE / "contrib_inputs.json")
    tensor_json.dump(outputs, HERE / "contrib_expected.json")


if __name__ == "__main__":
    main()
