package sidecar

import (
	"context"
	"errors"
	"math"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// basicInputs is case 0 of the basic vector set, and its expected outputs.
func basicInputs(t *testing.T) (map[string]Tensor, map[string]Tensor, vectorSet) {
	t.Helper()
	v := loadVectorSet(t, "basic")
	_, in := readTensorFile(t, filepath.Join(v.dir, v.Cases[0].Inputs))
	_, want := readTensorFile(t, filepath.Join(v.dir, v.Cases[0].Expected))
	return in, want, v
}

func wantError(t *testing.T, err error, sentinel error, code string, status codes.Code, mentions ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, expected %v", sentinel)
	}
	if !errors.Is(err, sentinel) {
		t.Fatalf("error %q does not wrap %v", err, sentinel)
	}
	if got := Code(err); got != code {
		t.Errorf("Code(%q) = %s, expected %s", err, got, code)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %q is not an *Error", err)
	}
	if e.Status != status {
		t.Errorf("error %q: gRPC status %v, expected %v", err, e.Status, status)
	}
	for _, m := range mentions {
		if !strings.Contains(err.Error(), m) {
			t.Errorf("error %q does not mention %q", err, m)
		}
	}
}

func TestServerHealthAndMetadata(t *testing.T) {
	client := dial(t, theServer(t))
	ctx := testContext(t)
	if err := client.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	live, err := client.Live(ctx)
	if err != nil || !live {
		t.Fatalf("Live = %v, %v", live, err)
	}
	ready, err := client.ModelReady(ctx, "digits")
	if err != nil || !ready {
		t.Fatalf("ModelReady(digits) = %v, %v", ready, err)
	}
	ready, err = client.ModelReady(ctx, "no-such-model")
	if err != nil || ready {
		t.Fatalf("ModelReady(no-such-model) = %v, %v; expected false, nil (a probe)", ready, err)
	}
	info, err := client.ServerMetadata(ctx)
	if err != nil || info.Name != "onnxpipe" || info.Version == "" {
		t.Fatalf("ServerMetadata = %+v, %v", info, err)
	}
}

func TestWrongDatatypeIsInvalidInput(t *testing.T) {
	client := dial(t, theServer(t))
	inputs, _, _ := basicInputs(t)
	f32 := inputs["features"].Data.([]float32)
	f64 := make([]float64, len(f32))
	for i, v := range f32 {
		f64[i] = float64(v)
	}
	inputs["features"] = NewTensor(inputs["features"].Shape, f64)
	_, err := client.Infer(testContext(t), "basic", inputs)
	wantError(t, err, ErrInvalidInput, "INVALID_INPUT", codes.InvalidArgument, "'features'", "FP64", "FP32")
	var e *Error
	errors.As(err, &e)
	if strings.HasPrefix(e.Message, "[") {
		t.Errorf("Message %q keeps the [CODE] prefix", e.Message)
	}
}

func TestMissingInputIsInvalidInput(t *testing.T) {
	client := dial(t, theServer(t))
	inputs, _, _ := basicInputs(t)
	delete(inputs, "pixels")
	_, err := client.Infer(testContext(t), "basic", inputs)
	wantError(t, err, ErrInvalidInput, "INVALID_INPUT", codes.InvalidArgument, "'pixels'")
}

func TestUnknownModelAndOutputAreNotFound(t *testing.T) {
	client := dial(t, theServer(t))
	inputs, _, _ := basicInputs(t)
	_, err := client.Infer(testContext(t), "no-such-model", inputs)
	wantError(t, err, ErrNotFound, "NOT_FOUND", codes.NotFound, "'no-such-model'")
	_, err = client.ModelMetadata(testContext(t), "no-such-model")
	wantError(t, err, ErrNotFound, "NOT_FOUND", codes.NotFound, "'no-such-model'")
	_, err = client.Infer(testContext(t), "basic", inputs, "label", "no-such-output")
	wantError(t, err, ErrNotFound, "NOT_FOUND", codes.NotFound, "'no-such-output'")
}

func TestRequestedOutputsOnly(t *testing.T) {
	client := dial(t, theServer(t))
	inputs, want, v := basicInputs(t)
	res, err := client.Infer(testContext(t), "basic", inputs, "pixel_sum", "label")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Names, []string{"pixel_sum", "label"}) {
		t.Fatalf("outputs %v, expected [pixel_sum label]", res.Names)
	}
	if err := compareOutputs(res.Outputs, map[string]Tensor{"pixel_sum": want["pixel_sum"], "label": want["label"]},
		v.Tolerance); err != nil {
		t.Fatal(err)
	}
}

// TestClientSideChecks: what the client refuses before any call names the input and what is wrong.
func TestClientSideChecks(t *testing.T) {
	client := dial(t, theServer(t))
	cases := []struct {
		tensor   Tensor
		mentions []string
	}{
		{NewTensor([]int64{2, 3}, []float32{1, 2, 3}), []string{"'x'", "[2 3]", "needs 6 elements", "has 3"}},
		{Tensor{Shape: []int64{2}, Data: []uint16{1, 2}}, []string{"'x'", "[]uint16"}},
		{Tensor{Shape: []int64{1}, Data: nil}, []string{"'x'", "<nil>"}},
		{NewTensor([]int64{-1}, []float32{}), []string{"'x'", "negative"}},
	}
	for _, c := range cases {
		_, err := client.Infer(testContext(t), "basic", map[string]Tensor{"x": c.tensor})
		wantError(t, err, ErrInvalidInput, "INVALID_INPUT", codes.OK, c.mentions...)
	}
}

