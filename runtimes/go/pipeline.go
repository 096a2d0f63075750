package onnxpipe

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

const contribDomain = "ai.onnx.contrib"

// Pipeline is a loaded onnxpipe file. Run is safe for concurrent use by many goroutines; Close releases
// the ONNX Runtime sessions once running calls have finished.
type Pipeline struct {
	path    string
	sig     *Signature
	threads int

	mu       sync.RWMutex // Run holds it shared, Close exclusively
	closed   bool
	options  *ort.SessionOptions
	sessMu   sync.Mutex
	sessions map[uint64]*ort.DynamicAdvancedSession // by the set of optional inputs fed (bit i: optional input i)
	optional []string                               // optional input names, in signature order
}

// Load opens an onnxpipe file (or a plain ONNX file) and prepares it to run. Errors wrap ErrModelLoad
// (unreadable, corrupt, bad manifest, no ONNX Runtime library), ErrMissingExtension (the model needs
// ai.onnx.contrib ops and the onnxruntime-extensions library is not available) or ErrInvalidInput
// (bad option).
func Load(path string, opts ...Option) (*Pipeline, error) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	threads, err := cfg.resolveThreads()
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, loadErr("model file %q: cannot read it (%v)", path, errors.Unwrap(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, loadErr("model file %q: not a regular file", path)
	}
	if err := ensureEnvironment(cfg.ortLib); err != nil {
		return nil, err
	}
	domains, headerErr := opsetDomains(path)
	options, err := sessionOptions(threads)
	if err != nil {
		return nil, err
	}
	p := &Pipeline{path: path, threads: threads, options: options, sessions: map[uint64]*ort.DynamicAdvancedSession{}}
	ok := false
	defer func() {
		if !ok {
			p.release()
		}
	}()
	if slices.Contains(domains, contribDomain) {
		lib, err := findLibrary("onnxruntime-extensions library", cfg.extensionsLib, EnvExtensionsLib, extensionsGlobs)
		if err != nil {
			return nil, extensionErr("model file %q uses %s ops, but the %v%s", path, contribDomain, err, extensionsHint)
		}
		if err := options.RegisterCustomOpsLibrary(lib); err != nil {
			return nil, extensionErr("model file %q uses %s ops, but ONNX Runtime cannot load the onnxruntime-extensions library %q: %v", path, contribDomain, lib, err)
		}
	}
	if headerErr != nil {
		// Let ONNX Runtime give the precise reason, but never report success on a file we cannot parse.
		s, err := ort.NewDynamicAdvancedSession(path, nil, nil, options)
		if err != nil {
			return nil, loadErr("model file %q: ONNX Runtime cannot load it: %s", path, ortMessage(err))
		}
		s.Destroy()
		return nil, loadErr("model file %q: not a readable ONNX ModelProto: %v", path, headerErr)
	}
	if p.sig, err = readSignature(path, options, domains); err != nil {
		return nil, err
	}
	if missing := missingDomains(p.sig.Domains, domains); len(missing) > 0 {
		return nil, loadErr("model file %q: the manifest lists custom-op domains %v that the graph does not import", path, missing)
	}
	for _, in := range p.sig.Inputs {
		if in.Optional {
			p.optional = append(p.optional, in.Name)
		}
	}
	if len(p.optional) > 64 {
		return nil, loadErr("model file %q: %d optional inputs; at most 64 are supported", path, len(p.optional))
	}
	// The session for the common call (required inputs only) is created now so that Load reports any
	// problem with the graph itself.
	if _, err := p.session(0); err != nil {
		return nil, loadErr("model file %q: ONNX Runtime cannot load it: %v", path, err)
	}
	ok = true
	return p, nil
}

func missingDomains(manifestDomains, graphDomains []string) []string {
	var missing []string
	for _, d := range manifestDomains {
		if !slices.Contains(graphDomains, d) {
			missing = append(missing, d)
		}
	}
	return missing
}

func sessionOptions(threads int) (*ort.SessionOptions, error) {
	o, err := ort.NewSessionOptions()
	if err != nil {
		return nil, loadErr("cannot create ONNX Runtime session options: %v", err)
	}
	for _, step := range []error{
		o.SetIntraOpNumThreads(threads),
		o.SetInterOpNumThreads(1),
		o.SetExecutionMode(ort.ExecutionModeSequential),
		// Every failure reaches the caller as an error value, so ONNX Runtime's own log lines would only
		// repeat it on stderr (and break the CLI's one-line errors); overridable-initializer warnings are
		// expected: thresholds are inputs by design.
		o.SetLogSeverityLevel(ort.LoggingLevelFatal),
	} {
		if step != nil {
			o.Destroy()
			return nil, loadErr("cannot configure ONNX Runtime session options: %v", step)
		}
	}
	return o, nil
}

