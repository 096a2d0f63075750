package onnxpipe

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// opsetDomains reads the custom-op domains a model imports (ModelProto.opset_import, field 8) from the
// protobuf wire format, skipping everything else. It runs before the session is created because a model
// using ai.onnx.contrib ops can only be loaded once the extensions library is registered. An error means
// the file is not a readable ModelProto; ONNX Runtime then gives the authoritative load error.
func opsetDomains(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	var domains []string
	for {
		tag, err := binary.ReadUvarint(r)
		if errors.Is(err, io.EOF) {
			return domains, nil
		}
		if err != nil {
			return nil, err
		}
		field, wire := tag>>3, tag&7
		switch wire {
		case 0:
			if _, err := binary.ReadUvarint(r); err != nil {
				return nil, err
			}
		case 1, 5:
			if _, err := r.Discard(map[uint64]int{1: 8, 5: 4}[wire]); err != nil {
				return nil, err
			}
		case 2:
			n, err := binary.ReadUvarint(r)
			if err != nil {
				return nil, err
			}
			if field != 8 {
				if _, err := r.Discard(int(min(n, 1<<40))); err != nil {
					return nil, err
				}
				continue
			}
			if n > 1<<20 {
				return nil, fmt.Errorf("opset_import entry of %d bytes", n)
			}
			buf := make([]byte, n)
			if _, err := io.ReadFull(r, buf); err != nil {
				return nil, err
			}
			domain, err := opsetDomain(buf)
			if err != nil {
				return nil, err
			}
			if domain != "" && domain != "ai.onnx" {
				domains = append(domains, domain)
			}
		default:
			return nil, fmt.Errorf("field %d has wire type %d, not a ModelProto", field, wire)
		}
		if field == 0 {
			return nil, errors.New("field number 0, not a ModelProto")
		}
	}
}

// opsetDomain returns OperatorSetIdProto.domain (field 1).
func opsetDomain(buf []byte) (string, error) {
	for len(buf) > 0 {
		tag, k := binary.Uvarint(buf)
		if k <= 0 {
			return "", errors.New("bad varint in opset_import")
		}
		buf = buf[k:]
		switch tag & 7 {
		case 0:
			_, k = binary.Uvarint(buf)
			if k <= 0 {
				return "", errors.New("bad varint in opset_import")
			}
			buf = buf[k:]
		case 2:
			n, k := binary.Uvarint(buf)
			if k <= 0 || uint64(len(buf)-k) < n {
				return "", errors.New("bad length in opset_import")
			}
			if tag>>3 == 1 {
				return string(buf[k : k+int(n)]), nil
			}
			buf = buf[k+int(n):]
		default:
			return "", errors.New("unexpected wire type in opset_import")
		}
	}
	return "", nil
}

// pbField is one protobuf field: a varint (wire 0), a fixed64/fixed32 (wire 1/5, in num) or bytes (wire 2).
type pbField struct {
	num   uint64
	wire  uint64
	value uint64
	bytes []byte
}

// pbFields splits a protobuf message into its fields; an error for malformed input.
func pbFields(buf []byte) ([]pbField, error) {
	var out []pbField
	for len(buf) > 0 {
		tag, k := binary.Uvarint(buf)
		if k <= 0 {
			return nil, errors.New("bad tag")
		}
		buf = buf[k:]
		f := pbField{num: tag >> 3, wire: tag & 7}
		switch f.wire {
		case 0:
			f.value, k = binary.Uvarint(buf)
			if k <= 0 {
				return nil, errors.New("bad varint")
			}
			buf = buf[k:]
		case 1:
			if len(buf) < 8 {
				return nil, errors.New("short fixed64")
			}
			f.value, buf = binary.LittleEndian.Uint64(buf), buf[8:]
		case 5:
			if len(buf) < 4 {
				return nil, errors.New("short fixed32")
			}
			f.value, buf = uint64(binary.LittleEndian.Uint32(buf)), buf[4:]
		case 2:
			n, k := binary.Uvarint(buf)
			if k <= 0 || uint64(len(buf)-k) < n {
				return nil, errors.New("bad length")
			}
			f.bytes, buf = buf[k:k+int(n)], buf[k+int(n):]
		default:
			return nil, fmt.Errorf("wire type %d", f.wire)
		}
		out = append(out, f)
	}
	return out, nil
}

