package sidecar

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
)

// The golden vectors (docs/vectors.md) every runtime must reproduce, here through the sidecar.

type tolerance struct {
	Atol float64 `json:"atol"`
	Rtol float64 `json:"rtol"`
}

type vectorSet struct {
	Name      string               `json:"name"`
	Model     string               `json:"model"`
	Tolerance map[string]tolerance `json:"tolerance"`
	Cases     []struct {
		Name     string `json:"name"`
		Inputs   string `json:"inputs"`
		Expected string `json:"expected"`
	} `json:"cases"`
	dir string
}

func loadVectorSet(t *testing.T, name string) vectorSet {
	t.Helper()
	dir := filepath.Join(repoRoot, "tests", "vectors", name)
	raw, err := os.ReadFile(filepath.Join(dir, "vector.json"))
	if err != nil {
		t.Fatalf("vector set %s: %v", name, err)
	}
	var v vectorSet
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("vector set %s: vector.json: %v", name, err)
	}
	if len(v.Cases) == 0 {
		t.Fatalf("vector set %s: no cases", name)
	}
	v.dir = dir
	return v
}

func readTensorFile(t *testing.T, path string) ([]string, map[string]Tensor) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names, tensors, err := ReadTensorJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return names, tensors
}

// compareOutputs checks got against want as docs/vectors.md says: exactly the expected outputs, same dtypes
// and shapes, floats within the set's tolerance (NaN matching NaN), everything else exactly equal.
func compareOutputs(got, want map[string]Tensor, tol map[string]tolerance) error {
	for name := range got {
		if _, ok := want[name]; !ok {
			return fmt.Errorf("output '%s' is not expected (expected %v)", name, slices.Sorted(mapsKeys(want)))
		}
	}
	for _, name := range slices.Sorted(mapsKeys(want)) {
		w := want[name]
		g, ok := got[name]
		if !ok {
			return fmt.Errorf("output '%s' is missing", name)
		}
		if g.DType() != w.DType() {
			return fmt.Errorf("output '%s': dtype %s, expected %s", name, g.DType(), w.DType())
		}
		if !slices.Equal(g.Shape, w.Shape) {
			return fmt.Errorf("output '%s': shape %v, expected %v", name, g.Shape, w.Shape)
		}
		switch gd := g.Data.(type) {
		case []float32:
			wd := w.Data.([]float32)
			for i := range gd {
				if !closeEnough(float64(gd[i]), float64(wd[i]), tol["float32"]) {
					return fmt.Errorf("output '%s': element %d is %v, expected %v (atol %g, rtol %g)",
						name, i, gd[i], wd[i], tol["float32"].Atol, tol["float32"].Rtol)
				}
			}
		case []float64:
			wd := w.Data.([]float64)
			for i := range gd {
				if !closeEnough(gd[i], wd[i], tol["float64"]) {
					return fmt.Errorf("output '%s': element %d is %v, expected %v", name, i, gd[i], wd[i])
				}
			}
		default:
			if !reflect.DeepEqual(g.Data, w.Data) {
				return fmt.Errorf("output '%s': %v, expected %v", name, g.Data, w.Data)
			}
		}
	}
	return nil
}

