package onnxpipe

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/onnxpipe/onnxpipe/runtimes/go/core"
	ort "github.com/yalue/onnxruntime_go"
)

// Pipeline is a loaded onnxpipe file: one ONNX Runtime session, fed every input on every run (run-time
// parameters the caller omits get the manifest's default). Run is safe for concurrent use by many
// goroutines; Close releases the session once running calls have finished.
type Pipeline struct {
	path     string
	sig      *Signature
	outNames []string
	threads  int

	mu       sync.RWMutex // Run holds it shared, Close exclusively
	closed   bool
	options  *ort.SessionOptions
	session  *ort.DynamicAdvancedSession
	defaults []ort.Value // per signature input: the manifest default of an optional input, else nil
}

// Load opens an onnxpipe file (or a plain ONNX file) and prepares it to run. Errors wrap ErrModelLoad
// (unreadable, corrupt, bad manifest, manifest not matching the graph, no ONNX Runtime library),
// ErrMissingExtension (the graph needs custom ops whose library is not available) or ErrInvalidInput (bad
// option).
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
	options, err := sessionOptions(threads)
	if err != nil {
		return nil, err
	}
	p := &Pipeline{path: path, threads: threads, options: options}
	ok := false
	defer func() {
		if !ok {
			p.release()
		}
	}()
	graph, err := readGraph(path, options, cfg.extensionsLib)
	if err != nil {
		return nil, err
	}
	if p.sig, err = graph.signature(path); err != nil {
		return nil, err
	}
	p.outNames = p.sig.outputNames()
	p.session, err = ort.NewDynamicAdvancedSession(path, p.sig.inputNames(), p.outNames, options)
	if err != nil {
		return nil, loadErr("model file %q: ONNX Runtime cannot load it: %s", path, ortMessage(err))
	}
	if p.defaults, err = defaultValues(p.sig); err != nil {
		return nil, loadErr("model file %q: %v", path, err)
	}
	ok = true
	return p, nil
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

// defaultValues holds each optional input's manifest default as an ONNX Runtime value, made once: every
// run feeds every input (spec/README.md, thresholds), so one session serves every call.
func defaultValues(sig *Signature) ([]ort.Value, error) {
	values := make([]ort.Value, len(sig.Inputs))
	for i, in := range sig.Inputs {
		if !in.Optional {
			continue
		}
		t, err := in.DefaultValue()
		if err != nil {
			destroyAll(values)
			return nil, fmt.Errorf("input %q: %v", in.Name, err)
		}
		if values[i], err = toORT(t); err != nil {
			destroyAll(values)
			return nil, fmt.Errorf("input %q: default %v: %v", in.Name, t, err)
		}
	}
	return values, nil
}

// Signature returns the pipeline's signature (a copy: changing it does not affect the pipeline).
func (p *Pipeline) Signature() *Signature { return p.sig.clone() }

// Path returns the file the pipeline was loaded from.
func (p *Pipeline) Path() string { return p.path }

// Threads returns the intra-op threads of the pipeline's session.
func (p *Pipeline) Threads() int { return p.threads }

// Close releases the ONNX Runtime session after running calls have returned. Later Runs return
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
	var errs []error
	if p.session != nil {
		errs = append(errs, p.session.Destroy())
		p.session = nil
	}
	destroyAll(p.defaults)
	p.defaults = nil
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
// and what is expected); a dtype listed in the input's widens_from (spec/dtypes.json) is converted;
// optional inputs that are omitted get their manifest default. ctx is checked before and after the ONNX
// Runtime call, and cancelling it during the call asks ONNX Runtime to stop.
func (p *Pipeline) Run(ctx context.Context, inputs map[string]Tensor) (Outputs, error) {
	if err := ctxErr(ctx); err != nil {
		return Outputs{}, err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return Outputs{}, fmt.Errorf("%w: %q was closed", ErrClosed, p.path)
	}
	given, err := p.validate(inputs)
	if err != nil {
		return Outputs{}, err
	}
	values := make([]ort.Value, len(p.sig.Inputs))
	owned := make([]ort.Value, 0, len(values))
	defer func() { destroyAll(owned) }()
	for i, in := range p.sig.Inputs {
		if given[i].DType() == "" {
			values[i] = p.defaults[i]
			continue
		}
		v, err := toORT(given[i])
		if err != nil {
			return Outputs{}, fmt.Errorf("input %q: %w", in.Name, err)
		}
		values[i] = v
		owned = append(owned, v)
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
	if err := runWithContext(ctx, p.session, values, outs); err != nil {
		if cerr := ctxErr(ctx); cerr != nil {
			return Outputs{}, cerr
		}
		return Outputs{}, runtimeErr("ONNX Runtime failed on %q: %s", p.path, ortMessage(err))
	}
	return p.collect(ctx, outs)
}

func (p *Pipeline) collect(ctx context.Context, outs []ort.Value) (Outputs, error) {
	result := Outputs{names: p.outNames, tensors: make(map[string]Tensor, len(outs))}
	for i, spec := range p.sig.Outputs {
		t, err := fromORT(outs[i])
		if err != nil {
			return Outputs{}, runtimeErr("output %q: %v", spec.Name, err)
		}
		if t.DType() != spec.DType {
			return Outputs{}, runtimeErr("output %q is %s, but the signature declares %s", spec.Name, t.Describe(), spec.describe())
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

var errCancelled = core.ErrCancelled

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
