package vectortest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/onnxpipe/onnxpipe/runtimes/go/core"
)

// SpecFile is one spec/cases/<name>.json: a model and its conformance cases (spec/README.md).
type SpecFile struct {
	Path      string     `json:"-"`
	Model     string     `json:"model"` // from the repository root
	Requires  []string   `json:"requires"`
	LoadError string     `json:"load_error"`
	Tolerance Tolerance  `json:"tolerance"`
	Cases     []SpecCase `json:"cases"`
}

// SpecCase is one case: inputs (a tensor-JSON value, or the exact text of an inputs file) and either the
// expected outputs or an error code.
type SpecCase struct {
	Name         string          `json:"name"`
	Inputs       json.RawMessage `json:"inputs"`
	InputsText   *string         `json:"inputs_text"`
	Expected     json.RawMessage `json:"expected"`
	ExpectedFile string          `json:"expected_file"`
	Error        string          `json:"error"`
	Tolerance    Tolerance       `json:"tolerance"`
}

// SpecFiles reads every spec/cases/*.json, or fails when there is none.
func SpecFiles() ([]*SpecFile, error) {
	pattern := filepath.Join(RepoRoot(), "spec", "cases", "*.json")
	paths, _ := filepath.Glob(pattern)
	if len(paths) == 0 {
		return nil, fmt.Errorf("no conformance cases: nothing matches %s", pattern)
	}
	var files []*SpecFile
	for _, path := range paths {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		f := &SpecFile{Path: path}
		if err := json.Unmarshal(raw, f); err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		if f.Model == "" || (f.LoadError == "") == (len(f.Cases) == 0) {
			return nil, fmt.Errorf("%s: needs a model and either cases or load_error", path)
		}
		files = append(files, f)
	}
	return files, nil
}

// Name is the file's name without .json ("basic").
func (f *SpecFile) Name() string { return strings.TrimSuffix(filepath.Base(f.Path), ".json") }

// ModelPath is the model's absolute path.
func (f *SpecFile) ModelPath() string { return filepath.Join(RepoRoot(), filepath.FromSlash(f.Model)) }

// NeedsExtensions reports whether the model needs the onnxruntime-extensions library.
func (f *SpecFile) NeedsExtensions() bool {
	for _, r := range f.Requires {
		if r == "onnxruntime-extensions" {
			return true
		}
	}
	return false
}

// Text is the inputs file the case describes, byte for byte.
func (c SpecCase) Text() string {
	if c.InputsText != nil {
		return *c.InputsText
	}
	return string(c.Inputs)
}

// ExpectedTensors reads the expected outputs (inline or from expected_file).
func (c SpecCase) ExpectedTensors() (map[string]core.Tensor, error) {
	if c.ExpectedFile != "" {
		_, m, err := ReadTensors(filepath.Join(RepoRoot(), filepath.FromSlash(c.ExpectedFile)))
		return m, err
	}
	_, m, err := core.ReadTensorJSON(strings.NewReader(string(c.Expected)), core.DefaultLimits())
	return m, err
}

// CaseTolerance is the default tolerance, overridden by the file's and then the case's.
func (f *SpecFile) CaseTolerance(c SpecCase) Tolerance {
	merged := Tolerance{}
	for _, t := range []Tolerance{DefaultTolerance, f.Tolerance, c.Tolerance} {
		for k, v := range t {
			merged[k] = v
		}
	}
	return merged
}
