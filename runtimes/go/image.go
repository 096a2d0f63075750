package onnxpipe

import (
	"image"
	"image/color"
	_ "image/gif" // decoders for ImageFile
	_ "image/jpeg"
	_ "image/png"
	"os"

	"github.com/onnxpipe/onnxpipe/runtimes/go/core"
)

// FromImage returns img's pixels as uint8 RGB in height x width x channel order, shape [H, W, 3]: what
// an onnxpipe image pipeline takes (with a batch dimension: see Stack). Alpha is dropped without
// compositing (as PIL's convert("RGB") does); colours are read non-premultiplied.
func FromImage(img image.Image) Tensor {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	data := make([]uint8, 0, w*h*3)
	switch src := img.(type) {
	case *image.NRGBA:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			row := src.Pix[src.PixOffset(b.Min.X, y):]
			for x := 0; x < w; x++ {
				data = append(data, row[4*x], row[4*x+1], row[4*x+2])
			}
		}
	default:
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
				data = append(data, c.R, c.G, c.B)
			}
		}
	}
	t, _ := core.FromValues([]int64{int64(h), int64(w), 3}, data)
	return t
}

// ImageFile decodes a PNG, JPEG or GIF file into uint8 [H, W, 3] (see FromImage). JPEG decoders differ
// slightly between libraries; use PNG when results must match another runtime bit for bit.
func ImageFile(path string) (Tensor, error) {
	f, err := os.Open(path)
	if err != nil {
		return Tensor{}, inputErr("image file %q: cannot read it (%v)", path, err)
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		return Tensor{}, inputErr("image file %q: cannot decode it as PNG, JPEG or GIF (%v)", path, err)
	}
	return FromImage(img), nil
}

// Stack joins tensors of one dtype and shape along a new leading (batch) dimension: n tensors of shape
// [H, W, 3] give [n, H, W, 3].
func Stack(ts ...Tensor) (Tensor, error) {
	if len(ts) == 0 {
		return Tensor{}, inputErr("Stack: no tensors given; expected at least one")
	}
	first := ts[0]
	for i, t := range ts {
		if t.Describe() != first.Describe() {
			return Tensor{}, inputErr("Stack: tensor %d is %s, expected %s like tensor 0", i, t.Describe(), first.Describe())
		}
	}
	shape := append([]int64{int64(len(ts))}, first.Shape()...)
	switch first.DType() {
	case Float32:
		return stack[float32](ts, shape), nil
	case Float64:
		return stack[float64](ts, shape), nil
	case Int64:
		return stack[int64](ts, shape), nil
	case Int32:
		return stack[int32](ts, shape), nil
	case Uint8:
		return stack[uint8](ts, shape), nil
	case Int8:
		return stack[int8](ts, shape), nil
	case Bool:
		return stack[bool](ts, shape), nil
	case String:
		return stack[string](ts, shape), nil
	}
	return Tensor{}, inputErr("Stack: tensor 0 is %s", first.Describe())
}

func stack[T Element | string](ts []Tensor, shape []int64) Tensor {
	var data []T
	for _, t := range ts {
		data = append(data, t.Values().([]T)...)
	}
	if data == nil {
		data = []T{}
	}
	t, _ := core.FromValues(shape, data)
	return t
}
