package core

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unsafe"
)

// ReadTensorJSON reads a tensor-JSON document (docs/tensor-json.md, spec/README.md "Reading tensor JSON"):
// names in document order and the tensors by name. It streams: values go straight into typed slices sized
// from the declared shape, which is checked against lim before anything is allocated. Errors wrap
// ErrInvalidInput (malformed JSON, duplicate key, unknown field, value out of range, lone surrogate, ...)
// or ErrTooLarge (over a limit), and name the tensor and the field.
func ReadTensorJSON(r io.Reader, lim Limits) ([]string, map[string]Tensor, error) {
	counted := &countingReader{r: r, most: lim.MaxDocumentBytes}
	d := &docReader{s: newScanner(counted), lim: lim}
	names, tensors, err := d.document()
	if counted.n > counted.most {
		err = TooLargeErr("the document is over the limit max_document_bytes = %d", counted.most)
	}
	if err != nil {
		if errors.Is(err, errSyntax) {
			err = InputErr("tensor JSON: %s", detail(err, errSyntax))
		}
		return nil, nil, err
	}
	return names, tensors, nil
}

// docReader carries what the limits count over a whole document.
type docReader struct {
	s           *scanner
	lim         Limits
	elements    int64
	stringBytes int64
}

func (d *docReader) document() ([]string, map[string]Tensor, error) {
	if c := d.s.ws(); c != '{' {
		if c == '[' || c == '"' || c == '-' || c >= '0' && c <= '9' || c == 't' || c == 'f' || c == 'n' {
			if err := d.s.skip(1, nil); err != nil {
				return nil, nil, err
			}
			return nil, nil, InputErr("tensor JSON: expected an object of named tensors")
		}
		return nil, nil, syntaxErr("expected '{', found " + describeByte(c))
	}
	d.s.r.ReadByte()
	var names []string
	tensors := map[string]Tensor{}
	if d.s.ws() == '}' {
		d.s.r.ReadByte()
	} else {
		for {
			if err := d.s.str(-1); err != nil {
				return nil, nil, err
			}
			name := string(d.s.buf)
			if _, dup := tensors[name]; dup {
				return nil, nil, InputErr("tensor JSON: tensor %q appears twice", Clip(name))
			}
			if err := d.s.expect(':', "after a tensor name"); err != nil {
				return nil, nil, err
			}
			t, err := d.tensor(name)
			if err != nil {
				return nil, nil, err
			}
			names = append(names, name)
			tensors[name] = t
			c := d.s.ws()
			d.s.r.ReadByte()
			if c == '}' {
				break
			}
			if c != ',' {
				return nil, nil, syntaxErr("expected ',' or '}' after tensor " + strconv.Quote(Clip(name)) + ", found " + describeByte(c))
			}
		}
	}
	if c := d.s.ws(); c != 0 {
		return nil, nil, InputErr("tensor JSON: unexpected data after the top-level object")
	}
	return names, tensors, nil
}

// tensorFields is one tensor's fields as read so far.
type tensorFields struct {
	where   string // `tensor "x"`, for errors
	dtype   DType
	shape   []int64
	count   int64
	data    any
	pending []byte // the data array's text when it came before dtype or shape
	seen    map[string]bool
}