func closeEnough(got, want float64, tol tolerance) bool {
	if math.IsNaN(want) || math.IsNaN(got) {
		return math.IsNaN(want) && math.IsNaN(got)
	}
	if math.IsInf(want, 0) {
		return got == want
	}
	return math.Abs(got-want) <= tol.Atol+tol.Rtol*math.Abs(want)
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestVectors(t *testing.T) {
	srv := theServer(t)
	client := dial(t, srv)
	for _, set := range []string{"digits", "basic", "minilm"} {
		t.Run(set, func(t *testing.T) {
			if set == "minilm" {
				if _, ok := minilmModel(); !ok {
					t.Skip("tests/vectors/minilm/model.generated.onnx is not built: the BYTES (tokenizer) vectors " +
						"are skipped; run 'make generated-models' at the repository root")
				}
			}
			v := loadVectorSet(t, set)
			for _, c := range v.Cases {
				t.Run(c.Name, func(t *testing.T) {
					_, inputs := readTensorFile(t, filepath.Join(v.dir, c.Inputs))
					_, want := readTensorFile(t, filepath.Join(v.dir, c.Expected))
					res, err := client.Infer(testContext(t), set, inputs)
					if err != nil {
						t.Fatalf("Infer: %v", err)
					}
					if err := compareOutputs(res.Outputs, want, v.Tolerance); err != nil {
						t.Fatal(err)
					}
					if len(res.Names) != len(res.Outputs) {
						t.Fatalf("Names %v do not match the %d outputs", res.Names, len(res.Outputs))
					}
				})
			}
		})
	}
}

// TestVectorsConcurrent sends every case of the committed sets at once over one client: the client is safe
// for concurrent use, and the sidecar's dynamic batching may merge them (within the vector tolerances).
func TestVectorsConcurrent(t *testing.T) {
	srv := theServer(t)
	client := dial(t, srv)
	ctx := testContext(t)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for _, set := range []string{"digits", "basic"} {
		v := loadVectorSet(t, set)
		for _, c := range v.Cases {
			_, inputs := readTensorFile(t, filepath.Join(v.dir, c.Inputs))
			_, want := readTensorFile(t, filepath.Join(v.dir, c.Expected))
			for range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res, err := client.Infer(ctx, set, inputs)
					if err == nil {
						err = compareOutputs(res.Outputs, want, v.Tolerance)
					}
					if err != nil {
						errs <- fmt.Errorf("%s/%s: %w", set, c.Name, err)
					}
				}()
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestModelMetadataMatchesVectors checks ModelMetadata against the vectors' own tensors (names, order of
// the outputs, datatypes, ranks), not against a copy of the signature.
func TestModelMetadataMatchesVectors(t *testing.T) {
	srv := theServer(t)
	client := dial(t, srv)
	for _, set := range []string{"digits", "basic"} {
		v := loadVectorSet(t, set)
		info, err := client.ModelMetadata(testContext(t), set)
		if err != nil {
			t.Fatalf("%s: ModelMetadata: %v", set, err)
		}
		if info.Name != set || !slices.Contains(info.Versions, "1") {
			t.Errorf("%s: metadata name %q versions %v", set, info.Name, info.Versions)
		}
		inputs := map[string]TensorInfo{}
		for _, in := range info.Inputs {
			inputs[in.Name] = in
		}
		for _, c := range v.Cases {
			_, ins := readTensorFile(t, filepath.Join(v.dir, c.Inputs))
			for name, tensor := range ins {
				meta, ok := inputs[name]
				if !ok {
					t.Errorf("%s/%s: input '%s' is not in the metadata %v", set, c.Name, name, info.Inputs)
					continue
				}
				if meta.Datatype != tensor.Datatype() || len(meta.Shape) != len(tensor.Shape) {
					t.Errorf("%s/%s: input '%s' is %s %v in the vector, %s %v in the metadata",
						set, c.Name, name, tensor.Datatype(), tensor.Shape, meta.Datatype, meta.Shape)
				}
			}
			wantNames, want := readTensorFile(t, filepath.Join(v.dir, c.Expected))
			var gotNames []string
			for _, out := range info.Outputs {
				gotNames = append(gotNames, out.Name)
				if w, ok := want[out.Name]; ok && (w.Datatype() != out.Datatype || len(w.Shape) != len(out.Shape)) {
					t.Errorf("%s: output '%s' is %s %v in the metadata, %s %v in the vector",
						set, out.Name, out.Datatype, out.Shape, w.Datatype(), w.Shape)
				}
			}
			if !slices.Equal(gotNames, wantNames) {
				t.Errorf("%s/%s: metadata outputs %v, the vector's %v", set, c.Name, gotNames, wantNames)
			}
		}
	}
}
