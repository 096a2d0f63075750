package onnxpipe

import (
	"errors"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestImageHelpers(t *testing.T) {
	// 3 wide, 2 high: pixel (x, y) = (10x+y, 100+x, 200+y), alpha 128 (dropped, not composited)
	img := image.NewNRGBA(image.Rect(0, 0, 3, 2))
	gray := image.NewGray(image.Rect(0, 0, 3, 2))
	for y := range 2 {
		for x := range 3 {
			img.SetNRGBA(x, y, color.NRGBA{uint8(10*x + y), uint8(100 + x), uint8(200 + y), 128})
			gray.SetGray(x, y, color.Gray{uint8(10*x + y)})
		}
	}
	var want []uint8
	for y := range 2 {
		for x := range 3 {
			want = append(want, uint8(10*x+y), uint8(100+x), uint8(200+y))
		}
	}
	got := FromImage(img)
	if got.DType() != Uint8 || !slices.Equal(got.Shape(), []int64{2, 3, 3}) || !slices.Equal(got.Values().([]uint8), want) {
		t.Errorf("FromImage(NRGBA) = %v %v, want uint8 [2, 3, 3] %v", got, got.Values(), want)
	}
	// A sub-image keeps its own bounds; the generic path (Gray) replicates the channel.
	sub := FromImage(img.SubImage(image.Rect(1, 1, 3, 2)))
	if !slices.Equal(sub.Shape(), []int64{1, 2, 3}) || !slices.Equal(sub.Values().([]uint8), want[12:]) {
		t.Errorf("sub-image %v %v", sub, sub.Values())
	}
	g := FromImage(gray).Values().([]uint8)
	if g[3*4] != 11 || g[3*4+1] != 11 || g[3*4+2] != 11 {
		t.Errorf("gray pixel (1,1) = %v, want [11 11 11]", g[12:15])
	}

	path := filepath.Join(t.TempDir(), "img.png")
	f, _ := os.Create(path)
	opaque := image.NewNRGBA(img.Bounds())
	copy(opaque.Pix, img.Pix)
	for i := 3; i < len(opaque.Pix); i += 4 {
		opaque.Pix[i] = 255
	}
	png.Encode(f, opaque)
	f.Close()
	fromFile, err := ImageFile(path)
	if err != nil || !slices.Equal(fromFile.Values().([]uint8), want) {
		t.Errorf("ImageFile = %v, %v", fromFile.Values(), err)
	}
	batch, err := Stack(fromFile, fromFile)
	if err != nil || !slices.Equal(batch.Shape(), []int64{2, 2, 3, 3}) || batch.Len() != 36 {
		t.Errorf("Stack = %v, %v", batch, err)
	}
	if _, err := ImageFile(fixture(t, "corrupt.onnx")); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("ImageFile(not an image): %v", err)
	}
}

// The image helpers feed a pipeline directly.
func TestImageIntoPipeline(t *testing.T) {
	p := loadT(t, fixture(t, "basic.onnx"))
	img := image.NewRGBA(image.Rect(0, 0, 4, 3))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	pixels, err := Stack(FromImage(img))
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Run(bg, map[string]Tensor{"pixels": pixels, "features": MustTensor([]int64{1, 3}, []float32{1, 2, 3})})
	if err != nil {
		t.Fatal(err)
	}
	if sum, _ := out.Int64("pixel_sum"); sum[0] != 4*3*3*255 {
		t.Errorf("pixel_sum = %v, want %d", sum, 4*3*3*255)
	}
}
