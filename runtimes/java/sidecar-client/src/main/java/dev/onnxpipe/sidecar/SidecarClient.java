package dev.onnxpipe.sidecar;

import dev.onnxpipe.core.DType;
import dev.onnxpipe.core.ErrorCode;
import dev.onnxpipe.core.Tensor;
import dev.onnxpipe.serve.inference.GRPCInferenceServiceGrpc.GRPCInferenceServiceBlockingStub;
import dev.onnxpipe.serve.inference.GRPCInferenceServiceGrpc;
import dev.onnxpipe.serve.inference.InferParameter;
import dev.onnxpipe.serve.inference.ModelInferRequest;
import dev.onnxpipe.serve.inference.ModelInferResponse;
import dev.onnxpipe.serve.inference.ModelMetadataRequest;
import dev.onnxpipe.serve.inference.ModelMetadataResponse;
import dev.onnxpipe.serve.inference.ModelReadyRequest;
import dev.onnxpipe.serve.inference.ServerLiveRequest;
import dev.onnxpipe.serve.inference.ServerMetadataRequest;
import dev.onnxpipe.serve.inference.ServerMetadataResponse;
import dev.onnxpipe.serve.inference.ServerReadyRequest;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ChannelCredentials;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ForwardingClientCall;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.TlsChannelCredentials;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;

/**
 * A client of the onnxpipe gRPC sidecar ({@code onnxpipe serve}, docs/serving.md), speaking the Open
 * Inference Protocol (KServe v2) with stubs generated from the repository's {@code proto/grpc_service.proto}.
 *
 * <pre>{@code
 * try (SidecarClient client = SidecarClient.connect("127.0.0.1", 8001)) {
 *   Map<String, Tensor> out = client.infer("digits", Map.of("image", Tensor.ofUint8(pixels, 1, 28, 28, 3)));
 *   String[] labels = out.get("label").strings();
 * }
 * }</pre>
 *
 * <p>Thread-safe: one client (one HTTP/2 connection) serves many threads, and concurrent calls are what the
 * sidecar batches. Every call has a deadline ({@link Builder#timeout}, 30 s by default). Every failure is a
 * {@link SidecarException} with the sidecar's error code; a call after {@link #close()} throws {@link
 * IllegalStateException}.
 */
public final class SidecarClient implements AutoCloseable {
  /** The sidecar's default {@code --max-message-mb}: the largest answer this client accepts by default. */
  public static final int DEFAULT_MAX_MESSAGE_BYTES = 64 << 20;

  private static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

  private final ManagedChannel channel;
  private final GRPCInferenceServiceBlockingStub stub;
  private final String target;
  private final Duration timeout;
  private volatile boolean closed;

  private SidecarClient(Builder b) {
    this.target = b.host + ":" + b.port;
    this.timeout = b.timeout;
    ChannelCredentials credentials;
    if (!b.tls) {
      credentials = InsecureChannelCredentials.create();
    } else if (b.rootCertificates == null) {
      credentials = TlsChannelCredentials.create();
    } else {
      try {
        credentials = TlsChannelCredentials.newBuilder().trustManager(b.rootCertificates.toFile()).build();
      } catch (IOException e) {
        throw new IllegalArgumentException(
            "TLS root certificates '" + b.rootCertificates + "': cannot read them as PEM (" + e.getMessage() + ")", e);
      }
    }
    var channelBuilder = Grpc.newChannelBuilderForAddress(b.host, b.port, credentials)
        .maxInboundMessageSize(b.maxMessageBytes)
        .userAgent("onnxpipe-sidecar-client-java");
    if (b.token != null) {
      channelBuilder.intercept(new BearerToken(b.token));
    }
    this.channel = channelBuilder.build();
    this.stub = GRPCInferenceServiceGrpc.newBlockingStub(channel);
  }

  /** A client of the sidecar at {@code host:port}: plaintext, no token. The connection opens on first use. */
  public static SidecarClient connect(String host, int port) {
    return builder(host, port).build();
  }

