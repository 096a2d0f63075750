//go:build race

package onnxpipe

const raceEnabled = true
