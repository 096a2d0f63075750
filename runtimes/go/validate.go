package onnxpipe

import (
	"math"
	"slices"
	"strings"
	"unicode/utf8"
)

// validate checks inputs against the signature and returns the mask of optional inputs given.
func (p *Pipeline) validate(inputs map[string]Tensor) (uint64, error) {
	for name := range inputs {
		if _, ok := p.sig.Input(name); !ok {
			return 0, inputErr("unknown input %q; expected one of %v", name, p.sig.inputNames())
		}
	}
	var mask uint64
	dims := map[string]struct {
		input string
		size  int64
	}{}
	k := 0
	for _, spec := range p.sig.Inputs {
		t, given := inputs[spec.Name]
		if spec.Optional {
			if given {
				mask |= 1 << k
			}
			k++
		}
		if !given {
			if !spec.Optional {
				return 0, inputErr("missing input %q (%s); required: %v", spec.Name, spec.describe(), p.sig.Required())
			}
			continue
		}
		if t.dtype == "" {
			return 0, inputErr("input %q: an empty Tensor{} given, expected %s (build it with NewTensor)", spec.Name, spec.describe())
		}
		if t.dtype != spec.DType {
			return 0, inputErr("input %q: dtype %s given (shape %v), expected %s", spec.Name, t.dtype, formatShape(t.shape), spec.describe())
		}
		if t.dtype == String {
			why := "onnxruntime_go passes strings to ONNX Runtime as C strings, which end there"
			if slices.Contains(p.sig.Domains, contribDomain) {
				why = "this pipeline's string ops (" + contribDomain + ") would silently drop everything after it"
			}
			if err := rejectNUL(spec.Name, t.Strings(), why); err != nil {
				return 0, err
			}
		}
		if err := checkRange(spec, t); err != nil {
			return 0, err
		}
		if len(t.shape) != len(spec.Shape) {
			return 0, inputErr("input %q: rank %d (shape %s) given, expected rank %d %s", spec.Name, len(t.shape), formatShape(t.shape), len(spec.Shape), spec.shapeString())
		}
		for axis, want := range spec.Shape {
			got := t.shape[axis]
			if !want.Dynamic() && want.Size != got {
				return 0, inputErr("input %q: dimension %d is %d (shape %s), expected %d %s", spec.Name, axis, got, formatShape(t.shape), want.Size, spec.shapeString())
			}
			if want.Dynamic() && want.Name != "" {
				seen, ok := dims[want.Name]
				if !ok {
					dims[want.Name] = struct {
						input string
						size  int64
					}{spec.Name, got}
				} else if seen.size != got {
					return 0, inputErr("input %q: dimension %d (%q) is %d, but input %q has %q = %d; inputs sharing a dimension name must agree", spec.Name, axis, want.Name, got, seen.input, want.Name, seen.size)
				}
			}
		}
		if count, err := elementCount(t.shape); err != nil || int64(t.Len()) != count {
			return 0, inputErr("input %q: shape %s needs %d values but the tensor holds %d", spec.Name, formatShape(t.shape), count, t.Len())
		}
	}
	return mask, nil
}

// rejectNUL refuses strings holding a NUL character rather than lose what follows it: onnxruntime_go hands
// strings to ONNX Runtime as C strings (for every model), and onnxruntime-extensions' string ops end a string
// there too. The position counts characters (runes), as the Python runtime does.
func rejectNUL(input string, data []string, why string) error {
	for i, s := range data {
		if at := strings.IndexByte(s, 0); at >= 0 {
			return inputErr("input %q: element %d contains a NUL character at position %d; %s", input, i, utf8.RuneCountInString(s[:at]), why)
		}
	}
	return nil
}

// checkRange refuses a run-time parameter that is not a finite number inside the manifest's range.
func checkRange(spec TensorSpec, t Tensor) error {
	if !spec.Optional || len(spec.Range) != 2 || t.dtype != Float32 {
		return nil
	}
	values, _ := t.data.([]float32)
	for _, v := range values {
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) || f < spec.Range[0] || f > spec.Range[1] {
			return inputErr("input %q: %g given, expected one number in [%g, %g]", spec.Name, f, spec.Range[0], spec.Range[1])
		}
	}
	return nil
}