  /** Options: bearer token, TLS, deadline, message size. */
  public static Builder builder(String host, int port) {
    return new Builder(host, port);
  }

  /** {@code host:port}. */
  public String target() {
    return target;
  }

  /** ServerLive: the sidecar process runs. Unreachable is an {@link ErrorCode#UNAVAILABLE} error. */
  public boolean isLive() {
    return call("server live", s -> s.serverLive(ServerLiveRequest.getDefaultInstance())).getLive();
  }

  /** ServerReady: every model is loaded and the sidecar is not shutting down. */
  public boolean isReady() {
    return call("server ready", s -> s.serverReady(ServerReadyRequest.getDefaultInstance())).getReady();
  }

  /** ModelReady: the model is served and ready; an unknown model is {@code false}, as the protocol answers. */
  public boolean isReady(String model) {
    requireModel(model);
    return call("model '" + model + "'", s -> s.modelReady(ModelReadyRequest.newBuilder().setName(model).build()))
        .getReady();
  }

  /**
   * Waits until ServerReady answers {@code true}, retrying while the sidecar is unreachable or not ready.
   *
   * @throws SidecarException UNAVAILABLE (naming the last failure) when {@code limit} passes first, or at
   *     once for an error that waiting does not fix (e.g. UNAUTHENTICATED)
   */
  public void awaitReady(Duration limit) {
    long end = System.nanoTime() + limit.toNanos();
    String last = "not ready";
    while (true) {
      ensureOpen();
      long left = end - System.nanoTime();
      if (left <= 0) {
        throw new SidecarException(ErrorCode.UNAVAILABLE,
            "sidecar at " + target + " not ready after " + limit.toMillis() + " ms: " + last);
      }
      try {
        boolean ready = stub.withDeadlineAfter(Math.min(left, TimeUnit.SECONDS.toNanos(2)), TimeUnit.NANOSECONDS)
            .serverReady(ServerReadyRequest.getDefaultInstance())
            .getReady();
        if (ready) {
          return;
        }
        last = "it answers ServerReady: false";
      } catch (StatusRuntimeException e) {
        SidecarException err = Errors.fromStatus(e.getStatus(), e.getTrailers(), "server ready", target);
        if (err.code() != ErrorCode.UNAVAILABLE && err.code() != ErrorCode.DEADLINE) {
          throw err;
        }
        last = err.getMessage();
        channel.resetConnectBackoff();
      }
      try {
        Thread.sleep(Math.max(1, Math.min(100, TimeUnit.NANOSECONDS.toMillis(end - System.nanoTime()))));
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new SidecarException(ErrorCode.UNAVAILABLE,
            "interrupted while waiting for the sidecar at " + target);
      }
    }
  }

  /** ServerMetadata: the server's name ({@code onnxpipe}) and version. */
  public ServerInfo serverMetadata() {
    ServerMetadataResponse r = call("server metadata", s -> s.serverMetadata(ServerMetadataRequest.getDefaultInstance()));
    return new ServerInfo(r.getName(), r.getVersion(), r.getExtensionsList());
  }

  /** The server's name, version and protocol extensions. */
  public record ServerInfo(String name, String version, List<String> extensions) {
    public ServerInfo {
      extensions = List.copyOf(extensions);
    }
  }

  /** ModelMetadata: the model's inputs and outputs; an unknown model is a {@code NOT_FOUND} error. */
  public ModelMetadata metadata(String model) {
    requireModel(model);
    ModelMetadataResponse r = call("model '" + model + "'",
        s -> s.modelMetadata(ModelMetadataRequest.newBuilder().setName(model).build()));
    return new ModelMetadata(r.getName(), r.getVersionsList(), r.getPlatform(), infos(r.getInputsList()),
        infos(r.getOutputsList()));
  }

  private static List<ModelMetadata.TensorInfo> infos(List<ModelMetadataResponse.TensorMetadata> list) {
    List<ModelMetadata.TensorInfo> out = new ArrayList<>();
    for (ModelMetadataResponse.TensorMetadata t : list) {
      out.add(new ModelMetadata.TensorInfo(
          t.getName(), t.getDatatype(), t.getShapeList().stream().mapToLong(Long::longValue).toArray()));
    }
    return out;
  }