func (d *docReader) tensor(name string) (Tensor, error) {
	f := &tensorFields{where: "tensor " + strconv.Quote(Clip(name)), seen: map[string]bool{}}
	if c := d.s.ws(); c != '{' {
		if err := d.s.skip(2, nil); err != nil {
			return Tensor{}, err
		}
		return Tensor{}, InputErr("%s: expected an object with dtype, shape and data", f.where)
	}
	d.s.r.ReadByte()
	if d.s.ws() == '}' {
		d.s.r.ReadByte()
		return Tensor{}, InputErr("%s: missing fields [dtype shape data]; expected dtype, shape and data", f.where)
	}
	for {
		if err := d.s.str(-1); err != nil {
			return Tensor{}, err
		}
		key := string(d.s.buf)
		if f.seen[key] {
			return Tensor{}, InputErr("%s: field %q appears twice", f.where, Clip(key))
		}
		f.seen[key] = true
		if err := d.s.expect(':', "after a field name"); err != nil {
			return Tensor{}, err
		}
		if err := d.field(f, key); err != nil {
			return Tensor{}, err
		}
		c := d.s.ws()
		d.s.r.ReadByte()
		if c == '}' {
			break
		}
		if c != ',' {
			return Tensor{}, syntaxErr(fmt.Sprintf("expected ',' or '}' in %s, found %s", f.where, describeByte(c)))
		}
	}
	var missing []string
	for _, k := range []string{"dtype", "shape", "data"} {
		if !f.seen[k] {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return Tensor{}, InputErr("%s: missing field(s) %v; expected dtype, shape and data", f.where, missing)
	}
	if f.pending != nil {
		inner := &docReader{s: newScanner(bytes.NewReader(f.pending)), lim: d.lim, stringBytes: d.stringBytes}
		var err error
		if f.data, err = inner.data(f); err != nil {
			return Tensor{}, err
		}
		d.stringBytes = inner.stringBytes
	}
	return Tensor{dtype: f.dtype, shape: f.shape, data: f.data}, nil
}

func (d *docReader) field(f *tensorFields, key string) error {
	switch key {
	case "dtype":
		if d.s.ws() != '"' {
			return d.wrongType(f, "dtype", fmt.Sprintf("one of %v", DTypes))
		}
		if err := d.s.str(64); err != nil {
			return InputErr("%s: dtype: %v", f.where, err)
		}
		f.dtype = DType(d.s.buf)
		if !f.dtype.Valid() {
			return InputErr("%s: dtype %q is not one of %v", f.where, Clip(string(f.dtype)), DTypes)
		}
	case "shape":
		if err := d.shape(f); err != nil {
			return err
		}
	case "data":
		if d.s.ws() != '[' {
			return d.wrongType(f, "data", "a flat list")
		}
		if !f.seen["dtype"] || !f.seen["shape"] {
			f.pending = []byte{}
			return d.s.skip(3, &f.pending)
		}
		var err error
		f.data, err = d.data(f)
		return err
	default:
		return InputErr("%s: unknown field %q; expected dtype, shape and data", f.where, Clip(key))
	}
	return nil
}

// wrongType refuses a field's value of the wrong JSON type (after reading it, so nesting limits apply).
func (d *docReader) wrongType(f *tensorFields, field, want string) error {
	var text []byte
	if err := d.s.skip(3, &text); err != nil {
		return err
	}
	return InputErr("%s: %s must be %s, got %s", f.where, field, want, Clip(string(text)))
}

// shape reads the dims and applies the element limits: before any data is allocated.
func (d *docReader) shape(f *tensorFields) error {
	if d.s.ws() != '[' {
		return d.wrongType(f, "shape", "a list of non-negative integers")
	}
	d.s.r.ReadByte()
	f.shape = []int64{}
	for d.s.ws() != ']' {
		if len(f.shape) > 0 {
			if err := d.s.expect(',', "between dims"); err != nil {
				return err
			}
		}
		c := d.s.ws()
		if !(c == '-' || c >= '0' && c <= '9') {
			if err := d.s.skip(4, nil); err != nil {
				return err
			}
			return InputErr("%s: shape must be a list of non-negative integers", f.where)
		}
		integral, err := d.s.number()
		if err != nil {
			return err
		}
		dim, perr := strconv.ParseInt(string(d.s.buf), 10, 64)
		if !integral || (perr != nil && !errors.Is(perr, strconv.ErrRange)) || dim < 0 || len(d.s.buf) > 0 && d.s.buf[0] == '-' {
			return InputErr("%s: shape must be a list of non-negative integers, got %s", f.where, Clip(string(d.s.buf)))
		}
		if perr != nil {
			dim = math.MaxInt64
		}
		f.shape = append(f.shape, dim)
	}
	d.s.r.ReadByte()
	return d.checkShape(f)
}

func (d *docReader) checkShape(f *tensorFields) error {
	for i, dim := range f.shape {
		if dim > d.lim.MaxElements { // a zero-size tensor's dims too (spec/limits.json)
			return TooLargeErr("%s: shape %s: dimension %d is %d, over the limit max_elements = %d",
				f.where, FormatShape(f.shape), i, dim, d.lim.MaxElements)
		}
	}
	count, err := ElementCount(f.shape)
	if err != nil || d.elements+count > d.lim.MaxElements {
		return TooLargeErr("%s: shape %s: the document declares more than the limit max_elements = %d elements",
			f.where, FormatShape(f.shape), d.lim.MaxElements)
	}
	d.elements += count
	f.count = count
	return nil
}

// data reads the data array (next in the input) at f's dtype into a slice of f.count elements.
func (d *docReader) data(f *tensorFields) (any, error) {
	switch f.dtype {
	case Float32:
		return readElems(d, f, d.float32)
	case Float64:
		return readElems(d, f, d.float64)
	case Int64:
		return readElems(d, f, intParser[int64](d, 64))
	case Int32:
		return readElems(d, f, intParser[int32](d, 32))
	case Int8:
		return readElems(d, f, intParser[int8](d, 8))
	case Uint8:
		return readElems(d, f, d.uint8)
	case Bool:
		return readElems(d, f, d.bool)
	default:
		return readElems(d, f, d.string)
	}
}

// elemErr is a refused element; readElems adds the tensor and the index.
type elemErr struct {
	text string // the element as written
	why  string
}

func (e *elemErr) Error() string { return e.text + "; " + e.why }

func readElems[T Element | string](d *docReader, f *tensorFields, parse func() (T, error)) ([]T, error) {
	if err := d.s.expect('[', "opening data"); err != nil {
		return nil, err
	}
	out := make([]T, 0, f.count)
	n := int64(0)
	for ; d.s.ws() != ']'; n++ {
		if n > 0 {
			if err := d.s.expect(',', "between data values"); err != nil {
				return nil, err
			}
		}
		switch c := d.s.ws(); c {
		case '[', '{':
			if err := d.s.skip(4, nil); err != nil {
				return nil, err
			}
			return nil, InputErr("%s: data must be a flat list; data[%d] is a nested %s", f.where, n, map[byte]string{'[': "list", '{': "object"}[c])
		case 0:
			return nil, syntaxErr("the input ends inside " + f.where + "'s data")
		}
		v, err := parse()
		if err != nil {
			return nil, elementErr(f, n, err)
		}
		if n < f.count {
			out = append(out, v)
		}
	}
	d.s.r.ReadByte()
	if n != f.count {
		return nil, InputErr("%s: shape %s needs %d values but data has %d", f.where, FormatShape(f.shape), f.count, n)
	}
	return out, nil
}

// token reads the next element as text: a number (integral reports its form), a string, or a literal.
func (d *docReader) token() (text string, kind byte, integral bool, err error) {
	switch c := d.s.ws(); {
	case c == '"':
		if err := d.s.str(d.lim.MaxStringBytes - d.stringBytes); err != nil {
			return "", 0, false, err
		}
		return bufString(d.s.buf), '"', false, nil
	case c == '-' || c >= '0' && c <= '9':
		integral, err := d.s.number()
		return bufString(d.s.buf), '0', integral, err
	default:
		word, err := d.s.literal()
		return word, 'l', false, err
	}
}

var specialFloats = map[string]float64{"NaN": math.NaN(), "Infinity": math.Inf(1), "-Infinity": math.Inf(-1)}

func (d *docReader) floatAt(bits int) (float64, error) {
	text, kind, _, err := d.token()
	if err != nil {
		return 0, err
	}
	switch kind {
	case '"':
		if v, ok := specialFloats[text]; ok {
			return v, nil
		}
		return 0, &elemErr{strconv.Quote(Clip(text)), `expected a number, "NaN", "Infinity" or "-Infinity"`}
	case 'l':
		return 0, &elemErr{text, "expected a number"}
	}
	v, err := strconv.ParseFloat(text, bits)
	if err != nil {
		return 0, &elemErr{Clip(text), fmt.Sprintf("out of range for float%d", bits)}
	}
	return v, nil
}

func (d *docReader) float32() (float32, error) { v, err := d.floatAt(32); return float32(v), err }
func (d *docReader) float64() (float64, error) { return d.floatAt(64) }

// integer reads an integer written without fraction or exponent, within [lo, hi].
func (d *docReader) integer(dtype DType, lo, hi int64) (int64, error) {
	text, kind, integral, err := d.token()
	if err != nil {
		return 0, err
	}
	shown := text
	if kind == '"' {
		shown = strconv.Quote(Clip(text))
	}
	if kind != '0' || !integral {
		return 0, &elemErr{Clip(shown), "expected an integer for " + string(dtype) + " (no fraction, no exponent)"}
	}
	v, err := strconv.ParseInt(text, 10, 64)
	if err != nil || v < lo || v > hi {
		return 0, &elemErr{Clip(text), fmt.Sprintf("out of range for %s [%d, %d]", dtype, lo, hi)}
	}
	return v, nil
}

func intParser[T int64 | int32 | int8](d *docReader, bits int) func() (T, error) {
	lo, hi := -(int64(1) << (bits - 1)), int64(1)<<(bits-1)-1
	if bits == 64 {
		lo, hi = math.MinInt64, math.MaxInt64
	}
	dtype := DTypeOf[T]()
	return func() (T, error) {
		v, err := d.integer(dtype, lo, hi)
		return T(v), err
	}
}

func (d *docReader) uint8() (uint8, error) {
	v, err := d.integer(Uint8, 0, 255)
	return uint8(v), err
}

func (d *docReader) bool() (bool, error) {
	text, kind, _, err := d.token()
	if err != nil {
		return false, err
	}
	if kind == 'l' && text != "null" {
		return text == "true", nil
	}
	if kind == '"' {
		text = strconv.Quote(Clip(text))
	}
	return false, &elemErr{Clip(text), "expected true or false"}
}

func (d *docReader) string() (string, error) {
	text, kind, _, err := d.token()
	if err != nil {
		return "", err
	}
	if kind != '"' {
		return "", &elemErr{Clip(text), "expected a string"}
	}
	d.stringBytes += int64(len(text))
	return strings.Clone(text), nil // text aliases the scanner's buffer
}

// sentinel is the code sentinel err wraps (ErrTooLarge or ErrInvalidInput).
func sentinel(err error) error {
	if errors.Is(err, ErrTooLarge) {
		return ErrTooLarge
	}
	return ErrInvalidInput
}

// detail is err's message without the "<sentinel>: " prefix, to be wrapped again with more context.
func detail(err, sentinel error) string {
	return strings.TrimPrefix(err.Error(), sentinel.Error()+": ")
}

// bufString views the scanner's token buffer as a string without copying it: numbers are parsed from it
// before the next token overwrites it (a copy per element would double the reader's memory).
func bufString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// elementErr adds the tensor and the index to an element's error.
func elementErr(f *tensorFields, n int64, err error) error {
	var ee *elemErr
	switch {
	case errors.As(err, &ee):
		return InputErr("%s: data[%d] is %s", f.where, n, ee.Error())
	case errors.Is(err, errSyntax):
		return err
	}
	return fmt.Errorf("%w: %s: data[%d]: %s", sentinel(err), f.where, n, detail(err, sentinel(err)))
}
