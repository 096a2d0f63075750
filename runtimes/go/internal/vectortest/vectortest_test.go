package vectortest

import (
	"math"
	"strings"
	"testing"

	onnxpipe "github.com/onnxpipe/onnxpipe/runtimes/go"
)

// The comparison must be able to fail: each case differs from `want` in one way.
func TestCompare(t *testing.T) {
	tol := Tolerance{onnxpipe.Float32: {1e-5, 1e-4}}
	want := onnxpipe.MustTensor([]int64{3}, []float32{1, float32(math.NaN()), 100})
	ok := []onnxpipe.Tensor{
		onnxpipe.MustTensor([]int64{3}, []float32{1.00001, float32(math.NaN()), 100.01}),
	}
	bad := map[string]onnxpipe.Tensor{
		"beyond tolerance": onnxpipe.MustTensor([]int64{3}, []float32{1.0002, float32(math.NaN()), 100}),
		"NaN vs number":    onnxpipe.MustTensor([]int64{3}, []float32{1, 0, 100}),
		"shape":            onnxpipe.MustTensor([]int64{1, 3}, []float32{1, float32(math.NaN()), 100}),
		"dtype":            onnxpipe.MustTensor([]int64{3}, []float64{1, math.NaN(), 100}),
	}
	for _, g := range ok {
		if err := Compare(g, want, tol); err != nil {
			t.Errorf("within tolerance: %v", err)
		}
	}
	for name, g := range bad {
		if err := Compare(g, want, tol); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	s1, _ := onnxpipe.NewStringTensor([]int64{2}, []string{"a b", "c"})
	s2, _ := onnxpipe.NewStringTensor([]int64{2}, []string{"a", "b c"})
	if err := Compare(s1, s2, tol); err == nil {
		t.Error("strings that print alike compared equal")
	}
	i1 := onnxpipe.MustTensor([]int64{2}, []int64{1 << 53, 2})
	i2 := onnxpipe.MustTensor([]int64{2}, []int64{1<<53 + 1, 2})
	if err := Compare(i1, i2, tol); err == nil {
		t.Error("int64 differing beyond 2^53 compared equal")
	}
	err := CompareAll(map[string]onnxpipe.Tensor{"a": i1, "extra": i1}, map[string]onnxpipe.Tensor{"a": i1, "b": i1}, tol)
	if err == nil || !strings.Contains(err.Error(), `unexpected output "extra"`) || !strings.Contains(err.Error(), `missing output "b"`) {
		t.Errorf("CompareAll: %v", err)
	}
}
