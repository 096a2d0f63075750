package onnxpipe_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	onnxpipe "github.com/onnxpipe/onnxpipe/runtimes/go"
	"github.com/onnxpipe/onnxpipe/runtimes/go/internal/vectortest"
)

// No input aborts the process (issue 13 §2): for every test model (the vector sets and spec/models), a
// zero-size dimension in every position of every input gives a typed error (INVALID_INPUT for a fixed dim,
// or RUNTIME when ONNX Runtime refuses) or a well-formed result, never a crash.
func TestZeroSizeDimsNeverAbort(t *testing.T) {
	for _, model := range zeroSizeModels(t) {
		t.Run(filepath.Base(filepath.Dir(model))+"/"+filepath.Base(model), func(t *testing.T) {
			p, err := onnxpipe.Load(model, onnxpipe.WithThreads(1))
			if errors.Is(err, onnxpipe.ErrMissingExtension) {
				t.Skipf("no onnxruntime-extensions: %v", err)
			}
			if errors.Is(err, onnxpipe.ErrModelLoad) {
				t.Skipf("a model that must not load (its spec case says so): %v", err)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			sig := p.Signature()
			for i, in := range sig.Inputs {
				for axis := range in.Shape {
					inputs, err := zeroSizeInputs(sig, i, axis)
					if err != nil {
						t.Fatal(err)
					}
					out, err := p.Run(context.Background(), inputs)
					switch code := onnxpipe.Code(err); code {
					case "":
						checkWellFormed(t, in.Name, axis, out)
					case "INVALID_INPUT", "RUNTIME":
						t.Logf("%s axis %d = 0: %s", in.Name, axis, code)
					default:
						t.Errorf("%s axis %d = 0: %v (code %s), want a result, INVALID_INPUT or RUNTIME", in.Name, axis, err, code)
					}
				}
			}
		})
	}
}

func zeroSizeModels(t *testing.T) []string {
	root := vectortest.RepoRoot()
	var models []string
	for _, pattern := range []string{"tests/vectors/*/model.onnx", "tests/vectors/*/model.generated.onnx", "spec/models/*.onnx"} {
		found, _ := filepath.Glob(filepath.Join(root, pattern))
		models = append(models, found...)
	}
	var loadable []string
	for _, m := range models {
		if fi, err := os.Stat(m); err == nil && fi.Size() > 0 && filepath.Base(m) != "slow_loop.onnx" {
			loadable = append(loadable, m)
		}
	}
	files, err := vectortest.SpecFiles()
	if err != nil {
		t.Fatal(err)
	}
	refused := map[string]bool{}
	for _, f := range files {
		if f.LoadError != "" {
			refused[f.ModelPath()] = true
		}
	}
	var out []string
	for _, m := range loadable {
		if !refused[m] {
			out = append(out, m)
		}
	}
	return out
}

// zeroSizeInputs gives every required input a small valid tensor (dynamic dims 2), with dimension axis of
// input target set to 0, and so every dimension sharing its name.
func zeroSizeInputs(sig *onnxpipe.Signature, target, axis int) (map[string]onnxpipe.Tensor, error) {
	zeroName := sig.Inputs[target].Shape[axis].Name
	inputs := map[string]onnxpipe.Tensor{}
	for i, in := range sig.Inputs {
		if in.Optional {
			continue
		}
		shape := make([]int64, len(in.Shape))
		n := int64(1)
		for a, d := range in.Shape {
			switch {
			case i == target && a == axis, zeroName != "" && d.Name == zeroName:
				shape[a] = 0
			case d.Dynamic():
				shape[a] = 2
			default:
				shape[a] = d.Size
			}
			n *= shape[a]
		}
		t, err := zeros(in.DType, shape, n)
		if err != nil {
			return nil, fmt.Errorf("input %q: %v", in.Name, err)
		}
		inputs[in.Name] = t
	}
	return inputs, nil
}

func zeros(dtype onnxpipe.DType, shape []int64, n int64) (onnxpipe.Tensor, error) {
	switch dtype {
	case onnxpipe.Float32:
		return onnxpipe.NewTensor(shape, make([]float32, n))
	case onnxpipe.Float64:
		return onnxpipe.NewTensor(shape, make([]float64, n))
	case onnxpipe.Int64:
		return onnxpipe.NewTensor(shape, make([]int64, n))
	case onnxpipe.Int32:
		return onnxpipe.NewTensor(shape, make([]int32, n))
	case onnxpipe.Uint8:
		return onnxpipe.NewTensor(shape, make([]uint8, n))
	case onnxpipe.Int8:
		return onnxpipe.NewTensor(shape, make([]int8, n))
	case onnxpipe.Bool:
		return onnxpipe.NewTensor(shape, make([]bool, n))
	}
	text := make([]string, n)
	for i := range text {
		text[i] = "a"
	}
	return onnxpipe.NewStringTensor(shape, text)
}

func checkWellFormed(t *testing.T, input string, axis int, out onnxpipe.Outputs) {
	t.Helper()
	for _, name := range out.Names() {
		tensor, err := out.Tensor(name)
		if err != nil {
			t.Errorf("%s axis %d = 0: output %q: %v", input, axis, name, err)
			continue
		}
		n := int64(1)
		for _, d := range tensor.Shape() {
			n *= d
		}
		if int64(tensor.Len()) != n {
			t.Errorf("%s axis %d = 0: output %q has %d values for shape %v", input, axis, name, tensor.Len(), tensor.Shape())
		}
	}
}
