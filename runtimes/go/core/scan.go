package core

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"unicode/utf16"
	"unicode/utf8"
)

// scanner reads JSON tokens from a stream one at a time, so the tensor-JSON reader never holds the document
// or a generic tree of it: values go straight into typed slices.
type scanner struct {
	r   *bufio.Reader
	buf []byte // the current string or number token (reused)
	err error  // what the underlying reader failed with (a limit), reported instead of "unexpected end"
}

// maxNesting bounds skip's recursion: tensor JSON nests 3 deep, anything deeper is refused anyway.
const maxNesting = 64

var errSyntax = errors.New("syntax")

// syntaxErr is malformed JSON, reported with what was found.
func syntaxErr(found string) error {
	return fmt.Errorf("%w: not valid JSON (%s)", errSyntax, found)
}

// ws skips whitespace and returns the next byte without consuming it; 0 at the end of input.
func (s *scanner) ws() byte {
	for {
		c, err := s.r.ReadByte()
		if err != nil {
			return 0
		}
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			s.r.UnreadByte()
			return c
		}
	}
}

// expect consumes c after whitespace, or fails naming what stood there.
func (s *scanner) expect(c byte, context string) error {
	got := s.ws()
	if got != c {
		return syntaxErr(fmt.Sprintf("expected %q %s, found %s", c, context, describeByte(got)))
	}
	s.r.ReadByte()
	return nil
}

func describeByte(c byte) string {
	if c == 0 {
		return "the end of the input"
	}
	return fmt.Sprintf("%q", c)
}

// str reads a string (the opening quote next) into s.buf: escapes decoded, UTF-8 checked, lone surrogates
// refused. More than most bytes is TOO_LARGE (most < 0: no bound).
func (s *scanner) str(most int64) error {
	if c := s.ws(); c != '"' {
		return syntaxErr("expected a string, found " + describeByte(c))
	}
	s.r.ReadByte()
	s.buf = s.buf[:0]
	for {
		c, err := s.r.ReadByte()
		if err != nil {
			return syntaxErr("unterminated string")
		}
		switch {
		case c == '"':
			if !utf8.Valid(s.buf) {
				return InputErr("a string is not valid UTF-8")
			}
			return nil
		case c == '\\':
			if err := s.escape(); err != nil {
				return err
			}
		case c < 0x20:
			return syntaxErr(fmt.Sprintf("control character %#02x inside a string", c))
		default:
			s.buf = append(s.buf, c)
		}
		if most >= 0 && int64(len(s.buf)) > most {
			return TooLargeErr("a string is longer than the %d bytes max_string_bytes leaves", most)
		}
	}
}

func (s *scanner) escape() error {
	c, err := s.r.ReadByte()
	if err != nil {
		return syntaxErr("unterminated string")
	}
	simple := escapes
	if v, ok := simple[c]; ok {
		s.buf = append(s.buf, v)
		return nil
	}
	if c != 'u' {
		return syntaxErr(fmt.Sprintf("invalid escape \\%c", c))
	}
	r, err := s.hex4()
	if err != nil {
		return err
	}
	if utf16.IsSurrogate(r) {
		lo := rune(-1)
		if r < 0xDC00 {
			if b, _ := s.r.Peek(2); len(b) == 2 && b[0] == '\\' && b[1] == 'u' {
				s.r.Discard(2)
				if lo, err = s.hex4(); err != nil {
					return err
				}
			}
		}
		if r = utf16.DecodeRune(r, lo); r == utf8.RuneError {
			return InputErr("a string holds a lone surrogate (\\u%04x); expected valid Unicode", r)
		}
	}
	s.buf = utf8.AppendRune(s.buf, r)
	return nil
}

func (s *scanner) hex4() (rune, error) {
	var r rune
	for range 4 {
		c, err := s.r.ReadByte()
		if err != nil {
			return 0, syntaxErr("unterminated \\u escape")
		}
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, syntaxErr(fmt.Sprintf("invalid \\u escape digit %q", c))
		}
	}
	return r, nil
}

