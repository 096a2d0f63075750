package core

// Limits bound what a tensor-JSON reader accepts (spec/limits.json). Over a limit is TOO_LARGE, refused from
// the declared shape and string lengths before the data is allocated.
type Limits struct {
	MaxElements    int64 // elements over all tensors of a document; also the largest dim allowed
	MaxStringBytes int64 // UTF-8 bytes over all string elements of a document
	MaxDepth       int   // JSON nesting depth
}

// DefaultLimits are spec/limits.json's defaults: they protect a 1–2 GiB container.
func DefaultLimits() Limits {
	return Limits{MaxElements: 16777216, MaxStringBytes: 67108864, MaxDepth: 32}
}
