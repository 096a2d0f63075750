package onnxpipe

import (
	"fmt"
	"regexp"
	"slices"

	"github.com/onnxpipe/onnxpipe/runtimes/go/core"
	ort "github.com/yalue/onnxruntime_go"
)

const contribDomain = "ai.onnx.contrib"

// graph is what ONNX Runtime reports about a model file: its manifest (the custom metadata), its inputs
// (without initializer-backed ones: those are the manifest's optional inputs) and outputs.
type graph struct {
	manifest string // "" when the file has none
	domains  []string
	inputs   []ort.InputOutputInfo
	outputs  []ort.InputOutputInfo
}

// unregisteredOp is how ONNX Runtime says a graph uses an op of a domain no library provides.
var unregisteredOp = regexp.MustCompile(`([A-Za-z0-9_.]+):[A-Za-z0-9_]+\(-?\d+\) is not a registered function/op`)

// readGraph reads the model through ONNX Runtime only (metadata and input/output info). A graph whose ops
// need a custom-op domain is retried with the library that provides it (ai.onnx.contrib:
// onnxruntime-extensions); no library is registered for a model that does not need one.
func readGraph(path string, options *ort.SessionOptions, extensionsLib string) (*graph, error) {
	g := &graph{}
	meta, err := ort.GetModelMetadataWithOptions(path, options)
	if m := unregisteredOp.FindStringSubmatch(errText(err)); m != nil {
		if err := registerDomain(path, m[1], options, extensionsLib); err != nil {
			return nil, err
		}
		g.domains = append(g.domains, m[1])
		meta, err = ort.GetModelMetadataWithOptions(path, options)
	}
	if m := unregisteredOp.FindStringSubmatch(errText(err)); m != nil {
		return nil, extensionErr("model file %q needs ops of domain %s that no loaded library provides: %s", path, m[1], ortMessage(err))
	}
	if err != nil {
		return nil, loadErr("model file %q: ONNX Runtime cannot load it: %s", path, ortMessage(err))
	}
	defer meta.Destroy()
	text, found, err := meta.LookupCustomMetadataMap(ManifestKey)
	if err != nil {
		return nil, loadErr("model file %q: cannot read metadata %q: %v", path, ManifestKey, err)
	}
	if found {
		g.manifest = text
	}
	if g.inputs, g.outputs, err = ort.GetInputOutputInfoWithOptions(path, options); err != nil {
		return nil, loadErr("model file %q: cannot read its inputs and outputs: %s", path, ortMessage(err))
	}
	return g, nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func registerDomain(path, domain string, options *ort.SessionOptions, explicit string) error {
	if domain != contribDomain {
		return extensionErr("model file %q uses ops of domain %s; no custom-op library for it is known (only %s: onnxruntime-extensions)", path, domain, contribDomain)
	}
	lib, err := findLibrary("onnxruntime-extensions library", explicit, EnvExtensionsLib, extensionsGlobs)
	if err != nil {
		return extensionErr("model file %q uses %s ops, but the %v%s", path, contribDomain, err, extensionsHint)
	}
	if err := options.RegisterCustomOpsLibrary(lib); err != nil {
		return extensionErr("model file %q uses %s ops, but ONNX Runtime cannot load the onnxruntime-extensions library %q: %v", path, contribDomain, lib, err)
	}
	return nil
}

// signature is the manifest's signature checked against the graph, or (no manifest) the graph's own.
func (g *graph) signature(path string) (*Signature, error) {
	where := fmt.Sprintf("model file %q", path)
	if g.manifest == "" {
		return g.plainSignature(where)
	}
	sig, err := parseManifest(g.manifest, where)
	if err != nil {
		return nil, err
	}
	if err := g.check(sig, where); err != nil {
		return nil, err
	}
	return sig, nil
}

// check refuses a manifest that does not match the graph: every manifest input (but the optional ones,
// which are initializer-backed and so absent from ONNX Runtime's input list) and output must exist with
// the same dtype and rank, and every graph input must be in the manifest.
func (g *graph) check(sig *Signature, where string) error {
	for _, group := range []struct {
		kind  string
		specs []TensorSpec
		info  []ort.InputOutputInfo
	}{{"input", sig.Inputs, g.inputs}, {"output", sig.Outputs, g.outputs}} {
		for _, spec := range group.specs {
			i := slices.IndexFunc(group.info, func(info ort.InputOutputInfo) bool { return info.Name == spec.Name })
			if i < 0 {
				if spec.Optional {
					continue
				}
				return loadErr("%s: the manifest declares %s %q, but the graph has no such %s (graph %ss: %v)", where, group.kind, spec.Name, group.kind, group.kind, infoNames(group.info))
			}
			info := group.info[i]
			if got := dtypeFromORT(info); got != spec.DType || len(info.Dimensions) != len(spec.Shape) {
				return loadErr("%s: manifest %s %q is %s, but the graph's is %s", where, group.kind, spec.Name, spec.describe(), info.String())
			}
		}
	}
	for _, info := range g.inputs {
		if _, ok := sig.Input(info.Name); !ok {
			return loadErr("%s: graph input %q is not in the manifest (manifest inputs: %v)", where, info.Name, sig.inputNames())
		}
	}
	return nil
}

// plainSignature describes a file without a manifest from ONNX Runtime's info: no labels, dims unnamed,
// no run-time parameters (initializer-backed inputs keep their value).
func (g *graph) plainSignature(where string) (*Signature, error) {
	sig := &Signature{Source: "onnxruntime", Domains: append([]string{}, g.domains...), Verification: "unknown"}
	for _, group := range []struct {
		kind string
		info []ort.InputOutputInfo
		dst  *[]TensorSpec
	}{{"input", g.inputs, &sig.Inputs}, {"output", g.outputs, &sig.Outputs}} {
		for _, info := range group.info {
			dtype := dtypeFromORT(info)
			if dtype == "" {
				return nil, loadErr("%s: %s %q: type %s is not supported; expected a tensor of one of %v", where, group.kind, info.Name, info.String(), DTypes)
			}
			spec := TensorSpec{Name: info.Name, DType: dtype, Shape: make([]Dim, len(info.Dimensions))}
			for i, d := range info.Dimensions {
				spec.Shape[i] = Dim{Size: max(d, -1)}
			}
			*group.dst = append(*group.dst, spec)
		}
	}
	return sig, nil
}

func infoNames(infos []ort.InputOutputInfo) []string {
	names := make([]string, len(infos))
	for i, info := range infos {
		names[i] = info.Name
	}
	return names
}

func dtypeFromORT(info ort.InputOutputInfo) DType {
	if info.OrtValueType != ort.ONNXTypeTensor {
		return ""
	}
	return core.FromONNX(int(info.DataType))
}
