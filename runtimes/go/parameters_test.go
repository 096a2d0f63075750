package onnxpipe

import (
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"
)

// The detector vector model's iou_threshold carries "range": [0, 1] in its manifest (BatchedNMS): a value
// outside it, NaN or infinity is refused before ONNX Runtime runs, as the Python runtime does.
func TestRunTimeParameterRange(t *testing.T) {
	p := loadT(t, filepath.Join(repoRoot(t), "tests", "vectors", "detector", "model.onnx"))
	sig := p.Signature()
	iou, ok := sig.Input("iou_threshold")
	if !ok || len(iou.Range) != 2 || iou.Range[0] != 0 || iou.Range[1] != 1 {
		t.Fatalf("iou_threshold spec %+v, want range [0, 1]", iou)
	}
	if sig.Verification != "passed" {
		t.Errorf("verification %q, want passed", sig.Verification)
	}
	image := MustTensor([]int64{1, 8, 8, 3}, make([]uint8, 8*8*3))
	for _, v := range []float32{1.5, -0.1, float32(math.NaN()), float32(math.Inf(1))} {
		_, err := p.Run(bg, map[string]Tensor{"image": image, "iou_threshold": Scalar(v)})
		if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), "iou_threshold") || !strings.Contains(err.Error(), "[0, 1]") {
			t.Errorf("iou_threshold=%v: err %v, want ErrInvalidInput naming the input and the range", v, err)
		}
	}
	if _, err := p.Run(bg, map[string]Tensor{"image": image, "iou_threshold": Scalar(float32(1))}); err != nil {
		t.Errorf("iou_threshold=1 (the bound itself): %v", err)
	}
}

func TestVerificationIsUnknownForPlainONNX(t *testing.T) {
	if got := loadT(t, fixture(t, "plain.onnx")).Signature().Verification; got != "unknown" {
		t.Errorf("plain.onnx verification %q, want unknown", got)
	}
}