// readSignature reads the manifest through ONNX Runtime's custom-metadata API, or falls back to ONNX
// Runtime's input/output info for a plain ONNX file.
func readSignature(path string, options *ort.SessionOptions, domains []string) (*Signature, error) {
	probe, err := ort.NewDynamicAdvancedSession(path, nil, nil, options)
	if err != nil {
		return nil, loadErr("model file %q: ONNX Runtime cannot load it: %s", path, ortMessage(err))
	}
	defer probe.Destroy()
	meta, err := probe.GetModelMetadata()
	if err != nil {
		return nil, loadErr("model file %q: cannot read its metadata: %v", path, err)
	}
	defer meta.Destroy()
	text, found, err := meta.LookupCustomMetadataMap(ManifestKey)
	if err != nil {
		return nil, loadErr("model file %q: cannot read metadata %q: %v", path, ManifestKey, err)
	}
	if found {
		return parseManifest(text, fmt.Sprintf("model file %q", path))
	}
	inputs, outputs, err := ort.GetInputOutputInfoWithOptions(path, options)
	if err != nil {
		return nil, loadErr("model file %q: cannot read its inputs and outputs: %v", path, err)
	}
	convert := func(infos []ort.InputOutputInfo) []ortInfo {
		out := make([]ortInfo, len(infos))
		for i, in := range infos {
			out[i] = ortInfo{name: in.Name, ortType: in.String(), dims: in.Dimensions}
			if in.OrtValueType == ort.ONNXTypeTensor {
				out[i].dtype = dtypeFromORT(in.DataType)
			}
		}
		return out
	}
	details, err := readGraphDetails(path)
	if err != nil {
		details = nil // ONNX Runtime read the file; without the details dims stay unnamed
	}
	return signatureFromORT(convert(inputs), convert(outputs), domains, details)
}

func dtypeFromORT(t ort.TensorElementDataType) DType {
	switch t {
	case ort.TensorElementDataTypeFloat:
		return Float32
	case ort.TensorElementDataTypeDouble:
		return Float64
	case ort.TensorElementDataTypeInt64:
		return Int64
	case ort.TensorElementDataTypeInt32:
		return Int32
	case ort.TensorElementDataTypeUint8:
		return Uint8
	case ort.TensorElementDataTypeInt8:
		return Int8
	case ort.TensorElementDataTypeBool:
		return Bool
	case ort.TensorElementDataTypeString:
		return String
	}
	return ""
}

// session returns the ONNX Runtime session whose inputs are the required inputs plus the optional inputs
// in mask. Each set of fed inputs needs its own session because onnxruntime_go fixes the input names of a
// session at creation, and an omitted optional input must not be fed (ONNX Runtime then uses the
// initializer). Sessions are created on first use and kept until Close.
func (p *Pipeline) session(mask uint64) (*ort.DynamicAdvancedSession, error) {
	p.sessMu.Lock()
	defer p.sessMu.Unlock()
	if s, ok := p.sessions[mask]; ok {
		return s, nil
	}
	var names []string
	k := 0
	for _, in := range p.sig.Inputs {
		if !in.Optional {
			names = append(names, in.Name)
			continue
		}
		if mask&(1<<k) != 0 {
			names = append(names, in.Name)
		}
		k++
	}
	s, err := ort.NewDynamicAdvancedSession(p.path, names, p.sig.outputNames(), p.options)
	if err != nil {
		return nil, fmt.Errorf("cannot create a session for inputs %v: %s", names, ortMessage(err))
	}
	p.sessions[mask] = s
	return s, nil
}

// Signature returns the pipeline's signature (a copy: changing it does not affect the pipeline).
func (p *Pipeline) Signature() *Signature { return p.sig.clone() }

// Path returns the file the pipeline was loaded from.
func (p *Pipeline) Path() string { return p.path }

// Threads returns the intra-op threads of the pipeline's sessions.
func (p *Pipeline) Threads() int { return p.threads }

