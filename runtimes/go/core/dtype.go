package core

// DType is a tensor element type, named as in tensor JSON and the manifest (spec/dtypes.json).
type DType string

// The element types a tensor may have.
const (
	Float32 DType = "float32"
	Float64 DType = "float64"
	Int64   DType = "int64"
	Int32   DType = "int32"
	Uint8   DType = "uint8"
	Int8    DType = "int8"
	Bool    DType = "bool"
	String  DType = "string"
)

// DTypes lists every supported element type, in spec/dtypes.json order.
var DTypes = []DType{Float32, Float64, Int64, Int32, Uint8, Int8, Bool, String}

// DTypeInfo is one row of spec/dtypes.json.
type DTypeInfo struct {
	Name       DType
	ONNXEnum   int     // TensorProto.DataType
	KServe     string  // KServe v2 datatype: FP32, ..., BYTES
	Bytes      int     // bytes per element; 0 for strings
	WidensFrom []DType // dtypes accepted for an input of this dtype, converted losslessly
}

var dtypeTable = []DTypeInfo{
	{Float32, 1, "FP32", 4, []DType{Uint8, Int8}},
	{Float64, 11, "FP64", 8, []DType{Float32, Uint8, Int8, Int32}},
	{Int64, 7, "INT64", 8, []DType{Uint8, Int8, Int32}},
	{Int32, 6, "INT32", 4, []DType{Uint8, Int8}},
	{Uint8, 2, "UINT8", 1, nil},
	{Int8, 3, "INT8", 1, nil},
	{Bool, 9, "BOOL", 1, nil},
	{String, 8, "BYTES", 0, nil},
}

// Info returns d's row of the dtype table, and false for an unknown dtype.
func (d DType) Info() (DTypeInfo, bool) {
	for _, row := range dtypeTable {
		if row.Name == d {
			return row, true
		}
	}
	return DTypeInfo{}, false
}

// Valid reports whether d is one of DTypes.
func (d DType) Valid() bool { _, ok := d.Info(); return ok }

// WidensFrom reports whether an input of dtype d accepts a tensor of dtype from (converted losslessly).
func (d DType) WidensFrom(from DType) bool {
	info, _ := d.Info()
	for _, w := range info.WidensFrom {
		if w == from {
			return true
		}
	}
	return false
}

// FromKServe returns the dtype of a KServe v2 datatype ("FP32" -> float32), or "" when there is none.
func FromKServe(datatype string) DType {
	for _, row := range dtypeTable {
		if row.KServe == datatype {
			return row.Name
		}
	}
	return ""
}

// FromONNX returns the dtype of an ONNX TensorProto.DataType, or "" when there is none.
func FromONNX(enum int) DType {
	for _, row := range dtypeTable {
		if row.ONNXEnum == enum {
			return row.Name
		}
	}
	return ""
}

// Element is the set of Go element types of non-string tensors.
type Element interface {
	float32 | float64 | int64 | int32 | uint8 | int8 | bool
}

// DTypeOf returns the DType of Go element type T.
func DTypeOf[T Element | string]() DType {
	var zero T
	return DTypeOfValues([]T{zero})
}

// DTypeOfValues returns the DType of a slice ([]float32 -> float32), or "" for any other type.
func DTypeOfValues(data any) DType {
	switch data.(type) {
	case []float32:
		return Float32
	case []float64:
		return Float64
	case []int64:
		return Int64
	case []int32:
		return Int32
	case []uint8:
		return Uint8
	case []int8:
		return Int8
	case []bool:
		return Bool
	case []string:
		return String
	}
	return ""
}

// LenOf returns the length of a slice of one of the element types, 0 for anything else.
func LenOf(data any) int {
	switch d := data.(type) {
	case []float32:
		return len(d)
	case []float64:
		return len(d)
	case []int64:
		return len(d)
	case []int32:
		return len(d)
	case []uint8:
		return len(d)
	case []int8:
		return len(d)
	case []bool:
		return len(d)
	case []string:
		return len(d)
	}
	return 0
}
