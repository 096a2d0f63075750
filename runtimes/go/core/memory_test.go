package core

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// The reader's memory per element (issue 13 §5: at most 16 bytes of overhead per element; the typed
// result itself is 4 bytes for float32, 8 for int64). The streaming reader holds neither the document nor
// a tree of it, so the overhead is a constant (its buffers): held here to 2 bytes per element, far inside 16. Everything allocated while reading counts, result
// included: TotalAlloc grows with every allocation, so it bounds the peak from above.
func TestReaderBytesPerElement(t *testing.T) {
	const n = 2_000_000
	for _, c := range []struct {
		dtype  string
		value  string
		result int // bytes per element of the result
	}{
		{"float32", "0.123456789", 4},
		{"int64", "-1234567", 8},
		{"uint8", "255", 1},
	} {
		var doc bytes.Buffer
		fmt.Fprintf(&doc, `{"x": {"dtype": %q, "shape": [%d], "data": [`, c.dtype, n)
		doc.WriteString(strings.Repeat(c.value+", ", n-1) + c.value + "]}}")
		src := doc.Bytes()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, tensors, err := ReadTensorJSON(bytes.NewReader(src), DefaultLimits())
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		if tensors["x"].Len() != n {
			t.Fatalf("%s: %d elements", c.dtype, tensors["x"].Len())
		}
		perElement := float64(after.TotalAlloc-before.TotalAlloc) / n
		t.Logf("%s: %.2f bytes allocated per element (result %d, document %d bytes per element)", c.dtype, perElement, c.result, len(src)/n)
		if perElement > float64(c.result)+2 {
			t.Errorf("%s: %.2f bytes per element, want <= %d (result) + 2", c.dtype, perElement, c.result)
		}
	}
}
