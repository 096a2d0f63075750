package onnxpipe

import (
	"fmt"

	"github.com/onnxpipe/onnxpipe/runtimes/go/core"
)

// The error family (spec/errors.json), shared with the sidecar client through package core. Every error the
// package returns on purpose wraps exactly one of these sentinels (a missing extension also wraps
// ErrModelLoad), so callers branch with errors.Is and Code gives the code shared with the Python and Java
// runtimes and the gRPC sidecar.
var (
	// ErrInvalidInput: an input is missing, unknown, or of the wrong dtype, rank or dimension; a string holds
	// a NUL character; or a tensor or tensor-JSON document is malformed. Returned before ONNX Runtime is called.
	ErrInvalidInput = core.ErrInvalidInput
	// ErrTooLarge: a tensor-JSON document is over a limit (Limits: elements, string bytes, nesting).
	ErrTooLarge = core.ErrTooLarge
	// ErrModelLoad: the file cannot be read, is not a valid ONNX model, its manifest is invalid or does not
	// match the graph, or the ONNX Runtime library cannot be loaded.
	ErrModelLoad = core.ErrModelLoad
	// ErrMissingExtension: the model needs a custom-op library (onnxruntime-extensions for
	// ai.onnx.contrib) that cannot be found or loaded.
	ErrMissingExtension = core.ErrMissingExtension
	// ErrRuntime: ONNX Runtime failed while running a validated input.
	ErrRuntime = core.ErrRuntime
	// ErrClosed: the pipeline was closed.
	ErrClosed = core.ErrClosed
)

// Code returns the language-neutral code of err: INVALID_INPUT, TOO_LARGE, MODEL_LOAD, MISSING_EXTENSION,
// RUNTIME, CLOSED, CANCELLED (context cancelled or deadline exceeded), or "" for nil.
func Code(err error) string { return core.CodeOf(err) }

// ExitCode is the CLI exit status of a code (spec/errors.json): 3 INVALID_INPUT/TOO_LARGE, 4 MODEL_LOAD/
// MISSING_EXTENSION, 5 RUNTIME/CLOSED, 2 USAGE, 1 MISMATCH.
func ExitCode(code string) int { return core.ExitCode(code) }

var inputErr = core.InputErr

func loadErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrModelLoad}, args...)...)
}

func extensionErr(format string, args ...any) error {
	return fmt.Errorf("%w: %w: "+format, append([]any{ErrModelLoad, ErrMissingExtension}, args...)...)
}

func runtimeErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrRuntime}, args...)...)
}
