package sidecar

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
)

// ReadTensorJSON parses a tensor-JSON document (docs/tensor-json.md: {"name": {"dtype", "shape", "data"}})
// into tensors, and returns their names in document order. Errors wrap ErrInvalidInput and name the tensor
// and the field.
func ReadTensorJSON(r io.Reader) (names []string, tensors map[string]Tensor, err error) {
	const op = "tensor JSON"
	dec := json.NewDecoder(r)
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, nil, inputErr(op, "expected a JSON object of named tensors (%s)", describeTokenErr(tok, err))
	}
	tensors = map[string]Tensor{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, inputErr(op, "malformed document: %v", err)
		}
		name, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, inputErr(op, "tensor '%s': malformed JSON: %v", name, err)
		}
		if _, dup := tensors[name]; dup {
			return nil, nil, inputErr(op, "tensor '%s' appears twice", name)
		}
		t, err := parseTensor(op, name, raw)
		if err != nil {
			return nil, nil, err
		}
		tensors[name] = t
		names = append(names, name)
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, inputErr(op, "malformed document: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, inputErr(op, "unexpected data after the document's closing brace")
	}
	return names, tensors, nil
}

func describeTokenErr(tok json.Token, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("got %v", tok)
}

type jsonTensor struct {
	DType *string            `json:"dtype"`
	Shape *[]json.RawMessage `json:"shape"`
	Data  *[]json.RawMessage `json:"data"`
}

func parseTensor(op, name string, raw json.RawMessage) (Tensor, error) {
	var jt jsonTensor
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&jt); err != nil {
		return Tensor{}, inputErr(op, "tensor '%s': expected {\"dtype\", \"shape\", \"data\"}: %v", name, err)
	}
	switch {
	case jt.DType == nil:
		return Tensor{}, inputErr(op, "tensor '%s': field 'dtype' is missing", name)
	case jt.Shape == nil:
		return Tensor{}, inputErr(op, "tensor '%s': field 'shape' is missing", name)
	case jt.Data == nil:
		return Tensor{}, inputErr(op, "tensor '%s': field 'data' is missing", name)
	}
	dtype := *jt.DType
	if DatatypeOf(dtype) == "" {
		return Tensor{}, inputErr(op, "tensor '%s': field 'dtype' is %q, expected one of float32, float64, int64, "+
			"int32, uint8, int8, bool, string", name, dtype)
	}
	shape := make([]int64, len(*jt.Shape))
	for i, d := range *jt.Shape {
		v, err := parseInt(d, 64)
		if err != nil || v < 0 {
			return Tensor{}, inputErr(op, "tensor '%s': field 'shape': dimension %d is %s, expected a non-negative "+
				"integer", name, i, d)
		}
		shape[i] = v
	}
	n, err := elementCount(shape)
	if err != nil {
		return Tensor{}, inputErr(op, "tensor '%s': field 'shape': %v", name, err)
	}
	data := *jt.Data
	if len(data) != n {
		return Tensor{}, inputErr(op, "tensor '%s': field 'data' has %d elements, shape %v needs %d",
			name, len(data), shape, n)
	}
	bad := func(i int, v json.RawMessage) error {
		return inputErr(op, "tensor '%s': field 'data': element %d is %s, which is not a %s", name, i, v, dtype)
	}
	t := Tensor{Shape: shape}
	switch dtype {
	case "float32", "float64":
		bitSize := 32
		if dtype == "float64" {
			bitSize = 64
		}
		f := make([]float64, n)
		for i, v := range data {
			x, err := parseFloat(v, bitSize)
			if err != nil {
				return Tensor{}, bad(i, v)
			}
			f[i] = x
		}
		if bitSize == 64 {
			t.Data = f
		} else {
			f32 := make([]float32, n)
			for i, x := range f {
				f32[i] = float32(x)
			}
			t.Data = f32
		}
	case "int64", "int32", "int8":
		bitSize := map[string]int{"int64": 64, "int32": 32, "int8": 8}[dtype]
		ints := make([]int64, n)
		for i, v := range data {
			x, err := parseInt(v, bitSize)
			if err != nil {
				return Tensor{}, bad(i, v)
			}
			ints[i] = x
		}
		switch dtype {
		case "int64":
			t.Data = ints
		case "int32":
			t.Data = convertSlice[int32](ints)
		default:
			t.Data = convertSlice[int8](ints)
		}
	case "uint8":
		d := make([]uint8, n)
		for i, v := range data {
			x, err := strconv.ParseUint(string(v), 10, 8)
			if err != nil {
				return Tensor{}, bad(i, v)
			}
			d[i] = uint8(x)
		}
		t.Data = d
	case "bool":
		d := make([]bool, n)
		for i, v := range data {
			switch string(v) {
			case "true":
				d[i] = true
			case "false":
			default:
				return Tensor{}, bad(i, v)
			}
		}
		t.Data = d
	case "string":
		d := make([]string, n)
		for i, v := range data {
			if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &d[i]) != nil {
				return Tensor{}, bad(i, v)
			}
		}
		t.Data = d
	}
	return t, nil
}