// Close releases the ONNX Runtime sessions after running calls have returned. Later Runs return
// ErrClosed; closing twice is a no-op.
func (p *Pipeline) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	return p.release()
}

func (p *Pipeline) release() error {
	p.sessMu.Lock()
	defer p.sessMu.Unlock()
	var errs []error
	for k, s := range p.sessions {
		errs = append(errs, s.Destroy())
		delete(p.sessions, k)
	}
	if p.options != nil {
		errs = append(errs, p.options.Destroy())
		p.options = nil
	}
	if err := errors.Join(errs...); err != nil {
		return runtimeErr("closing %q: %v", p.path, err)
	}
	return nil
}

// Run runs the pipeline on named inputs and returns every output in signature order. Inputs are checked
// against the signature before ONNX Runtime is called (ErrInvalidInput names the input, what was given
// and what is expected); optional inputs that are omitted keep their default. ctx is checked before and
// after the ONNX Runtime call, and cancelling it during the call asks ONNX Runtime to stop.
func (p *Pipeline) Run(ctx context.Context, inputs map[string]Tensor) (Outputs, error) {
	if err := ctxErr(ctx); err != nil {
		return Outputs{}, err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return Outputs{}, fmt.Errorf("%w: %q was closed", ErrClosed, p.path)
	}
	mask, err := p.validate(inputs)
	if err != nil {
		return Outputs{}, err
	}
	sess, err := p.session(mask)
	if err != nil {
		return Outputs{}, runtimeErr("model file %q: %v", p.path, err)
	}
	var values []ort.Value
	defer func() { destroyAll(values) }()
	for _, in := range p.sig.Inputs {
		t, ok := inputs[in.Name]
		if !ok {
			continue
		}
		v, err := toORT(t)
		if err != nil {
			return Outputs{}, fmt.Errorf("input %q: %w", in.Name, err)
		}
		values = append(values, v)
	}
	outs := make([]ort.Value, len(p.sig.Outputs))
	defer func() { destroyAll(outs) }()
	for i, spec := range p.sig.Outputs {
		// onnxruntime_go cannot wrap an ONNX-Runtime-allocated numeric scalar; give it a buffer instead.
		if len(spec.Shape) == 0 && spec.DType != String {
			if outs[i], err = newScalar(spec.DType); err != nil {
				return Outputs{}, runtimeErr("output %q: %v", spec.Name, err)
			}
		}
	}
	if err := runWithContext(ctx, sess, values, outs); err != nil {
		if cerr := ctxErr(ctx); cerr != nil {
			return Outputs{}, cerr
		}
		return Outputs{}, runtimeErr("ONNX Runtime failed on %q: %s", p.path, ortMessage(err))
	}
	result := Outputs{names: p.sig.outputNames(), tensors: make(map[string]Tensor, len(outs))}
	for i, spec := range p.sig.Outputs {
		t, err := fromORT(outs[i])
		if err != nil {
			return Outputs{}, runtimeErr("output %q: %v", spec.Name, err)
		}
		if t.dtype != spec.DType {
			return Outputs{}, runtimeErr("output %q is %s, but the signature declares %s", spec.Name, t.describe(), spec.describe())
		}
		result.tensors[spec.Name] = t
	}
	if err := ctxErr(ctx); err != nil {
		return Outputs{}, err
	}
	return result, nil
}

// ortMessage is ONNX Runtime's own message, without onnxruntime_go's "Error creating ...: " prefix.
func ortMessage(err error) string {
	if inner := errors.Unwrap(err); inner != nil {
		return inner.Error()
	}
	return err.Error()
}

func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", errCancelled, err)
	}
	return nil
}

// runWithContext runs sess and, if ctx ends during the call, sets ONNX Runtime's terminate flag.
func runWithContext(ctx context.Context, sess *ort.DynamicAdvancedSession, inputs, outputs []ort.Value) error {
	if ctx.Done() == nil {
		return sess.Run(inputs, outputs)
	}
	ro, err := ort.NewRunOptions()
	if err != nil {
		return err
	}
	done := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(done)
		ro.Terminate()
	})
	err = sess.RunWithOptions(inputs, outputs, ro)
	if !stop() {
		<-done // the terminate call is running or ran: wait before freeing ro
	}
	ro.Destroy()
	return err
}

func destroyAll(values []ort.Value) {
	for _, v := range values {
		if v != nil {
			v.Destroy()
		}
	}
}
