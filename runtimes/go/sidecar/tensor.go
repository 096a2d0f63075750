package sidecar

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"

	"github.com/onnxpipe/onnxpipe/runtimes/go/core"
)

// Element is a Go type a tensor can hold; each maps to one protocol datatype.
type Element interface {
	float32 | float64 | int64 | int32 | uint8 | int8 | bool | string
}

// Tensor is a named input or output: a row-major shape and the flattened data.
//
// Data is one of []float32 (FP32), []float64 (FP64), []int64 (INT64), []int32 (INT32), []uint8 (UINT8),
// []int8 (INT8), []bool (BOOL) or []string (BYTES, UTF-8); its length is the product of Shape (1 for a
// scalar, Shape empty). Outputs come back with the same types: result.Outputs["label"].Data.([]string).
type Tensor struct {
	Shape []int64
	Data  any
}

// NewTensor returns a tensor of the given shape over data (neither is copied).
func NewTensor[T Element](shape []int64, data []T) Tensor {
	return Tensor{Shape: shape, Data: data}
}

// Values returns t.Data as []T, and false when it holds another type.
func Values[T Element](t Tensor) ([]T, bool) {
	d, ok := t.Data.([]T)
	return d, ok
}

// DatatypeOf returns the protocol datatype of a tensor-JSON dtype ("float32" -> "FP32"), or "".
func DatatypeOf(dtype string) string {
	info, _ := core.DType(dtype).Info()
	return info.KServe
}

// DTypeOf returns the tensor-JSON dtype of a protocol datatype ("FP32" -> "float32"), or "".
func DTypeOf(datatype string) string { return string(core.FromKServe(datatype)) }

// Datatype returns the protocol datatype of t.Data (FP32, FP64, INT64, INT32, UINT8, INT8, BOOL, BYTES), or
// "" for a type the protocol layer does not handle.
func (t Tensor) Datatype() string { return DatatypeOf(t.DType()) }

// DType returns the tensor-JSON dtype of t.Data (float32, ..., string), or "".
func (t Tensor) DType() string { return string(core.DTypeOfValues(t.Data)) }

// Len returns the number of elements in t.Data (0 for an unsupported type).
func (t Tensor) Len() int { return core.LenOf(t.Data) }

// elementCount returns the product of shape, or an error naming what is wrong with it.
func elementCount(shape []int64) (int, error) {
	n := uint64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("shape %v has a negative dimension", shape)
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > math.MaxInt32*16 {
			return 0, fmt.Errorf("shape %v has too many elements", shape)
		}
		n = lo
	}
	return int(n), nil
}

// check validates t as an input named name.
func (t Tensor) check(op, name string) error {
	if t.Datatype() == "" {
		return inputErr(op, "input '%s': data of Go type %T given, expected one of []float32, []float64, "+
			"[]int64, []int32, []uint8, []int8, []bool, []string", name, t.Data)
	}
	n, err := elementCount(t.Shape)
	if err != nil {
		return inputErr(op, "input '%s': %v", name, err)
	}
	if got := t.Len(); got != n {
		return inputErr(op, "input '%s': shape %v needs %d elements, data has %d", name, t.Shape, n, got)
	}
	return nil
}

