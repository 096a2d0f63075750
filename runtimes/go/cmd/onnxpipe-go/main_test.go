package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	onnxpipe "github.com/onnxpipe/onnxpipe/runtimes/go"
	"github.com/onnxpipe/onnxpipe/runtimes/go/internal/vectortest"
)

var binary string

// The tests run the real binary: exit status and stderr are part of the contract.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "onnxpipe-go-cli")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "onnxpipe-go")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		panic("building onnxpipe-go: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func cli(t *testing.T, stdin string, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		status = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("running %v: %v", args, err)
	}
	return out.String(), errOut.String(), status
}

// `run` reproduces the Python runtime's outputs for every golden vector set, in manifest order.
func TestRunReproducesVectors(t *testing.T) {
	sets, err := vectortest.Discover()
	if err != nil {
		t.Fatal(err)
	}
	for _, set := range sets {
		t.Run(filepath.Base(set.Dir), func(t *testing.T) {
			model, skip, err := set.ModelPath()
			if err != nil {
				t.Fatal(err)
			}
			if skip != "" {
				t.Skip(skip)
			}
			for _, c := range set.Cases {
				t.Run(c.Name, func(t *testing.T) {
					stdout, stderr, status := cli(t, "", "run", model, "--inputs", filepath.Join(set.Dir, c.Inputs), "--threads", "1")
					if status != 0 {
						t.Fatalf("exit %d: %s", status, stderr)
					}
					gotNames, got, err := decode(stdout)
					if err != nil {
						t.Fatalf("stdout is not tensor JSON: %v\n%s", err, stdout)
					}
					wantNames, want, err := vectortest.ReadTensors(filepath.Join(set.Dir, c.Expected))
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(gotNames, wantNames) {
						t.Errorf("output order %v, want %v", gotNames, wantNames)
					}
					if err := vectortest.CompareAll(got, want, set.Tolerance); err != nil {
						t.Error(err)
					}
				})
			}
		})
	}
}

func TestRunReadsStdin(t *testing.T) {
	in := `{"features": {"dtype": "float32", "shape": [1, 3], "data": [0.1, 0.2, 0.3]},
	        "pixels": {"dtype": "uint8", "shape": [1, 1, 1, 3], "data": [1, 2, 3]}}`
	stdout, stderr, status := cli(t, in, "run", vectortest.Fixture("basic.onnx"), "--inputs", "-")
	if status != 0 {
		t.Fatalf("exit %d: %s", status, stderr)
	}
	if !strings.Contains(stdout, `"pixel_sum": {"dtype": "int64", "shape": [1], "data": [6]}`) {
		t.Errorf("stdout %s", stdout)
	}
}

func TestInspect(t *testing.T) {
	stdout, stderr, status := cli(t, "", "inspect", vectortest.Fixture("basic.onnx"))
	if status != 0 {
		t.Fatalf("exit %d: %s", status, stderr)
	}
	if !strings.HasPrefix(stdout, `{"source": "manifest", "inputs": [{"name": "features", "dtype": "float32", "shape": ["batch", 3]}`) || strings.Count(stdout, "\n") != 1 {
		t.Errorf("inspect output is not the one-line layout the other CLIs print:\n%s", stdout)
	}
	var sig struct {
		Source string
		Inputs []struct {
			Name     string
			DType    string
			Shape    []any
			Optional bool
			Default  any
		}
		Outputs []struct{ Name string }
		Labels  []string
	}
	if err := json.Unmarshal([]byte(stdout), &sig); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if sig.Source != "manifest" || len(sig.Inputs) != 3 || len(sig.Outputs) != 5 || strings.Join(sig.Labels, ",") != "cat,dog,bird" {
		t.Errorf("signature %+v", sig)
	}
	th := sig.Inputs[2]
	if th.Name != "score_threshold" || !th.Optional || th.Default != 0.5 || len(th.Shape) != 0 {
		t.Errorf("threshold input %+v", th)
	}
	if shape, _ := json.Marshal(sig.Inputs[1].Shape); string(shape) != `["batch","height","width",3]` {
		t.Errorf("pixels shape %s, want it as written in the manifest", shape)
	}
	stdout, stderr, status = cli(t, "", "inspect", vectortest.Fixture("plain.onnx"))
	if status != 0 || !strings.Contains(stdout, `"source": "onnxruntime"`) || !strings.Contains(stdout, `{"name": "pixels", "dtype": "uint8", "shape": [null, null, null, 3]}`) {
		t.Errorf("inspect plain.onnx: exit %d\n%s", status, stdout)
	}
	if !strings.Contains(stderr, "no onnxpipe manifest (plain ONNX)") {
		t.Errorf("inspect plain.onnx: stderr %q does not say the file has no manifest", stderr)
	}
}

