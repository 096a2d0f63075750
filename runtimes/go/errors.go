package onnxpipe

import (
	"errors"
	"fmt"
)

// The error family. Every error the package returns on purpose wraps exactly one of these sentinels (a
// missing extension also wraps ErrModelLoad), so callers branch with errors.Is and Code gives the code
// shared with the Python and Java runtimes and the gRPC sidecar.
var (
	// ErrInvalidInput: an input is missing, unknown, or of the wrong dtype, rank or dimension; a string holds
	// a NUL character for a pipeline whose ai.onnx.contrib string ops would drop what follows it; or a tensor
	// or tensor-JSON document is malformed. Returned before ONNX Runtime is called.
	ErrInvalidInput = errors.New("invalid input")
	// ErrModelLoad: the file cannot be read, is not a valid ONNX model or manifest, or the ONNX Runtime
	// library cannot be loaded.
	ErrModelLoad = errors.New("model load failed")
	// ErrMissingExtension: the model needs a custom-op library (onnxruntime-extensions for
	// ai.onnx.contrib) that cannot be found or loaded.
	ErrMissingExtension = errors.New("missing extension")
	// ErrRuntime: ONNX Runtime failed while running a validated input.
	ErrRuntime = errors.New("runtime error")
	// ErrClosed: the pipeline was closed.
	ErrClosed = errors.New("pipeline closed")
)

// Code returns the language-neutral code of err: INVALID_INPUT, MODEL_LOAD, MISSING_EXTENSION, RUNTIME,
// CLOSED, CANCELLED (context cancelled or deadline exceeded), or "" for nil.
func Code(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrInvalidInput):
		return "INVALID_INPUT"
	case errors.Is(err, ErrMissingExtension):
		return "MISSING_EXTENSION"
	case errors.Is(err, ErrModelLoad):
		return "MODEL_LOAD"
	case errors.Is(err, ErrClosed):
		return "CLOSED"
	case errors.Is(err, errCancelled):
		return "CANCELLED"
	default:
		return "RUNTIME"
	}
}

// errCancelled marks errors caused by the caller's context; they also wrap ctx.Err().
var errCancelled = errors.New("cancelled")

func inputErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidInput}, args...)...)
}

func loadErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrModelLoad}, args...)...)
}

func extensionErr(format string, args ...any) error {
	return fmt.Errorf("%w: %w: "+format, append([]any{ErrModelLoad, ErrMissingExtension}, args...)...)
}

func runtimeErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrRuntime}, args...)...)
}
