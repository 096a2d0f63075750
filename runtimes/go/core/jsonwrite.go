package core

import (
	"bufio"
	"io"
	"math"
	"strconv"
	"unicode/utf8"
)

// WriteTensorJSON writes tensors as canonical tensor JSON (spec/README.md), keys in the order of names (all
// of which must be in tensors), and a newline: byte for byte what Python's
// json.dumps(doc, ensure_ascii=False) writes for the same values.
func WriteTensorJSON(w io.Writer, names []string, tensors map[string]Tensor) error {
	for _, name := range names {
		if _, ok := tensors[name]; !ok {
			return InputErr("tensor JSON: no tensor named %q to write", Clip(name))
		}
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	buf := make([]byte, 0, 256)
	buf = append(buf, '{')
	for i, name := range names {
		t := tensors[name]
		if i > 0 {
			buf = append(buf, ", "...)
		}
		buf = appendJSONString(buf, name)
		buf = append(buf, `: {"dtype": "`...)
		buf = append(buf, t.dtype...)
		buf = append(buf, `", "shape": [`...)
		for j, d := range t.shape {
			if j > 0 {
				buf = append(buf, ", "...)
			}
			buf = strconv.AppendInt(buf, d, 10)
		}
		buf = append(buf, `], "data": [`...)
		n := t.Len()
		for j := range n {
			if j > 0 {
				buf = append(buf, ", "...)
			}
			buf = appendElement(buf, t.data, j)
			if len(buf) > 32<<10 {
				bw.Write(buf)
				buf = buf[:0]
			}
		}
		buf = append(buf, "]}"...)
	}
	buf = append(buf, "}\n"...)
	bw.Write(buf)
	return bw.Flush()
}

func appendElement(buf []byte, data any, i int) []byte {
	switch d := data.(type) {
	case []float32:
		return AppendFloat(buf, float64(d[i]), 32)
	case []float64:
		return AppendFloat(buf, d[i], 64)
	case []int64:
		return strconv.AppendInt(buf, d[i], 10)
	case []int32:
		return strconv.AppendInt(buf, int64(d[i]), 10)
	case []int8:
		return strconv.AppendInt(buf, int64(d[i]), 10)
	case []uint8:
		return strconv.AppendInt(buf, int64(d[i]), 10)
	case []bool:
		return strconv.AppendBool(buf, d[i])
	case []string:
		return appendJSONString(buf, d[i])
	}
	return buf
}

// AppendFloat appends v as canonical tensor JSON writes it: the shortest decimal that reads back to v at
// float<bits> precision, laid out as Python's repr of a float (1.0, 0.0001, 1e-05, 1.5e+16); NaN and the
// infinities as the strings "NaN", "Infinity", "-Infinity".
func AppendFloat(buf []byte, v float64, bits int) []byte {
	switch {
	case math.IsNaN(v):
		return append(buf, `"NaN"`...)
	case math.IsInf(v, 1):
		return append(buf, `"Infinity"`...)
	case math.IsInf(v, -1):
		return append(buf, `"-Infinity"`...)
	}
	var scratch [32]byte
	e := strconv.AppendFloat(scratch[:0], v, 'e', -1, bits) // -d.ddde±XX
	neg := e[0] == '-'
	if neg {
		e = e[1:]
		buf = append(buf, '-')
	}
	mant, exp := e, 0
	for i, c := range e {
		if c == 'e' {
			mant = e[:i]
			exp, _ = strconv.Atoi(string(e[i+1:]))
			break
		}
	}
	digits := make([]byte, 0, 20)
	for _, c := range mant {
		if c != '.' {
			digits = append(digits, c)
		}
	}
	if exp < -4 || exp >= 16 {
		buf = append(buf, digits[0])
		if len(digits) > 1 {
			buf = append(buf, '.')
			buf = append(buf, digits[1:]...)
		}
		buf = append(buf, 'e')
		if exp < 0 {
			buf = append(buf, '-')
			exp = -exp
		} else {
			buf = append(buf, '+')
		}
		if exp < 10 {
			buf = append(buf, '0')
		}
		return strconv.AppendInt(buf, int64(exp), 10)
	}
	if exp < 0 { // 0.000ddd
		buf = append(buf, "0."...)
		for range -exp - 1 {
			buf = append(buf, '0')
		}
		return append(buf, digits...)
	}
	point := exp + 1
	for i := 0; i < point; i++ {
		if i < len(digits) {
			buf = append(buf, digits[i])
		} else {
			buf = append(buf, '0')
		}
	}
	buf = append(buf, '.')
	if point >= len(digits) {
		return append(buf, '0')
	}
	return append(buf, digits[point:]...)
}

// appendJSONString writes s as json.dumps(s, ensure_ascii=False) does: UTF-8 as is; escaped only '"', '\'
// and U+0000–U+001F (\b \f \n \r \t by name, the rest \u00xx). Bytes that are not UTF-8 (ONNX Runtime
// may return them) become U+FFFD so the output stays valid JSON.
func appendJSONString(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"
	buf = append(buf, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				buf = utf8.AppendRune(buf, utf8.RuneError)
			} else {
				buf = append(buf, s[i:i+size]...)
			}
			i += size
			continue
		}
		switch c {
		case '"':
			buf = append(buf, `\"`...)
		case '\\':
			buf = append(buf, `\\`...)
		case '\b':
			buf = append(buf, `\b`...)
		case '\f':
			buf = append(buf, `\f`...)
		case '\n':
			buf = append(buf, `\n`...)
		case '\r':
			buf = append(buf, `\r`...)
		case '\t':
			buf = append(buf, `\t`...)
		default:
			if c < 0x20 {
				buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			} else {
				buf = append(buf, c)
			}
		}
		i++
	}
	return append(buf, '"')
}