// Errors: non-zero exit and exactly one line on stderr carrying the error code.
func TestErrors(t *testing.T) {
	dir := t.TempDir()
	missingInput := filepath.Join(dir, "missing.json")
	os.WriteFile(missingInput, []byte(`{"features": {"dtype": "float32", "shape": [1, 3], "data": [1, 2, 3]}}`), 0o644)
	badJSON := filepath.Join(dir, "bad.json")
	os.WriteFile(badJSON, []byte(`{"features": {"dtype": "float32", "shape": [1, 3], "data": [1, 2]}}`), 0o644)
	basic := vectortest.Fixture("basic.onnx")
	// A manifest naming an input the graph does not have: refused at load.
	raw, err := os.ReadFile(basic)
	if err != nil {
		t.Fatal(err)
	}
	renamed := filepath.Join(dir, "renamed.onnx")
	os.WriteFile(renamed, bytes.Replace(raw, []byte(`"name":"pixels"`), []byte(`"name":"pixelz"`), 1), 0o644)
	renamedInputs := filepath.Join(dir, "renamed.json")
	os.WriteFile(renamedInputs, []byte(`{"features": {"dtype": "float32", "shape": [1, 3], "data": [1, 2, 3]},
		"pixelz": {"dtype": "uint8", "shape": [1, 1, 1, 3], "data": [1, 2, 3]}}`), 0o644)
	for _, c := range []struct {
		name   string
		args   []string
		status int
		want   []string
	}{
		{"corrupt model", []string{"run", vectortest.Fixture("corrupt.onnx"), "--inputs", missingInput}, 4, []string{"error [MODEL_LOAD]: ", "corrupt.onnx"}},
		{"corrupt inspect", []string{"inspect", vectortest.Fixture("corrupt.onnx")}, 4, []string{"error [MODEL_LOAD]: ", "corrupt.onnx"}},
		{"no model file", []string{"inspect", filepath.Join(dir, "nope.onnx")}, 4, []string{"error [MODEL_LOAD]: ", "nope.onnx"}},
		{"missing input", []string{"run", basic, "--inputs", missingInput}, 3, []string{"error [INVALID_INPUT]: ", `missing input "pixels"`}},
		{"bad tensor JSON", []string{"run", basic, "--inputs", badJSON}, 3, []string{"error [INVALID_INPUT]: ", `tensor "features": shape [1, 3] needs 3 values but data has 2`}},
		{"no inputs file", []string{"run", basic, "--inputs", filepath.Join(dir, "none.json")}, 2, []string{"error [USAGE]: ", "none.json", "cannot read it"}},
		{"manifest mismatch", []string{"run", renamed, "--inputs", renamedInputs}, 4, []string{"error [MODEL_LOAD]: ", "pixelz"}},
		{"too large", []string{"run", basic, "--inputs", missingInput, "--max-elements", "2"}, 3, []string{"error [TOO_LARGE]: ", "max_elements = 2"}},
		{"no --inputs", []string{"run", basic}, 2, []string{"error [USAGE]: ", "needs --inputs"}},
		{"unknown command", []string{"serve"}, 2, []string{`unknown command "serve"`}},
		{"unknown flag", []string{"run", basic, "--input", "x"}, 2, []string{`unknown flag "--input"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, status := cli(t, "", c.args...)
			if status != c.status {
				t.Errorf("exit %d, want %d (stderr %q)", status, c.status, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			first, _, _ := strings.Cut(stderr, "\n")
			if strings.Count(stderr, "\n") != 1 {
				t.Errorf("stderr is not one line: %q", stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(first, w) {
					t.Errorf("stderr %q does not contain %q", first, w)
				}
			}
		})
	}
}

func decode(s string) ([]string, map[string]onnxpipe.Tensor, error) {
	return onnxpipe.ReadTensorJSON(strings.NewReader(s), onnxpipe.DefaultLimits())
}
