package onnxpipe

// Outputs holds a Run's results by name, in signature order.
type Outputs struct {
	names   []string
	tensors map[string]Tensor
}

// Names lists the outputs in signature (manifest) order.
func (o Outputs) Names() []string { return append([]string(nil), o.names...) }

// Tensor returns the named output.
func (o Outputs) Tensor(name string) (Tensor, error) {
	t, ok := o.tensors[name]
	if !ok {
		return Tensor{}, inputErr("no output %q; outputs are %v", name, o.names)
	}
	return t, nil
}

// Map returns the outputs by name (a new map over the same tensors).
func (o Outputs) Map() map[string]Tensor {
	m := make(map[string]Tensor, len(o.tensors))
	for k, v := range o.tensors {
		m[k] = v
	}
	return m
}

// Shape returns the named output's shape.
func (o Outputs) Shape(name string) ([]int64, error) {
	t, err := o.Tensor(name)
	if err != nil {
		return nil, err
	}
	return t.Shape(), nil
}

// OutputData returns the named output's elements as []T; an error names the output's real dtype.
func OutputData[T Element | string](o Outputs, name string) ([]T, error) {
	t, err := o.Tensor(name)
	if err != nil {
		return nil, err
	}
	d, ok := t.Values().([]T)
	if !ok {
		return nil, inputErr("output %q is %s, not %s", name, t.Describe(), DTypeOf[T]())
	}
	return d, nil
}

// Float32 returns a float32 output's elements (row-major).
func (o Outputs) Float32(name string) ([]float32, error) { return OutputData[float32](o, name) }

// Float64 returns a float64 output's elements.
func (o Outputs) Float64(name string) ([]float64, error) { return OutputData[float64](o, name) }

// Int64 returns an int64 output's elements.
func (o Outputs) Int64(name string) ([]int64, error) { return OutputData[int64](o, name) }

// Int32 returns an int32 output's elements.
func (o Outputs) Int32(name string) ([]int32, error) { return OutputData[int32](o, name) }

// Uint8 returns a uint8 output's elements.
func (o Outputs) Uint8(name string) ([]uint8, error) { return OutputData[uint8](o, name) }

// Int8 returns an int8 output's elements.
func (o Outputs) Int8(name string) ([]int8, error) { return OutputData[int8](o, name) }

// Bool returns a bool output's elements.
func (o Outputs) Bool(name string) ([]bool, error) { return OutputData[bool](o, name) }

// Strings returns a string output's elements.
func (o Outputs) Strings(name string) ([]string, error) { return OutputData[string](o, name) }
