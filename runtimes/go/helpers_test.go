package onnxpipe

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// repoRoot is the repository root (see vectortest.RepoRoot, which package onnxpipe's own tests cannot
// import): two levels above this package's directory, the working directory of `go test`.
func repoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

func fixture(t testing.TB, name string) string {
	return filepath.Join(repoRoot(t), "tests", "fixtures", name)
}

func loadT(t testing.TB, path string, opts ...Option) *Pipeline {
	t.Helper()
	p, err := Load(path, append([]Option{WithThreads(1)}, opts...)...)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

// basicInputs is a valid batch of n for tests/fixtures/basic.onnx.
func basicInputs(n int) map[string]Tensor {
	features := make([]float32, n*3)
	for i := range features {
		features[i] = float32(i%7) * 0.5
	}
	pixels := make([]uint8, n*2*2*3)
	for i := range pixels {
		pixels[i] = uint8(i * 13)
	}
	return map[string]Tensor{
		"features": MustTensor([]int64{int64(n), 3}, features),
		"pixels":   MustTensor([]int64{int64(n), 2, 2, 3}, pixels),
	}
}

var bg = context.Background()
