// Package sidecar calls the onnxpipe gRPC sidecar (`onnxpipe serve`, docs/serving.md) from Go.
//
// The sidecar speaks the Open Inference Protocol (KServe v2); the stubs in the inference sub-package are
// generated from the repository's one proto (proto/grpc_service.proto, see generate.sh). This package adds
// a small typed layer on top: tensors as Go slices sent raw (raw_input_contents) and decoded from
// raw_output_contents, and errors that keep the sidecar's onnxpipe error code.
//
//	client, err := sidecar.Dial(ctx, "127.0.0.1:8001", sidecar.WithToken(os.Getenv("ONNXPIPE_TOKEN")))
//	if err != nil { ... }
//	defer client.Close()
//	image := sidecar.NewTensor([]int64{1, 28, 28, 3}, pixels) // pixels []uint8
//	result, err := client.Infer(ctx, "digits", map[string]sidecar.Tensor{"image": image})
//	switch {
//	case errors.Is(err, sidecar.ErrInvalidInput): // the message names the input, what was given and expected
//	case err != nil: ...
//	}
//	labels := result.Outputs["label"].Data.([]string)
//
// Every error the package returns is an *Error wrapping one sentinel (ErrInvalidInput, ErrNotFound, ...),
// so callers branch with errors.Is; Code(err) gives the code shared with the Python, Java and Go runtimes.
// Nothing is converted silently: a tensor is sent with the datatype of its Go slice, and the sidecar refuses
// one that is not the model's.
package sidecar
