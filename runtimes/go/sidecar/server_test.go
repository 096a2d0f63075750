package sidecar

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The tests run the real Python sidecar (python -m onnxpipe_runtime.serve) as a subprocess on a free
// loopback port (--port 0; the port is read from its first stdout line), and always stop it at the end.

const (
	startTimeout = 60 * time.Second // the sidecar loads every model before it prints its address
	stopTimeout  = 10 * time.Second // SIGTERM, then SIGKILL
	callTimeout  = 20 * time.Second // any one test's calls
)

var (
	repoRoot = mustAbs("../../..")
	tmpDir   string // removed after the tests

	serversMu sync.Mutex
	servers   []*sidecarProcess // every server started, stopped by TestMain

	mainOnce   sync.Once
	mainServer *sidecarProcess
	mainErr    error
)

func mustAbs(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return abs
}

func TestMain(m *testing.M) {
	var err error
	tmpDir, err = os.MkdirTemp("", "onnxpipe-sidecar-go-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot create a temporary directory:", err)
		os.Exit(1)
	}
	code := m.Run()
	serversMu.Lock()
	for _, s := range servers {
		s.stop()
	}
	serversMu.Unlock()
	_ = os.RemoveAll(tmpDir)
	os.Exit(code)
}

// pythonPath is $ONNXPIPE_PYTHON, or the repository's .venv (created by `make setup`).
func pythonPath() (string, error) {
	if p := os.Getenv("ONNXPIPE_PYTHON"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("ONNXPIPE_PYTHON=%s is not an executable: %v", p, err)
		}
		return p, nil
	}
	p := filepath.Join(repoRoot, ".venv", "bin", "python")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no Python interpreter at %s (run 'make setup' at the repository root, or set "+
			"ONNXPIPE_PYTHON to an interpreter with onnxpipe_runtime[serve] installed)", p)
	}
	return p, nil
}

func vectorModel(set string) string {
	return filepath.Join(repoRoot, "tests", "vectors", set, "model.onnx")
}

// minilmModel is the tokenizer pipeline (BYTES inputs), built by `make vectors` and not committed.
func minilmModel() (string, bool) {
	p := filepath.Join(repoRoot, "tests", "vectors", "minilm", "model.generated.onnx")
	_, err := os.Stat(p)
	return p, err == nil
}

// theServer is the sidecar most tests share: digits, basic, identity (a plain model with one input per
// datatype) and, when built, minilm.
func theServer(t *testing.T) *sidecarProcess {
	t.Helper()
	mainOnce.Do(func() {
		python, err := pythonPath()
		if err != nil {
			mainErr = err
			return
		}
		identity := filepath.Join(tmpDir, "identity.onnx")
		out, err := runBounded(30*time.Second, python, "testdata/identity_model.py", identity)
		if err != nil {
			mainErr = fmt.Errorf("building the identity model: %v\n%s", err, out)
			return
		}
		args := []string{vectorModel("digits"), vectorModel("basic"), identity}
		names := []string{"digits", "basic", "identity"}
		if minilm, ok := minilmModel(); ok {
			args = append(args, minilm)
			names = append(names, "minilm")
		}
		for _, n := range names {
			args = append(args, "--name", n)
		}
		mainServer, mainErr = startSidecar(args...)
	})
	if mainErr != nil {
		t.Fatalf("cannot start the sidecar: %v", mainErr)
	}
	return mainServer
}

func runBounded(timeout time.Duration, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 2 * time.Second
	return cmd.CombinedOutput()
}

// sidecarProcess is one running `python -m onnxpipe_runtime.serve`.
type sidecarProcess struct {
	addr   string
	cmd    *exec.Cmd
	exited chan struct{}

	mu     sync.Mutex
	stderr bytes.Buffer
}

func (s *sidecarProcess) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.Write(p)
}

func (s *sidecarProcess) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// startSidecar starts the sidecar on 127.0.0.1 with a free port and waits (bounded) for its address.
func startSidecar(args ...string) (*sidecarProcess, error) {
	python, err := pythonPath()
	if err != nil {
		return nil, err
	}
	full := append([]string{"-m", "onnxpipe_runtime.serve"}, args...)
	full = append(full, "--host", "127.0.0.1", "--port", "0", "--threads", "2", "--log-level", "WARNING")
	s := &sidecarProcess{cmd: exec.Command(python, full...), exited: make(chan struct{})}
	s.cmd.Dir = repoRoot
	s.cmd.Stderr = s
	s.cmd.SysProcAttr = procAttr() // own process group; killed if this test binary dies
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %v", python, err)
	}
	serversMu.Lock()
	servers = append(servers, s)
	serversMu.Unlock()

	addrCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if _, rest, ok := strings.Cut(line, "listening on "); ok {
				addr, _, _ := strings.Cut(rest, " ")
				select {
				case addrCh <- addr:
				default:
				}
			}
		}
	}()
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	select {
	case s.addr = <-addrCh:
		return s, nil
	case <-s.exited:
		return nil, fmt.Errorf("the sidecar exited before listening (%v):\n%s", s.cmd.ProcessState, s.log())
	case <-time.After(startTimeout):
		s.stop()
		return nil, fmt.Errorf("the sidecar did not listen within %v:\n%s", startTimeout, s.log())
	}
}

// stop sends SIGTERM to the server's process group, then SIGKILL if it has not exited in time.
func (s *sidecarProcess) stop() {
	pgid := s.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		select {
		case <-s.exited:
		case <-time.After(stopTimeout):
			fmt.Fprintf(os.Stderr, "sidecar pid %d did not exit after SIGKILL\n", pgid)
		}
	}
}

// dial connects to s with a bounded context.
func dial(t *testing.T, s *sidecarProcess, opts ...Option) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	c, err := Dial(ctx, s.addr, opts...)
	if err != nil {
		t.Fatalf("Dial(%s): %v\nsidecar log:\n%s", s.addr, err, s.log())
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}
