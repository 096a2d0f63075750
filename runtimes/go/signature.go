package onnxpipe

import (
	"strings"

	"bytes"
	"encoding/json"
	"fmt"
	"github.com/onnxpipe/onnxpipe/runtimes/go/core"
	"strconv"
)

// ManifestKey is the metadata_props key under which an exported file carries its manifest.
const ManifestKey = "onnxpipe.manifest"

// manifestFormatVersion is the newest manifest schema this runtime reads (docs/manifest.md).
const manifestFormatVersion = 1

// Dim is one dimension of a declared shape: fixed (Size >= 0) or dynamic (Size == -1), in which case Name
// is its name ("batch") when the manifest gives one. In JSON: an int, a string, or null.
type Dim struct {
	Size int64
	Name string
}

// Dynamic reports whether the dimension is not fixed.
func (d Dim) Dynamic() bool { return d.Size < 0 }

func (d Dim) String() string {
	switch {
	case !d.Dynamic():
		return strconv.FormatInt(d.Size, 10)
	case d.Name != "":
		return d.Name
	default:
		return "?"
	}
}

// MarshalJSON writes the manifest form: 3, "batch" or null.
func (d Dim) MarshalJSON() ([]byte, error) {
	switch {
	case !d.Dynamic():
		return []byte(strconv.FormatInt(d.Size, 10)), nil
	case d.Name != "":
		return json.Marshal(d.Name)
	default:
		return []byte("null"), nil
	}
}

// UnmarshalJSON reads an int, a string or null.
func (d *Dim) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case string(b) == "null":
		*d = Dim{Size: -1}
	case len(b) > 0 && b[0] == '"':
		var name string
		if err := json.Unmarshal(b, &name); err != nil {
			return err
		}
		*d = Dim{Size: -1, Name: name}
	default:
		n, err := strconv.ParseInt(string(b), 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("dimension %s: expected a non-negative integer, a name or null", b)
		}
		*d = Dim{Size: n}
	}
	return nil
}

// TensorSpec describes one input or output.
type TensorSpec struct {
	Name  string `json:"name"`
	DType DType  `json:"dtype"`
	Shape []Dim  `json:"shape"`
	// Optional inputs are run-time parameters (thresholds) backed by an initializer: omitting them uses
	// Default, the value written in the manifest (a number, or a flat list for non-scalars).
	Optional bool            `json:"optional,omitempty"`
	Default  json.RawMessage `json:"default,omitempty"`
	// Range is [low, high] (inclusive) for a run-time parameter whose op has one (scores, IoU: [0, 1]).
	Range []float64 `json:"range,omitempty"`
}

func (s TensorSpec) shapeString() string {
	out := "["
	for i, d := range s.Shape {
		if i > 0 {
			out += ", "
		}
		out += d.String()
	}
	return out + "]"
}

func (s TensorSpec) describe() string { return fmt.Sprintf("%s %s", s.DType, s.shapeString()) }

// Signature is what a pipeline takes and returns: from the manifest ("source": "manifest"), or from ONNX
// Runtime's input/output info for a plain ONNX file ("source": "onnxruntime", no labels, dims unnamed).
type Signature struct {
	Name    string       `json:"-"` // the manifest's pipeline name; "" for a plain ONNX file
	Source  string       `json:"source"`
	Inputs  []TensorSpec `json:"inputs"`
	Outputs []TensorSpec `json:"outputs"`
	Labels  []string     `json:"labels"`
	Domains []string     `json:"domains"`
	// Verification is the export-time check: "passed", "failed", "not run" (exported with verify=False),
	// or "unknown" for a plain ONNX file (docs/manifest.md).
	Verification string `json:"verification"`
	// Precision is the manifest's "precision" (fp32, int8, ...); "" for a plain ONNX file.
	Precision string `json:"-"`
}

// Input returns the spec of the named input.
func (s *Signature) Input(name string) (TensorSpec, bool) {
	for _, in := range s.Inputs {
		if in.Name == name {
			return in, true
		}
	}
	return TensorSpec{}, false
}

// Required lists the names of the inputs a Run must give.
func (s *Signature) Required() []string {
	var names []string
	for _, in := range s.Inputs {
		if !in.Optional {
			names = append(names, in.Name)
		}
	}
	return names
}

func (s *Signature) inputNames() []string {
	names := make([]string, len(s.Inputs))
	for i, in := range s.Inputs {
		names[i] = in.Name
	}
	return names
}

func (s *Signature) outputNames() []string {
	names := make([]string, len(s.Outputs))
	for i, out := range s.Outputs {
		names[i] = out.Name
	}
	return names
}

func (s *Signature) clone() *Signature {
	c := *s
	c.Inputs = cloneSpecs(s.Inputs)
	c.Outputs = cloneSpecs(s.Outputs)
	c.Labels = append([]string(nil), s.Labels...)
	c.Domains = append([]string{}, s.Domains...)
	return &c
}

func cloneSpecs(specs []TensorSpec) []TensorSpec {
	out := make([]TensorSpec, len(specs))
	for i, s := range specs {
		s.Shape = append([]Dim{}, s.Shape...)
		s.Default = append(json.RawMessage(nil), s.Default...)
		s.Range = append([]float64(nil), s.Range...)
		out[i] = s
	}
	return out
}

