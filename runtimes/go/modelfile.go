package onnxpipe

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
