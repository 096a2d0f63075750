package onnxpipe

import (
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

// Thousands of runs must not grow the resident set: every ONNX Runtime value (numeric and string inputs,
// outputs, run options) is destroyed. Each case's runs move over 100 kB through ONNX-Runtime-allocated
// memory, so leaking any of those values would add well over 100 MB.
func TestMemoryManyRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	if raceEnabled {
		t.Skip("RSS under -race is not representative; run without -race")
	}
	const batch = 4096
	numeric := map[string]Tensor{
		"features": MustTensor([]int64{batch, 3}, make([]float32, batch*3)),
		"pixels":   MustTensor([]int64{batch, 1, 1, 3}, make([]uint8, batch*3)),
	}
	texts := make([]string, 512)
	for i := range texts {
		texts[i] = strings.Repeat("hello world ", 20) + strconv.Itoa(i) // ~120 kB in, ~240 kB out per run
	}
	text, _ := NewStringTensor([]int64{int64(len(texts))}, texts)
	for _, c := range []struct {
		name   string
		model  string
		inputs map[string]Tensor
		runs   int
		vary   func(i int, in map[string]Tensor) // alternates sessions and context kinds
	}{
		{"numeric in, string out", fixture(t, "basic.onnx"), numeric, 3000, func(i int, in map[string]Tensor) {
			if i%2 == 1 {
				in["score_threshold"] = Scalar(float32(0.25))
			} else {
				delete(in, "score_threshold")
			}
		}},
		{"strings in and out", filepath.Join(repoRoot(t), "spec", "models", "strings.onnx"), map[string]Tensor{"text": text}, 2000, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := loadT(t, c.model)
			run := func(n int) {
				for i := range n {
					if c.vary != nil {
						c.vary(i, c.inputs)
					}
					ctx := bg
					if i%3 == 0 {
						ctx = t.Context() // cancellable: takes the RunOptions path
					}
					if _, err := p.Run(ctx, c.inputs); err != nil {
						t.Fatal(err)
					}
				}
			}
			run(c.runs / 10) // warm up: sessions, arenas, Go heap
			before := rss(t)
			run(c.runs)
			after := rss(t)
			growth := after - before
			t.Logf("RSS %d MB -> %d MB over %d runs (growth %d kB)", before>>20, after>>20, c.runs, growth>>10)
			if growth > 24<<20 {
				t.Errorf("RSS grew by %d MB over %d runs; an ONNX Runtime value is leaking", growth>>20, c.runs)
			}
		})
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
