package core

import (
	"fmt"
	"math"
	"strings"
)

// Tensor is an immutable-by-convention n-dimensional array: a dtype, a shape and the elements flattened in
// row-major order. Build one with NewTensor, NewStringTensor, Scalar or FromValues; the zero Tensor is
// invalid. The data slice is shared, not copied: do not modify it while a Run uses the tensor.
type Tensor struct {
	dtype DType
	shape []int64
	data  any // []float32, []float64, []int64, []int32, []uint8, []int8, []bool or []string
}

// NewTensor returns a tensor of the given shape over data (row-major). len(data) must equal the product
// of shape (1 for a scalar shape []).
func NewTensor[T Element](shape []int64, data []T) (Tensor, error) {
	return FromValues(shape, data)
}

// NewStringTensor returns a string tensor of the given shape over data (row-major, UTF-8).
func NewStringTensor(shape []int64, data []string) (Tensor, error) {
	return FromValues(shape, data)
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

// FromValues returns a tensor over data, a slice of one of the element types ([]float32, ..., []string);
// the dtype follows the slice type. The shape is copied, data is not.
func FromValues(shape []int64, data any) (Tensor, error) {
	dtype := DTypeOfValues(data)
	if dtype == "" {
		return Tensor{}, InputErr("data of Go type %T; expected one of []float32, []float64, []int64, []int32, "+
			"[]uint8, []int8, []bool, []string", data)
	}
	count, err := ElementCount(shape)
	if err != nil {
		return Tensor{}, err
	}
	if n := LenOf(data); int64(n) != count {
		return Tensor{}, InputErr("shape %s needs %d values but data has %d", FormatShape(shape), count, n)
	}
	return Tensor{dtype: dtype, shape: append([]int64{}, shape...), data: data}, nil
}

// ElementCount is the product of shape, 1 for a scalar; an error for negative or overflowing dims.
func ElementCount(shape []int64) (int64, error) {
	count := int64(1)
	for i, d := range shape {
		if d < 0 {
			return 0, InputErr("shape %s: dimension %d is %d; expected a non-negative size", FormatShape(shape), i, d)
		}
		if d != 0 && count > math.MaxInt64/d {
			return 0, InputErr("shape %s has too many elements", FormatShape(shape))
		}
		count *= d
	}
	return count, nil
}

// DType returns the element type; "" for the zero Tensor.
func (t Tensor) DType() DType { return t.dtype }

// Shape returns a copy of the dimensions ([] for a scalar).
func (t Tensor) Shape() []int64 { return append([]int64{}, t.shape...) }

// Dim returns dimension i.
func (t Tensor) Dim(i int) int64 { return t.shape[i] }

// Rank returns the number of dimensions.
func (t Tensor) Rank() int { return len(t.shape) }

// Len returns the number of elements.
func (t Tensor) Len() int { return LenOf(t.data) }

// Data returns the elements as []T, or an error naming both dtypes when T does not match the tensor.
func Data[T Element | string](t Tensor) ([]T, error) {
	d, ok := t.data.([]T)
	if !ok {
		return nil, InputErr("tensor is %s, not %s", t.Describe(), DTypeOf[T]())
	}
	return d, nil
}

// Strings returns a string tensor's elements (nil for other dtypes).
func (t Tensor) Strings() []string { d, _ := t.data.([]string); return d }

// Values returns the elements as a slice (e.g. []float32); nil for the zero Tensor.
func (t Tensor) Values() any { return t.data }

// Describe is "float32 [2, 3]" (what error messages say of a tensor).
func (t Tensor) Describe() string {
	if t.dtype == "" {
		return "an empty Tensor{} (use NewTensor)"
	}
	return fmt.Sprintf("%s %s", t.dtype, FormatShape(t.shape))
}

func (t Tensor) String() string { return fmt.Sprintf("Tensor(%s)", t.Describe()) }

// FormatShape is "[2, 3]".
func FormatShape(shape []int64) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// Widen converts t to dtype `to` when spec/dtypes.json lists t's dtype in to's widens_from (losslessly);
// false when it does not.
func Widen(t Tensor, to DType) (Tensor, bool) {
	if !to.WidensFrom(t.dtype) {
		return Tensor{}, false
	}
	var data any
	switch to {
	case Float32:
		data = convertAll[float32](t.data)
	case Float64:
		data = convertAll[float64](t.data)
	case Int64:
		data = convertAll[int64](t.data)
	case Int32:
		data = convertAll[int32](t.data)
	default:
		return Tensor{}, false
	}
	return Tensor{dtype: to, shape: t.shape, data: data}, true
}

func convertAll[T float32 | float64 | int64 | int32](data any) []T {
	switch d := data.(type) {
	case []float32:
		return convert[T](d)
	case []int32:
		return convert[T](d)
	case []uint8:
		return convert[T](d)
	case []int8:
		return convert[T](d)
	}
	return nil
}

func convert[T float32 | float64 | int64 | int32, S float32 | int32 | uint8 | int8](in []S) []T {
	out := make([]T, len(in))
	for i, v := range in {
		out[i] = T(v)
	}
	return out
}
