package onnxpipe_test

import (
	"path/filepath"
	"slices"
	"testing"

	onnxpipe "github.com/onnxpipe/onnxpipe/runtimes/go"
	"github.com/onnxpipe/onnxpipe/runtimes/go/internal/vectortest"
)

// TestVectors runs every golden vector set in tests/vectors/ (found at test time) through the Go runtime.
// It fails when there is none; it skips only a set whose .generated.onnx model is not built yet.
func TestVectors(t *testing.T) {
	sets, err := vectortest.Discover()
	if err != nil {
		t.Fatal(err)
	}
	runSets(t, sets)
}

func runSets(t *testing.T, sets []*vectortest.Set) {
	for _, set := range sets {
		t.Run(filepath.Base(set.Dir), func(t *testing.T) {
			model, skip, err := set.ModelPath()
			if err != nil {
				t.Fatal(err)
			}
			if skip != "" {
				t.Skip(skip)
			}
			p, err := onnxpipe.Load(model, onnxpipe.WithThreads(1))
			if err != nil {
				t.Fatalf("Load(%s): %v", model, err)
			}
			defer p.Close()
			for _, d := range set.Requires {
				if !slices.Contains(p.Signature().Domains, d) {
					t.Errorf("vector.json requires %s but the pipeline's domains are %v", d, p.Signature().Domains)
				}
			}
			for _, c := range set.Cases {
				t.Run(c.Name, func(t *testing.T) {
					checkCase(t, p, filepath.Join(set.Dir, c.Inputs), filepath.Join(set.Dir, c.Expected), set.Tolerance)
				})
			}
		})
	}
}

// checkCase runs an inputs file and compares every output with the expected file.
func checkCase(t *testing.T, p *onnxpipe.Pipeline, inputsPath, expectedPath string, tol vectortest.Tolerance) {
	t.Helper()
	_, inputs, err := vectortest.ReadTensors(inputsPath)
	if err != nil {
		t.Fatal(err)
	}
	_, want, err := vectortest.ReadTensors(expectedPath)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Run(t.Context(), inputs)
	if err != nil {
		t.Fatalf("Run(%s): %v", inputsPath, err)
	}
	if err := vectortest.CompareAll(out.Map(), want, tol); err != nil {
		t.Errorf("%s vs %s:\n%v", inputsPath, expectedPath, err)
	}
}
