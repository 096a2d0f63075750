package onnxpipe

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// jsonTensor is one tensor of a tensor-JSON document (docs/tensor-json.md) before validation.
type jsonTensor struct {
	DType DType             `json:"dtype"`
	Shape []int64           `json:"shape"`
	Data  []json.RawMessage `json:"data"`
}

// DecodeTensorJSON reads a tensor-JSON document: names in document order and the tensors by name.
// Errors wrap ErrInvalidInput and name the tensor and the field.
func DecodeTensorJSON(doc []byte) ([]string, map[string]Tensor, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, inputErr("tensor JSON: not valid JSON (%v)", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, inputErr("tensor JSON: expected an object of named tensors, got %v", tok)
	}
	var names []string
	tensors := map[string]Tensor{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, inputErr("tensor JSON: not valid JSON (%v)", err)
		}
		name := tok.(string) // object keys are always strings
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, inputErr("tensor JSON: tensor %q: not valid JSON (%v)", name, err)
		}
		if _, dup := tensors[name]; dup {
			return nil, nil, inputErr("tensor JSON: tensor %q appears twice", name)
		}
		t, err := decodeTensor(name, raw)
		if err != nil {
			return nil, nil, err
		}
		names = append(names, name)
		tensors[name] = t
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, inputErr("tensor JSON: not valid JSON (%v)", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, inputErr("tensor JSON: unexpected data after the top-level object")
	}
	return names, tensors, nil
}

func decodeTensor(name string, raw json.RawMessage) (Tensor, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return Tensor{}, inputErr("tensor %q: expected an object with dtype, shape and data, got %s", name, clip(raw))
	}
	var missing []string
	for _, k := range []string{"dtype", "shape", "data"} {
		if _, ok := fields[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return Tensor{}, inputErr("tensor %q: missing field(s) %v; expected dtype, shape and data", name, missing)
	}
	var t jsonTensor
	if err := json.Unmarshal(fields["dtype"], &t.DType); err != nil || !t.DType.valid() {
		return Tensor{}, inputErr("tensor %q: dtype %s is not one of %v", name, clip(fields["dtype"]), DTypes)
	}
	if err := json.Unmarshal(fields["shape"], &t.Shape); err != nil {
		return Tensor{}, inputErr("tensor %q: shape must be a list of non-negative integers, got %s", name, clip(fields["shape"]))
	}
	if err := json.Unmarshal(fields["data"], &t.Data); err != nil || t.Data == nil {
		return Tensor{}, inputErr("tensor %q: data must be a flat list, got %s", name, clip(fields["data"]))
	}
	return t.decode("tensor " + strconv.Quote(name))
}

