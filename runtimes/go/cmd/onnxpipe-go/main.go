// Command onnxpipe-go runs and inspects onnxpipe files with the Go runtime.
//
//	onnxpipe-go run MODEL --inputs FILE.json [--threads N] [--max-elements N] [--max-string-bytes N] [--max-document-bytes N]
//	                                     outputs as canonical tensor JSON (spec/README.md)
//	onnxpipe-go inspect MODEL            the signature as JSON
//	onnxpipe-go version                  onnxpipe and ONNX Runtime versions
//
// FILE may be "-" for standard input. On error: nothing on stdout, one line on stderr,
// "onnxpipe-go: error [CODE]: message", and the exit status of CODE in spec/errors.json: 3 INVALID_INPUT or
// TOO_LARGE, 4 MODEL_LOAD or MISSING_EXTENSION, 5 RUNTIME or CLOSED, 2 USAGE.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"

	onnxpipe "github.com/onnxpipe/onnxpipe/runtimes/go"
)

const usage = `usage:
  onnxpipe-go run MODEL --inputs FILE.json [--threads N] [--max-elements N] [--max-string-bytes N] [--max-document-bytes N]
  onnxpipe-go inspect MODEL
  onnxpipe-go version`

const oneLineUsage = "onnxpipe-go run MODEL --inputs FILE.json [--threads N] | inspect MODEL | version"

var errUsage = errors.New("bad usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout)
	stop()
	if err == nil {
		return
	}
	msg := strings.Join(strings.Fields(err.Error()), " ") // one line, whatever ONNX Runtime wrote
	code := onnxpipe.Code(err)
	if errors.Is(err, errUsage) {
		code, msg = "USAGE", msg+" (usage: "+oneLineUsage+")"
	}
	fmt.Fprintf(os.Stderr, "onnxpipe-go: error [%s]: %s\n", code, msg)
	os.Exit(onnxpipe.ExitCode(code))
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command given", errUsage)
	}
	cmd, rest := args[0], args[1:]
	if cmd == "help" || cmd == "-h" || cmd == "--help" {
		_, err := fmt.Fprintln(stdout, usage)
		return err
	}
	flags, positional, err := parseArgs(rest, map[string]bool{"inputs": cmd == "run", "threads": cmd == "run", "max-elements": cmd == "run", "max-string-bytes": cmd == "run", "max-document-bytes": cmd == "run"})
	if err != nil {
		return err
	}
	switch cmd {
	case "version":
		if len(positional) != 0 {
			return fmt.Errorf("%w: version takes no arguments, got %v", errUsage, positional)
		}
		ortVersion, err := onnxpipe.ORTVersion()
		if err != nil {
			return err
		}
		lib, _ := onnxpipe.ORTLibrary()
		fmt.Fprintf(stdout, "onnxpipe-go %s (onnxruntime %s, %s)\n", onnxpipe.Version, ortVersion, lib)
		return nil
	case "inspect":
		if len(positional) != 1 {
			return fmt.Errorf("%w: inspect takes one MODEL, got %d arguments", errUsage, len(positional))
		}
		p, err := onnxpipe.Load(positional[0], onnxpipe.WithThreads(1))
		if err != nil {
			return err
		}
		defer p.Close()
		if p.Signature().Source != "manifest" {
			fmt.Fprintln(os.Stderr, "onnxpipe-go: no onnxpipe manifest (plain ONNX)")
		}
		var doc bytes.Buffer
		enc := json.NewEncoder(&doc)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(p.Signature()); err != nil {
			return err
		}
		_, err = stdout.Write(spaced(doc.Bytes()))
		return err
	case "run":
		if len(positional) != 1 {
			return fmt.Errorf("%w: run takes one MODEL, got %d arguments", errUsage, len(positional))
		}
		inputsPath, ok := flags["inputs"]
		if !ok {
			return fmt.Errorf("%w: run needs --inputs FILE.json", errUsage)
		}
		var opts []onnxpipe.Option
		if v, ok := flags["threads"]; ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return fmt.Errorf("%w: --threads %q: expected a whole number >= 1", errUsage, v)
			}
			opts = append(opts, onnxpipe.WithThreads(n))
		}
		limits, err := limitFlags(flags)
		if err != nil {
			return err
		}
		inputs, err := readInputs(inputsPath, stdin, limits)
		if err != nil {
			return err
		}
		p, err := onnxpipe.Load(positional[0], opts...)
		if err != nil {
			return err
		}
		defer p.Close()
		out, err := p.Run(ctx, inputs)
		if err != nil {
			return err
		}
		return onnxpipe.WriteTensorJSON(stdout, out.Names(), out.Map())
	default:
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
}

// readInputs streams the inputs file through the tensor-JSON reader: nothing holds the whole document.
func readInputs(path string, stdin io.Reader, limits onnxpipe.Limits) (map[string]onnxpipe.Tensor, error) {
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("%w: inputs file %q: cannot read it (%v)", errUsage, path, errors.Unwrap(err))
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil && fi.Size() > limits.MaxDocumentBytes {
			return nil, fmt.Errorf("%w: inputs file %q: %d bytes, over the limit max_document_bytes = %d",
				onnxpipe.ErrTooLarge, path, fi.Size(), limits.MaxDocumentBytes)
		}
		r = f
	}
	_, tensors, err := onnxpipe.ReadTensorJSON(r, limits)
	if err != nil {
		return nil, fmt.Errorf("inputs file %q: %w", path, err)
	}
	return tensors, nil
}

// limitFlags are spec/limits.json's defaults with --max-elements, --max-string-bytes and
// --max-document-bytes applied.
func limitFlags(flags map[string]string) (onnxpipe.Limits, error) {
	limits := onnxpipe.DefaultLimits()
	for name, dst := range map[string]*int64{
		"max-elements": &limits.MaxElements, "max-string-bytes": &limits.MaxStringBytes, "max-document-bytes": &limits.MaxDocumentBytes,
	} {
		if v, ok := flags[name]; ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return limits, fmt.Errorf("%w: --%s %q: expected a whole number >= 0", errUsage, name, v)
			}
			*dst = n
		}
	}
	return limits, nil
}

// parseArgs accepts --name VALUE and --name=VALUE anywhere among the positional arguments.
func parseArgs(args []string, known map[string]bool) (map[string]string, []string, error) {
	flags := map[string]string{}
	var positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			positional = append(positional, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !known[name] {
			return nil, nil, fmt.Errorf("%w: unknown flag %q", errUsage, a)
		}
		if !hasValue {
			if i+1 >= len(args) {
				return nil, nil, fmt.Errorf("%w: flag %q needs a value", errUsage, a)
			}
			i++
			value = args[i]
		}
		flags[name] = value
	}
	return flags, positional, nil
}

// spaced puts a space after each ',' and ':' outside strings: the layout the Python and Java CLIs print.
func spaced(doc []byte) []byte {
	out := make([]byte, 0, len(doc)+len(doc)/8)
	inString, escaped := false, false
	for _, c := range doc {
		out = append(out, c)
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && (c == ',' || c == ':'):
			out = append(out, ' ')
		}
	}
	return out
}
