package sidecar

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestStubsCurrent regenerates the stubs from proto/grpc_service.proto into a temporary folder and checks
// that the committed ones in inference/ are identical (run ./generate.sh after changing the proto).
func TestStubsCurrent(t *testing.T) {
	out := t.TempDir()
	got, err := runBounded(3*time.Minute, "./generate.sh", out)
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 3 {
		t.Skipf("cannot check the generated stubs: protoc-gen-go could not be installed:\n%s", got)
	}
	if err != nil {
		t.Fatalf("./generate.sh failed: %v\n%s", err, got)
	}
	for _, name := range []string{"grpc_service.pb.go", "grpc_service_grpc.pb.go"} {
		fresh, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(filepath.Join("inference", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fresh, committed) {
			t.Errorf("inference/%s is stale: it differs from what ./generate.sh writes from proto/grpc_service.proto "+
				"(run ./generate.sh in runtimes/go/sidecar and commit the result; if only the header's protoc version "+
				"differs, the .venv's grpcio-tools is not the one in requirements/constraints.txt)", name)
		}
	}
}
