package onnxpipe

import (
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

// Thousands of runs must not grow the resident set: every ONNX Runtime value (inputs, outputs, strings,
// run options) is destroyed. Each run makes ~150 kB of ONNX-Runtime-allocated outputs, so leaking any
// of them would add hundreds of MB.
func TestMemoryManyRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	if raceEnabled {
		t.Skip("RSS under -race is not representative; run without -race")
	}
	p := loadT(t, fixture(t, "basic.onnx"))
	const batch = 4096
	in := map[string]Tensor{
		"features": MustTensor([]int64{batch, 3}, make([]float32, batch*3)),
		"pixels":   MustTensor([]int64{batch, 1, 1, 3}, make([]uint8, batch*3)),
	}
	run := func(n int) {
		for i := range n {
			if i%2 == 1 {
				in["score_threshold"] = Scalar(float32(0.25))
			} else {
				delete(in, "score_threshold")
			}
			if _, err := p.Run(bg, in); err != nil {
				t.Fatal(err)
			}
		}
	}
	run(300) // warm up: sessions, arenas, Go heap
	before := rss(t)
	const runs = 3000
	run(runs)
	after := rss(t)
	growth := after - before
	t.Logf("RSS %d MB -> %d MB over %d runs (growth %d kB)", before>>20, after>>20, runs, growth>>10)
	if growth > 24<<20 {
		t.Errorf("RSS grew by %d MB over %d runs; an ONNX Runtime value is leaking", growth>>20, runs)
	}
}

// rss returns the resident set size in bytes after a GC.
func rss(t *testing.T) int64 {
	runtime.GC()
	debug.FreeOSMemory()
	raw, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skipf("no /proc/self/statm: %v", err)
	}
	fields := strings.Fields(string(raw))
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}
