package onnxpipe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/onnxpipe/onnxpipe/runtimes/go/core"
)

// Bad inputs are rejected before ONNX Runtime with ErrInvalidInput and a message naming the input, what
// was given and what is expected.
func TestBadInputs(t *testing.T) {
	p := loadT(t, fixture(t, "basic.onnx"))
	with := func(change func(map[string]Tensor)) map[string]Tensor {
		in := basicInputs(2)
		change(in)
		return in
	}
	cases := []struct {
		name   string
		inputs map[string]Tensor
		want   []string // substrings of the message
	}{
		{"missing", with(func(m map[string]Tensor) { delete(m, "pixels") }),
			[]string{`missing input "pixels"`, "uint8 [batch, height, width, 3]", "required: [features pixels]"}},
		{"nil map", nil, []string{`missing input "features"`}},
		{"unknown", with(func(m map[string]Tensor) { m["image"] = MustTensor([]int64{1}, []float32{1}) }),
			[]string{`unknown input "image"`, "expected one of [features pixels score_threshold]"}},
		{"wrong dtype", with(func(m map[string]Tensor) { m["features"] = MustTensor([]int64{2, 3}, make([]float64, 6)) }),
			[]string{`input "features"`, "dtype float64 given", "expected float32 [batch, 3]"}},
		{"strings for numbers", with(func(m map[string]Tensor) {
			m["features"], _ = NewStringTensor([]int64{2, 3}, []string{"a", "b", "c", "d", "e", "f"})
		}), []string{`input "features"`, "dtype string given", "expected float32"}},
		{"wrong rank", with(func(m map[string]Tensor) { m["features"] = MustTensor([]int64{6}, make([]float32, 6)) }),
			[]string{`input "features"`, "rank 1 (shape [6]) given", "expected rank 2 [batch, 3]"}},
		{"wrong fixed dim", with(func(m map[string]Tensor) { m["features"] = MustTensor([]int64{2, 4}, make([]float32, 8)) }),
			[]string{`input "features"`, "dimension 1 is 4", "expected 3 [batch, 3]"}},
		{"fixed channel dim", with(func(m map[string]Tensor) { m["pixels"] = MustTensor([]int64{2, 2, 2, 4}, make([]uint8, 32)) }),
			[]string{`input "pixels"`, "dimension 3 is 4", "expected 3"}},
		{"named dims disagree", with(func(m map[string]Tensor) { m["pixels"] = MustTensor([]int64{3, 2, 2, 3}, make([]uint8, 36)) }),
			[]string{`input "pixels"`, `("batch") is 3`, `input "features" has "batch" = 2`}},
		{"zero tensor", with(func(m map[string]Tensor) { m["features"] = Tensor{} }),
			[]string{`input "features"`, "empty Tensor{}", "expected float32 [batch, 3]"}},
		{"optional wrong rank", with(func(m map[string]Tensor) { m["score_threshold"] = MustTensor([]int64{1}, []float32{0.5}) }),
			[]string{`input "score_threshold"`, "rank 1", "expected rank 0 []"}},
		{"optional wrong dtype", with(func(m map[string]Tensor) { m["score_threshold"] = Scalar(0.5) }),
			[]string{`input "score_threshold"`, "dtype float64 given", "expected float32 []"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := p.Run(bg, c.inputs)
			if !errors.Is(err, ErrInvalidInput) || Code(err) != "INVALID_INPUT" {
				t.Fatalf("Run: %v (code %q); want ErrInvalidInput", err, Code(err))
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	// The pipeline still works after rejecting all of that.
	if _, err := p.Run(bg, basicInputs(1)); err != nil {
		t.Fatalf("Run after bad inputs: %v", err)
	}
}

func TestTensorConstructorsValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"short data", func() error { _, err := NewTensor([]int64{2, 3}, make([]float32, 5)); return err }(), "needs 6 values but data has 5"},
		{"negative dim", func() error { _, err := NewTensor([]int64{-1, 3}, make([]int64, 3)); return err }(), "dimension 0 is -1"},
		{"strings", func() error { _, err := NewStringTensor([]int64{1}, nil); return err }(), "needs 1 values but data has 0"},
		{"stack mismatch", func() error {
			_, err := Stack(MustTensor([]int64{2}, []uint8{1, 2}), MustTensor([]int64{3}, []uint8{1, 2, 3}))
			return err
		}(), "tensor 1 is uint8 [3], expected uint8 [2]"},
	} {
		if !errors.Is(c.err, ErrInvalidInput) || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s: %v; want ErrInvalidInput containing %q", c.name, c.err, c.want)
		}
	}
}

