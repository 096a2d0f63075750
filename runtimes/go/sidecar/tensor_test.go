package sidecar

import (
	"bytes"
	"context"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/onnxpipe/onnxpipe/runtimes/go/sidecar/inference"
)

// Encoding and decoding without a server: byte layouts, malformed answers, tensor JSON, status mapping.

func TestRawLayout(t *testing.T) {
	cases := []struct {
		tensor Tensor
		raw    []byte
	}{
		{NewTensor([]int64{2}, []float32{1, -2}), []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0}},
		{NewTensor([]int64{1}, []float64{1}), []byte{0, 0, 0, 0, 0, 0, 0xf0, 0x3f}},
		{NewTensor([]int64{1}, []int64{-2}), []byte{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{NewTensor([]int64{1}, []int32{258}), []byte{2, 1, 0, 0}},
		{NewTensor([]int64{2}, []uint8{7, 255}), []byte{7, 255}},
		{NewTensor([]int64{2}, []int8{-1, 5}), []byte{0xff, 5}},
		{NewTensor([]int64{2}, []bool{true, false}), []byte{1, 0}},
		{NewTensor([]int64{2}, []string{"ab", ""}), []byte{2, 0, 0, 0, 'a', 'b', 0, 0, 0, 0}},
		{NewTensor([]int64{}, []float32{3}), []byte{0, 0, 0x40, 0x40}},
		{NewTensor([]int64{0, 3}, []int64{}), []byte{}},
	}
	for _, c := range cases {
		raw := c.tensor.encodeRaw()
		if !bytes.Equal(raw, c.raw) {
			t.Errorf("%s %v: raw %v, expected %v", c.tensor.Datatype(), c.tensor.Data, raw, c.raw)
		}
		back, err := decodeRaw("test", "y", c.tensor.Datatype(), c.tensor.Shape, c.raw)
		if err != nil {
			t.Errorf("%s: %v", c.tensor.Datatype(), err)
			continue
		}
		if !reflect.DeepEqual(back.Shape, c.tensor.Shape) || back.Len() != c.tensor.Len() ||
			!bytes.Equal(back.encodeRaw(), c.raw) {
			t.Errorf("%s: decoded %v %v, expected %v %v", c.tensor.Datatype(), back.Shape, back.Data,
				c.tensor.Shape, c.tensor.Data)
		}
	}
}

func TestMalformedRawOutputs(t *testing.T) {
	cases := []struct {
		datatype string
		shape    []int64
		raw      []byte
		mentions string
	}{
		{"FP32", []int64{2}, []byte{1, 2, 3}, "raw data has 3 bytes, shape [2] of FP32 needs 8"},
		{"BOOL", []int64{1}, []byte{2}, "element 0 of BOOL raw data is 2"},
		{"BYTES", []int64{2}, []byte{1, 0, 0, 0, 'a'}, "ends at element 1 of 2"},
		{"BYTES", []int64{1}, []byte{9, 0, 0, 0, 'a'}, "claims 9 bytes, 1 remain"},
		{"BYTES", []int64{1}, []byte{1, 0, 0, 0, 'a', 'b'}, "1 bytes after its 1 elements"},
		{"FP16", []int64{1}, []byte{0, 0}, `datatype "FP16"`},
		{"INT64", []int64{-1}, nil, "negative"},
		{"UINT8", []int64{1 << 40, 1 << 40}, nil, "too many elements"},
	}
	for _, c := range cases {
		_, err := decodeRaw("infer 'm'", "out", c.datatype, c.shape, c.raw)
		wantError(t, err, ErrProtocol, "PROTOCOL", codes.OK, "'out'", c.mentions)
	}
}

func TestTypedOutputs(t *testing.T) {
	resp := &inference.ModelInferResponse{Outputs: []*inference.ModelInferResponse_InferOutputTensor{
		{Name: "a", Datatype: "INT8", Shape: []int64{2}, Contents: &inference.InferTensorContents{IntContents: []int32{-3, 4}}},
		{Name: "b", Datatype: "BYTES", Shape: []int64{1}, Contents: &inference.InferTensorContents{BytesContents: [][]byte{[]byte("x")}}},
	}}
	res, err := decodeResponse("infer 'm'", resp, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Outputs["a"].Data, []int8{-3, 4}) || !reflect.DeepEqual(res.Outputs["b"].Data, []string{"x"}) {
		t.Fatalf("decoded %+v", res.Outputs)
	}
	if d, ok := Values[int8](res.Outputs["a"]); !ok || len(d) != 2 {
		t.Errorf("Values[int8] = %v, %v", d, ok)
	}
	if _, ok := Values[float32](res.Outputs["a"]); ok {
		t.Error("Values[float32] of an INT8 tensor is ok")
	}
	resp.Outputs[0].Contents.IntContents = []int32{300, 0}
	_, err = decodeResponse("infer 'm'", resp, nil)
	wantError(t, err, ErrProtocol, "PROTOCOL", codes.OK, "'a'", "300", "out of range")
	resp.Outputs[0].Contents.IntContents = []int32{1}
	_, err = decodeResponse("infer 'm'", resp, nil)
	wantError(t, err, ErrProtocol, "PROTOCOL", codes.OK, "'a'", "1 INT8 elements, shape [2] needs 2")
	resp.Outputs[0].Contents.IntContents = []int32{1, 2}
	_, err = decodeResponse("infer 'm'", resp, []string{"c"})
	wantError(t, err, ErrProtocol, "PROTOCOL", codes.OK, "'c' was asked for")
}

func TestFromStatus(t *testing.T) {
	ctx := context.Background()
	md := func(code string) metadata.MD { return metadata.Pairs(CodeMetadataKey, code) }
	cases := []struct {
		st       *status.Status
		trailer  metadata.MD
		sentinel error
		code     string
		message  string
	}{
		// the sidecar's own answer: code in both places
		{status.New(codes.InvalidArgument, "[INVALID_INPUT] input 'x': bad"), md("INVALID_INPUT"), ErrInvalidInput, "INVALID_INPUT", "input 'x': bad"},
		// the metadata wins over the prefix, and over the gRPC status
		{status.New(codes.Internal, "[RUNTIME] boom"), md("MISSING_EXTENSION"), ErrMissingExtension, "MISSING_EXTENSION", "boom"},
		// prefix only (a proxy dropped the trailers)
		{status.New(codes.ResourceExhausted, "[OVERLOADED] queue full"), nil, ErrOverloaded, "OVERLOADED", "queue full"},
		{status.New(codes.Unavailable, "[CLOSED] shutting down"), nil, ErrUnavailable, "CLOSED", "shutting down"},
		// gRPC's own status, no code
		{status.New(codes.ResourceExhausted, "grpc: received message larger than max"), nil, ErrOverloaded, "OVERLOADED", "grpc: received message larger than max"},
		{status.New(codes.Unimplemented, "unknown method"), nil, ErrRuntime, "RUNTIME", "unknown method"},
		// a code this client does not know keeps its name; the sentinel follows the status
		{status.New(codes.NotFound, "[NEW_CODE] something"), nil, ErrNotFound, "NEW_CODE", "something"},
	}
	for _, c := range cases {
		err := fromStatus(ctx, "op", c.st.Err(), c.trailer)
		wantError(t, err, c.sentinel, c.code, c.st.Code())
		if err.Message != c.message {
			t.Errorf("%v: Message %q, expected %q", c.st, err.Message, c.message)
		}
	}
	if !errors.Is(fromStatus(ctx, "op", status.New(codes.Internal, "[MISSING_EXTENSION] x").Err(), nil), ErrModelLoad) {
		t.Error("MISSING_EXTENSION does not also wrap ErrModelLoad")
	}
	if Code(nil) != "" || Code(errors.New("other")) != "RUNTIME" {
		t.Error("Code(nil) or Code(foreign error) is wrong")
	}
}

func TestTensorJSONRoundTrip(t *testing.T) {
	doc := `{"a": {"dtype": "float32", "shape": [3], "data": [0.1, "NaN", "-Infinity"]}, ` +
		`"b": {"dtype": "int64", "shape": [2], "data": [-9223372036854775808, 9007199254740993]}, ` +
		`"c": {"dtype": "string", "shape": [], "data": ["é\"<"]}, ` +
		`"d": {"dtype": "bool", "shape": [1, 2], "data": [true, false]}, ` +
		`"e": {"dtype": "float64", "shape": [1], "data": [0.1]}, ` +
		`"f": {"dtype": "uint8", "shape": [0], "data": []}}` + "\n"
	names, tensors, err := ReadTensorJSON(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(names, []string{"a", "b", "c", "d", "e", "f"}) {
		t.Fatalf("names %v", names)
	}
	if got := tensors["b"].Data.([]int64)[1]; got != 9007199254740993 {
		t.Errorf("int64 beyond 2^53 read as %d", got)
	}
	var out bytes.Buffer
	if err := WriteTensorJSON(&out, names, tensors); err != nil {
		t.Fatal(err)
	}
	if out.String() != doc {
		t.Errorf("written\n%s\nexpected\n%s", out.String(), doc)
	}
}

func TestTensorJSONErrors(t *testing.T) {
	cases := []struct{ doc, mentions string }{
		{`[1]`, "expected an object of named tensors"},
		{`{"x": {"dtype": "float16", "shape": [1], "data": [1]}}`, `tensor "x": dtype "float16" is not one of`},
		{`{"x": {"shape": [1], "data": [1]}}`, `tensor "x": missing field(s) [dtype]`},
		{`{"x": {"dtype": "int64", "data": [1]}}`, `tensor "x": missing field(s) [shape]`},
		{`{"x": {"dtype": "int64", "shape": [1]}}`, `tensor "x": missing field(s) [data]`},
		{`{"x": {"dtype": "int64", "shape": [2], "data": [1]}}`, `tensor "x": shape [2] needs 2 values but data has 1`},
		{`{"x": {"dtype": "int64", "shape": [-1], "data": []}}`, "shape must be a list of non-negative integers, got -1"},
		{`{"x": {"dtype": "int64", "shape": [1], "data": [1.5]}}`, "data[0] is 1.5; expected an integer for int64"},
		{`{"x": {"dtype": "uint8", "shape": [1], "data": [300]}}`, "data[0] is 300; out of range for uint8"},
		{`{"x": {"dtype": "int8", "shape": [1], "data": [-129]}}`, "data[0] is -129; out of range for int8"},
		{`{"x": {"dtype": "float32", "shape": [1], "data": [1e39]}}`, "data[0] is 1e39; out of range for float32"},
		{`{"x": {"dtype": "float32", "shape": [1], "data": ["nan"]}}`, `data[0] is "nan"`},
		{`{"x": {"dtype": "bool", "shape": [1], "data": [1]}}`, "data[0] is 1; expected true or false"},
		{`{"x": {"dtype": "string", "shape": [1], "data": [1]}}`, "data[0] is 1; expected a string"},
		{`{"x": {"dtype": "int64", "shape": [1], "data": [1], "extra": 1}}`, `unknown field "extra"`},
		{`{"x": {"dtype": "int64", "shape": [0], "data": []}, "x": {"dtype": "int64", "shape": [0], "data": []}}`, `tensor "x" appears twice`},
		{`{"x": {"dtype": "int64", "shape": [0], "data": []}} {}`, "unexpected data after the top-level object"},
	}
	for _, c := range cases {
		_, _, err := ReadTensorJSON(strings.NewReader(c.doc))
		if err == nil {
			t.Errorf("%s: no error", c.doc)
			continue
		}
		if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), c.mentions) {
			t.Errorf("%s: error %q, expected ErrInvalidInput mentioning %q", c.doc, err, c.mentions)
		}
	}
}

func TestFloat32WrittenShortest(t *testing.T) {
	var out bytes.Buffer
	err := WriteTensorJSON(&out, []string{"x"}, map[string]Tensor{
		"x": NewTensor([]int64{4}, []float32{0.1, float32(math.Inf(1)), 2.5057761e-05, -0}),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"x": {"dtype": "float32", "shape": [4], "data": [0.1, "Infinity", 2.5057761e-05, 0.0]}}` + "\n"
	if out.String() != want {
		t.Errorf("written %s, expected %s", out.String(), want)
	}
}