// manifest is the part of docs/manifest.md this runtime reads; unknown fields are ignored.
type manifest struct {
	Format        string       `json:"format"`
	FormatVersion *int         `json:"format_version"`
	Name          string       `json:"name"`
	Inputs        []TensorSpec `json:"inputs"`
	Outputs       []TensorSpec `json:"outputs"`
	Labels        []string     `json:"labels"`
	Precision     string       `json:"precision"`
	Domains       []struct {
		Domain  string `json:"domain"`
		Library string `json:"library"`
	} `json:"domains"`
	Verification *struct {
		Status  *string `json:"status"`
		Passed  bool    `json:"passed"`
		Skipped bool    `json:"skipped"`
	} `json:"verification"`
}

// status is the manifest's verification state; files written before "status" existed say passed/skipped.
func (m manifest) status() string {
	v := m.Verification
	switch {
	case v == nil:
		return "not run"
	case v.Status != nil:
		return *v.Status
	case v.Passed:
		return "passed"
	case v.Skipped:
		return "not run"
	}
	return "failed"
}

// parseManifest validates the manifest JSON and returns its signature; errors wrap ErrModelLoad.
func parseManifest(text, where string) (*Signature, error) {
	var m manifest
	if err := json.Unmarshal([]byte(text), &m); err != nil {
		return nil, loadErr("%s: manifest %q is not valid JSON: %v", where, ManifestKey, err)
	}
	if m.Format != "onnxpipe.manifest" {
		return nil, loadErr("%s: manifest format is %q, expected \"onnxpipe.manifest\"", where, m.Format)
	}
	if m.FormatVersion == nil || *m.FormatVersion < 1 || *m.FormatVersion > manifestFormatVersion {
		got := "missing"
		if m.FormatVersion != nil {
			got = strconv.Itoa(*m.FormatVersion)
		}
		return nil, loadErr("%s: manifest format_version is %s, this runtime reads 1..%d", where, got, manifestFormatVersion)
	}
	if len(m.Inputs) == 0 || len(m.Outputs) == 0 {
		return nil, loadErr("%s: manifest declares %d inputs and %d outputs, expected at least one of each", where, len(m.Inputs), len(m.Outputs))
	}
	sig := &Signature{Name: m.Name, Source: "manifest", Inputs: m.Inputs, Outputs: m.Outputs, Labels: m.Labels, Domains: []string{}, Verification: m.status(), Precision: m.Precision}
	for _, d := range m.Domains {
		sig.Domains = append(sig.Domains, d.Domain)
	}
	seen := map[string]bool{}
	for _, group := range []struct {
		kind  string
		specs []TensorSpec
	}{{"input", sig.Inputs}, {"output", sig.Outputs}} {
		for i, s := range group.specs {
			if s.Name == "" {
				return nil, loadErr("%s: manifest %s %d has no name", where, group.kind, i)
			}
			if seen[s.Name] {
				return nil, loadErr("%s: manifest names %q twice", where, s.Name)
			}
			seen[s.Name] = true
			if !s.DType.Valid() {
				return nil, loadErr("%s: manifest %s %q: dtype %q is not one of %v", where, group.kind, s.Name, s.DType, DTypes)
			}
			if s.Shape == nil {
				return nil, loadErr("%s: manifest %s %q has no shape", where, group.kind, s.Name)
			}
			if s.Optional && group.kind == "input" {
				if _, err := defaultTensor(s); err != nil {
					return nil, loadErr("%s: manifest input %q: %v", where, s.Name, err)
				}
			}
		}
	}
	return sig, nil
}

// DefaultValue returns an optional input's manifest default as a tensor of its dtype (shape [] for a
// number, [n] for a flat list when the declared shape is not fixed).
func (s TensorSpec) DefaultValue() (Tensor, error) { return defaultTensor(s) }

func defaultTensor(s TensorSpec) (Tensor, error) {
	if len(s.Default) == 0 {
		return Tensor{}, fmt.Errorf("optional input %q has no default", s.Name)
	}
	var raw any
	dec := json.NewDecoder(bytes.NewReader(s.Default))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return Tensor{}, fmt.Errorf("default %s is not JSON: %v", s.Default, err)
	}
	values, isList := raw.([]any)
	if !isList {
		values = []any{raw}
	}
	shape := []int64{}
	if isList {
		shape = []int64{int64(len(values))}
		fixed := true
		var want int64 = 1
		for _, d := range s.Shape {
			fixed = fixed && !d.Dynamic()
			want *= max(d.Size, 0)
		}
		if fixed {
			if want != int64(len(values)) {
				return Tensor{}, fmt.Errorf("default has %d values, shape %s needs %d", len(values), s.shapeString(), want)
			}
			shape = shape[:0]
			for _, d := range s.Shape {
				shape = append(shape, d.Size)
			}
		}
	}
	doc := fmt.Sprintf(`{"default": {"dtype": %q, "shape": %s, "data": %s}}`, s.DType, shapeJSON(shape), listJSON(values))
	_, tensors, err := core.ReadTensorJSON(strings.NewReader(doc), core.DefaultLimits())
	if err != nil {
		return Tensor{}, fmt.Errorf("default of %q: %v", s.Name, err)
	}
	return tensors["default"], nil
}

func shapeJSON(shape []int64) string {
	b, _ := json.Marshal(shape)
	return string(b)
}

func listJSON(values []any) string {
	b, _ := json.Marshal(values) // json.Number values keep their text
	return string(b)
}
