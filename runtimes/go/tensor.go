package onnxpipe

import (
	"io"

	"github.com/onnxpipe/onnxpipe/runtimes/go/core"
)

// The tensor type, dtypes and tensor JSON live in package core (no cgo), shared with the sidecar client;
// these names are the runtime's public face of them.
type (
	// DType is a tensor element type, named as in tensor JSON (spec/dtypes.json).
	DType = core.DType
	// Element is the set of Go element types of non-string tensors.
	Element = core.Element
	// Tensor is an immutable-by-convention n-dimensional array (see core.Tensor).
	Tensor = core.Tensor
	// Limits bound what ReadTensorJSON accepts (spec/limits.json).
	Limits = core.Limits
)

// The element types a pipeline's inputs and outputs may have.
const (
	Float32 = core.Float32
	Float64 = core.Float64
	Int64   = core.Int64
	Int32   = core.Int32
	Uint8   = core.Uint8
	Int8    = core.Int8
	Bool    = core.Bool
	String  = core.String
)

// DTypes lists every supported element type.
var DTypes = core.DTypes

// DTypeOf returns the DType of Go element type T.
func DTypeOf[T Element | string]() DType { return core.DTypeOf[T]() }

// NewTensor returns a tensor of the given shape over data (row-major). len(data) must equal the product
// of shape (1 for a scalar shape []).
func NewTensor[T Element](shape []int64, data []T) (Tensor, error) {
	return core.NewTensor(shape, data)
}

// NewStringTensor returns a string tensor of the given shape over data (row-major, UTF-8).
func NewStringTensor(shape []int64, data []string) (Tensor, error) {
	return core.NewStringTensor(shape, data)
}

// Scalar returns a tensor of shape [] holding v (thresholds and other run-time parameters).
func Scalar[T Element | string](v T) Tensor { return core.Scalar(v) }

// MustTensor is NewTensor for values known to be well-formed (tests, constants); it panics on error.
func MustTensor[T Element](shape []int64, data []T) Tensor { return core.MustTensor(shape, data) }

// Data returns the elements as []T, or an error naming both dtypes when T does not match the tensor.
func Data[T Element | string](t Tensor) ([]T, error) { return core.Data[T](t) }

// DefaultLimits are spec/limits.json's defaults (16,777,216 elements, 64 MiB of strings, depth 32).
func DefaultLimits() Limits { return core.DefaultLimits() }

// ReadTensorJSON reads a tensor-JSON document (spec/README.md's reader rules) within lim: names in
// document order and the tensors by name. Errors wrap ErrInvalidInput or ErrTooLarge.
func ReadTensorJSON(r io.Reader, lim Limits) ([]string, map[string]Tensor, error) {
	return core.ReadTensorJSON(r, lim)
}

// WriteTensorJSON writes canonical tensor JSON (byte-identical to the Python and Java runtimes), keys in
// the order of names, and a newline.
func WriteTensorJSON(w io.Writer, names []string, tensors map[string]Tensor) error {
	return core.WriteTensorJSON(w, names, tensors)
}
