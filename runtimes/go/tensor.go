package onnxpipe

import (
	"fmt"
	"math"
	"strings"
)

// DType is a tensor element type, named as in tensor JSON (docs/tensor-json.md).
type DType string

// The element types a pipeline's inputs and outputs may have.
const (
	Float32 DType = "float32"
	Float64 DType = "float64"
	Int64   DType = "int64"
	Int32   DType = "int32"
	Uint8   DType = "uint8"
	Int8    DType = "int8"
	Bool    DType = "bool"
	String  DType = "string"
)

// DTypes lists every supported element type.
var DTypes = []DType{Float32, Float64, Int64, Int32, Uint8, Int8, Bool, String}

func (d DType) valid() bool {
	for _, v := range DTypes {
		if d == v {
			return true
		}
	}
	return false
}

// Element is the set of Go element types of non-string tensors.
type Element interface {
	float32 | float64 | int64 | int32 | uint8 | int8 | bool
}

// DTypeOf returns the DType of Go element type T.
func DTypeOf[T Element | string]() DType {
	var zero T
	switch any(zero).(type) {
	case float32:
		return Float32
	case float64:
		return Float64
	case int64:
		return Int64
	case int32:
		return Int32
	case uint8:
		return Uint8
	case int8:
		return Int8
	case bool:
		return Bool
	default:
		return String
	}
}

// Tensor is an immutable-by-convention n-dimensional array: a dtype, a shape and the elements flattened in
// row-major order. Build one with NewTensor, NewStringTensor, Scalar or the image helpers; the zero
// Tensor is invalid. The data slice is shared, not copied: do not modify it while a Run uses the tensor.
type Tensor struct {
	dtype DType
	shape []int64
	data  any // []float32, []float64, []int64, []int32, []uint8, []int8, []bool or []string
}

// NewTensor returns a tensor of the given shape over data (row-major). len(data) must equal the product
// of shape (1 for a scalar shape []).
func NewTensor[T Element](shape []int64, data []T) (Tensor, error) {
	return newTensor(DTypeOf[T](), shape, data, len(data))
}

// NewStringTensor returns a string tensor of the given shape over data (row-major, UTF-8).
func NewStringTensor(shape []int64, data []string) (Tensor, error) {
	return newTensor(String, shape, data, len(data))
}

// Scalar returns a tensor of shape [] holding v (thresholds and other run-time parameters).
func Scalar[T Element | string](v T) Tensor {
	return Tensor{dtype: DTypeOf[T](), shape: []int64{}, data: []T{v}}
}

// MustTensor is NewTensor for values known to be well-formed (tests, constants); it panics on error.
func MustTensor[T Element](shape []int64, data []T) Tensor {
	t, err := NewTensor(shape, data)
	if err != nil {
		panic(err)
	}
	return t
}

func newTensor(dtype DType, shape []int64, data any, n int) (Tensor, error) {
	count, err := elementCount(shape)
	if err != nil {
		return Tensor{}, err
	}
	if int64(n) != count {
		return Tensor{}, inputErr("shape %s needs %d values but data has %d", formatShape(shape), count, n)
	}
	return Tensor{dtype: dtype, shape: append([]int64{}, shape...), data: data}, nil
}

// elementCount is the product of shape, 1 for a scalar; an error for negative or overflowing dims.
func elementCount(shape []int64) (int64, error) {
	count := int64(1)
	for i, d := range shape {
		if d < 0 {
			return 0, inputErr("shape %s: dimension %d is %d; expected a non-negative size", formatShape(shape), i, d)
		}
		if d != 0 && count > math.MaxInt64/d {
			return 0, inputErr("shape %s has too many elements", formatShape(shape))
		}
		count *= d
	}
	return count, nil
}

// DType returns the element type; "" for the zero Tensor.
func (t Tensor) DType() DType { return t.dtype }

// Shape returns a copy of the dimensions ([] for a scalar).
func (t Tensor) Shape() []int64 { return append([]int64{}, t.shape...) }

// Rank returns the number of dimensions.
func (t Tensor) Rank() int { return len(t.shape) }

// Len returns the number of elements.
func (t Tensor) Len() int {
	switch d := t.data.(type) {
	case []float32:
		return len(d)
	case []float64:
		return len(d)
	case []int64:
		return len(d)
	case []int32:
		return len(d)
	case []uint8:
		return len(d)
	case []int8:
		return len(d)
	case []bool:
		return len(d)
	case []string:
		return len(d)
	}
	return 0
}

// Data returns the elements as []T, or an error naming both dtypes when T does not match the tensor.
func Data[T Element | string](t Tensor) ([]T, error) {
	d, ok := t.data.([]T)
	if !ok {
		return nil, inputErr("tensor is %s, not %s", t.describe(), DTypeOf[T]())
	}
	return d, nil
}

// Strings returns a string tensor's elements (nil for other dtypes).
func (t Tensor) Strings() []string { d, _ := t.data.([]string); return d }

// Values returns the elements as a slice (e.g. []float32); nil for the zero Tensor.
func (t Tensor) Values() any { return t.data }

func (t Tensor) describe() string {
	if t.dtype == "" {
		return "an empty Tensor{} (use NewTensor)"
	}
	return fmt.Sprintf("%s %s", t.dtype, formatShape(t.shape))
}

func formatShape(shape []int64) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func (t Tensor) String() string {
	return fmt.Sprintf("Tensor(%s)", t.describe())
}