func convertSlice[T int32 | int8](in []int64) []T {
	out := make([]T, len(in))
	for i, v := range in {
		out[i] = T(v)
	}
	return out
}

// parseInt accepts a JSON integer literal only (not 1.5, 1e3 or "1").
func parseInt(v json.RawMessage, bitSize int) (int64, error) {
	return strconv.ParseInt(string(v), 10, bitSize)
}

// parseFloat accepts a JSON number or "NaN", "Infinity", "-Infinity"; a number beyond the dtype's range is
// an error, not an infinity.
func parseFloat(v json.RawMessage, bitSize int) (float64, error) {
	if len(v) > 0 && v[0] == '"' {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return 0, err
		}
		switch s {
		case "NaN":
			return math.NaN(), nil
		case "Infinity":
			return math.Inf(1), nil
		case "-Infinity":
			return math.Inf(-1), nil
		}
		return 0, fmt.Errorf("not a number: %q", s)
	}
	// The decoder has checked the JSON syntax: a value starting with '-' or a digit is a JSON number.
	if len(v) == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
		return 0, fmt.Errorf("not a JSON number: %s", v)
	}
	return strconv.ParseFloat(string(v), bitSize)
}

// WriteTensorJSON writes tensors as one tensor-JSON document, in the order of names, floats in the shortest
// form that round-trips at their dtype and NaN/infinities as the strings "NaN", "Infinity", "-Infinity".
func WriteTensorJSON(w io.Writer, names []string, tensors map[string]Tensor) error {
	const op = "tensor JSON"
	var b bytes.Buffer
	b.WriteByte('{')
	for i, name := range names {
		t, ok := tensors[name]
		if !ok {
			return inputErr(op, "tensor '%s' is named but not given", name)
		}
		if err := t.check(op, name); err != nil {
			return err
		}
		if i > 0 {
			b.WriteString(", ")
		}
		writeJSONString(&b, name)
		fmt.Fprintf(&b, ": {\"dtype\": %q, \"shape\": [", t.DType())
		for j, d := range t.Shape {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString(strconv.FormatInt(d, 10))
		}
		b.WriteString("], \"data\": [")
		writeData(&b, t.Data)
		b.WriteString("]}")
	}
	b.WriteString("}\n")
	_, err := w.Write(b.Bytes())
	return err
}

func writeData(b *bytes.Buffer, data any) {
	sep := func(i int) {
		if i > 0 {
			b.WriteString(", ")
		}
	}
	switch d := data.(type) {
	case []float32:
		for i, v := range d {
			sep(i)
			writeFloat(b, float64(v), 32)
		}
	case []float64:
		for i, v := range d {
			sep(i)
			writeFloat(b, v, 64)
		}
	case []int64:
		for i, v := range d {
			sep(i)
			b.WriteString(strconv.FormatInt(v, 10))
		}
	case []int32:
		for i, v := range d {
			sep(i)
			b.WriteString(strconv.FormatInt(int64(v), 10))
		}
	case []uint8:
		for i, v := range d {
			sep(i)
			b.WriteString(strconv.FormatUint(uint64(v), 10))
		}
	case []int8:
		for i, v := range d {
			sep(i)
			b.WriteString(strconv.FormatInt(int64(v), 10))
		}
	case []bool:
		for i, v := range d {
			sep(i)
			b.WriteString(strconv.FormatBool(v))
		}
	case []string:
		for i, v := range d {
			sep(i)
			writeJSONString(b, v)
		}
	}
}

func writeFloat(b *bytes.Buffer, v float64, bitSize int) {
	switch {
	case math.IsNaN(v):
		b.WriteString(`"NaN"`)
	case math.IsInf(v, 1):
		b.WriteString(`"Infinity"`)
	case math.IsInf(v, -1):
		b.WriteString(`"-Infinity"`)
	default:
		b.WriteString(strconv.FormatFloat(v, 'g', -1, bitSize))
	}
}

func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // encoding a string cannot fail
	b.Truncate(b.Len() - 1)
}
