package sidecar

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/onnxpipe/onnxpipe/runtimes/go/sidecar/inference"
)

// Client is a connection to one sidecar. It is safe for concurrent use; Close releases it.
type Client struct {
	addr string
	conn *grpc.ClientConn
	stub inference.GRPCInferenceServiceClient

	mu     sync.RWMutex
	closed bool
}

// Option configures Dial.
type Option func(*config) error

type config struct {
	token       string
	tls         *tls.Config
	maxMessage  int
	dialOptions []grpc.DialOption
}

// WithToken sends "authorization: Bearer <token>" on every call (the sidecar's --token). An empty token
// sends nothing. The token is sent over plaintext connections too: the sidecar listens on loopback by
// default; use WithTLS for anything else.
func WithToken(token string) Option {
	return func(c *config) error {
		c.token = token
		return nil
	}
}

// WithTLS connects over TLS with the given configuration (nil: the system's roots).
func WithTLS(cfg *tls.Config) Option {
	return func(c *config) error {
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		c.tls = cfg
		return nil
	}
}

// WithTLSCAFile connects over TLS, trusting the PEM certificates in path (e.g. the sidecar's --tls-cert
// when it is self-signed).
func WithTLSCAFile(path string) Option {
	return func(c *config) error {
		pem, err := os.ReadFile(path)
		if err != nil {
			return inputErr("dial", "option WithTLSCAFile: cannot read %s: %v", path, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return inputErr("dial", "option WithTLSCAFile: %s holds no PEM certificate", path)
		}
		c.tls = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		return nil
	}
}

// WithMaxMessageMB sets the largest message sent or received (default 64, the sidecar's default).
func WithMaxMessageMB(mb int) Option {
	return func(c *config) error {
		if mb <= 0 || mb > 2047 {
			return inputErr("dial", "option WithMaxMessageMB: %d given, expected 1 to 2047", mb)
		}
		c.maxMessage = mb << 20
		return nil
	}
}

// WithDialOptions passes extra options to grpc.NewClient (interceptors, keepalive, ...).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) error {
		c.dialOptions = append(c.dialOptions, opts...)
		return nil
	}
}

// bearer implements credentials.PerRPCCredentials.
type bearer struct {
	header string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": b.header}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }

// Dial connects to the sidecar at addr ("host:port") and waits until the connection is up or ctx ends (give
// ctx a deadline: the wait is retried while the server is starting). It does not wait for the models: use
// WaitReady for that. Errors wrap ErrUnavailable (no connection in time) or ErrInvalidInput (bad option).
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	op := "dial " + addr
	cfg := config{maxMessage: 64 << 20}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			if e, ok := err.(*Error); ok {
				e.Op = op
			}
			return nil, err
		}
	}
	dialOpts := []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(cfg.maxMessage), grpc.MaxCallSendMsgSize(cfg.maxMessage)),
		// A sidecar restarts in seconds: retry the connection quickly rather than gRPC's default 1 s..120 s.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
	if cfg.tls != nil {
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(credentials.NewTLS(cfg.tls)))
	} else {
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if cfg.token != "" {
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(bearer{header: "Bearer " + cfg.token, secure: cfg.tls != nil}))
	}
	dialOpts = append(dialOpts, cfg.dialOptions...)
	conn, err := grpc.NewClient("passthrough:///"+addr, dialOpts...)
	if err != nil {
		return nil, inputErr(op, "%v", err)
	}
	conn.Connect()
	for {
		state := conn.GetState()
		if state == connectivity.Ready {
			break
		}
		if !conn.WaitForStateChange(ctx, state) {
			_ = conn.Close()
			e := newError(op, "UNAVAILABLE", "no connection before the context ended (last state %s): is the sidecar "+
				"running and listening there?", state)
			e.cause = ctx.Err()
			return nil, e
		}
	}
	return &Client{addr: addr, conn: conn, stub: inference.NewGRPCInferenceServiceClient(conn)}, nil
}

// Close closes the connection. Calls afterwards return ErrClosed; closing twice is a no-op.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	return c.conn.Close()
}

// Stub returns the generated Open Inference Protocol client over the same connection, for what this package
// does not wrap (typed contents, parameters, ...).
func (c *Client) Stub() inference.GRPCInferenceServiceClient { return c.stub }

// call runs one RPC, turning its failure into an *Error.
func call[Req, Resp any](c *Client, ctx context.Context, op string, rpc func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	var zero Resp
	c.mu.RLock()
	closed := c.closed
	c.mu.RUnlock()
	if closed {
		return zero, newError(op, "CLIENT_CLOSED", "the client was closed")
	}
	var trailer metadata.MD
	resp, err := rpc(ctx, req, grpc.Trailer(&trailer))
	if err != nil {
		return zero, fromStatus(ctx, op, err, trailer)
	}
	return resp, nil
}

