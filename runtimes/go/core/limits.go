package core

import "io"

// Limits bound what a tensor-JSON reader accepts (spec/limits.json). Over a limit is TOO_LARGE, refused from
// the declared shape and string lengths before the data is allocated.
type Limits struct {
	MaxElements      int64 // elements over all tensors of a document; also the largest dim allowed
	MaxStringBytes   int64 // UTF-8 bytes over all string elements of a document
	MaxDocumentBytes int64 // bytes of the whole document
}

// DefaultLimits are spec/limits.json's defaults: they protect a 1–2 GiB container.
func DefaultLimits() Limits {
	return Limits{MaxElements: 16777216, MaxStringBytes: 67108864, MaxDocumentBytes: 268435456}
}

// countingReader refuses to read more than most bytes: the document limit holds for streams too.
type countingReader struct {
	r    io.Reader
	n    int64
	most int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.most {
		return 0, TooLargeErr("the document is over the limit max_document_bytes = %d", c.most)
	}
	return n, err
}
