// Package vectortest reads the golden vector sets in tests/vectors/ (docs/vectors.md) and compares
// tensors the way every runtime must: dtypes, shapes, integers, booleans and strings exactly; floats
// within the set's tolerance. Shared by the package tests and the CLI tests.
package vectortest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/onnxpipe/onnxpipe/runtimes/go/core"
)

// Tolerance per float dtype: |got - want| <= Atol + Rtol*|want|.
type Tolerance map[core.DType]struct{ Atol, Rtol float64 }

// DefaultTolerance applies to dtypes a vector set does not list.
var DefaultTolerance = Tolerance{core.Float32: {1e-5, 1e-4}, core.Float64: {1e-9, 1e-7}}

// Case is one input file and its expected outputs.
type Case struct {
	Name     string `json:"name"`
	Inputs   string `json:"inputs"`
	Expected string `json:"expected"`
}

// Set is one tests/vectors/<name>/vector.json.
type Set struct {
	Dir       string    `json:"-"`
	Name      string    `json:"name"`
	Model     string    `json:"model"`
	Generate  string    `json:"generate"`
	Requires  []string  `json:"requires"`
	Tolerance Tolerance `json:"tolerance"`
	Cases     []Case    `json:"cases"`
}

// RepoRoot is the repository root: four levels above this file, or (when built with -trimpath) the first
// ancestor of the working directory holding VERSION and tests/vectors.
func RepoRoot() string {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", "..", ".."))
	}
	dir, _ := os.Getwd()
	for ; filepath.Dir(dir) != dir; dir = filepath.Dir(dir) {
		if fi, err := os.Stat(filepath.Join(dir, "VERSION")); err == nil && fi.Mode().IsRegular() && isDir(filepath.Join(dir, "tests", "vectors")) {
			return dir
		}
	}
	return ""
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// Fixture is the path of tests/fixtures/<name>.
func Fixture(name string) string { return filepath.Join(RepoRoot(), "tests", "fixtures", name) }

// Discover returns every set under tests/vectors/, or an error when there is none.
func Discover() ([]*Set, error) { return DiscoverIn(filepath.Join(RepoRoot(), "tests", "vectors")) }

// DiscoverIn returns every <dir>/*/vector.json set, or an error when there is none.
func DiscoverIn(dir string) ([]*Set, error) {
	pattern := filepath.Join(dir, "*", "vector.json")
	specs, _ := filepath.Glob(pattern)
	if len(specs) == 0 {
		return nil, fmt.Errorf("no golden vector sets found: nothing matches %s", pattern)
	}
	var sets []*Set
	for _, spec := range specs {
		raw, err := os.ReadFile(spec)
		if err != nil {
			return nil, err
		}
		s := &Set{Dir: filepath.Dir(spec)}
		if err := json.Unmarshal(raw, s); err != nil {
			return nil, fmt.Errorf("%s: %v", spec, err)
		}
		if s.Model == "" || len(s.Cases) == 0 {
			return nil, fmt.Errorf("%s: needs a model and at least one case", spec)
		}
		merged := Tolerance{}
		for k, v := range DefaultTolerance {
			merged[k] = v
		}
		for k, v := range s.Tolerance {
			merged[k] = v
		}
		s.Tolerance = merged
		sets = append(sets, s)
	}
	return sets, nil
}

// ModelPath returns the model file; skip is a message when the model is a not-yet-generated
// .generated.onnx file (the only reason a set may be skipped); err when any other model is missing.
func (s *Set) ModelPath() (path, skip string, err error) {
	path = filepath.Join(s.Dir, s.Model)
	if _, statErr := os.Stat(path); errors.Is(statErr, os.ErrNotExist) {
		if strings.HasSuffix(s.Model, ".generated.onnx") {
			return path, fmt.Sprintf("%s is generated and not built yet: run `%s` first", path, s.Generate), nil
		}
		return path, "", fmt.Errorf("model %s is missing (and not a .generated.onnx file)", path)
	}
	return path, "", nil
}

// ReadTensors reads a tensor-JSON file.
func ReadTensors(path string) ([]string, map[string]core.Tensor, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	names, m, err := core.ReadTensorJSON(bytes.NewReader(raw), core.DefaultLimits())
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return names, m, nil
}

// CompareAll checks that got has exactly the expected outputs, each matching.
func CompareAll(got, want map[string]core.Tensor, tol Tolerance) error {
	var errs []error
	for name := range got {
		if _, ok := want[name]; !ok {
			errs = append(errs, fmt.Errorf("unexpected output %q", name))
		}
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			errs = append(errs, fmt.Errorf("missing output %q", name))
			continue
		}
		if err := Compare(g, w, tol); err != nil {
			errs = append(errs, fmt.Errorf("output %q: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Compare checks one tensor against the expected one.
func Compare(got, want core.Tensor, tol Tolerance) error {
	if got.DType() != want.DType() || !slices.Equal(got.Shape(), want.Shape()) {
		return fmt.Errorf("got %s %v, want %s %v", got.DType(), got.Shape(), want.DType(), want.Shape())
	}
	switch w := want.Values().(type) {
	case []float32:
		g := got.Values().([]float32)
		for i := range w {
			if err := closeEnough(float64(g[i]), float64(w[i]), tol[core.Float32]); err != nil {
				return fmt.Errorf("element %d: %v", i, err)
			}
		}
		return nil
	case []float64:
		g := got.Values().([]float64)
		for i := range w {
			if err := closeEnough(g[i], w[i], tol[core.Float64]); err != nil {
				return fmt.Errorf("element %d: %v", i, err)
			}
		}
		return nil
	}
	format := "%v"
	if want.DType() == core.String {
		format = "%q" // so that ["a b", "c"] and ["a", "b c"] differ
	}
	gs, ws := fmt.Sprintf(format, got.Values()), fmt.Sprintf(format, want.Values())
	if gs != ws {
		return fmt.Errorf("got %s, want %s", clip(gs), clip(ws))
	}
	return nil
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}

func closeEnough(got, want float64, tol struct{ Atol, Rtol float64 }) error {
	switch {
	case math.IsNaN(want) && math.IsNaN(got):
		return nil
	case math.IsInf(want, 0) && got == want:
		return nil
	case math.Abs(got-want) <= tol.Atol+tol.Rtol*math.Abs(want):
		return nil
	}
	return fmt.Errorf("got %v, want %v (atol %g, rtol %g)", got, want, tol.Atol, tol.Rtol)
}
