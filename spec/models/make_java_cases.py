"""Conformance cases (spec/cases/) for the models make_java_models.py writes beside this file.

    .venv/bin/python spec/models/make_java_cases.py

Run by hand; its outputs are committed. Expected outputs are the Python runtime's answers (onnxruntime and
onnxruntime-extensions), so every other runner is held to them. Deterministic.

- ``dtypes.json``: every remaining dtype echoed, both parameters (initializer in raw_data and in typed fields)
  defaulted and given, widening int8 -> float64 / int32 -> int64 parameter, and reader cases for strings
  (lone surrogates, invalid escapes) and integer dtypes (int8 range, fractions).
- ``tokenizer.json`` / ``tokenizer_plain.json``: the BertTokenizer (custom domain ai.onnx.contrib) with and
  without a manifest: the opset import alone must register onnxruntime-extensions.
- ``bad_manifest.json`` / ``future_manifest.json``: loading fails with MODEL_LOAD.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CASES = ROOT / "spec" / "cases"
sys.path.insert(0, str(ROOT / "runtimes" / "python"))
from onnxpipe_runtime import tensor_json  # noqa: E402
from onnxpipe_runtime.pipeline import Pipeline  # noqa: E402


def t(dtype: str, shape: list[int], data: list) -> dict:
    return {"dtype": dtype, "shape": shape, "data": data}


def expected(model: Path, inputs: dict) -> dict:
    with Pipeline.load(model) as pipe:
        out = pipe.run(tensor_json.loads(json.dumps(inputs)))
    return json.loads(tensor_json.dumps(out))


def valid(model: Path, name: str, inputs: dict) -> dict:
    return {"name": name, "inputs": inputs, "expected": expected(model, inputs)}


def dtypes_cases() -> dict:
    model = HERE / "dtypes.onnx"
    base = {
        "f64": t("float64", [3], [0.1, -2.5e-300, 1e300]),
        "i32": t("int32", [3], [-2147483648, 0, 2147483647]),
        "i8": t("int8", [3], [-128, 0, 127]),
        "flag": t("bool", [3], [True, False, True]),
        "text": t("string", [3], ["plain", "é ünïcode 😀", "quote \" backslash \\ tab \t nul \u0000 end"]),
    }
    text = json.dumps(base, ensure_ascii=False)

    def doc(**over: str) -> str:
        """The base document as text with the named tensors' JSON replaced verbatim."""
        d = {k: json.dumps(v, ensure_ascii=False) for k, v in base.items()}
        d.update(over)
        return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in d.items()) + "}"

    cases = [
        valid(model, "echo-defaults", base),
        valid(model, "parameters-given", {**base, "offset": t("int64", [2], [1, 2]), "scale": t("float64", [], [-1.0])}),
        valid(model, "widen-parameters", {**base, "offset": t("int32", [2], [7, -7]), "scale": t("int8", [], [3])}),
        valid(model, "widen-inputs", {**base, "f64": t("float32", [3], [0.5, 1.0, -2.0]), "i32": t("uint8", [3], [0, 1, 255])}),
        valid(model, "empty", {k: {**v, "shape": [0], "data": []} for k, v in base.items()}),
        {"name": "narrowing-int64-to-int32", "inputs": {**base, "i32": t("int64", [3], [1, 2, 3])}, "error": "INVALID_INPUT"},
        {"name": "parameter-wrong-shape", "inputs": {**base, "offset": t("int64", [3], [1, 2, 3])}, "error": "INVALID_INPUT"},
        {"name": "n-disagrees", "inputs": {**base, "i8": t("int8", [2], [1, 2])}, "error": "INVALID_INPUT"},
        {"name": "string-lone-high-surrogate",
         "inputs_text": doc(text='{"dtype": "string", "shape": [3], "data": ["a", "b\\ud800", "c"]}'), "error": "INVALID_INPUT"},
        {"name": "string-lone-low-surrogate",
         "inputs_text": doc(text='{"dtype": "string", "shape": [3], "data": ["\\udfff", "b", "c"]}'), "error": "INVALID_INPUT"},
        {"name": "string-high-then-letter",
         "inputs_text": doc(text='{"dtype": "string", "shape": [3], "data": ["\\ud83dx", "b", "c"]}'), "error": "INVALID_INPUT"},
        {"name": "string-bad-escape",
         "inputs_text": doc(text='{"dtype": "string", "shape": [3], "data": ["\\x41", "b", "c"]}'), "error": "INVALID_INPUT"},
        {"name": "string-raw-control-character",
         "inputs_text": doc(text='{"dtype": "string", "shape": [3], "data": ["a\tb", "b", "c"]}'), "error": "INVALID_INPUT"},
        {"name": "int8-out-of-range",
         "inputs_text": doc(i8='{"dtype": "int8", "shape": [3], "data": [1, 2, 128]}'), "error": "INVALID_INPUT"},
        {"name": "int32-fraction",
         "inputs_text": doc(i32='{"dtype": "int32", "shape": [3], "data": [1, 2.0, 3]}'), "error": "INVALID_INPUT"},
        {"name": "float64-overflow",
         "inputs_text": doc(f64='{"dtype": "float64", "shape": [3], "data": [1, 2, 1e309]}'), "error": "INVALID_INPUT"},
        {"name": "bool-as-string",
         "inputs_text": doc(flag='{"dtype": "bool", "shape": [3], "data": [true, "false", true]}'), "error": "INVALID_INPUT"},
        {"name": "data-before-dtype",
         "inputs_text": doc(i8='{"data": [1, 2, 3], "shape": [3], "dtype": "int8"}'),
         "expected": expected(model, {**base, "i8": t("int8", [3], [1, 2, 3])})},
    ]
    assert text  # the base document is plain JSON
    return {"model": "spec/models/dtypes.onnx", "cases": cases}


def tokenizer_cases(file: str) -> dict:
    model = HERE / file
    inputs = json.loads((HERE / "tokenizer_inputs.json").read_text(encoding="utf-8"))
    return {
        "model": f"spec/models/{file}",
        "requires": ["onnxruntime-extensions"],
        "cases": [
            valid(model, "two-texts", inputs),
            valid(model, "unicode", {"text": t("string", [1], ["Ünïcode cats 😀 sat"])}),
            {"name": "lone-surrogate",
             "inputs_text": '{"text": {"dtype": "string", "shape": [1], "data": ["cat \\ud800 sat"]}}',
             "error": "INVALID_INPUT"},
            {"name": "nul-character", "inputs": {"text": t("string", [1], ["cat \u0000 sat"])}, "error": "INVALID_INPUT"},
        ],
    }


def main() -> None:
    files = {
        "dtypes.json": dtypes_cases(),
        "tokenizer.json": tokenizer_cases("tokenizer.onnx"),
        "tokenizer_plain.json": tokenizer_cases("tokenizer_plain.onnx"),
        "bad_manifest.json": {"model": "spec/models/bad_manifest.onnx", "load_error": "MODEL_LOAD"},
        "future_manifest.json": {"model": "spec/models/future_manifest.onnx", "load_error": "MODEL_LOAD"},
    }
    for name, doc in files.items():
        (CASES / name).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote spec/cases/{name}")


if __name__ == "__main__":
    main()
