package onnxpipe

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestTensorJSONRoundTrip(t *testing.T) {
	doc := `{"b": {"dtype": "float32", "shape": [2, 2], "data": [0.1, "NaN", "-Infinity", 3.4028235e+38]},
	 "a": {"dtype": "int64", "shape": [2], "data": [9007199254740993, -9223372036854775808]},
	 "s": {"dtype": "string", "shape": [], "data": ["héllo \"q\""]},
	 "f": {"dtype": "float64", "shape": [1], "data": [0.1]},
	 "z": {"dtype": "uint8", "shape": [0, 4], "data": []},
	 "k": {"dtype": "bool", "shape": [2], "data": [true, false]},
	 "i": {"dtype": "int8", "shape": [2], "data": [-128, 127]},
	 "j": {"dtype": "int32", "shape": [1], "data": [-2147483648]}}`
	names, tensors, err := DecodeTensorJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, "") != "basfzkij" {
		t.Errorf("names %v: document order lost", names)
	}
	if a := tensors["a"].Values().([]int64); a[0] != 9007199254740993 || a[1] != math.MinInt64 {
		t.Errorf("int64 beyond 2^53 not exact: %v", a)
	}
	if b := tensors["b"].Values().([]float32); b[0] != float32(0.1) || !math.IsNaN(float64(b[1])) || !math.IsInf(float64(b[2]), -1) {
		t.Errorf("float32 data %v", b)
	}
	var buf bytes.Buffer
	if err := EncodeTensorJSON(&buf, names, tensors); err != nil {
		t.Fatal(err)
	}
	want := `{"b": {"dtype": "float32", "shape": [2, 2], "data": [0.1, "NaN", "-Infinity", 3.4028235e+38]}, ` +
		`"a": {"dtype": "int64", "shape": [2], "data": [9007199254740993, -9223372036854775808]}, ` +
		`"s": {"dtype": "string", "shape": [], "data": ["héllo \"q\""]}, ` +
		`"f": {"dtype": "float64", "shape": [1], "data": [0.1]}, ` +
		`"z": {"dtype": "uint8", "shape": [0, 4], "data": []}, ` +
		`"k": {"dtype": "bool", "shape": [2], "data": [true, false]}, ` +
		`"i": {"dtype": "int8", "shape": [2], "data": [-128, 127]}, ` +
		`"j": {"dtype": "int32", "shape": [1], "data": [-2147483648]}}` + "\n"
	if buf.String() != want {
		t.Errorf("encoded\n%s\nwant\n%s", buf.String(), want)
	}
}

func TestTensorJSONErrors(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{`[1]`, "expected an object of named tensors"},
		{`{"x": 1}`, `tensor "x": expected an object with dtype, shape and data`},
		{`{"x": {"dtype": "float32", "shape": [1]}}`, `tensor "x": missing field(s) [data]`},
		{`{"x": {"dtype": "float16", "shape": [1], "data": [1]}}`, `tensor "x": dtype "float16" is not one of`},
		{`{"x": {"dtype": "float32", "shape": [2], "data": [1]}}`, `tensor "x": shape [2] needs 2 values but data has 1`},
		{`{"x": {"dtype": "float32", "shape": [-1], "data": []}}`, `tensor "x": shape [-1]`},
		{`{"x": {"dtype": "float32", "shape": [1.5], "data": []}}`, `tensor "x": shape must be a list of non-negative integers`},
		{`{"x": {"dtype": "uint8", "shape": [1], "data": [300]}}`, `tensor "x": data[0] is 300; expected an integer in [0, 255]`},
		{`{"x": {"dtype": "int64", "shape": [2], "data": [1, 1.5]}}`, `tensor "x": data[1] is 1.5; expected an integer for int64`},
		{`{"x": {"dtype": "int8", "shape": [1], "data": [128]}}`, `tensor "x": data[0] is 128; out of range for int8 [-128, 127]`},
		{`{"x": {"dtype": "int64", "shape": [1], "data": [9223372036854775808]}}`, `out of range for int64`},
		{`{"x": {"dtype": "float32", "shape": [1], "data": [1e39]}}`, `tensor "x": data[0] is 1e39; does not fit float32`},
		{`{"x": {"dtype": "float32", "shape": [1], "data": ["nan"]}}`, `expected a number, "NaN"`},
		{`{"x": {"dtype": "bool", "shape": [1], "data": [1]}}`, `tensor "x": data[0] is 1; expected true or false`},
		{`{"x": {"dtype": "string", "shape": [1], "data": [1]}}`, `tensor "x": data[0] is 1; expected a string`},
		{`{"x": {"dtype": "float32", "shape": [1], "data": [[1]]}}`, `tensor "x": data[0] is [1]`},
		{`{"x": {"dtype": "float32", "shape": [], "data": [1]}, "x": {"dtype": "float32", "shape": [], "data": [1]}}`, `tensor "x" appears twice`},
		{`{"x": {"dtype": "float32", "shape": [], "data": [1]}} {}`, `unexpected data after`},
		{`{"x": `, `not valid JSON`},
	} {
		_, _, err := DecodeTensorJSON([]byte(c.doc))
		if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\n  got  %v\n  want ErrInvalidInput containing %q", c.doc, err, c.want)
		}
	}
}
