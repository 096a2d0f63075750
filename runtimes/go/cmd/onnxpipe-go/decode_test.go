package main

import onnxpipe "github.com/onnxpipe/onnxpipe/runtimes/go"

func decode(s string) ([]string, map[string]onnxpipe.Tensor, error) {
	return onnxpipe.DecodeTensorJSON([]byte(s))
}