// TestEveryDatatype round-trips one tensor of each datatype through a plain Identity model on the sidecar,
// with edge values (NaN, infinities, extreme integers, empty and non-ASCII strings).
func TestEveryDatatype(t *testing.T) {
	client := dial(t, theServer(t))
	inputs := map[string]Tensor{
		"x_float32": NewTensor([]int64{4}, []float32{1.5, float32(math.NaN()), float32(math.Inf(-1)), math.SmallestNonzeroFloat32}),
		"x_float64": NewTensor([]int64{4}, []float64{0.1, math.NaN(), math.Inf(1), -math.MaxFloat64}),
		"x_int64":   NewTensor([]int64{4}, []int64{math.MinInt64, -1, 1 << 53, math.MaxInt64}),
		"x_int32":   NewTensor([]int64{4}, []int32{math.MinInt32, -1, 0, math.MaxInt32}),
		"x_uint8":   NewTensor([]int64{4}, []uint8{0, 1, 128, 255}),
		"x_int8":    NewTensor([]int64{4}, []int8{-128, -1, 0, 127}),
		"x_bool":    NewTensor([]int64{4}, []bool{true, false, false, true}),
		"x_string":  NewTensor([]int64{4}, []string{"", "a", "héllo wörld ✓", strings.Repeat("z", 300)}),
	}
	res, err := client.Infer(testContext(t), "identity", inputs)
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range inputs {
		out := "y_" + strings.TrimPrefix(name, "x_")
		got, ok := res.Outputs[out]
		if !ok {
			t.Errorf("output '%s' missing (got %v)", out, res.Names)
			continue
		}
		if got.Datatype() != in.Datatype() || !reflect.DeepEqual(got.Shape, in.Shape) {
			t.Errorf("%s: %s %v, expected %s %v", out, got.Datatype(), got.Shape, in.Datatype(), in.Shape)
			continue
		}
		// bitwise for floats, so NaN and -0 count
		if !reflect.DeepEqual(got.encodeRaw(), in.encodeRaw()) {
			t.Errorf("%s: %v, expected %v", out, got.Data, in.Data)
		}
	}
}

func TestContextEndsTheCall(t *testing.T) {
	client := dial(t, theServer(t))
	inputs, _, _ := basicInputs(t)

	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	_, err := client.Infer(expired, "basic", inputs)
	wantError(t, err, ErrDeadline, "DEADLINE", codes.DeadlineExceeded)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %q does not wrap context.DeadlineExceeded", err)
	}

	cancelled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	_, err = client.Infer(cancelled, "basic", inputs)
	wantError(t, err, ErrCancelled, "CANCELLED", codes.Canceled)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %q does not wrap context.Canceled", err)
	}
}

func TestClosedClient(t *testing.T) {
	client := dial(t, theServer(t))
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	if err := client.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err := client.Ready(testContext(t))
	wantError(t, err, ErrClosed, "CLIENT_CLOSED", codes.OK)
}

func TestDialNothingListening(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	c, err := Dial(ctx, addr)
	if c != nil {
		c.Close()
	}
	wantError(t, err, ErrUnavailable, "UNAVAILABLE", codes.OK, addr)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %q does not wrap context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Dial took %v with a 500ms context", d)
	}
}

func TestBadOptions(t *testing.T) {
	ctx := testContext(t)
	_, err := Dial(ctx, "127.0.0.1:1", WithTLSCAFile(filepath.Join(tmpDir, "missing.pem")))
	wantError(t, err, ErrInvalidInput, "INVALID_INPUT", codes.OK, "WithTLSCAFile", "missing.pem")
	_, err = Dial(ctx, "127.0.0.1:1", WithMaxMessageMB(0))
	wantError(t, err, ErrInvalidInput, "INVALID_INPUT", codes.OK, "WithMaxMessageMB", "0 given")
}

// TestToken: a sidecar started with --token refuses calls without the right bearer token, with the code
// UNAUTHENTICATED carried over the hop, and serves those with it.
func TestToken(t *testing.T) {
	const token = "s3cret-token"
	srv, err := startSidecar(vectorModel("basic"), "--name", "basic", "--token", token)
	if err != nil {
		t.Fatalf("cannot start the sidecar: %v", err)
	}
	defer srv.stop()
	inputs, want, v := basicInputs(t)

	anonymous := dial(t, srv)
	_, err = anonymous.Infer(testContext(t), "basic", inputs)
	wantError(t, err, ErrUnauthenticated, "UNAUTHENTICATED", codes.Unauthenticated, "bearer token")
	// WaitReady gives up at once on a wrong token rather than polling until the deadline
	start := time.Now()
	err = anonymous.WaitReady(testContext(t))
	wantError(t, err, ErrUnauthenticated, "UNAUTHENTICATED", codes.Unauthenticated)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("WaitReady took %v to report a missing token", d)
	}

	wrong := dial(t, srv, WithToken("not-"+token))
	_, err = wrong.Ready(testContext(t))
	wantError(t, err, ErrUnauthenticated, "UNAUTHENTICATED", codes.Unauthenticated)

	client := dial(t, srv, WithToken(token))
	if err := client.WaitReady(testContext(t)); err != nil {
		t.Fatal(err)
	}
	res, err := client.Infer(testContext(t), "basic", inputs)
	if err != nil {
		t.Fatal(err)
	}
	if err := compareOutputs(res.Outputs, want, v.Tolerance); err != nil {
		t.Fatal(err)
	}

	// once the sidecar is gone, calls fail fast as unavailable (retryable), not hang
	srv.stop()
	start = time.Now()
	_, err = client.Ready(testContext(t))
	if !errors.Is(err, ErrUnavailable) || time.Since(start) > 5*time.Second {
		t.Fatalf("after the sidecar stopped: %v after %v; expected ErrUnavailable at once", err, time.Since(start))
	}
}
