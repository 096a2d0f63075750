package onnxpipe

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/onnxpipe/onnxpipe/runtimes/go/core"
)

// validate checks inputs against the signature and returns them in signature order, widened to the
// declared dtype where spec/dtypes.json allows; an omitted optional input is the zero Tensor.
func (p *Pipeline) validate(inputs map[string]Tensor) ([]Tensor, error) {
	for name := range inputs {
		if _, ok := p.sig.Input(name); !ok {
			return nil, inputErr("unknown input %q; expected one of %v", core.Clip(name), p.sig.inputNames())
		}
	}
	given := make([]Tensor, len(p.sig.Inputs))
	dims := map[string]namedDim{}
	for i, spec := range p.sig.Inputs {
		t, ok := inputs[spec.Name]
		if !ok {
			if !spec.Optional {
				return nil, inputErr("missing input %q (%s); required: %v", spec.Name, spec.describe(), p.sig.Required())
			}
			continue
		}
		t, err := p.checkInput(spec, t, dims)
		if err != nil {
			return nil, err
		}
		if t.Len() == 0 && !spec.Optional && (p.sig.Precision == "int8" || p.sig.Precision == "mixed") {
			// ONNX Runtime's quantized kernels divide by zero on an empty tensor and the process dies with
			// SIGFPE (ORT 1.31.1, MiniLM int8; spec/README.md "Inputs"): refused before native code.
			return nil, inputErr("input %q: shape %s has no elements; this pipeline's model stage is %s, and ONNX Runtime's quantized kernels abort the process on empty tensors: give at least one element per dimension",
				spec.Name, core.FormatShape(t.Shape()), p.sig.Precision)
		}
		given[i] = t
	}
	return given, nil
}

// namedDim is the first input that fixed a named dimension, and its size.
type namedDim struct {
	input string
	size  int64
}

func (p *Pipeline) checkInput(spec TensorSpec, t Tensor, dims map[string]namedDim) (Tensor, error) {
	if t.DType() == "" {
		return Tensor{}, inputErr("input %q: an empty Tensor{} given, expected %s (build it with NewTensor)", spec.Name, spec.describe())
	}
	if t.DType() != spec.DType {
		widened, ok := core.Widen(t, spec.DType)
		if !ok {
			info, _ := spec.DType.Info()
			return Tensor{}, inputErr("input %q: dtype %s given (shape %s), expected %s (or one of %v, widened losslessly)",
				spec.Name, t.DType(), core.FormatShape(t.Shape()), spec.describe(), info.WidensFrom)
		}
		t = widened
	}
	if t.DType() == String && slices.Contains(p.sig.Domains, contribDomain) {
		why := "this pipeline's string ops (" + contribDomain + ") would silently drop everything after it"
		if err := rejectNUL(spec.Name, t.Strings(), why); err != nil {
			return Tensor{}, err
		}
	}
	if err := checkRange(spec, t); err != nil {
		return Tensor{}, err
	}
	if t.Rank() != len(spec.Shape) {
		return Tensor{}, inputErr("input %q: rank %d (shape %s) given, expected rank %d %s", spec.Name, t.Rank(), core.FormatShape(t.Shape()), len(spec.Shape), spec.shapeString())
	}
	count := int64(1)
	for axis, want := range spec.Shape {
		got := t.Dim(axis)
		count *= got // Tensor's constructors have checked the dims and their product
		if !want.Dynamic() && want.Size != got {
			return Tensor{}, inputErr("input %q: dimension %d is %d (shape %s), expected %d %s", spec.Name, axis, got, core.FormatShape(t.Shape()), want.Size, spec.shapeString())
		}
		if want.Dynamic() && want.Name != "" {
			seen, ok := dims[want.Name]
			if !ok {
				dims[want.Name] = namedDim{spec.Name, got}
			} else if seen.size != got {
				return Tensor{}, inputErr("input %q: dimension %d (%q) is %d, but input %q has %q = %d; inputs sharing a dimension name must agree", spec.Name, axis, want.Name, got, seen.input, want.Name, seen.size)
			}
		}
	}
	if int64(t.Len()) != count {
		return Tensor{}, inputErr("input %q: shape %s needs %d values but the tensor holds %d", spec.Name, core.FormatShape(t.Shape()), count, t.Len())
	}
	return t, nil
}

// rejectNUL refuses strings holding a NUL character rather than lose what follows it: onnxruntime-extensions'
// string ops end a string there (strings reach ONNX Runtime whole: see newStringTensor). The position counts characters (runes), as the Python runtime does.
func rejectNUL(input string, data []string, why string) error {
	for i, s := range data {
		if at := strings.IndexByte(s, 0); at >= 0 {
			return inputErr("input %q: element %d contains a NUL character at position %d; %s", input, i, utf8.RuneCountInString(s[:at]), why)
		}
	}
	return nil
}

// checkRange refuses a run-time parameter that is not a finite number, or is outside the manifest's range
// when it gives one.
func checkRange(spec TensorSpec, t Tensor) error {
	if !spec.Optional {
		return nil
	}
	var values []float64
	switch d := t.Values().(type) {
	case []float32:
		for _, v := range d {
			values = append(values, float64(v))
		}
	case []float64:
		values = d
	default:
		return nil
	}
	for _, f := range values {
		inRange := len(spec.Range) != 2 || f >= spec.Range[0] && f <= spec.Range[1]
		if math.IsNaN(f) || math.IsInf(f, 0) || !inRange {
			want := "a finite number"
			if len(spec.Range) == 2 {
				want = fmt.Sprintf("one number in [%g, %g]", spec.Range[0], spec.Range[1])
			}
			return inputErr("input %q: %g given, expected %s", spec.Name, f, want)
		}
	}
	return nil
}