// encodeRaw returns the raw_input_contents of t: little-endian, row-major; BYTES elements each a 4-byte
// little-endian length, then the bytes.
func (t Tensor) encodeRaw() []byte {
	le := binary.LittleEndian
	switch d := t.Data.(type) {
	case []float32:
		out := make([]byte, 4*len(d))
		for i, v := range d {
			le.PutUint32(out[4*i:], math.Float32bits(v))
		}
		return out
	case []float64:
		out := make([]byte, 8*len(d))
		for i, v := range d {
			le.PutUint64(out[8*i:], math.Float64bits(v))
		}
		return out
	case []int64:
		out := make([]byte, 8*len(d))
		for i, v := range d {
			le.PutUint64(out[8*i:], uint64(v))
		}
		return out
	case []int32:
		out := make([]byte, 4*len(d))
		for i, v := range d {
			le.PutUint32(out[4*i:], uint32(v))
		}
		return out
	case []uint8:
		return append([]byte(nil), d...)
	case []int8:
		out := make([]byte, len(d))
		for i, v := range d {
			out[i] = byte(v)
		}
		return out
	case []bool:
		out := make([]byte, len(d))
		for i, v := range d {
			if v {
				out[i] = 1
			}
		}
		return out
	case []string:
		size := 0
		for _, s := range d {
			size += 4 + len(s)
		}
		out := make([]byte, 0, size)
		for _, s := range d {
			out = le.AppendUint32(out, uint32(len(s)))
			out = append(out, s...)
		}
		return out
	}
	return nil
}

// decodeRaw builds an output tensor from raw_output_contents, checking the size against the shape.
func decodeRaw(op, name, datatype string, shape []int64, raw []byte) (Tensor, error) {
	info, ok := core.FromKServe(datatype).Info()
	if !ok {
		return Tensor{}, protocolErr(op, "output '%s': datatype %q, expected one of FP32, FP64, INT64, INT32, "+
			"UINT8, INT8, BOOL, BYTES", name, datatype)
	}
	n, err := elementCount(shape)
	if err != nil {
		return Tensor{}, protocolErr(op, "output '%s': %v", name, err)
	}
	if info.Bytes > 0 && len(raw) != n*info.Bytes {
		return Tensor{}, protocolErr(op, "output '%s': raw data has %d bytes, shape %v of %s needs %d",
			name, len(raw), shape, datatype, n*info.Bytes)
	}
	le := binary.LittleEndian
	t := Tensor{Shape: append([]int64{}, shape...)} // a scalar has shape [], not nil
	switch datatype {
	case "FP32":
		d := make([]float32, n)
		for i := range d {
			d[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		}
		t.Data = d
	case "FP64":
		d := make([]float64, n)
		for i := range d {
			d[i] = math.Float64frombits(le.Uint64(raw[8*i:]))
		}
		t.Data = d
	case "INT64":
		d := make([]int64, n)
		for i := range d {
			d[i] = int64(le.Uint64(raw[8*i:]))
		}
		t.Data = d
	case "INT32":
		d := make([]int32, n)
		for i := range d {
			d[i] = int32(le.Uint32(raw[4*i:]))
		}
		t.Data = d
	case "UINT8":
		t.Data = append([]uint8{}, raw...)
	case "INT8":
		d := make([]int8, n)
		for i, b := range raw {
			d[i] = int8(b)
		}
		t.Data = d
	case "BOOL":
		d := make([]bool, n)
		for i, b := range raw {
			if b > 1 {
				return Tensor{}, protocolErr(op, "output '%s': element %d of BOOL raw data is %d, expected 0 or 1",
					name, i, b)
			}
			d[i] = b == 1
		}
		t.Data = d
	case "BYTES":
		d := make([]string, 0, min(n, len(raw)/4))
		off := 0
		for i := 0; i < n; i++ {
			if len(raw)-off < 4 {
				return Tensor{}, protocolErr(op, "output '%s': BYTES raw data ends at element %d of %d "+
					"(offset %d, no 4-byte length)", name, i, n, off)
			}
			size := int(le.Uint32(raw[off:]))
			off += 4
			if size > len(raw)-off {
				return Tensor{}, protocolErr(op, "output '%s': BYTES element %d claims %d bytes, %d remain",
					name, i, size, len(raw)-off)
			}
			d = append(d, string(raw[off:off+size]))
			off += size
		}
		if off != len(raw) {
			return Tensor{}, protocolErr(op, "output '%s': BYTES raw data has %d bytes after its %d elements",
				name, len(raw)-off, n)
		}
		t.Data = d
	}
	return t, nil
}
