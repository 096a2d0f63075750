package sidecar

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/onnxpipe/onnxpipe/runtimes/go/core"
)

// The error family. Every error the package returns is an *Error wrapping exactly one of these sentinels (a
// missing extension also wraps ErrModelLoad), so callers branch with errors.Is.
var (
	// ErrInvalidInput: an input is missing, unknown or repeated, or has the wrong datatype, shape or data
	// size (sidecar code INVALID_INPUT); also a tensor this package cannot send, or a bad option.
	ErrInvalidInput = core.ErrInvalidInput
	// ErrTooLarge: a tensor-JSON document is over a limit (elements, string bytes, nesting), or the sidecar
	// refused a request over its limits (TOO_LARGE).
	ErrTooLarge = core.ErrTooLarge
	// ErrNotFound: unknown model, version or output (NOT_FOUND).
	ErrNotFound = errors.New("not found")
	// ErrOverloaded: the model's queue is full, or a message is over the size limit (OVERLOADED).
	ErrOverloaded = errors.New("overloaded")
	// ErrUnauthenticated: missing or wrong bearer token (UNAUTHENTICATED).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrUnavailable: the sidecar cannot be reached, or is shutting down (CLOSED, UNAVAILABLE). Retryable.
	ErrUnavailable = errors.New("unavailable")
	// ErrDeadline: the deadline passed before the answer came (DEADLINE). Also wraps
	// context.DeadlineExceeded when the caller's context expired.
	ErrDeadline = errors.New("deadline exceeded")
	// ErrCancelled: the caller cancelled the call (CANCELLED). Also wraps context.Canceled.
	ErrCancelled = core.ErrCancelled
	// ErrModelLoad: the sidecar could not load a model (MODEL_LOAD).
	ErrModelLoad = core.ErrModelLoad
	// ErrMissingExtension: the model needs a custom-op library the sidecar lacks (MISSING_EXTENSION).
	ErrMissingExtension = core.ErrMissingExtension
	// ErrRuntime: ONNX Runtime failed on a validated input, or any other server failure (RUNTIME).
	ErrRuntime = core.ErrRuntime
	// ErrProtocol: the answer does not follow the protocol (e.g. raw data of the wrong size) (PROTOCOL).
	ErrProtocol = errors.New("protocol error")
	// ErrClosed: the client was closed (CLIENT_CLOSED).
	ErrClosed = errors.New("client closed")
)

// CodeMetadataKey is the trailing-metadata key under which the sidecar sends its error code.
const CodeMetadataKey = "onnxpipe-error-code"

// codeSentinels maps onnxpipe error codes to this package's sentinels.
var codeSentinels = map[string][]error{
	"INVALID_INPUT":     {ErrInvalidInput},
	"TOO_LARGE":         {ErrTooLarge},
	"NOT_FOUND":         {ErrNotFound},
	"OVERLOADED":        {ErrOverloaded},
	"UNAUTHENTICATED":   {ErrUnauthenticated},
	"CLOSED":            {ErrUnavailable},
	"UNAVAILABLE":       {ErrUnavailable},
	"DEADLINE":          {ErrDeadline},
	"CANCELLED":         {ErrCancelled},
	"MODEL_LOAD":        {ErrModelLoad},
	"MISSING_EXTENSION": {ErrModelLoad, ErrMissingExtension},
	"RUNTIME":           {ErrRuntime},
	"PROTOCOL":          {ErrProtocol},
	"CLIENT_CLOSED":     {ErrClosed},
}

// statusCodes gives the onnxpipe code of a gRPC status that carried none (e.g. from gRPC itself, or another
// server of the protocol).
var statusCodes = map[codes.Code]string{
	codes.InvalidArgument:   "INVALID_INPUT",
	codes.OutOfRange:        "INVALID_INPUT",
	codes.NotFound:          "NOT_FOUND",
	codes.ResourceExhausted: "OVERLOADED",
	codes.Unauthenticated:   "UNAUTHENTICATED",
	codes.PermissionDenied:  "UNAUTHENTICATED",
	codes.Unavailable:       "UNAVAILABLE",
	codes.DeadlineExceeded:  "DEADLINE",
	codes.Canceled:          "CANCELLED",
}

