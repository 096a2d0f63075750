// Command sidecar-example calls a running onnxpipe sidecar and prints the outputs as tensor JSON.
//
//	onnxpipe serve tests/vectors/digits/model.onnx --name digits &
//	sidecar-example                                    # a drawn "1" to the digits model
//	sidecar-example -model basic -inputs tests/vectors/basic/inputs_0.json
//
// Exit status: 0 on success, 1 when the call fails (the message carries the sidecar's error code), 2 on a
// usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/onnxpipe/onnxpipe/runtimes/go/sidecar"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sidecar-example", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8001", "sidecar address host:port")
	model := fs.String("model", "digits", "model name")
	inputsPath := fs.String("inputs", "", "tensor-JSON inputs file (default: a 28x28 RGB image of a drawn \"1\", input 'image')")
	outputs := fs.String("outputs", "", "comma-separated outputs to return (default: all)")
	token := fs.String("token", os.Getenv("ONNXPIPE_TOKEN"), "bearer token (default $ONNXPIPE_TOKEN)")
	tlsCA := fs.String("tls-ca", "", "PEM file of the certificate to trust: connect over TLS")
	timeout := fs.Duration("timeout", 10*time.Second, "deadline for connecting and for the call")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sidecar-example: unexpected arguments %q (flags only; see -h)\n", fs.Args())
		return 2
	}

	inputs := map[string]sidecar.Tensor{"image": digitOne()}
	if *inputsPath != "" {
		f, err := os.Open(*inputsPath)
		if err != nil {
			fmt.Fprintf(stderr, "sidecar-example: %v\n", err)
			return 2
		}
		_, inputs, err = sidecar.ReadTensorJSON(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(stderr, "sidecar-example: %s: %v\n", *inputsPath, err)
			return 2
		}
	}
	var wanted []string
	if *outputs != "" {
		wanted = strings.Split(*outputs, ",")
	}
	opts := []sidecar.Option{sidecar.WithToken(*token)}
	if *tlsCA != "" {
		opts = append(opts, sidecar.WithTLSCAFile(*tlsCA))
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	client, err := sidecar.Dial(ctx, *addr, opts...)
	if err != nil {
		fmt.Fprintf(stderr, "sidecar-example: %v\n", err)
		return 1
	}
	defer client.Close()
	result, err := client.Infer(ctx, *model, inputs, wanted...)
	if err != nil {
		fmt.Fprintf(stderr, "sidecar-example: %v\n", err)
		if errors.Is(err, sidecar.ErrUnauthenticated) {
			fmt.Fprintln(stderr, "sidecar-example: pass the server's token with -token or $ONNXPIPE_TOKEN")
		}
		return 1
	}
	if err := sidecar.WriteTensorJSON(stdout, result.Names, result.Outputs); err != nil {
		fmt.Fprintf(stderr, "sidecar-example: %v\n", err)
		return 1
	}
	return 0
}

// digitOne draws a white vertical stroke on black: a "1" as the digits example model reads it
// (uint8 [1, 28, 28, 3], RGB).
func digitOne() sidecar.Tensor {
	const h, w = 28, 28
	pixels := make([]uint8, h*w*3)
	for y := 5; y < 23; y++ {
		for x := 12; x < 16; x++ {
			for c := 0; c < 3; c++ {
				pixels[(y*w+x)*3+c] = 255
			}
		}
	}
	return sidecar.NewTensor([]int64{1, h, w, 3}, pixels)
}