func TestEmptyBatch(t *testing.T) {
	p := loadT(t, fixture(t, "basic.onnx"))
	in := map[string]Tensor{
		"features": MustTensor([]int64{0, 3}, []float32{}),
		"pixels":   MustTensor([]int64{0, 5, 5, 3}, []uint8{}),
	}
	out, err := p.Run(bg, in)
	if err != nil {
		t.Fatalf("Run on an empty batch: %v", err)
	}
	for name, want := range map[string]string{"score": "[0, 3]", "pixel_sum": "[0]"} {
		if shape, err := out.Shape(name); err != nil || core.FormatShape(shape) != want {
			t.Errorf("output %q shape %v (%v), want %s", name, shape, err, want)
		}
	}
	// (ONNX Runtime's ArgMax gives [0, 3], not [0], on an empty batch; the Python runtime sees the same.)
	for _, name := range out.Names() {
		if tt, _ := out.Tensor(name); tt.Len() != 0 {
			t.Errorf("output %q has %d elements, want 0", name, tt.Len())
		}
	}
}

func TestOptionalInputDefaultAndOverride(t *testing.T) {
	p := loadT(t, fixture(t, "basic.onnx"))
	// features [0.1, 0.2, 0.3]: max softmax score 0.3672, so confident iff threshold <= 0.3672.
	in := map[string]Tensor{
		"features": MustTensor([]int64{1, 3}, []float32{0.1, 0.2, 0.3}),
		"pixels":   MustTensor([]int64{1, 1, 1, 3}, []uint8{1, 2, 3}),
	}
	confident := func(in map[string]Tensor) bool {
		out, err := p.Run(bg, in)
		if err != nil {
			t.Fatal(err)
		}
		c, err := out.Bool("confident")
		if err != nil {
			t.Fatal(err)
		}
		return c[0]
	}
	if confident(in) {
		t.Error("default threshold 0.5: confident = true, want false")
	}
	in["score_threshold"] = Scalar(float32(0.2))
	if !confident(in) {
		t.Error("threshold 0.2: confident = false, want true")
	}
	spec, _ := p.Signature().Input("score_threshold")
	def, err := spec.DefaultValue()
	if err != nil || def.DType() != Float32 || def.Rank() != 0 || def.Values().([]float32)[0] != 0.5 {
		t.Errorf("DefaultValue() = %v %v, want float32 scalar 0.5", def.Values(), err)
	}
}

func TestOutputsAccessors(t *testing.T) {
	p := loadT(t, fixture(t, "basic.onnx"))
	out, err := p.Run(bg, basicInputs(2))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(out.Names(), ","); got != "score,label_id,label,confident,pixel_sum" {
		t.Errorf("Names() = %s, want manifest order", got)
	}
	if _, err := out.Int64("score"); !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), `output "score" is float32 [2, 3], not int64`) {
		t.Errorf("Int64(score): %v", err)
	}
	if _, err := out.Tensor("nope"); err == nil || !strings.Contains(err.Error(), `no output "nope"`) {
		t.Errorf("Tensor(nope): %v", err)
	}
	labels, err := out.Strings("label")
	if err != nil || len(labels) != 2 {
		t.Errorf("Strings(label) = %v, %v", labels, err)
	}
}

