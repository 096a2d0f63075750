package sidecar

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExampleCommand builds cmd/sidecar-example and runs it against the sidecar: a vector case through the
// tensor-JSON path, the built-in digit image, and a failing call.
func TestExampleCommand(t *testing.T) {
	srv := theServer(t)
	bin := filepath.Join(t.TempDir(), "sidecar-example")
	if out, err := runBounded(2*time.Minute, "go", "build", "-o", bin, "./cmd/sidecar-example"); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	run := func(args ...string) (string, string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, append([]string{"-addr", srv.addr, "-timeout", "10s"}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if err != nil {
			code = -1
			if exit, ok := err.(*exec.ExitError); ok {
				code = exit.ExitCode()
			}
		}
		return stdout.String(), stderr.String(), code
	}

	v := loadVectorSet(t, "digits")
	c := v.Cases[1]
	stdout, stderr, code := run("-model", "digits", "-inputs", filepath.Join(v.dir, c.Inputs))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	_, got, err := ReadTensorJSON(strings.NewReader(stdout))
	if err != nil {
		t.Fatalf("output is not tensor JSON: %v\n%s", err, stdout)
	}
	_, want := readTensorFile(t, filepath.Join(v.dir, c.Expected))
	if err := compareOutputs(got, want, v.Tolerance); err != nil {
		t.Fatal(err)
	}

	stdout, stderr, code = run("-outputs", "label")
	if code != 0 {
		t.Fatalf("built-in image: exit %d: %s", code, stderr)
	}
	names, got, err := ReadTensorJSON(strings.NewReader(stdout))
	if err != nil || len(names) != 1 || got["label"].DType() != "string" {
		t.Fatalf("built-in image: outputs %v (%v)\n%s", names, err, stdout)
	}

	_, stderr, code = run("-model", "no-such-model")
	if code != 1 || !strings.Contains(stderr, "[NOT_FOUND]") {
		t.Fatalf("unknown model: exit %d, stderr %q; expected 1 and [NOT_FOUND]", code, stderr)
	}
}
