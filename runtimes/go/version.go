// Package onnxpipe runs onnxpipe files — pre-processing, model and post-processing exported as one ONNX
// file with a JSON manifest — from Go, through ONNX Runtime (github.com/yalue/onnxruntime_go). A service
// passes raw inputs (pixels, strings) and gets final answers, equal to the Python runtime's.
//
//	p, err := onnxpipe.Load("digits.onnx")
//	defer p.Close()
//	img, _ := onnxpipe.ImageFile("seven.png")             // uint8 [1, H, W, 3]
//	out, err := p.Run(ctx, map[string]onnxpipe.Tensor{"image": img})
//	labels, _ := out.Strings("label")
package onnxpipe

// Version is the onnxpipe release this runtime belongs to; equal to the repository's VERSION file.
const Version = "0.1.0"
