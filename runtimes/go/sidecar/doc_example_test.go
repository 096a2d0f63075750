package sidecar_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/onnxpipe/onnxpipe/runtimes/go/sidecar"
)

// The README's snippet, compiled (not run: it needs a sidecar on 127.0.0.1:8001).
func ExampleClient_Infer() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := sidecar.Dial(ctx, "127.0.0.1:8001", sidecar.WithToken(os.Getenv("ONNXPIPE_TOKEN")))
	if err != nil {
		fmt.Println(err) // wraps sidecar.ErrUnavailable when nothing answers before ctx ends
		return
	}
	defer client.Close()

	pixels := make([]uint8, 28*28*3)                          // RGB, row-major
	image := sidecar.NewTensor([]int64{1, 28, 28, 3}, pixels) // UINT8
	result, err := client.Infer(ctx, "digits", map[string]sidecar.Tensor{"image": image})
	switch {
	case errors.Is(err, sidecar.ErrInvalidInput): // "[INVALID_INPUT] input 'image': ..."
		fmt.Println(err)
		return
	case err != nil: // ErrNotFound, ErrOverloaded, ErrUnauthenticated, ErrUnavailable, ...
		fmt.Println(sidecar.Code(err), err)
		return
	}
	labels := result.Outputs["label"].Data.([]string) // BYTES -> []string
	scores, _ := sidecar.Values[float32](result.Outputs["score"])
	fmt.Println(labels, scores)
}