func clip(b []byte) string {
	s := string(b)
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

// decode validates the shape and every element against the dtype; where names the tensor in errors.
func (t jsonTensor) decode(where string) (Tensor, error) {
	if t.Shape == nil {
		return Tensor{}, inputErr("%s: shape must be a list of non-negative integers", where)
	}
	count, err := elementCount(t.Shape)
	if err != nil {
		return Tensor{}, inputErr("%s: shape %s: expected non-negative integers", where, formatShape(t.Shape))
	}
	if int64(len(t.Data)) != count {
		return Tensor{}, inputErr("%s: shape %s needs %d values but data has %d", where, formatShape(t.Shape), count, len(t.Data))
	}
	switch t.DType {
	case Float32:
		return decodeData(t, where, func(s string) (float32, error) { f, err := parseFloat(s, 32); return float32(f), err })
	case Float64:
		return decodeData(t, where, func(s string) (float64, error) { return parseFloat(s, 64) })
	case Int64:
		return decodeData(t, where, func(s string) (int64, error) { return parseInt[int64](s, 64) })
	case Int32:
		return decodeData(t, where, func(s string) (int32, error) { return parseInt[int32](s, 32) })
	case Int8:
		return decodeData(t, where, func(s string) (int8, error) { return parseInt[int8](s, 8) })
	case Uint8:
		return decodeData(t, where, func(s string) (uint8, error) {
			v, err := strconv.ParseUint(s, 10, 8)
			if err != nil {
				return 0, fmt.Errorf("expected an integer in [0, 255] for uint8")
			}
			return uint8(v), nil
		})
	case Bool:
		return decodeData(t, where, func(s string) (bool, error) {
			switch s {
			case "true":
				return true, nil
			case "false":
				return false, nil
			}
			return false, fmt.Errorf("expected true or false")
		})
	default:
		return decodeData(t, where, func(s string) (string, error) {
			var v string
			if !strings.HasPrefix(s, `"`) || json.Unmarshal([]byte(s), &v) != nil {
				return "", fmt.Errorf("expected a string")
			}
			return v, nil
		})
	}
}

func decodeData[T Element | string](t jsonTensor, where string, parse func(string) (T, error)) (Tensor, error) {
	out := make([]T, len(t.Data))
	for i, raw := range t.Data {
		v, err := parse(string(bytes.TrimSpace(raw)))
		if err != nil {
			return Tensor{}, inputErr("%s: data[%d] is %s; %v", where, i, clip(raw), err)
		}
		out[i] = v
	}
	return Tensor{dtype: t.DType, shape: t.Shape, data: out}, nil
}

func parseFloat(s string, bits int) (float64, error) {
	switch s {
	case `"NaN"`:
		return math.NaN(), nil
	case `"Infinity"`:
		return math.Inf(1), nil
	case `"-Infinity"`:
		return math.Inf(-1), nil
	}
	if s == "" || !(s[0] == '-' || s[0] >= '0' && s[0] <= '9') {
		return 0, fmt.Errorf("expected a number, \"NaN\", \"Infinity\" or \"-Infinity\"")
	}
	f, err := strconv.ParseFloat(s, bits)
	if err != nil {
		return 0, fmt.Errorf("does not fit float%d", bits)
	}
	return f, nil
}

func parseInt[T int64 | int32 | int8](s string, bits int) (T, error) {
	v, err := strconv.ParseInt(s, 10, bits)
	if err != nil {
		lo, hi := -(int64(1) << (bits - 1)), int64(1)<<(bits-1)-1
		if _, perr := strconv.ParseInt(s, 10, 64); perr == nil || strings.Contains(err.Error(), "range") {
			return 0, fmt.Errorf("out of range for int%d [%d, %d]", bits, lo, hi)
		}
		return 0, fmt.Errorf("expected an integer for int%d", bits)
	}
	return T(v), nil
}

// EncodeTensorJSON writes tensors as a tensor-JSON document with keys in the order of names (all of
// which must be in tensors). Floats are written as the shortest decimal that round-trips at their dtype.
func EncodeTensorJSON(w io.Writer, names []string, tensors map[string]Tensor) error {
	bw := bufio.NewWriter(w)
	bw.WriteByte('{')
	for i, name := range names {
		t, ok := tensors[name]
		if !ok {
			return inputErr("tensor JSON: no tensor named %q to write", name)
		}
		if i > 0 {
			bw.WriteString(", ")
		}
		writeJSONString(bw, name)
		bw.WriteString(`: {"dtype": `)
		writeJSONString(bw, string(t.dtype))
		bw.WriteString(`, "shape": [`)
		for j, d := range t.shape {
			if j > 0 {
				bw.WriteString(", ")
			}
			bw.WriteString(strconv.FormatInt(d, 10))
		}
		bw.WriteString(`], "data": [`)
		writeData(bw, t)
		bw.WriteString("]}")
	}
	bw.WriteString("}\n")
	return bw.Flush()
}

func writeData(w *bufio.Writer, t Tensor) {
	sep := func(i int) {
		if i > 0 {
			w.WriteString(", ")
		}
	}
	switch d := t.data.(type) {
	case []float32:
		for i, v := range d {
			sep(i)
			w.WriteString(formatFloat(float64(v), 32))
		}
	case []float64:
		for i, v := range d {
			sep(i)
			w.WriteString(formatFloat(v, 64))
		}
	case []int64:
		writeInts(w, d)
	case []int32:
		writeInts(w, d)
	case []int8:
		writeInts(w, d)
	case []uint8:
		writeInts(w, d)
	case []bool:
		for i, v := range d {
			sep(i)
			w.WriteString(strconv.FormatBool(v))
		}
	case []string:
		for i, v := range d {
			sep(i)
			writeJSONString(w, v)
		}
	}
}

func writeInts[T int64 | int32 | int8 | uint8](w *bufio.Writer, d []T) {
	for i, v := range d {
		if i > 0 {
			w.WriteString(", ")
		}
		w.WriteString(strconv.FormatInt(int64(v), 10))
	}
}

func formatFloat(v float64, bits int) string {
	switch {
	case math.IsNaN(v):
		return `"NaN"`
	case math.IsInf(v, 1):
		return `"Infinity"`
	case math.IsInf(v, -1):
		return `"-Infinity"`
	}
	return strconv.FormatFloat(v, 'g', -1, bits)
}

func writeJSONString(w *bufio.Writer, s string) {
	b, _ := json.Marshal(s) // never fails for a string; escapes as JSON requires
	w.Write(b)
}
