package onnxpipe

import (
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Option configures Load.
type Option func(*config)

type config struct {
	threads       int
	threadsSet    bool
	ortLib        string
	extensionsLib string
}

// WithThreads sets the intra-op threads of the pipeline's ONNX Runtime sessions (n >= 1). It takes
// precedence over $ONNXPIPE_THREADS and the default, runtime.GOMAXPROCS(0) capped by the CPU affinity.
func WithThreads(n int) Option { return func(c *config) { c.threads, c.threadsSet = n, true } }

// WithORTLibrary sets the ONNX Runtime shared library (libonnxruntime.so.<version>), overriding
// $ONNXPIPE_ORT_LIB and discovery. ONNX Runtime is initialised once per process: the first Load decides.
func WithORTLibrary(path string) Option { return func(c *config) { c.ortLib = path } }

// WithExtensionsLibrary sets the onnxruntime-extensions custom-op library used for ai.onnx.contrib ops,
// overriding $ONNXPIPE_EXTENSIONS_LIB and discovery.
func WithExtensionsLibrary(path string) Option { return func(c *config) { c.extensionsLib = path } }

// DefaultThreads is the intra-op thread count Load uses without WithThreads: $ONNXPIPE_THREADS if set,
// else runtime.GOMAXPROCS(0) (which since Go 1.25 follows the cgroup CPU limit) capped by the CPUs this
// process may run on (its affinity mask). ONNX Runtime itself would size its pool from the host.
func DefaultThreads() (int, error) {
	if v, ok := os.LookupEnv(EnvThreads); ok && strings.TrimSpace(v) != "" {
		return parseThreads(v, "$"+EnvThreads)
	}
	return max(1, min(runtime.GOMAXPROCS(0), runtime.NumCPU())), nil
}

func parseThreads(v, source string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 1 {
		return 0, inputErr("%s is %q; expected a whole number of threads >= 1", source, v)
	}
	return n, nil
}

func (c *config) resolveThreads() (int, error) {
	if c.threadsSet {
		if c.threads < 1 {
			return 0, inputErr("WithThreads(%d): expected a whole number of threads >= 1", c.threads)
		}
		return c.threads, nil
	}
	return DefaultThreads()
}