// graphDetails is what ONNX Runtime's input/output info (as onnxruntime_go exposes it) lacks for a plain
// ONNX file: the names of dynamic dimensions, and the overridable initializers (graph inputs backed by an
// initializer: run-time parameters such as thresholds) with their values.
type graphDetails struct {
	dimNames    map[string][]string // value name -> dim_param per axis ("" when fixed or unnamed)
	overridable []overridable       // in graph input order
}

type overridable struct {
	name  string
	dtype DType
	shape []int64
	value []any // the initializer's elements when numeric and small, else nil
}

// readGraphDetails parses ModelProto.graph (field 7): inputs (11), outputs (12), initializers (5).
func readGraphDetails(path string) (*graphDetails, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	top, err := pbFields(data)
	if err != nil {
		return nil, err
	}
	d := &graphDetails{dimNames: map[string][]string{}}
	for _, f := range top {
		if f.num != 7 || f.wire != 2 {
			continue
		}
		graph, err := pbFields(f.bytes)
		if err != nil {
			return nil, err
		}
		inits := map[string]overridable{}
		var inputs []string
		for _, g := range graph {
			switch {
			case g.wire != 2:
			case g.num == 11 || g.num == 12:
				name, dims, err := valueInfo(g.bytes)
				if err != nil {
					return nil, err
				}
				d.dimNames[name] = dims
				if g.num == 11 {
					inputs = append(inputs, name)
				}
			case g.num == 5:
				init, err := initializer(g.bytes)
				if err != nil {
					return nil, err
				}
				inits[init.name] = init
			}
		}
		for _, name := range inputs {
			if init, ok := inits[name]; ok {
				d.overridable = append(d.overridable, init)
			}
		}
	}
	return d, nil
}

// valueInfo reads ValueInfoProto{name=1, type=2: TypeProto{tensor_type=1: {elem_type=1, shape=2:
// TensorShapeProto{dim=1: {dim_value=1, dim_param=2}}}}}.
func valueInfo(buf []byte) (name string, dims []string, err error) {
	fields, err := pbFields(buf)
	if err != nil {
		return "", nil, err
	}
	for _, f := range fields {
		switch {
		case f.num == 1 && f.wire == 2:
			name = string(f.bytes)
		case f.num == 2 && f.wire == 2:
			if dims, err = tensorDims(f.bytes); err != nil {
				return "", nil, err
			}
		}
	}
	return name, dims, nil
}

// tensorDims returns each axis's dim_param ("" for a fixed or unnamed dim) of a tensor TypeProto.
func tensorDims(typeProto []byte) ([]string, error) {
	var dims []string
	outer, err := pbFields(typeProto)
	if err != nil {
		return nil, err
	}
	for _, t := range outer {
		if t.num != 1 || t.wire != 2 {
			continue
		}
		tt, err := pbFields(t.bytes)
		if err != nil {
			return nil, err
		}
		for _, f := range tt {
			if f.num != 2 || f.wire != 2 {
				continue
			}
			shape, err := pbFields(f.bytes)
			if err != nil {
				return nil, err
			}
			dims = []string{}
			for _, dim := range shape {
				if dim.num != 1 || dim.wire != 2 {
					continue
				}
				parts, err := pbFields(dim.bytes)
				if err != nil {
					return nil, err
				}
				param := ""
				for _, p := range parts {
					if p.num == 2 && p.wire == 2 {
						param = string(p.bytes)
					}
				}
				dims = append(dims, param)
			}
		}
	}
	return dims, nil
}

// ONNX TensorProto.DataType values for the tensor-JSON dtypes.
var onnxDTypes = map[uint64]DType{1: Float32, 2: Uint8, 3: Int8, 6: Int32, 7: Int64, 8: String, 9: Bool, 11: Float64}

