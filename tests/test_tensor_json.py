"""The Python tensor-JSON reader: the compact path for large numeric lists reads exactly what the plain path
reads, refuses what it refuses, and stays within 16 bytes per element beyond the arrays it returns."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from onnxpipe_runtime import InputError, tensor_json

PAD = {"pad": {"dtype": "int8", "shape": [3000], "data": [1] * 3000}}  # large enough for the compact path


def both_paths(doc_text: str) -> tuple[dict, dict]:
    """(compact, plain) readings of one document."""
    assert len(doc_text) >= tensor_json._COMPACT_FROM
    plain = {k: tensor_json.decode(k, v) for k, v in json.loads(doc_text).items()}
    return tensor_json.loads(doc_text), plain


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32", "uint8", "int8"])
def test_the_compact_path_reads_what_the_plain_path_reads(dtype):
    rng = np.random.default_rng(len(dtype))
    if dtype.startswith("float"):
        values = (rng.normal(size=500) * 10.0 ** rng.integers(-30, 30, 500)).astype(dtype)
        data = [float(v) for v in values] + [0.0, -0.0, 1e-45, 3.4028234663852886e38]
    else:
        info = np.iinfo(dtype)
        data = [int(v) for v in rng.integers(info.min, info.max, 500, endpoint=True)] + [int(info.min), int(info.max)]
    text = json.dumps({"x": {"dtype": dtype, "shape": [len(data)], "data": data}, **PAD})
    spaced = text.replace(", ", " ,\n ")
    for t in (text, spaced):
        compact, plain = both_paths(t)
        assert compact["x"].dtype == plain["x"].dtype and compact["x"].shape == plain["x"].shape
        np.testing.assert_array_equal(compact["x"], plain["x"])


@pytest.mark.parametrize("data, message", [
    ("[1, 2.5]", "expected an integer"), ("[1, 1e2]", "expected an integer"), ("[1, 300]", "out of range"),
    ("[1,,2]", "not a valid JSON list"), ("[01, 2]", "not a valid JSON list"), ("[1]", "needs 2 values"),
    ("[1, 2, 3]", "needs 2 values"), ("[-, 2]", "not a valid JSON list"), ("[99999999999999999999, 1]", "out of range"),
])
def test_the_compact_path_refuses_what_the_plain_path_refuses(data, message):
    text = '{"x": {"dtype": "uint8", "shape": [2], "data": %s}, "pad": %s}' % (data, json.dumps(PAD["pad"]))
    with pytest.raises(InputError, match=message):
        tensor_json.loads(text)


@pytest.mark.parametrize("data, message", [("[1e39, 2]", "out of range for float32"), ("[1e400, 2]", "out of range"),
                                           ('["nan", 2]', "expected a number"), ("[1., 2]", "not a valid JSON")])
def test_floats_out_of_range_or_malformed_are_refused_on_the_compact_path(data, message):
    text = '{"x": {"dtype": "float32", "shape": [2], "data": %s}, "pad": %s}' % (data, json.dumps(PAD["pad"]))
    with pytest.raises(InputError, match=message):
        tensor_json.loads(text)


def test_a_string_cannot_pose_as_a_cut_out_list():
    text = json.dumps({"x": {"dtype": "float32", "shape": [1], "data": "onnxpipe-span-0"}, **PAD})
    with pytest.raises(InputError, match="data must be a flat list"):
        tensor_json.loads(text)


@pytest.mark.parametrize("dtype, token", [("float32", "0.123456"), ("float64", "-1.5e-07"), ("int64", "123"),
                                          ("uint8", "7")])
def test_reading_costs_at_most_16_bytes_per_element_beyond_the_result(dtype, token):
    n = 1_000_000
    text = '{"x": {"dtype": "%s", "shape": [%d], "data": [%s]}}' % (dtype, n, ",".join([token] * n))
    tracemalloc.start()
    try:
        out = tensor_json.loads(text)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    overhead = (peak - out["x"].nbytes) / n
    assert overhead <= 16, f"{dtype}: {overhead:.1f} bytes per element beyond the result"
