package onnxpipe

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/onnxpipe/onnxpipe/runtimes/go/core"
)

// Many goroutines share one Pipeline, with different batch sizes and with and without the optional
// threshold (so sessions are also created concurrently); every result must equal the sequential one.
// Run by `make test` under -race too (kept small: the machine is shared).
func TestConcurrentRuns(t *testing.T) {
	p := loadT(t, fixture(t, "basic.onnx"))
	type job struct {
		inputs map[string]Tensor
		want   Outputs
	}
	var jobs []job
	for i := range 6 {
		in := basicInputs(1 + i)
		if i%2 == 1 {
			in["score_threshold"] = Scalar(float32(0.1 * float32(i)))
		}
		jobs = append(jobs, job{inputs: in})
	}
	// The references come from a separate pipeline, so the shared one starts with no extra sessions.
	ref := loadT(t, fixture(t, "basic.onnx"))
	for i := range jobs {
		out, err := ref.Run(bg, jobs[i].inputs)
		if err != nil {
			t.Fatal(err)
		}
		jobs[i].want = out
	}
	const goroutines, runs = 8, 12
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*runs)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := bg
			if g%2 == 1 { // a cancellable context takes the path that can interrupt ONNX Runtime
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(bg)
				defer cancel()
			}
			for r := range runs {
				j := jobs[(g+r)%len(jobs)]
				out, err := p.Run(ctx, j.inputs)
				if err != nil {
					errs <- err
					return
				}
				if err := sameOutputs(out, j.want); err != nil {
					errs <- fmt.Errorf("goroutine %d run %d: %w", g, r, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Close while other goroutines run: every Run either succeeds correctly or returns ErrClosed.
func TestConcurrentClose(t *testing.T) {
	p, err := Load(fixture(t, "basic.onnx"), WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	in := basicInputs(2)
	want, err := p.Run(bg, in)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, 64)
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for r := 0; ; r++ {
				out, err := p.Run(bg, in)
				if errors.Is(err, ErrClosed) {
					return
				}
				if err == nil {
					err = sameOutputs(out, want)
				}
				if err != nil {
					errs <- fmt.Errorf("goroutine %d run %d: %w", g, r, err)
					return
				}
			}
		}()
	}
	close(start)
	for range 20 { // let the runners get going
		if _, err := p.Run(bg, in); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func sameOutputs(got, want Outputs) error {
	if !slices.Equal(got.Names(), want.Names()) {
		return fmt.Errorf("outputs %v, want %v", got.Names(), want.Names())
	}
	for _, name := range want.Names() {
		g, _ := got.Tensor(name)
		w, _ := want.Tensor(name)
		if g.DType() != w.DType() || core.FormatShape(g.Shape()) != core.FormatShape(w.Shape()) || fmt.Sprintf("%#v", g.Values()) != fmt.Sprintf("%#v", w.Values()) {
			err := fmt.Errorf("got %v %v, want %v %v", g, g.Values(), w, w.Values())
			return fmt.Errorf("output %q: %w", name, err)
		}
	}
	return nil
}

// Contexts cancelled while other goroutines run: those Runs end with a CANCELLED error, the rest succeed.
func TestConcurrentCancel(t *testing.T) {
	p := loadT(t, fixture(t, "basic.onnx"))
	in := basicInputs(64)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithCancel(bg)
			defer cancel()
			for r := range 15 {
				if g%2 == 0 && r == 5 {
					cancel()
				}
				_, err := p.Run(ctx, in)
				switch {
				case ctx.Err() == nil && err != nil:
					errs <- fmt.Errorf("goroutine %d run %d: %w", g, r, err)
				case ctx.Err() != nil && !errors.Is(err, context.Canceled):
					errs <- fmt.Errorf("goroutine %d run %d after cancel: %v, want context.Canceled", g, r, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Cancelling the context while ONNX Runtime is inside a long run stops that run (terminate flag), well
// before it would finish (spec/models/slow_loop.onnx: ~100 s of Loop iterations).
func TestConcurrentCancelDuringRun(t *testing.T) {
	p := loadT(t, filepath.Join(repoRoot(t), "spec", "models", "slow_loop.onnx"))
	ctx, cancel := context.WithTimeout(bg, 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := p.Run(ctx, map[string]Tensor{"iterations": Scalar(int64(50_000_000))})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) || Code(err) != "CANCELLED" {
			t.Errorf("Run: %v (code %q); want context.DeadlineExceeded", err, Code(err))
		}
		t.Logf("stopped after %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not stop within 20 s of its context ending")
	}
	// The pipeline still runs afterwards.
	if _, err := p.Run(bg, map[string]Tensor{"iterations": Scalar(int64(3))}); err != nil {
		t.Errorf("Run after a cancelled run: %v", err)
	}
}