// initializer reads TensorProto{dims=1, data_type=2, float_data=4, int32_data=5, int64_data=7, name=8,
// raw_data=9, double_data=10}; values only for numeric tensors of at most 64 elements.
func initializer(buf []byte) (overridable, error) {
	fields, err := pbFields(buf)
	if err != nil {
		return overridable{}, err
	}
	var o overridable
	var dataType uint64
	var raw []byte
	packed := map[uint64][]byte{}
	unpacked := map[uint64][]uint64{}
	for _, f := range fields {
		switch {
		case f.num == 1 && f.wire == 0:
			o.shape = append(o.shape, int64(f.value))
		case f.num == 1 && f.wire == 2: // packed dims
			for b := f.bytes; len(b) > 0; {
				v, k := binary.Uvarint(b)
				if k <= 0 {
					return o, errors.New("bad dims")
				}
				o.shape, b = append(o.shape, int64(v)), b[k:]
			}
		case f.num == 2 && f.wire == 0:
			dataType = f.value
		case f.num == 8 && f.wire == 2:
			o.name = string(f.bytes)
		case f.num == 9 && f.wire == 2:
			raw = f.bytes
		case f.num == 4 || f.num == 5 || f.num == 7 || f.num == 10:
			if f.wire == 2 {
				packed[f.num] = append(packed[f.num], f.bytes...)
			} else {
				unpacked[f.num] = append(unpacked[f.num], f.value)
			}
		}
	}
	o.dtype = onnxDTypes[dataType]
	count := int64(1)
	for _, d := range o.shape {
		count *= d
	}
	if o.dtype == "" || o.dtype == String || count > 64 || count < 0 {
		return o, nil
	}
	o.value = decodeInitializer(o.dtype, int(count), raw, packed, unpacked)
	return o, nil
}

func decodeInitializer(dtype DType, count int, raw []byte, packed map[uint64][]byte, unpacked map[uint64][]uint64) []any {
	out := make([]any, 0, count)
	if raw != nil {
		size := map[DType]int{Float32: 4, Float64: 8, Int64: 8, Int32: 4, Uint8: 1, Int8: 1, Bool: 1}[dtype]
		if len(raw) != size*count {
			return nil
		}
		for i := range count {
			b := raw[i*size:]
			switch dtype {
			case Float32:
				out = append(out, math.Float32frombits(binary.LittleEndian.Uint32(b)))
			case Float64:
				out = append(out, math.Float64frombits(binary.LittleEndian.Uint64(b)))
			case Int64:
				out = append(out, int64(binary.LittleEndian.Uint64(b)))
			case Int32:
				out = append(out, int32(binary.LittleEndian.Uint32(b)))
			case Uint8:
				out = append(out, b[0])
			case Int8:
				out = append(out, int8(b[0]))
			case Bool:
				out = append(out, b[0] != 0)
			}
		}
		return out
	}
	// Typed fields: float_data (4, fixed32), double_data (10, fixed64), int64_data (7, varint), int32_data
	// (5, varint; also holds uint8, int8 and bool).
	field := map[DType]uint64{Float32: 4, Float64: 10, Int64: 7, Int32: 5, Uint8: 5, Int8: 5, Bool: 5}[dtype]
	values := unpacked[field]
	for b := packed[field]; len(b) > 0; {
		switch field {
		case 4:
			values, b = append(values, uint64(binary.LittleEndian.Uint32(b))), b[4:]
		case 10:
			values, b = append(values, binary.LittleEndian.Uint64(b)), b[8:]
		default:
			v, k := binary.Uvarint(b)
			if k <= 0 {
				return nil
			}
			values, b = append(values, v), b[k:]
		}
	}
	if len(values) != count {
		return nil
	}
	for _, v := range values {
		switch dtype {
		case Float32:
			out = append(out, math.Float32frombits(uint32(v)))
		case Float64:
			out = append(out, math.Float64frombits(v))
		case Int64:
			out = append(out, int64(v))
		case Int32:
			out = append(out, int32(v))
		case Uint8:
			out = append(out, uint8(v))
		case Int8:
			out = append(out, int8(v))
		case Bool:
			out = append(out, v != 0)
		}
	}
	return out
}
