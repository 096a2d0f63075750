module github.com/onnxpipe/onnxpipe/runtimes/go

go 1.26.0

require github.com/yalue/onnxruntime_go v1.35.0
