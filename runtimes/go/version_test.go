package onnxpipe

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
)

// One version number: the repository's VERSION file.
func TestVersionMatchesRepository(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSpace(string(raw)); Version != want {
		t.Errorf("Version = %q, VERSION file says %q", Version, want)
	}
}

// The bundled C API header is the one ORTAPIVersion names, and the library in use serves it.
func TestORTAPIVersion(t *testing.T) {
	if _, err := ORTVersion(); err != nil {
		t.Fatal(err)
	}
	header, err := os.ReadFile(filepath.Join(ortModuleDir(t), "onnxruntime_c_api.h"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(header), "#define ORT_API_VERSION 29\n") || ORTAPIVersion != 29 {
		t.Errorf("onnxruntime_go's header does not define ORT_API_VERSION %d", ORTAPIVersion)
	}
	if !ort.IsInitialized() {
		t.Error("environment not initialised")
	}
}

func ortModuleDir(t *testing.T) string {
	t.Helper()
	out, err := goList("-m", "-f", "{{.Dir}}", "github.com/yalue/onnxruntime_go")
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	return strings.TrimSpace(out)
}

func goList(args ...string) (string, error) {
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	return string(out), err
}
