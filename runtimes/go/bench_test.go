package onnxpipe_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	onnxpipe "github.com/onnxpipe/onnxpipe/runtimes/go"
	"github.com/onnxpipe/onnxpipe/runtimes/go/internal/vectortest"
	ort "github.com/yalue/onnxruntime_go"
)

// The runtime's cost (issue 11 §7): Pipeline.Run against the raw onnxruntime_go API on the same file, with
// the same session options (1 intra-op thread, sequential) and the same inputs, interleaved call by call so
// that both see the same machine. `make bench` prints the table:
//
//	go test -run '^$' -bench Overhead -benchtime 200x .
//
// Reported per benchmark: onnxpipe-ns/op, raw-ns/op (medians over blocks of calls) and overhead-% (the
// target is <= 5 %).
func BenchmarkOverhead(b *testing.B) {
	root := vectortest.RepoRoot()
	models := []struct{ name, path, vectors string }{
		{"digits", filepath.Join(root, "tests", "vectors", "digits", "model.onnx"), "digits"},
		{"minilm", minilmPath(root), "minilm"},
	}
	for _, m := range models {
		for _, batch := range []int{1, 8} {
			b.Run(m.name+"/batch"+string(rune('0'+batch)), func(b *testing.B) {
				if m.path == "" {
					b.Skip("MiniLM is not built (build/models/minilm.onnx or tests/vectors/minilm/model.generated.onnx): run 'make generated-models' at the repository root")
				}
				inputs := batchInputs(b, filepath.Join(root, "tests", "vectors", m.vectors, "inputs_0.json"), batch)
				compare(b, m.path, inputs)
			})
		}
	}
}

