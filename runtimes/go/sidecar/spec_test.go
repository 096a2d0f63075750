package sidecar

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/onnxpipe/onnxpipe/runtimes/go/core"
	"github.com/onnxpipe/onnxpipe/runtimes/go/internal/vectortest"
)

// The conformance cases of spec/cases (spec/README.md) through this client: every case's inputs through
// ReadTensorJSON (reader errors must carry the case's code; everything else must read), and every valid
// case of a model that needs no custom-op library through a live sidecar.

func specFiles(t *testing.T) []*vectortest.SpecFile {
	t.Helper()
	files, err := vectortest.SpecFiles()
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestSpecReader(t *testing.T) {
	for _, f := range specFiles(t) {
		for _, c := range f.Cases {
			t.Run(f.Name()+"/"+c.Name, func(t *testing.T) {
				_, _, err := ReadTensorJSON(strings.NewReader(c.Text()))
				// A reader error is a case whose inputs the Go runtime's reader refuses too; the rest of the
				// error cases are the model's to refuse (the sidecar's).
				_, _, coreErr := core.ReadTensorJSON(strings.NewReader(c.Text()), core.DefaultLimits())
				if coreErr != nil && c.Error == "" {
					t.Fatalf("a valid case's inputs are refused: %v", coreErr)
				}
				if coreErr == nil {
					if err != nil {
						t.Fatalf("ReadTensorJSON: %v", err)
					}
					return
				}
				var e *Error
				if !errors.As(err, &e) || e.Code != c.Error || Code(err) != c.Error {
					t.Fatalf("ReadTensorJSON: %v (code %q), want *Error with code %s", err, Code(err), c.Error)
				}
			})
		}
	}
}

var (
	specOnce   sync.Once
	specServer *sidecarProcess
	specErr    error
)

// specSidecar serves every spec model that needs no custom-op library, named after its case file.
func specSidecar(t *testing.T, files []*vectortest.SpecFile) *sidecarProcess {
	t.Helper()
	specOnce.Do(func() {
		var models, names []string
		for _, f := range files {
			if f.LoadError == "" && !f.NeedsExtensions() {
				models = append(models, f.ModelPath())
				names = append(names, "--name", f.Name())
			}
		}
		specServer, specErr = startSidecar(append(models, names...)...)
	})
	if specErr != nil {
		t.Fatalf("cannot start the sidecar for spec/models: %v", specErr)
	}
	return specServer
}

func TestSpecValidCases(t *testing.T) {
	files := specFiles(t)
	client := dial(t, specSidecar(t, files))
	for _, f := range files {
		if f.LoadError != "" || f.NeedsExtensions() {
			continue // the sidecar would not load it: load errors are the runtimes' to test
		}
		for _, c := range f.Cases {
			if c.Error != "" {
				continue
			}
			t.Run(f.Name()+"/"+c.Name, func(t *testing.T) {
				_, inputs, err := ReadTensorJSON(strings.NewReader(c.Text()))
				if err != nil {
					t.Fatal(err)
				}
				res, err := client.Infer(testContext(t), f.Name(), inputs)
				if err != nil {
					t.Fatalf("Infer: %v", err)
				}
				got := map[string]core.Tensor{}
				for name, out := range res.Outputs {
					if got[name], err = core.FromValues(out.Shape, out.Data); err != nil {
						t.Fatalf("output %q: %v", name, err)
					}
				}
				want, err := c.ExpectedTensors()
				if err != nil {
					t.Fatal(err)
				}
				if err := vectortest.CompareAll(got, want, f.CaseTolerance(c)); err != nil {
					t.Error(err)
				}
			})
		}
	}
}
