package core

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
	names, tensors, err := ReadTensorJSON(strings.NewReader(doc), DefaultLimits())
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
	if err := WriteTensorJSON(&buf, names, tensors); err != nil {
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
		{`{"x": {"dtype": "float32", "shape": [-1], "data": []}}`, `tensor "x": shape must be a list of non-negative integers, got -1`},
		{`{"x": {"dtype": "float32", "shape": [1.5], "data": []}}`, `tensor "x": shape must be a list of non-negative integers`},
		{`{"x": {"dtype": "uint8", "shape": [1], "data": [300]}}`, `tensor "x": data[0] is 300; out of range for uint8 [0, 255]`},
		{`{"x": {"dtype": "int64", "shape": [2], "data": [1, 1.5]}}`, `tensor "x": data[1] is 1.5; expected an integer for int64`},
		{`{"x": {"dtype": "int8", "shape": [1], "data": [128]}}`, `tensor "x": data[0] is 128; out of range for int8 [-128, 127]`},
		{`{"x": {"dtype": "int64", "shape": [1], "data": [9223372036854775808]}}`, `out of range for int64`},
		{`{"x": {"dtype": "float32", "shape": [1], "data": [1e39]}}`, `tensor "x": data[0] is 1e39; out of range for float32`},
		{`{"x": {"dtype": "float32", "shape": [1], "data": ["nan"]}}`, `expected a number, "NaN"`},
		{`{"x": {"dtype": "bool", "shape": [1], "data": [1]}}`, `tensor "x": data[0] is 1; expected true or false`},
		{`{"x": {"dtype": "string", "shape": [1], "data": [1]}}`, `tensor "x": data[0] is 1; expected a string`},
		{`{"x": {"dtype": "float32", "shape": [1], "data": [[1]]}}`, `tensor "x": data must be a flat list; data[0] is a nested list`},
		{`{"x": {"dtype": "float32", "shape": [1], "data": [1], "data": [2]}}`, `tensor "x": field "data" appears twice`},
		{`{"x": {"dtype": "float32", "shape": [1], "data": [1], "layout": "nhwc"}}`, `tensor "x": unknown field "layout"`},
		{`{"x": {"dtype": "string", "shape": [1], "data": ["\ud800"]}}`, `tensor "x": data[0]: a string holds a lone surrogate`},
		{`{"x": {"dtype": "string", "shape": [1], "data": ["\udc00\ud800"]}}`, `lone surrogate`},
		{`{"x": {"dtype": "string", "shape": [1], "data": ["a\ud800b"]}}`, `lone surrogate`},
		{"{\"x\": {\"dtype\": \"string\", \"shape\": [1], \"data\": [\"\xff\"]}}", `tensor "x": data[0]: a string is not valid UTF-8`},
		{`{"x": {"dtype": "uint8", "shape": [1], "data": [1e2]}}`, `data[0] is 1e2; expected an integer for uint8`},
		{`{"x": {"dtype": "int64", "shape": [1], "data": [1.0]}}`, `data[0] is 1.0; expected an integer for int64`},
		{`{"x": {"dtype": "float32", "shape": [1], "data": [01]}}`, `not valid JSON`},
		{`{"x": {"dtype": "float32", "shape": [1], "data": [+1]}}`, `not valid JSON`},
		{`{"x": {"dtype": "float32", "shape": [1], "data": [.5]}}`, `not valid JSON`},
		{`{"x": {"dtype": "float32", "shape": [1], "data": [true]}}`, `data[0] is true; expected a number`},
		{"{\"x\": {\"dtype\": \"string\", \"shape\": [1], \"data\": [\"a\u0001\"]}}", `not valid JSON (control character`},
		{`{"x": {"dtype": "float32", "shape": [], "data": [1]}, "x": {"dtype": "float32", "shape": [], "data": [1]}}`, `tensor "x" appears twice`},
		{`{"x": {"dtype": "float32", "shape": [], "data": [1]}} {}`, `unexpected data after`},
		{`{"x": `, `not valid JSON`},
	} {
		_, _, err := ReadTensorJSON(strings.NewReader(c.doc), DefaultLimits())
		if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s:\n  got  %v\n  want ErrInvalidInput containing %q", c.doc, err, c.want)
		}
	}
}