// Live reports whether the server is live (ServerLive).
func (c *Client) Live(ctx context.Context) (bool, error) {
	resp, err := call(c, ctx, "server live", c.stub.ServerLive, &inference.ServerLiveRequest{})
	if err != nil {
		return false, err
	}
	return resp.GetLive(), nil
}

// Ready reports whether every model is loaded and the server is not shutting down (ServerReady).
func (c *Client) Ready(ctx context.Context) (bool, error) {
	resp, err := call(c, ctx, "server ready", c.stub.ServerReady, &inference.ServerReadyRequest{})
	if err != nil {
		return false, err
	}
	return resp.GetReady(), nil
}

// ModelReady reports whether the model is served and ready; an unknown model is false, not an error.
func (c *Client) ModelReady(ctx context.Context, model string) (bool, error) {
	resp, err := call(c, ctx, fmt.Sprintf("model ready '%s'", model), c.stub.ModelReady,
		&inference.ModelReadyRequest{Name: model})
	if err != nil {
		return false, err
	}
	return resp.GetReady(), nil
}

// WaitReady polls Ready until it is true or ctx ends. Unavailability is retried; any other error (a wrong
// token, ...) is returned at once.
func (c *Client) WaitReady(ctx context.Context) error {
	for {
		ready, err := c.Ready(ctx)
		if err == nil && ready {
			return nil
		}
		if err != nil && Code(err) != "UNAVAILABLE" && Code(err) != "CLOSED" {
			return err
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return err
			}
			e := newError("wait ready "+c.addr, "UNAVAILABLE", "the server was not ready before the context ended")
			e.cause = ctx.Err()
			return e
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ServerInfo is the answer of ServerMetadata.
type ServerInfo struct {
	Name       string
	Version    string
	Extensions []string
}

// ServerMetadata returns the server's name ("onnxpipe") and version.
func (c *Client) ServerMetadata(ctx context.Context) (ServerInfo, error) {
	resp, err := call(c, ctx, "server metadata", c.stub.ServerMetadata, &inference.ServerMetadataRequest{})
	if err != nil {
		return ServerInfo{}, err
	}
	return ServerInfo{Name: resp.GetName(), Version: resp.GetVersion(), Extensions: resp.GetExtensions()}, nil
}

// TensorInfo describes one input or output of a model.
type TensorInfo struct {
	Name     string
	Datatype string  // protocol datatype: FP32, ..., BYTES
	Shape    []int64 // -1 for a dynamic dimension
}

// ModelInfo is the answer of ModelMetadata: the model's signature, from its manifest.
type ModelInfo struct {
	Name     string
	Versions []string
	Platform string
	Inputs   []TensorInfo
	Outputs  []TensorInfo
}

// ModelMetadata returns the model's inputs and outputs. An unknown model wraps ErrNotFound.
func (c *Client) ModelMetadata(ctx context.Context, model string) (ModelInfo, error) {
	resp, err := call(c, ctx, fmt.Sprintf("model metadata '%s'", model), c.stub.ModelMetadata,
		&inference.ModelMetadataRequest{Name: model})
	if err != nil {
		return ModelInfo{}, err
	}
	conv := func(ts []*inference.ModelMetadataResponse_TensorMetadata) []TensorInfo {
		out := make([]TensorInfo, len(ts))
		for i, t := range ts {
			out[i] = TensorInfo{Name: t.GetName(), Datatype: t.GetDatatype(), Shape: t.GetShape()}
		}
		return out
	}
	return ModelInfo{Name: resp.GetName(), Versions: resp.GetVersions(), Platform: resp.GetPlatform(),
		Inputs: conv(resp.GetInputs()), Outputs: conv(resp.GetOutputs())}, nil
}

// Result is the answer of Infer.
type Result struct {
	Model   string
	Version string
	// Names lists the outputs in the order the server returned them: the manifest's, or the order asked for.
	Names   []string
	Outputs map[string]Tensor
}

// Infer runs model on inputs and returns all its outputs, or only those named in outputs. Inputs are sent
// raw (raw_input_contents, in name order), with the datatype of their Go slice: nothing is converted, and
// the sidecar refuses a datatype that is not the model's. Optional inputs (thresholds) may be left out.
//
// Errors wrap ErrInvalidInput (the message names the input, what was given and what was expected),
// ErrNotFound (unknown model or output), ErrOverloaded, ErrUnauthenticated, ErrUnavailable, ErrDeadline,
// ErrRuntime, ...; Code(err) is the sidecar's code.
func (c *Client) Infer(ctx context.Context, model string, inputs map[string]Tensor, outputs ...string) (*Result, error) {
	op := fmt.Sprintf("infer '%s'", model)
	names := make([]string, 0, len(inputs))
	for name := range inputs {
		names = append(names, name)
	}
	slices.Sort(names) // a deterministic request
	req := &inference.ModelInferRequest{ModelName: model}
	for _, name := range names {
		t := inputs[name]
		if err := t.check(op, name); err != nil {
			return nil, err
		}
		req.Inputs = append(req.Inputs, &inference.ModelInferRequest_InferInputTensor{
			Name: name, Datatype: t.Datatype(), Shape: t.Shape,
		})
		req.RawInputContents = append(req.RawInputContents, t.encodeRaw())
	}
	for _, name := range outputs {
		req.Outputs = append(req.Outputs, &inference.ModelInferRequest_InferRequestedOutputTensor{Name: name})
	}
	resp, err := call(c, ctx, op, c.stub.ModelInfer, req)
	if err != nil {
		return nil, err
	}
	return decodeResponse(op, resp, outputs)
}

func decodeResponse(op string, resp *inference.ModelInferResponse, asked []string) (*Result, error) {
	res := &Result{Model: resp.GetModelName(), Version: resp.GetModelVersion(), Outputs: map[string]Tensor{}}
	outs := resp.GetOutputs()
	raw := resp.GetRawOutputContents()
	if len(raw) > 0 && len(raw) != len(outs) {
		return nil, protocolErr(op, "the response has %d outputs but %d raw_output_contents", len(outs), len(raw))
	}
	for i, o := range outs {
		name := o.GetName()
		if _, dup := res.Outputs[name]; dup {
			return nil, protocolErr(op, "output '%s' appears twice in the response", name)
		}
		var t Tensor
		var err error
		if len(raw) > 0 {
			t, err = decodeRaw(op, name, o.GetDatatype(), o.GetShape(), raw[i])
		} else {
			t, err = decodeContents(op, name, o.GetDatatype(), o.GetShape(), o.GetContents())
		}
		if err != nil {
			return nil, err
		}
		res.Names = append(res.Names, name)
		res.Outputs[name] = t
	}
	for _, name := range asked {
		if _, ok := res.Outputs[name]; !ok {
			return nil, protocolErr(op, "output '%s' was asked for but the response has %v", name, res.Names)
		}
	}
	return res, nil
}

// decodeContents builds an output from typed contents (what a server answers when it does not send raw).
func decodeContents(op, name, datatype string, shape []int64, c *inference.InferTensorContents) (Tensor, error) {
	n, err := elementCount(shape)
	if err != nil {
		return Tensor{}, protocolErr(op, "output '%s': %v", name, err)
	}
	t := Tensor{Shape: append([]int64{}, shape...)} // a scalar has shape [], not nil
	var got int
	rangeErr := func(i int, v any) error {
		return protocolErr(op, "output '%s': element %d is %v, out of range for %s", name, i, v, datatype)
	}
	switch datatype {
	case "FP32":
		t.Data, got = slices.Clone(c.GetFp32Contents()), len(c.GetFp32Contents())
	case "FP64":
		t.Data, got = slices.Clone(c.GetFp64Contents()), len(c.GetFp64Contents())
	case "INT64":
		t.Data, got = slices.Clone(c.GetInt64Contents()), len(c.GetInt64Contents())
	case "INT32":
		t.Data, got = slices.Clone(c.GetIntContents()), len(c.GetIntContents())
	case "INT8":
		src := c.GetIntContents()
		d := make([]int8, len(src))
		for i, v := range src {
			if v < -128 || v > 127 {
				return Tensor{}, rangeErr(i, v)
			}
			d[i] = int8(v)
		}
		t.Data, got = d, len(d)
	case "UINT8":
		src := c.GetUintContents()
		d := make([]uint8, len(src))
		for i, v := range src {
			if v > 255 {
				return Tensor{}, rangeErr(i, v)
			}
			d[i] = uint8(v)
		}
		t.Data, got = d, len(d)
	case "BOOL":
		t.Data, got = slices.Clone(c.GetBoolContents()), len(c.GetBoolContents())
	case "BYTES":
		src := c.GetBytesContents()
		d := make([]string, len(src))
		for i, v := range src {
			d[i] = string(v)
		}
		t.Data, got = d, len(d)
	default:
		return Tensor{}, protocolErr(op, "output '%s': datatype %q, expected one of FP32, FP64, INT64, INT32, "+
			"UINT8, INT8, BOOL, BYTES", name, datatype)
	}
	if got != n {
		return Tensor{}, protocolErr(op, "output '%s': %d %s elements, shape %v needs %d", name, got, datatype, shape, n)
	}
	return t, nil
}
