package onnxpipe

import (
	"fmt"

	"github.com/onnxpipe/onnxpipe/runtimes/go/core"

	ort "github.com/yalue/onnxruntime_go"
)

// toORT wraps t as an ONNX Runtime value. Numeric data is shared with t, strings are copied.
func toORT(t Tensor) (ort.Value, error) {
	shape := ort.Shape(t.Shape())
	if len(shape) == 0 {
		switch d := t.Values().(type) {
		case []float32:
			return ort.NewScalar(d[0])
		case []float64:
			return ort.NewScalar(d[0])
		case []int64:
			return ort.NewScalar(d[0])
		case []int32:
			return ort.NewScalar(d[0])
		case []uint8:
			return ort.NewScalar(d[0])
		case []int8:
			return ort.NewScalar(d[0])
		case []bool:
			return ort.NewScalar(d[0])
		case []string:
			return nil, runtimeErr("a string scalar (shape []) cannot be passed through onnxruntime_go v1.35.0; the graph would need shape [1]")
		}
	}
	switch d := t.Values().(type) {
	case []float32:
		return ort.NewTensor(shape, d)
	case []float64:
		return ort.NewTensor(shape, d)
	case []int64:
		return ort.NewTensor(shape, d)
	case []int32:
		return ort.NewTensor(shape, d)
	case []uint8:
		return ort.NewTensor(shape, d)
	case []int8:
		return ort.NewTensor(shape, d)
	case []bool:
		return ort.NewTensor(shape, d)
	case []string:
		return newStringTensor(shape, d)
	}
	return nil, inputErr("unsupported tensor %s", t.Describe())
}

func newScalar(dtype DType) (ort.Value, error) {
	switch dtype {
	case Float32:
		return ort.NewEmptyScalar[float32]()
	case Float64:
		return ort.NewEmptyScalar[float64]()
	case Int64:
		return ort.NewEmptyScalar[int64]()
	case Int32:
		return ort.NewEmptyScalar[int32]()
	case Uint8:
		return ort.NewEmptyScalar[uint8]()
	case Int8:
		return ort.NewEmptyScalar[int8]()
	case Bool:
		return ort.NewEmptyScalar[bool]()
	}
	return nil, fmt.Errorf("no scalar of dtype %s", dtype)
}

// fromORT copies an ONNX Runtime output into a Tensor (Go memory; the value may be destroyed afterwards).
func fromORT(v ort.Value) (Tensor, error) {
	if v == nil {
		return Tensor{}, fmt.Errorf("ONNX Runtime returned no value")
	}
	shape := []int64(v.GetShape())
	if shape == nil {
		shape = []int64{}
	}
	switch x := v.(type) {
	case *ort.Tensor[float32]:
		return core.FromValues(shape, x.GetData())
	case *ort.Tensor[float64]:
		return core.FromValues(shape, x.GetData())
	case *ort.Tensor[int64]:
		return core.FromValues(shape, x.GetData())
	case *ort.Tensor[int32]:
		return core.FromValues(shape, x.GetData())
	case *ort.Tensor[uint8]:
		return core.FromValues(shape, x.GetData())
	case *ort.Tensor[int8]:
		return core.FromValues(shape, x.GetData())
	case *ort.Tensor[bool]:
		return core.FromValues(shape, x.GetData())
	case *ort.Scalar[float32]:
		return core.FromValues(shape, []float32{x.GetData()})
	case *ort.Scalar[float64]:
		return core.FromValues(shape, []float64{x.GetData()})
	case *ort.Scalar[int64]:
		return core.FromValues(shape, []int64{x.GetData()})
	case *ort.Scalar[int32]:
		return core.FromValues(shape, []int32{x.GetData()})
	case *ort.Scalar[uint8]:
		return core.FromValues(shape, []uint8{x.GetData()})
	case *ort.Scalar[int8]:
		return core.FromValues(shape, []int8{x.GetData()})
	case *ort.Scalar[bool]:
		return core.FromValues(shape, []bool{x.GetData()})
	case *ort.StringTensor:
		if len(shape) == 0 { // GetContents sizes its result by the product of no dims: 0
			s, err := x.GetElement(0)
			if err != nil {
				return Tensor{}, err
			}
			return core.FromValues(shape, []string{s})
		}
		s, err := x.GetContents()
		if err != nil {
			return Tensor{}, err
		}
		return core.FromValues(shape, s)
	}
	return Tensor{}, fmt.Errorf("ONNX Runtime returned %s of element type %v; supported: tensors of %v", v.GetONNXType(), v.DataType(), DTypes)
}