// Error is the error every call returns.
type Error struct {
	// Op is what was attempted: "dial 127.0.0.1:8001", "infer 'digits'", "model metadata 'basic'", ...
	Op string
	// Code is the onnxpipe error code: the sidecar's own (INVALID_INPUT, NOT_FOUND, OVERLOADED,
	// UNAUTHENTICATED, CLOSED, DEADLINE, RUNTIME, MODEL_LOAD, MISSING_EXTENSION, ...) when it sent one,
	// else derived from the gRPC status; PROTOCOL, CLIENT_CLOSED or INVALID_INPUT for errors found here.
	Code string
	// Status is the gRPC status code, codes.OK when the error arose in this client.
	Status codes.Code
	// Message says what failed, without the "[CODE] " prefix the sidecar puts on it.
	Message string

	kinds []error // sentinels
	cause error   // the caller's context error, or nil
}

func (e *Error) Error() string {
	if e.Status != codes.OK {
		return fmt.Sprintf("sidecar: %s: [%s] %s (gRPC %s)", e.Op, e.Code, e.Message, statusName(e.Status))
	}
	return fmt.Sprintf("sidecar: %s: [%s] %s", e.Op, e.Code, e.Message)
}

// Unwrap gives the sentinels (and the context error when the caller's context ended).
func (e *Error) Unwrap() []error {
	if e.cause != nil {
		return append(append([]error(nil), e.kinds...), e.cause)
	}
	return e.kinds
}

// Code returns the onnxpipe error code of err ("" for nil; "RUNTIME" for an error not from this package).
func Code(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return "RUNTIME"
}

func statusName(c codes.Code) string {
	// codes.Code's String() is CamelCase ("InvalidArgument"); the protocol documents use the canonical names.
	names := map[codes.Code]string{
		codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN", codes.InvalidArgument: "INVALID_ARGUMENT",
		codes.DeadlineExceeded: "DEADLINE_EXCEEDED", codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
		codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
		codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED", codes.OutOfRange: "OUT_OF_RANGE",
		codes.Unimplemented: "UNIMPLEMENTED", codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE",
		codes.DataLoss: "DATA_LOSS", codes.Unauthenticated: "UNAUTHENTICATED",
	}
	if n, ok := names[c]; ok {
		return n
	}
	return c.String()
}

func newError(op, code, format string, args ...any) *Error {
	kinds, ok := codeSentinels[code]
	if !ok {
		kinds = []error{ErrRuntime}
	}
	return &Error{Op: op, Code: code, Message: fmt.Sprintf(format, args...), kinds: kinds}
}

func inputErr(op, format string, args ...any) *Error {
	return newError(op, "INVALID_INPUT", format, args...)
}

func protocolErr(op, format string, args ...any) *Error {
	return newError(op, "PROTOCOL", format, args...)
}

var codePrefix = regexp.MustCompile(`^\[([A-Z][A-Z0-9_]*)\] `)

// fromStatus rebuilds the sidecar's error from a failed RPC: the code from the trailing metadata, else from
// the message's "[CODE] " prefix, else from the gRPC status.
func fromStatus(ctx context.Context, op string, err error, trailer metadata.MD) *Error {
	st, _ := status.FromError(err)
	msg := st.Message()
	code := ""
	if m := codePrefix.FindStringSubmatch(msg); m != nil {
		code = m[1]
		msg = strings.TrimPrefix(msg, m[0])
	}
	if vals := trailer.Get(CodeMetadataKey); len(vals) > 0 && vals[0] != "" {
		code = vals[0]
	}
	kinds, known := codeSentinels[code]
	if !known {
		derived, ok := statusCodes[st.Code()]
		if !ok {
			derived = "RUNTIME"
		}
		if code == "" {
			code = derived
		}
		// An unknown code from a newer server keeps its name; the sentinel follows the gRPC status.
		kinds = codeSentinels[derived]
	}
	e := &Error{Op: op, Code: code, Status: st.Code(), Message: msg, kinds: kinds}
	if ctxErr := ctx.Err(); ctxErr != nil {
		e.cause = ctxErr
	}
	return e
}
