package sidecar

import (
	"errors"
	"io"
	"strings"

	"github.com/onnxpipe/onnxpipe/runtimes/go/core"
)

// ReadTensorJSON parses a tensor-JSON document (docs/tensor-json.md: {"name": {"dtype", "shape", "data"}})
// into tensors, and returns their names in document order. It is the Go runtime's reader (package core):
// the same rules (spec/README.md) and spec/limits.json's default limits. Errors are *Error with code
// INVALID_INPUT (wrapping ErrInvalidInput) or TOO_LARGE (ErrTooLarge), naming the tensor and the field.
func ReadTensorJSON(r io.Reader) (names []string, tensors map[string]Tensor, err error) {
	return ReadTensorJSONWithLimits(r, core.DefaultLimits())
}

// ReadTensorJSONWithLimits is ReadTensorJSON with other limits.
func ReadTensorJSONWithLimits(r io.Reader, limits core.Limits) (names []string, tensors map[string]Tensor, err error) {
	names, read, err := core.ReadTensorJSON(r, limits)
	if err != nil {
		return nil, nil, fromCore("tensor JSON", err)
	}
	tensors = make(map[string]Tensor, len(read))
	for name, t := range read {
		tensors[name] = Tensor{Shape: t.Shape(), Data: t.Values()}
	}
	return names, tensors, nil
}

// WriteTensorJSON writes tensors as canonical tensor JSON (spec/README.md: byte-identical to the Python, Java
// and Go runtimes' CLIs), keys in the order of names, and a newline.
func WriteTensorJSON(w io.Writer, names []string, tensors map[string]Tensor) error {
	const op = "tensor JSON"
	out := make(map[string]core.Tensor, len(names))
	for _, name := range names {
		t, ok := tensors[name]
		if !ok {
			return inputErr(op, "no tensor named '%s' to write", core.Clip(name))
		}
		ct, err := core.FromValues(t.Shape, t.Data)
		if err != nil {
			return fromCore(op, errors.Join(errors.New("tensor '"+core.Clip(name)+"'"), err))
		}
		out[name] = ct
	}
	return core.WriteTensorJSON(w, names, out)
}

// fromCore turns an error of package core into this package's *Error, keeping its code.
func fromCore(op string, err error) *Error {
	code := core.CodeOf(err)
	msg := strings.ReplaceAll(err.Error(), "\n", ": ")
	for _, sentinel := range []error{core.ErrInvalidInput, core.ErrTooLarge} {
		msg = strings.ReplaceAll(msg, sentinel.Error()+": ", "")
	}
	return newError(op, code, "%s", msg)
}