func minilmPath(root string) string {
	for _, p := range []string{filepath.Join(root, "build", "models", "minilm.onnx"), filepath.Join(root, "tests", "vectors", "minilm", "model.generated.onnx")} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// batchInputs repeats the first row of a vector case's inputs batch times.
func batchInputs(b *testing.B, path string, batch int) map[string]onnxpipe.Tensor {
	_, in, err := vectortest.ReadTensors(path)
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]onnxpipe.Tensor{}
	for name, t := range in {
		shape := t.Shape()
		rows := int(shape[0])
		shape[0] = int64(batch)
		var err error
		switch d := t.Values().(type) {
		case []uint8:
			out[name], err = onnxpipe.NewTensor(shape, repeatRow(d, rows, batch))
		case []float32:
			out[name], err = onnxpipe.NewTensor(shape, repeatRow(d, rows, batch))
		case []int64:
			out[name], err = onnxpipe.NewTensor(shape, repeatRow(d, rows, batch))
		case []string:
			out[name], err = onnxpipe.NewStringTensor(shape, repeatRow(d, rows, batch))
		default:
			b.Fatalf("input %q: %s is not handled here", name, t.DType())
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	return out
}

func repeatRow[T any](data []T, rows, batch int) []T {
	row := data[:len(data)/rows]
	out := make([]T, 0, len(row)*batch)
	for range batch {
		out = append(out, row...)
	}
	return out
}

// compare runs both paths in alternating blocks and reports the median block time of each.
func compare(b *testing.B, path string, inputs map[string]onnxpipe.Tensor) {
	p, err := onnxpipe.Load(path, onnxpipe.WithThreads(1))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	raw := newRawRunner(b, path, p.Signature(), inputs)
	defer raw.close()
	ctx := context.Background()
	runPipe := func() {
		if _, err := p.Run(ctx, inputs); err != nil {
			b.Fatal(err)
		}
	}
	for range 5 { // warm-up: first runs allocate ONNX Runtime's arenas
		runPipe()
		raw.run(b)
	}
	const block = 10
	var pipeTimes, rawTimes []float64
	timeBlock := func(run func()) float64 {
		start := time.Now()
		for range block {
			run()
		}
		return float64(time.Since(start).Nanoseconds()) / block
	}
	b.ResetTimer()
	for done := 0; done < b.N; done += block {
		// Which path goes first alternates: neither always runs on the caches the other warmed.
		if len(pipeTimes)%2 == 0 {
			pipeTimes = append(pipeTimes, timeBlock(runPipe))
			rawTimes = append(rawTimes, timeBlock(func() { raw.run(b) }))
		} else {
			rawTimes = append(rawTimes, timeBlock(func() { raw.run(b) }))
			pipeTimes = append(pipeTimes, timeBlock(runPipe))
		}
	}
	b.StopTimer()
	pipe, rawMedian := median(pipeTimes), median(rawTimes)
	b.ReportMetric(0, "ns/op") // the two medians below are the figures
	b.ReportMetric(pipe, "onnxpipe-ns/op")
	b.ReportMetric(rawMedian, "raw-ns/op")
	b.ReportMetric(100*(pipe-rawMedian)/rawMedian, "overhead-%")
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// rawRunner is what a user of onnxruntime_go would write for the same file: one session with the same
// options, inputs wrapped per call, outputs allocated by ONNX Runtime and read back into Go.
type rawRunner struct {
	options *ort.SessionOptions
	session *ort.DynamicAdvancedSession
	names   []string
	inputs  map[string]onnxpipe.Tensor
	outputs int
}

func newRawRunner(b *testing.B, path string, sig *onnxpipe.Signature, inputs map[string]onnxpipe.Tensor) *rawRunner {
	o, err := ort.NewSessionOptions()
	if err != nil {
		b.Fatal(err)
	}
	for _, step := range []error{o.SetIntraOpNumThreads(1), o.SetInterOpNumThreads(1), o.SetExecutionMode(ort.ExecutionModeSequential), o.SetLogSeverityLevel(ort.LoggingLevelFatal)} {
		if step != nil {
			b.Fatal(step)
		}
	}
	if len(sig.Domains) > 0 {
		lib, err := onnxpipe.ExtensionsLibrary("")
		if err != nil {
			b.Fatal(err)
		}
		if err := o.RegisterCustomOpsLibrary(lib); err != nil {
			b.Fatal(err)
		}
	}
	r := &rawRunner{options: o, inputs: inputs, names: sig.Required(), outputs: len(sig.Outputs)}
	var outNames []string
	for _, out := range sig.Outputs {
		outNames = append(outNames, out.Name)
	}
	if r.session, err = ort.NewDynamicAdvancedSession(path, r.names, outNames, o); err != nil {
		b.Fatal(err)
	}
	return r
}

func (r *rawRunner) run(b *testing.B) {
	in := make([]ort.Value, len(r.names))
	for i, name := range r.names {
		t := r.inputs[name]
		var err error
		switch d := t.Values().(type) {
		case []uint8:
			in[i], err = ort.NewTensor(ort.Shape(t.Shape()), d)
		case []float32:
			in[i], err = ort.NewTensor(ort.Shape(t.Shape()), d)
		case []int64:
			in[i], err = ort.NewTensor(ort.Shape(t.Shape()), d)
		case []string:
			var st *ort.StringTensor
			if st, err = ort.NewStringTensor(ort.Shape(t.Shape())); err == nil {
				err = st.SetContents(d)
				in[i] = st
			}
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	out := make([]ort.Value, r.outputs)
	if err := r.session.Run(in, out); err != nil {
		b.Fatal(err)
	}
	for _, v := range out {
		switch x := v.(type) {
		case *ort.Tensor[float32]:
			_ = x.GetData()
		case *ort.Tensor[int64]:
			_ = x.GetData()
		case *ort.StringTensor:
			if _, err := x.GetContents(); err != nil {
				b.Fatal(err)
			}
		}
		v.Destroy()
	}
	for _, v := range in {
		v.Destroy()
	}
}

func (r *rawRunner) close() {
	r.session.Destroy()
	r.options.Destroy()
}