  /**
   * Runs a model (ModelInfer), sending the inputs raw and reading the outputs raw.
   *
   * @param model the served model's name
   * @param inputs input name to value, sent in the map's order: a {@link Tensor} (any datatype, any shape);
   *     a float[], double[], long[], int[], boolean[] or String[] (1-D); or a Float, Double, Long, Integer,
   *     Boolean or String (a scalar). byte[] must be wrapped ({@link Tensor#ofUint8} or {@link
   *     Tensor#ofInt8}). Optional inputs (thresholds) may be left out. Datatypes must be the model's:
   *     nothing is converted.
   * @param outputs the outputs to return; none: all of them
   * @return output name to tensor, in the order the sidecar sent them (manifest order, or {@code outputs}'
   *     order)
   * @throws SidecarException INVALID_INPUT (naming the input), NOT_FOUND (model or output), UNAUTHENTICATED,
   *     UNAVAILABLE, OVERLOADED, DEADLINE, RUNTIME, ...
   */
  public Map<String, Tensor> infer(String model, Map<String, ?> inputs, String... outputs) {
    requireModel(model);
    Objects.requireNonNull(inputs, "inputs");
    ModelInferRequest.Builder request = ModelInferRequest.newBuilder()
        .setModelName(model)
        .putParameters("binary_data_output", InferParameter.newBuilder().setBoolParam(true).build());
    for (Map.Entry<String, ?> e : inputs.entrySet()) {
      String name = e.getKey();
      if (name == null || name.isEmpty()) {
        throw SidecarException.invalidInput("model '" + model + "': an input has no name");
      }
      Tensor t = Codec.toTensor(name, e.getValue());
      ModelInferRequest.InferInputTensor.Builder input = request.addInputsBuilder()
          .setName(name)
          .setDatatype(t.dtype().kserveName());
      for (long d : t.shape()) {
        input.addShape(d);
      }
      request.addRawInputContents(Codec.encodeRaw(t));
    }
    Set<String> requested = new HashSet<>();
    for (String name : outputs) {
      if (name == null || name.isEmpty() || !requested.add(name)) {
        throw SidecarException.invalidInput("model '" + model + "': requested output "
            + (name == null ? "null" : "'" + name + "'") + " is empty or repeated; expected distinct output names");
      }
      request.addOutputsBuilder().setName(name);
    }
    String context = "model '" + model + "'";
    ModelInferResponse response = call(context, s -> s.modelInfer(request.build()));
    return decode(context, response);
  }

  private static Map<String, Tensor> decode(String context, ModelInferResponse response) {
    int n = response.getOutputsCount();
    int raw = response.getRawOutputContentsCount();
    if (raw != 0 && raw != n) {
      throw new SidecarException(ErrorCode.RUNTIME, context + ": sidecar response: " + n
          + " outputs but " + raw + " raw_output_contents; expected one per output");
    }
    Map<String, Tensor> out = new LinkedHashMap<>();
    for (int i = 0; i < n; i++) {
      ModelInferResponse.InferOutputTensor o = response.getOutputs(i);
      long[] shape = o.getShapeList().stream().mapToLong(Long::longValue).toArray();
      try {
        DType type = Codec.outputType(o.getName(), o.getDatatype());
        Tensor t = raw != 0
            ? Codec.decodeRaw(o.getName(), type, shape, response.getRawOutputContents(i))
            : Codec.decodeTyped(o.getName(), type, shape, o.getContents());
        if (out.put(o.getName(), t) != null) {
          throw new SidecarException(ErrorCode.RUNTIME,
              "sidecar response: output '" + o.getName() + "' appears twice");
        }
      } catch (SidecarException e) {
        throw new SidecarException(e.code(), context + ": " + e.getMessage());
      }
    }
    return Collections.unmodifiableMap(out);
  }

