"""Write a plain ONNX model (no manifest) that returns each of its eight inputs unchanged, one per datatype
the protocol layer handles, so the Go client's encoding of every datatype is checked through the sidecar.

    python identity_model.py OUT.onnx

Inputs x_<dtype> of shape [n] -> outputs y_<dtype> (Identity). The sidecar reads a plain model's signature
from ONNX Runtime (docs/serving.md).
"""

import sys

import onnx
from onnx import TensorProto, helper

DTYPES = {
    "float32": TensorProto.FLOAT,
    "float64": TensorProto.DOUBLE,
    "int64": TensorProto.INT64,
    "int32": TensorProto.INT32,
    "uint8": TensorProto.UINT8,
    "int8": TensorProto.INT8,
    "bool": TensorProto.BOOL,
    "string": TensorProto.STRING,
}


def main(out: str) -> None:
    inputs, outputs, nodes = [], [], []
    for name, elem in DTYPES.items():
        inputs.append(helper.make_tensor_value_info(f"x_{name}", elem, ["n"]))
        outputs.append(helper.make_tensor_value_info(f"y_{name}", elem, ["n"]))
        nodes.append(helper.make_node("Identity", [f"x_{name}"], [f"y_{name}"], name=f"identity_{name}"))
    graph = helper.make_graph(nodes, "identity", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, out)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: identity_model.py OUT.onnx")
    main(sys.argv[1])