// number reads a JSON number into s.buf and reports whether it is integral in form (no fraction, no
// exponent). A token that is not a JSON number is a syntax error.
func (s *scanner) number() (integral bool, err error) {
	s.buf = s.buf[:0]
	for {
		c, err := s.r.ReadByte()
		if err != nil {
			break
		}
		if !(c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E') {
			s.r.UnreadByte()
			break
		}
		s.buf = append(s.buf, c)
		if len(s.buf) > 1100 { // longer than any number worth reading; stops a megabyte of digits
			return false, syntaxErr("a number of more than 1100 characters")
		}
	}
	integral, ok := jsonNumber(s.buf)
	if !ok {
		return false, syntaxErr(fmt.Sprintf("%q is not a JSON number", Clip(string(s.buf))))
	}
	return integral, nil
}

// jsonNumber checks b against JSON's number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func jsonNumber(b []byte) (integral, ok bool) {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() int {
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i - start
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case digits() == 0:
		return false, false
	}
	integral = true
	if i < len(b) && b[i] == '.' {
		i++
		integral = false
		if digits() == 0 {
			return false, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		integral = false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false, false
		}
	}
	return integral, i == len(b)
}

// literal reads true, false or null.
func (s *scanner) literal() (string, error) {
	for _, word := range []string{"true", "false", "null"} {
		if b, _ := s.r.Peek(len(word)); string(b) == word {
			s.r.Discard(len(word))
			return word, nil
		}
	}
	c := s.ws()
	return "", syntaxErr("unexpected " + describeByte(c))
}

// skip reads any one JSON value, appending its text (whitespace outside strings dropped) to keep when keep
// is not nil. depth is the nesting of the value; deeper than maxDepth is TOO_LARGE.
func (s *scanner) skip(depth int, keep *[]byte) error {
	if depth > maxNesting {
		return InputErr("tensor JSON: nesting deeper than %d levels (tensor JSON has 3)", maxNesting)
	}
	c := s.ws()
	switch {
	case c == '{' || c == '[':
		s.r.ReadByte()
		closing := byte(']')
		if c == '{' {
			closing = '}'
		}
		appendKeep(keep, c)
		if s.ws() == closing {
			s.r.ReadByte()
			appendKeep(keep, closing)
			return nil
		}
		for {
			if c == '{' {
				if err := s.str(-1); err != nil {
					return err
				}
				appendQuoted(keep, s.buf)
				if err := s.expect(':', "after an object key"); err != nil {
					return err
				}
				appendKeep(keep, ':')
			}
			if err := s.skip(depth+1, keep); err != nil {
				return err
			}
			switch next := s.ws(); next {
			case ',':
				s.r.ReadByte()
				appendKeep(keep, ',')
			case closing:
				s.r.ReadByte()
				appendKeep(keep, closing)
				return nil
			default:
				return syntaxErr(fmt.Sprintf("expected ',' or %q, found %s", closing, describeByte(next)))
			}
		}
	case c == '"':
		if err := s.str(-1); err != nil {
			return err
		}
		appendQuoted(keep, s.buf)
	case c == '-' || c >= '0' && c <= '9':
		if _, err := s.number(); err != nil {
			return err
		}
		if keep != nil {
			*keep = append(*keep, s.buf...)
		}
	default:
		word, err := s.literal()
		if err != nil {
			return err
		}
		if keep != nil {
			*keep = append(*keep, word...)
		}
	}
	return nil
}

func appendKeep(keep *[]byte, c byte) {
	if keep != nil {
		*keep = append(*keep, c)
	}
}

// appendQuoted re-encodes a decoded string so the kept text reads back to the same string.
func appendQuoted(keep *[]byte, s []byte) {
	if keep != nil {
		*keep = appendJSONString(*keep, string(s))
	}
}

func newScanner(r io.Reader) *scanner {
	return &scanner{r: bufio.NewReaderSize(r, 64<<10)}
}

var escapes = map[byte]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}
