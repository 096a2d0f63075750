package core

import (
	"errors"
	"fmt"
)

// The error family shared by the runtime and the sidecar client (spec/errors.json). Every error returned on
// purpose wraps exactly one of these (a missing extension also wraps ErrModelLoad), so callers branch with
// errors.Is and CodeOf gives the language-neutral code.
var (
	// ErrInvalidInput: an input is missing, unknown, or of the wrong dtype, rank, dims or value range, or a
	// tensor-JSON document breaks spec/README.md's reader rules (INVALID_INPUT).
	ErrInvalidInput = errors.New("invalid input")
	// ErrTooLarge: a document or request is over a limit (elements, string bytes, nesting) (TOO_LARGE).
	ErrTooLarge = errors.New("too large")
	// ErrModelLoad: the file cannot be read, is not ONNX, or its manifest is invalid or does not match the
	// graph; or the ONNX Runtime library cannot be loaded (MODEL_LOAD).
	ErrModelLoad = errors.New("model load failed")
	// ErrMissingExtension: the graph needs a custom-op library that is not available (MISSING_EXTENSION).
	ErrMissingExtension = errors.New("missing extension")
	// ErrRuntime: ONNX Runtime failed on a validated input (RUNTIME).
	ErrRuntime = errors.New("runtime error")
	// ErrClosed: the pipeline was closed (CLOSED).
	ErrClosed = errors.New("pipeline closed")
	// ErrCancelled: the caller's context ended (CANCELLED); such errors also wrap ctx.Err().
	ErrCancelled = errors.New("cancelled")
)

// The codes of spec/errors.json this package's sentinels carry.
const (
	CodeInvalidInput     = "INVALID_INPUT"
	CodeTooLarge         = "TOO_LARGE"
	CodeModelLoad        = "MODEL_LOAD"
	CodeMissingExtension = "MISSING_EXTENSION"
	CodeRuntime          = "RUNTIME"
	CodeClosed           = "CLOSED"
	CodeUsage            = "USAGE"
	CodeMismatch         = "MISMATCH"
	CodeCancelled        = "CANCELLED"
)

// exitCodes is the CLI exit status of each code (spec/errors.json "exit").
var exitCodes = map[string]int{
	CodeInvalidInput: 3, CodeTooLarge: 3,
	CodeModelLoad: 4, CodeMissingExtension: 4,
	CodeRuntime: 5, CodeClosed: 5, CodeCancelled: 5,
	CodeUsage: 2, CodeMismatch: 1,
}

// ExitCode returns the CLI exit status for code; 5 (RUNTIME's) for a code without one.
func ExitCode(code string) int {
	if n, ok := exitCodes[code]; ok {
		return n
	}
	return exitCodes[CodeRuntime]
}

// CodeOf returns the code of err: INVALID_INPUT, TOO_LARGE, MODEL_LOAD, MISSING_EXTENSION, CLOSED,
// CANCELLED, RUNTIME for any other error, "" for nil.
func CodeOf(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrTooLarge):
		return CodeTooLarge
	case errors.Is(err, ErrInvalidInput):
		return CodeInvalidInput
	case errors.Is(err, ErrMissingExtension):
		return CodeMissingExtension
	case errors.Is(err, ErrModelLoad):
		return CodeModelLoad
	case errors.Is(err, ErrClosed):
		return CodeClosed
	case errors.Is(err, ErrCancelled):
		return CodeCancelled
	default:
		return CodeRuntime
	}
}

// InputErr returns an error wrapping ErrInvalidInput: "invalid input: <message>".
func InputErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidInput}, args...)...)
}

// TooLargeErr returns an error wrapping ErrTooLarge.
func TooLargeErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrTooLarge}, args...)...)
}

// Clip shortens a name or value echoed into an error message to at most 200 characters (issue 13 §8: a
// 20,000-character name must not blow up the message).
func Clip(s string) string {
	const most = 200
	if len(s) <= most {
		return s
	}
	cut := most - 3
	for cut > 0 && s[cut]&0xC0 == 0x80 { // not inside a UTF-8 sequence
		cut--
	}
	return s[:cut] + "..."
}