func TestTensorJSONDataFirst(t *testing.T) {
	doc := `{"x": {"data": [[1], 2, 3], "shape": [3], "dtype": "float32"}}`
	if _, _, err := ReadTensorJSON(strings.NewReader(doc), DefaultLimits()); err == nil || !strings.Contains(err.Error(), "nested list") {
		t.Errorf("nested data before dtype: %v", err)
	}
	doc = `{"x": {"data": ["a\"b", "\u00e9"], "shape": [2], "dtype": "string"}}`
	_, got, err := ReadTensorJSON(strings.NewReader(doc), DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if s := got["x"].Strings(); len(s) != 2 || s[0] != `a"b` || s[1] != "é" {
		t.Errorf("data before dtype and shape: %q", s)
	}
}

// Over a limit is TOO_LARGE, named in the message, and refused from the declared shape.
func TestTensorJSONLimits(t *testing.T) {
	small := Limits{MaxElements: 10, MaxStringBytes: 8, MaxDocumentBytes: 150}
	for _, c := range []struct {
		doc  string
		lim  Limits
		want string
	}{
		{`{"x": {"dtype": "float32", "shape": [11], "data": []}}`, small, "max_elements = 10"},
		{`{"x": {"dtype": "float32", "shape": [4294967296, 4294967296], "data": []}}`, DefaultLimits(), "max_elements = 16777216"},
		{`{"x": {"dtype": "float32", "shape": [6], "data": [1,2,3,4,5,6]}, "y": {"dtype": "float32", "shape": [5], "data": []}}`, small, "max_elements = 10"},
		{`{"x": {"dtype": "string", "shape": [2], "data": ["abcde", "fghij"]}}`, small, "max_string_bytes"},
		{`{"x": {"dtype": "float32", "shape": [0, 4294967296, 4294967296], "data": []}}`, DefaultLimits(), "dimension 1 is 4294967296, over the limit max_elements = 16777216"},
		{`{"x": {"dtype": "float32", "shape": [3], "data": [1, 2, 3]}}` + strings.Repeat(" ", 150), small, "max_document_bytes = 150"},
		{`{"x": {"dtype": "float32", "shape": [3], "data": [1, 2, ` + strings.Repeat("1", 150) + `]}}`, small, "max_document_bytes = 150"},
	} {
		_, _, err := ReadTensorJSON(strings.NewReader(c.doc), c.lim)
		if !errors.Is(err, ErrTooLarge) || CodeOf(err) != CodeTooLarge || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%.80s:\n  got  %v\n  want ErrTooLarge containing %q", c.doc, err, c.want)
		}
	}
}

// Nesting is refused as malformed, however deep, without exhausting the stack.
func TestTensorJSONDeepNesting(t *testing.T) {
	for _, doc := range []string{
		`{"x": {"dtype": "float32", "shape": [1], "data": [` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `]}}`,
		`{"x": ` + strings.Repeat("[", 1_000_000) + `}`,
		`{"x": {"dtype": "float32", "shape": [1], "data": [1], "extra": ` + strings.Repeat(`{"a": `, 100_000) + `}}`,
	} {
		_, _, err := ReadTensorJSON(strings.NewReader(doc), DefaultLimits())
		if !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%.60s...: %v; want INVALID_INPUT", doc, err)
		}
	}
}

// Malformed documents give errors, never panics.
func FuzzReadTensorJSON(f *testing.F) {
	for _, seed := range []string{
		`{"x": {"dtype": "float32", "shape": [1], "data": [1]}}`, `{}`, `{"x": {"dtype": "string", "shape": [], "data": [""]}}`,
		`{"x": {"dtype": "int64", "shape": [9223372036854775807, 2], "data": []}}`, `{"x": {"dtype": "bool", "shape": [0], "data": null}}`,
		`{"x": {"dtype": "uint8", "shape": [4294967296, 4294967296], "data": []}}`, `nul`, `{"x": null}`, `{"x": {"dtype": null, "shape": null, "data": null}}`,
		`{"x": {"data": ["\ud83d\ude00"], "shape": [1], "dtype": "string"}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		names, tensors, err := ReadTensorJSON(bytes.NewReader(doc), DefaultLimits())
		if err != nil {
			if !errors.Is(err, ErrInvalidInput) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v wraps neither ErrInvalidInput nor ErrTooLarge", err)
			}
			return
		}
		for _, n := range names {
			tt := tensors[n]
			if c, _ := ElementCount(tt.Shape()); int64(tt.Len()) != c {
				t.Fatalf("tensor %q: %d values for shape %v", n, tt.Len(), tt.Shape())
			}
		}
	})
}
