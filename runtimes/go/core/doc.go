// Package core is the ORT-free heart of the Go runtime and the Go sidecar client: the tensor type, the dtype
// table, the error codes and the tensor-JSON reader and writer, as spec/ (at the repository root) defines
// them. It needs no cgo, so the sidecar client builds with CGO_ENABLED=0.
//
// The tables here are checked against spec/dtypes.json, spec/errors.json and spec/limits.json by this
// package's tests; spec/ is the source of truth.
package core
