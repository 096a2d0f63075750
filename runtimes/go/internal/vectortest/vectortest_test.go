package vectortest

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onnxpipe/onnxpipe/runtimes/go/core"
)

// The comparison must be able to fail: each case differs from `want` in one way.
func TestCompare(t *testing.T) {
	tol := Tolerance{core.Float32: {1e-5, 1e-4}}
	want := core.MustTensor([]int64{3}, []float32{1, float32(math.NaN()), 100})
	ok := []core.Tensor{
		core.MustTensor([]int64{3}, []float32{1.00001, float32(math.NaN()), 100.01}),
	}
	bad := map[string]core.Tensor{
		"beyond tolerance": core.MustTensor([]int64{3}, []float32{1.0002, float32(math.NaN()), 100}),
		"NaN vs number":    core.MustTensor([]int64{3}, []float32{1, 0, 100}),
		"shape":            core.MustTensor([]int64{1, 3}, []float32{1, float32(math.NaN()), 100}),
		"dtype":            core.MustTensor([]int64{3}, []float64{1, math.NaN(), 100}),
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
	s1, _ := core.NewStringTensor([]int64{2}, []string{"a b", "c"})
	s2, _ := core.NewStringTensor([]int64{2}, []string{"a", "b c"})
	if err := Compare(s1, s2, tol); err == nil {
		t.Error("strings that print alike compared equal")
	}
	i1 := core.MustTensor([]int64{2}, []int64{1 << 53, 2})
	i2 := core.MustTensor([]int64{2}, []int64{1<<53 + 1, 2})
	if err := Compare(i1, i2, tol); err == nil {
		t.Error("int64 differing beyond 2^53 compared equal")
	}
	err := CompareAll(map[string]core.Tensor{"a": i1, "extra": i1}, map[string]core.Tensor{"a": i1, "b": i1}, tol)
	if err == nil || !strings.Contains(err.Error(), `unexpected output "extra"`) || !strings.Contains(err.Error(), `missing output "b"`) {
		t.Errorf("CompareAll: %v", err)
	}
}

// No set is a failure; a missing model is a failure unless it is a not-yet-built .generated.onnx.
func TestDiscoverAndModelPath(t *testing.T) {
	empty := t.TempDir()
	if _, err := DiscoverIn(empty); err == nil || !strings.Contains(err.Error(), "no golden vector sets found") {
		t.Errorf("DiscoverIn(empty): %v", err)
	}
	dir := t.TempDir()
	for name, model := range map[string]string{"big": "model.generated.onnx", "small": "model.onnx"} {
		os.MkdirAll(filepath.Join(dir, name), 0o755)
		spec := `{"name": "` + name + `", "model": "` + model + `", "generate": "make vectors", "requires": [],
			"tolerance": {"float32": {"atol": 0.5, "rtol": 0}}, "cases": [{"name": "c", "inputs": "i.json", "expected": "e.json"}]}`
		os.WriteFile(filepath.Join(dir, name, "vector.json"), []byte(spec), 0o644)
	}
	sets, err := DiscoverIn(dir)
	if err != nil || len(sets) != 2 {
		t.Fatalf("DiscoverIn: %v, %d sets", err, len(sets))
	}
	for _, s := range sets {
		_, skip, err := s.ModelPath()
		switch s.Name {
		case "big":
			if err != nil || !strings.Contains(skip, "run `make vectors` first") {
				t.Errorf("generated model: skip %q, err %v", skip, err)
			}
		case "small":
			if err == nil || skip != "" {
				t.Errorf("missing committed model: skip %q, err %v; want an error", skip, err)
			}
		}
		if s.Tolerance[core.Float32].Atol != 0.5 || s.Tolerance[core.Float64].Atol != 1e-9 {
			t.Errorf("tolerance %v: the set's float32 entry and the default float64 entry", s.Tolerance)
		}
	}
}
