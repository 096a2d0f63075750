package onnxpipe

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// Environment variables that override where the native libraries come from.
const (
	EnvORTLib        = "ONNXPIPE_ORT_LIB"        // path of libonnxruntime.so.<version>
	EnvExtensionsLib = "ONNXPIPE_EXTENSIONS_LIB" // path of the onnxruntime-extensions custom-op library
	EnvThreads       = "ONNXPIPE_THREADS"        // intra-op threads per pipeline
)

// ORTAPIVersion is the ONNX Runtime C API version onnxruntime_go v1.35.0 is compiled against (ORT 1.29).
// Any ONNX Runtime library of this release or later serves it: the C API is backward compatible.
const ORTAPIVersion = 29

// Where the libraries are looked for, relative to the repository root (found by walking up from the
// working directory and from the executable): the wheel `make setup` installs, and the cache the Go
// Makefile fills from the Maven onnxruntime-extensions artifact.
var (
	ortGlobs        = []string{".venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.*"}
	extensionsGlobs = []string{"build/native/onnxruntime-extensions-*/libonnxruntime_extensions4j_jni.so"}
)

var env struct {
	sync.Mutex
	lib string // the library the process-wide ORT environment was initialised from
	err error
}

// ensureEnvironment initialises ONNX Runtime once per process from explicit, else $ONNXPIPE_ORT_LIB,
// else the discovered wheel library. A failure is remembered only until a later call finds a library.
func ensureEnvironment(explicit string) error {
	env.Lock()
	defer env.Unlock()
	if ort.IsInitialized() {
		if explicit != "" && !samePath(explicit, env.lib) {
			return loadErr("onnxruntime is already initialised from %q in this process; cannot switch to %q", env.lib, explicit)
		}
		return nil
	}
	lib, err := findLibrary("onnxruntime library", explicit, EnvORTLib, ortGlobs)
	if err != nil {
		return loadErr("%v", err)
	}
	ort.SetSharedLibraryPath(lib)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return loadErr("onnxruntime library %q cannot be initialised (need ONNX Runtime >= 1.29, C API %d): %v", lib, ORTAPIVersion, err)
	}
	env.lib = lib
	return nil
}

// ORTLibrary returns the path of the ONNX Runtime library in use, initialising the environment if needed.
func ORTLibrary() (string, error) {
	if err := ensureEnvironment(""); err != nil {
		return "", err
	}
	env.Lock()
	defer env.Unlock()
	return env.lib, nil
}

// ORTVersion returns the version string of the loaded ONNX Runtime library (e.g. "1.31.1").
func ORTVersion() (string, error) {
	if err := ensureEnvironment(""); err != nil {
		return "", err
	}
	return ort.GetVersion(), nil
}

// ExtensionsLibrary returns the onnxruntime-extensions library that models needing ai.onnx.contrib use:
// explicit, else $ONNXPIPE_EXTENSIONS_LIB, else the Makefile's cache under build/native. The error wraps
// ErrMissingExtension and lists where it looked.
func ExtensionsLibrary(explicit string) (string, error) {
	lib, err := findLibrary("onnxruntime-extensions library", explicit, EnvExtensionsLib, extensionsGlobs)
	if err != nil {
		return "", extensionErr("%v%s", err, extensionsHint)
	}
	return lib, nil
}

const extensionsHint = " (on linux-x64 `make -C runtimes/go native` extracts it from the Maven artifact com.microsoft.onnxruntime:onnxruntime-extensions)"

func findLibrary(what, explicit, envVar string, globs []string) (string, error) {
	if explicit != "" {
		return checkFile(what, explicit, "option")
	}
	if v := os.Getenv(envVar); v != "" {
		return checkFile(what, v, "$"+envVar)
	}
	var looked []string
	for _, root := range searchRoots() {
		for _, g := range globs {
			pattern := filepath.Join(root, g)
			looked = append(looked, pattern)
			matches, _ := filepath.Glob(pattern)
			sort.Strings(matches)
			for i := len(matches) - 1; i >= 0; i-- { // the newest version first
				if fi, err := os.Stat(matches[i]); err == nil && fi.Mode().IsRegular() {
					return matches[i], nil
				}
			}
		}
	}
	return "", fmt.Errorf("%s not found: $%s is not set and nothing matched %s; set $%s to the library's path",
		what, envVar, strings.Join(looked, ", "), envVar)
}

func checkFile(what, path, source string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("%s %q (from %s) cannot be used: %v", what, path, source, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s %q (from %s) is not a file", what, path, source)
	}
	return path, nil
}

// searchRoots are the working directory, the executable's directory and all their ancestors, plus
// $VIRTUAL_ENV's parent (so an activated venv is found), without duplicates.
func searchRoots() []string {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		starts = append(starts, filepath.Dir(exe))
	}
	if venv := os.Getenv("VIRTUAL_ENV"); venv != "" {
		starts = append(starts, filepath.Dir(venv))
	}
	seen := map[string]bool{}
	var roots []string
	for _, s := range starts {
		for dir := filepath.Clean(s); ; dir = filepath.Dir(dir) {
			if !seen[dir] {
				seen[dir] = true
				roots = append(roots, dir)
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	return roots
}

func samePath(a, b string) bool {
	ra, errA := filepath.EvalSymlinks(a)
	rb, errB := filepath.EvalSymlinks(b)
	if errA != nil || errB != nil {
		return filepath.Clean(a) == filepath.Clean(b)
	}
	return ra == rb
}
