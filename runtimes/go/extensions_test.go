package onnxpipe_test

import (
	"context"
	"errors"
	onnxpipe "github.com/onnxpipe/onnxpipe/runtimes/go"
	"github.com/onnxpipe/onnxpipe/runtimes/go/internal/vectortest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// contribModel needs ai.onnx.contrib (BertTokenizer); TestLocalVectors checks its outputs against Python's.
var contribModel = filepath.Join(vectortest.RepoRoot(), "spec", "models", "contrib_tokenizer.onnx")

func TestExtensionsLibraryFound(t *testing.T) {
	lib, err := onnxpipe.ExtensionsLibrary("")
	if err != nil {
		t.Fatalf("the onnxruntime-extensions library is needed (run `make -C runtimes/go native`): %v", err)
	}
	t.Logf("extensions library: %s", lib)
	p, err := onnxpipe.Load(contribModel, onnxpipe.WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if got := p.Signature().Domains; len(got) != 1 || got[0] != "ai.onnx.contrib" {
		t.Errorf("Signature().Domains = %v, want [ai.onnx.contrib]", got)
	}
}

func TestExtensionsMissingLibrary(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-libonnxruntime_extensions.so")
	for _, tc := range []struct {
		name string
		opt  []onnxpipe.Option
		env  string
	}{
		{"option", []onnxpipe.Option{onnxpipe.WithExtensionsLibrary(missing)}, ""},
		{"env", nil, missing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv(onnxpipe.EnvExtensionsLib, tc.env)
			}
			p, err := onnxpipe.Load(contribModel, tc.opt...)
			if err == nil {
				p.Close()
				t.Fatal("Load succeeded without the extensions library")
			}
			if !errors.Is(err, onnxpipe.ErrMissingExtension) || !errors.Is(err, onnxpipe.ErrModelLoad) || onnxpipe.Code(err) != "MISSING_EXTENSION" {
				t.Fatalf("error %v (code %s) does not wrap onnxpipe.ErrMissingExtension", err, onnxpipe.Code(err))
			}
			for _, want := range []string{"ai.onnx.contrib", missing} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestExtensionsNotALibrary(t *testing.T) {
	bogus := filepath.Join(t.TempDir(), "libbogus.so")
	if err := os.WriteFile(bogus, []byte("not a shared object"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := onnxpipe.Load(contribModel, onnxpipe.WithExtensionsLibrary(bogus))
	if !errors.Is(err, onnxpipe.ErrMissingExtension) || !strings.Contains(err.Error(), bogus) {
		t.Fatalf("Load with a bogus extensions library: %v; want onnxpipe.ErrMissingExtension naming %s", err, bogus)
	}
}

func TestExtensionsNotLoadedForStandardModels(t *testing.T) {
	// A standard model must load even when the configured extensions library is unusable.
	p, err := onnxpipe.Load(vectortest.Fixture("basic.onnx"), onnxpipe.WithExtensionsLibrary("/nonexistent/lib.so"))
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
}

func TestExtensionsNULInStringIsRefused(t *testing.T) {
	p, err := onnxpipe.Load(vectortest.Fixture("contrib.onnx"), onnxpipe.WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	text := func(s ...string) map[string]onnxpipe.Tensor {
		tensor, err := onnxpipe.NewStringTensor([]int64{int64(len(s))}, s)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]onnxpipe.Tensor{"text": tensor}
	}
	_, err = p.Run(context.Background(), text("ok", "ab\x00cd"))
	want := `invalid input: input "text": element 1 contains a NUL character at position 2; this pipeline's string ops (ai.onnx.contrib) would silently drop everything after it`
	if !errors.Is(err, onnxpipe.ErrInvalidInput) || onnxpipe.Code(err) != "INVALID_INPUT" || err.Error() != want {
		t.Fatalf("Run with a NUL: error %v (code %s), want ErrInvalidInput %q", err, onnxpipe.Code(err), want)
	}
	// the position counts characters, as in Python ("é" is two bytes)
	_, err = p.Run(context.Background(), text("é\x00"))
	if !errors.Is(err, onnxpipe.ErrInvalidInput) || !strings.Contains(err.Error(), "element 0 contains a NUL character at position 1;") {
		t.Fatalf("Run with a NUL after a 2-byte character: %v", err)
	}
	out, err := p.Run(context.Background(), text("HeLLo"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := onnxpipe.OutputData[string](out, "lower"); err != nil || len(got) != 1 || got[0] != "hello" {
		t.Fatalf("lower = %q (%v), want [hello]", got, err)
	}
}

// Strings reach ONNX Runtime byte for byte (newStringTensor, not onnxruntime_go's C strings): a NUL and
// what follows it survive a standard-ops model, in and out.
func TestNULInStringSurvives(t *testing.T) {
	p, err := onnxpipe.Load(filepath.Join(vectortest.RepoRoot(), "spec", "models", "strings.onnx"), onnxpipe.WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	in := []string{"ab\x00cd", "", "\x00", "é\x00\x00z"}
	tensor, err := onnxpipe.NewStringTensor([]int64{4}, in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Run(context.Background(), map[string]onnxpipe.Tensor{"text": tensor})
	if err != nil {
		t.Fatal(err)
	}
	echo, _ := out.Strings("echo")
	reversed, _ := out.Strings("reversed")
	if !slices.Equal(echo, in) || !slices.Equal(reversed, []string{in[3], in[2], in[1], in[0]}) {
		t.Fatalf("echo %q, reversed %q; want %q and its reverse", echo, reversed, in)
	}
}
