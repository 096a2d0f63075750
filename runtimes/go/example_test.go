package onnxpipe_test

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"

	onnxpipe "github.com/onnxpipe/onnxpipe/runtimes/go"
)

// The README's quickstart, on the shared fixture tests/fixtures/basic.onnx.
func Example() {
	ctx := context.Background()
	p, err := onnxpipe.Load("../../tests/fixtures/basic.onnx", onnxpipe.WithThreads(1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()

	img := image.NewRGBA(image.Rect(0, 0, 2, 2)) // a 2x2 white image
	for x := range 2 {
		for y := range 2 {
			img.Set(x, y, color.White)
		}
	}
	pixels, _ := onnxpipe.Stack(onnxpipe.FromImage(img)) // uint8 [1, 2, 2, 3]
	features := onnxpipe.MustTensor([]int64{1, 3}, []float32{0.1, 0.2, 0.3})
	out, err := p.Run(ctx, map[string]onnxpipe.Tensor{
		"pixels":          pixels,
		"features":        features,
		"score_threshold": onnxpipe.Scalar(float32(0.3)), // optional: omit it to keep the exported default
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	labels, _ := out.Strings("label")
	sums, _ := out.Int64("pixel_sum")
	confident, _ := out.Bool("confident")
	shape, _ := out.Shape("score")
	fmt.Println(out.Names(), labels, sums, confident, shape)

	_, err = p.Run(ctx, map[string]onnxpipe.Tensor{"pixels": pixels})
	fmt.Println(errors.Is(err, onnxpipe.ErrInvalidInput), onnxpipe.Code(err))
	fmt.Println(err)
	// Output:
	// [score label_id label confident pixel_sum] [bird] [3060] [true] [1 3]
	// true INVALID_INPUT
	// invalid input: missing input "features" (float32 [batch, 3]); required: [features pixels]
}
