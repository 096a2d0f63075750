package onnxpipe_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	onnxpipe "github.com/onnxpipe/onnxpipe/runtimes/go"
	"github.com/onnxpipe/onnxpipe/runtimes/go/internal/vectortest"
)

// Every spec/cases/*.json case (spec/README.md), through the library and through the onnxpipe-go binary:
// valid cases give the expected outputs, invalid ones the error code (and its exit status, one line on
// stderr).
func TestSpecCases(t *testing.T) {
	files, err := vectortest.SpecFiles()
	if err != nil {
		t.Fatal(err)
	}
	_, extErr := onnxpipe.ExtensionsLibrary("")
	for _, f := range files {
		t.Run(f.Name(), func(t *testing.T) {
			loadError := f.LoadError
			if f.NeedsExtensions() && extErr != nil {
				t.Logf("onnxruntime-extensions is not available (%v): loading must fail with MISSING_EXTENSION", extErr)
				loadError = "MISSING_EXTENSION"
			}
			if loadError != "" {
				p, err := onnxpipe.Load(f.ModelPath(), onnxpipe.WithThreads(1))
				if err == nil {
					p.Close()
				}
				if code := onnxpipe.Code(err); code != loadError {
					t.Fatalf("Load: %v (code %q), want %s", err, code, loadError)
				}
				return
			}
			p, err := onnxpipe.Load(f.ModelPath(), onnxpipe.WithThreads(1))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			for _, c := range f.Cases {
				t.Run(c.Name, func(t *testing.T) {
					checkLibrary(t, p, f, c)
					checkCLI(t, f, c)
				})
			}
		})
	}
}

func checkLibrary(t *testing.T, p *onnxpipe.Pipeline, f *vectortest.SpecFile, c vectortest.SpecCase) {
	_, inputs, err := onnxpipe.ReadTensorJSON(strings.NewReader(c.Text()), onnxpipe.DefaultLimits())
	var out onnxpipe.Outputs
	if err == nil {
		out, err = p.Run(context.Background(), inputs)
	}
	if c.Error != "" {
		if code := onnxpipe.Code(err); code != c.Error {
			t.Errorf("library: %v (code %q), want %s", err, code, c.Error)
		}
		return
	}
	if err != nil {
		t.Fatalf("library: %v", err)
	}
	want, err := c.ExpectedTensors()
	if err != nil {
		t.Fatal(err)
	}
	if err := vectortest.CompareAll(out.Map(), want, f.CaseTolerance(c)); err != nil {
		t.Errorf("library: %v", err)
	}
}

func checkCLI(t *testing.T, f *vectortest.SpecFile, c vectortest.SpecCase) {
	inputs := filepath.Join(t.TempDir(), "inputs.json")
	if err := os.WriteFile(inputs, []byte(c.Text()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cliBinary(t), "run", f.ModelPath(), "--inputs", inputs, "--threads", "1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	status := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		status = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if c.Error != "" {
		want := onnxpipe.ExitCode(c.Error)
		if status != want || stdout.Len() != 0 || strings.Count(stderr.String(), "\n") != 1 ||
			!strings.HasPrefix(stderr.String(), "onnxpipe-go: error ["+c.Error+"]: ") {
			t.Errorf("CLI: exit %d (want %d), stdout %d bytes (want 0), stderr %q (want one line 'onnxpipe-go: error [%s]: ...')",
				status, want, stdout.Len(), stderr.String(), c.Error)
		}
		return
	}
	if status != 0 {
		t.Fatalf("CLI: exit %d: %s", status, stderr.String())
	}
	_, got, err := onnxpipe.ReadTensorJSON(&stdout, onnxpipe.DefaultLimits())
	if err != nil {
		t.Fatalf("CLI output: %v", err)
	}
	want, _ := c.ExpectedTensors()
	if err := vectortest.CompareAll(got, want, f.CaseTolerance(c)); err != nil {
		t.Errorf("CLI: %v", err)
	}
}

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// cliBinary builds cmd/onnxpipe-go once per test run.
func cliBinary(t *testing.T) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "onnxpipe-go-spec")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "onnxpipe-go")
		out, err := exec.Command("go", "build", "-o", binary, "./cmd/onnxpipe-go").CombinedOutput()
		if err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("building onnxpipe-go: %v", buildErr)
	}
	return binary
}