func TestModelLoadErrors(t *testing.T) {
	dir := t.TempDir()
	basic, err := os.ReadFile(fixture(t, "basic.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	// Same-length edits of the manifest keep the protobuf valid.
	edit := func(name, old, new string) string {
		if len(old) != len(new) || !bytes.Contains(basic, []byte(old)) {
			t.Fatalf("bad edit %q -> %q", old, new)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, bytes.Replace(basic, []byte(old), []byte(new), 1), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	truncated := filepath.Join(dir, "truncated.onnx")
	os.WriteFile(truncated, basic[:len(basic)/2], 0o644)
	empty := filepath.Join(dir, "empty.onnx")
	os.WriteFile(empty, nil, 0o644)
	for _, c := range []struct {
		name, path string
		want       []string
	}{
		{"corrupt", fixture(t, "corrupt.onnx"), []string{"corrupt.onnx", "cannot load it"}},
		{"missing file", filepath.Join(dir, "nope.onnx"), []string{"nope.onnx", "cannot read it", "no such file"}},
		{"directory", dir, []string{"not a regular file"}},
		{"truncated", truncated, []string{"truncated.onnx"}},
		{"empty", empty, []string{"empty.onnx"}},
		{"future manifest", edit("future.onnx", `"format_version":1`, `"format_version":9`), []string{"format_version is 9", "reads 1..1"}},
		{"bad dtype", edit("dtype.onnx", `"dtype":"uint8"`, `"dtype":"uint9"`), []string{`input "pixels"`, `dtype "uint9"`}},
		{"bad manifest json", edit("json.onnx", `{"domains"`, `["domains"`), []string{"not valid JSON"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := Load(c.path)
			if err == nil {
				p.Close()
				t.Fatal("Load succeeded")
			}
			if !errors.Is(err, ErrModelLoad) || Code(err) != "MODEL_LOAD" {
				t.Fatalf("Load: %v (code %q); want ErrModelLoad", err, Code(err))
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// A manifest that disagrees with its graph is refused at load (spec/README.md, Loading): a name the graph
// lacks, a dtype other than the graph's.
func TestManifestGraphMismatch(t *testing.T) {
	basic, err := os.ReadFile(fixture(t, "basic.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ old, new, want string }{
		{`"name":"features"`, `"name":"featurez"`, `input "featurez"`},
		{`"name":"pixel_sum"`, `"name":"pixel_sun"`, `output "pixel_sun"`},
		{`"dtype":"uint8"`, `"dtype":"int32"`, `input "pixels" is int32`}, // same length: the protobuf stays valid,
	} {
		path := filepath.Join(t.TempDir(), "edited.onnx")
		os.WriteFile(path, bytes.Replace(basic, []byte(c.old), []byte(c.new), 1), 0o644)
		p, err := Load(path)
		if err == nil {
			p.Close()
			t.Fatalf("%s -> %s: Load succeeded", c.old, c.new)
		}
		if !errors.Is(err, ErrModelLoad) || Code(err) != "MODEL_LOAD" || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s -> %s: Load: %v (code %q); want MODEL_LOAD naming %s", c.old, c.new, err, Code(err), c.want)
		}
	}
}

func TestPlainONNXFallsBackToORTInfo(t *testing.T) {
	p := loadT(t, fixture(t, "plain.onnx"))
	sig := p.Signature()
	if sig.Source != "onnxruntime" || sig.Labels != nil || sig.Name != "" {
		t.Errorf("signature source %q labels %v name %q; want onnxruntime, nil, empty", sig.Source, sig.Labels, sig.Name)
	}
	var got []string
	for _, in := range sig.Inputs {
		got = append(got, fmt.Sprintf("%s %s optional=%v default=%s", in.Name, in.describe(), in.Optional, in.Default))
	}
	// ONNX Runtime reports neither dim names nor initializer-backed inputs: without a manifest there are no
	// run-time parameters, and the file runs with its initializers' values.
	want := []string{
		"features float32 [?, 3] optional=false default=",
		"pixels uint8 [?, ?, ?, 3] optional=false default=",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("inputs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	out, err := p.Run(bg, basicInputs(3))
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := out.Shape("score"); core.FormatShape(s) != "[3, 3]" {
		t.Errorf("score shape %v", s)
	}
	in := basicInputs(3)
	in["score_threshold"] = Scalar(float32(0))
	if _, err = p.Run(bg, in); !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), `unknown input "score_threshold"`) {
		t.Errorf("a threshold for a plain file: %v; want unknown input", err)
	}
	if _, err := p.Run(bg, map[string]Tensor{"features": MustTensor([]int64{1, 2}, []float32{1, 2})}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("validation from ORT info: %v", err)
	}
}

func TestClose(t *testing.T) {
	p, err := Load(fixture(t, "basic.onnx"), WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	_, err = p.Run(bg, basicInputs(1))
	if !errors.Is(err, ErrClosed) || Code(err) != "CLOSED" || !strings.Contains(err.Error(), "basic.onnx") {
		t.Errorf("Run after Close: %v; want ErrClosed naming the file", err)
	}
	if p.Signature().Name != "basic" {
		t.Error("Signature() should stay readable after Close")
	}
}

func TestContextCancelled(t *testing.T) {
	p := loadT(t, fixture(t, "basic.onnx"))
	ctx, cancel := context.WithCancel(bg)
	cancel()
	_, err := p.Run(ctx, basicInputs(1))
	if !errors.Is(err, context.Canceled) || Code(err) != "CANCELLED" {
		t.Errorf("Run with a cancelled context: %v (code %q)", err, Code(err))
	}
	ctx, cancel = context.WithCancel(bg)
	defer cancel()
	if _, err := p.Run(ctx, basicInputs(1)); err != nil {
		t.Errorf("Run with a live cancellable context: %v", err)
	}
}

func TestThreads(t *testing.T) {
	t.Setenv(EnvThreads, "")
	n, err := DefaultThreads()
	if want := min(runtime.GOMAXPROCS(0), runtime.NumCPU()); err != nil || n != want {
		t.Fatalf("DefaultThreads() = %d, %v; want min(GOMAXPROCS, affinity) = %d", n, err, want)
	}
	prev := runtime.GOMAXPROCS(1) // what a 1-CPU cgroup limit gives since Go 1.25
	n, _ = DefaultThreads()
	runtime.GOMAXPROCS(prev)
	if n != 1 {
		t.Errorf("DefaultThreads() with GOMAXPROCS 1 = %d, want 1", n)
	}
	t.Setenv(EnvThreads, "3")
	if n, err := DefaultThreads(); n != 3 || err != nil {
		t.Errorf("with %s=3: %d, %v", EnvThreads, n, err)
	}
	p := loadT(t, fixture(t, "basic.onnx"), WithThreads(2))
	if p.Threads() != 2 {
		t.Errorf("WithThreads(2) beats the env: got %d", p.Threads())
	}
	t.Setenv(EnvThreads, "many")
	if _, err := Load(fixture(t, "basic.onnx")); !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), EnvThreads) {
		t.Errorf("bad %s: %v", EnvThreads, err)
	}
	if _, err := Load(fixture(t, "basic.onnx"), WithThreads(0)); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("WithThreads(0): %v", err)
	}
}

func TestORTLibrary(t *testing.T) {
	lib, err := ORTLibrary()
	if err != nil {
		t.Fatal(err)
	}
	version, err := ORTVersion()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ONNX Runtime %s from %s (C API %d)", version, lib, ORTAPIVersion)
	if !strings.Contains(filepath.Base(lib), "libonnxruntime.so") {
		t.Errorf("library %s", lib)
	}
	// Once initialised the process keeps its library; asking for another one is an error, not a switch.
	other := filepath.Join(t.TempDir(), "libonnxruntime.so.9.9.9")
	os.WriteFile(other, []byte("x"), 0o644)
	if _, err := Load(fixture(t, "basic.onnx"), WithORTLibrary(other)); !errors.Is(err, ErrModelLoad) || !strings.Contains(err.Error(), "already initialised") {
		t.Errorf("WithORTLibrary(other) after initialisation: %v", err)
	}
}

func TestFindLibraryErrorSaysWhereItLooked(t *testing.T) {
	t.Setenv("ONNXPIPE_TEST_NO_SUCH_VAR", "")
	_, err := findLibrary("onnxruntime library", "", "ONNXPIPE_TEST_NO_SUCH_VAR", []string{"no/such/dir/libonnxruntime.so.*"})
	if err == nil {
		t.Fatal("found a library that does not exist")
	}
	wd, _ := os.Getwd()
	for _, want := range []string{"ONNXPIPE_TEST_NO_SUCH_VAR", filepath.Join(wd, "no/such/dir/libonnxruntime.so.*")} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