  private <T> T call(String context, Function<GRPCInferenceServiceBlockingStub, T> rpc) {
    ensureOpen();
    try {
      return rpc.apply(stub.withDeadlineAfter(timeout.toNanos(), TimeUnit.NANOSECONDS));
    } catch (StatusRuntimeException e) {
      throw Errors.fromStatus(e.getStatus(), e.getTrailers(), context, target);
    }
  }

  private static void requireModel(String model) {
    if (model == null || model.isEmpty()) {
      throw new SidecarException(ErrorCode.NOT_FOUND,
          "model name " + (model == null ? "null" : "''") + " given; expected the name of a served model");
    }
  }

  private void ensureOpen() {
    if (closed) {
      throw new IllegalStateException("SidecarClient for " + target + " is closed");
    }
  }

  /** Closes the connection: waits up to 5 s for calls in flight, then cancels them. Idempotent. */
  @Override
  public void close() {
    if (closed) {
      return;
    }
    closed = true;
    channel.shutdown();
    try {
      if (!channel.awaitTermination(5, TimeUnit.SECONDS)) {
        channel.shutdownNow();
        channel.awaitTermination(5, TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      channel.shutdownNow();
      Thread.currentThread().interrupt();
    }
  }

  /** Adds {@code authorization: Bearer <token>} to every call. */
  private static final class BearerToken implements ClientInterceptor {
    private final String value;

    BearerToken(String token) {
      this.value = "Bearer " + token;
    }

    @Override
    public <Q, R> ClientCall<Q, R> interceptCall(MethodDescriptor<Q, R> method, CallOptions options, Channel next) {
      return new ForwardingClientCall.SimpleForwardingClientCall<>(next.newCall(method, options)) {
        @Override
        public void start(Listener<R> listener, Metadata headers) {
          headers.put(AUTHORIZATION, value);
          super.start(listener, headers);
        }
      };
    }
  }

  /** Options of a {@link SidecarClient}. */
  public static final class Builder {
    private final String host;
    private final int port;
    private String token;
    private boolean tls;
    private Path rootCertificates;
    private Duration timeout = Duration.ofSeconds(30);
    private int maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES;

    private Builder(String host, int port) {
      if (host == null || host.isEmpty()) {
        throw new IllegalArgumentException("host: '" + host + "' given, expected a host name or address");
      }
      if (port < 1 || port > 65535) {
        throw new IllegalArgumentException("port: " + port + " given, expected 1..65535");
      }
      this.host = host;
      this.port = port;
    }

    /**
     * The sidecar's {@code --token}: sent as {@code authorization: Bearer <token>} on every call. Over a
     * network, use it with TLS.
     */
    public Builder token(String token) {
      if (token == null || token.isEmpty() || !token.chars().allMatch(c -> c > 0x20 && c < 0x7f)) {
        throw new IllegalArgumentException("token: expected a non-empty string of printable ASCII without spaces");
      }
      this.token = token;
      return this;
    }

    /** TLS, trusting the system's root certificates. */
    public Builder tls() {
      this.tls = true;
      this.rootCertificates = null;
      return this;
    }

    /** TLS, trusting the CA certificates in a PEM file (e.g. the sidecar's self-signed {@code --tls-cert}). */
    public Builder tls(Path rootCertificatesPem) {
      this.tls = true;
      this.rootCertificates = Objects.requireNonNull(rootCertificatesPem, "rootCertificatesPem");
      return this;
    }

    /** Deadline of every call (30 s by default). */
    public Builder timeout(Duration timeout) {
      if (timeout == null || timeout.isNegative() || timeout.isZero()) {
        throw new IllegalArgumentException("timeout: " + timeout + " given, expected a positive duration");
      }
      this.timeout = timeout;
      return this;
    }

    /** The largest answer accepted (64 MiB by default, the sidecar's default {@code --max-message-mb}). */
    public Builder maxMessageBytes(int bytes) {
      if (bytes < 1) {
        throw new IllegalArgumentException("maxMessageBytes: " + bytes + " given, expected > 0");
      }
      this.maxMessageBytes = bytes;
      return this;
    }

    public SidecarClient build() {
      return new SidecarClient(this);
    }
  }
}
