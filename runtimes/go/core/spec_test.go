package core

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"
)

// specFile reads spec/<name> at the repository root (three levels above this file).
func specFile(t *testing.T, name string, v any) {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "..", "spec", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("spec/%s: %v", name, err)
	}
}

// The dtype table is spec/dtypes.json's, row for row.
func TestDTypesMatchSpec(t *testing.T) {
	var spec struct {
		DTypes []struct {
			Name       DType   `json:"name"`
			ONNXEnum   int     `json:"onnx_enum"`
			KServe     string  `json:"kserve"`
			Go         string  `json:"go"`
			Bytes      *int    `json:"bytes"`
			WidensFrom []DType `json:"widens_from"`
		} `json:"dtypes"`
	}
	specFile(t, "dtypes.json", &spec)
	if len(spec.DTypes) != len(dtypeTable) {
		t.Fatalf("spec/dtypes.json has %d dtypes, the Go table %d", len(spec.DTypes), len(dtypeTable))
	}
	for i, row := range spec.DTypes {
		bytes := 0
		if row.Bytes != nil {
			bytes = *row.Bytes
		}
		want := DTypeInfo{row.Name, row.ONNXEnum, row.KServe, bytes, row.WidensFrom}
		if len(want.WidensFrom) == 0 {
			want.WidensFrom = nil
		}
		if !reflect.DeepEqual(dtypeTable[i], want) {
			t.Errorf("row %d: Go %+v, spec %+v", i, dtypeTable[i], want)
		}
		if DTypes[i] != row.Name || string(row.Name) != row.Go {
			t.Errorf("row %d: DTypes[%d] = %s, spec name %s, go %s", i, i, DTypes[i], row.Name, row.Go)
		}
	}
}

// Exit statuses are spec/errors.json's, for every code that has one.
func TestExitCodesMatchSpec(t *testing.T) {
	var spec struct {
		Codes []struct {
			Code string `json:"code"`
			Exit *int   `json:"exit"`
		} `json:"codes"`
	}
	specFile(t, "errors.json", &spec)
	for _, c := range spec.Codes {
		if c.Exit == nil {
			continue
		}
		if got, ok := exitCodes[c.Code]; !ok || got != *c.Exit {
			t.Errorf("%s: exit %d (known %v), spec %d", c.Code, got, ok, *c.Exit)
		}
	}
}

func TestLimitsMatchSpec(t *testing.T) {
	var spec struct {
		Limits []struct {
			Name    string `json:"name"`
			Default int64  `json:"default"`
		} `json:"limits"`
	}
	specFile(t, "limits.json", &spec)
	got := DefaultLimits()
	mine := map[string]int64{"max_elements": got.MaxElements, "max_string_bytes": got.MaxStringBytes, "max_document_bytes": got.MaxDocumentBytes}
	for _, l := range spec.Limits {
		if v, ok := mine[l.Name]; !ok || v != l.Default {
			t.Errorf("limit %s: Go %d (known %v), spec %d", l.Name, v, ok, l.Default)
		}
	}
}
