module github.com/onnxpipe/onnxpipe/runtimes/go/sidecar

go 1.26.0

require (
	github.com/onnxpipe/onnxpipe/runtimes/go v0.0.0
	google.golang.org/grpc v1.85.0
	google.golang.org/protobuf v1.36.12
)

require (
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	golang.org/x/text v0.42.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260817212433-ac3dfec99bb1 // indirect
)

// The core package (tensor, dtypes, error codes, tensor JSON) is the runtime module's; only it is imported,
// so this module stays cgo-free.
replace github.com/onnxpipe/onnxpipe/runtimes/go => ../
