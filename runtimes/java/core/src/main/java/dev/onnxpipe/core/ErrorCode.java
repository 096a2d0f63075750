package dev.onnxpipe.core;

/**
 * The error codes of spec/errors.json: what every runtime, CLI, sidecar and sidecar client reports, with the CLI
 * exit status and the gRPC status of each. {@code ErrorCodeTest} checks this table against the spec file.
 */
public enum ErrorCode {
  /** An input is missing, unknown or repeated, of the wrong dtype, rank, dims or range; tensor JSON that breaks the rules. */
  INVALID_INPUT(3, "INVALID_ARGUMENT"),
  /** Over a configured limit (elements, string bytes, nesting); refused from the declared shape before allocating. */
  TOO_LARGE(3, "RESOURCE_EXHAUSTED"),
  /** The file cannot be read, is not ONNX, or its manifest is invalid, too new, or does not match the graph. */
  MODEL_LOAD(4, "INTERNAL"),
  /** The graph needs a custom-op library (manifest {@code domains}) that is not available. */
  MISSING_EXTENSION(4, "INTERNAL"),
  /** ONNX Runtime failed on a validated input. */
  RUNTIME(5, "INTERNAL"),
  /** The pipeline (or the server) was closed or is shutting down. */
  CLOSED(5, "UNAVAILABLE"),
  /** CLI only: bad arguments, missing files named on the command line. */
  USAGE(2, null),
  /** CLI verify only: outputs differ from the expected ones. */
  MISMATCH(1, null),
  /** Library only (Go): the caller's context ended before the run finished. Java has no such run-time context. */
  CANCELLED(null, null),
  /** Sidecar: unknown model, version or output. */
  NOT_FOUND(null, "NOT_FOUND"),
  /** Sidecar: the model's queue is full, or the response would pass --max-message-mb. */
  OVERLOADED(null, "RESOURCE_EXHAUSTED"),
  /** Sidecar: missing or wrong bearer token. */
  UNAUTHENTICATED(null, "UNAUTHENTICATED"),
  /** Sidecar: the client's deadline passed while the request waited. */
  DEADLINE(null, "DEADLINE_EXCEEDED"),
  /**
   * Sidecar client only, not in spec/errors.json: the sidecar could not be reached (not running, wrong address,
   * TLS handshake failed), so no onnxpipe code came back.
   */
  UNAVAILABLE(null, "UNAVAILABLE");

  private final Integer exit;
  private final String grpc;

  ErrorCode(Integer exit, String grpc) {
    this.exit = exit;
    this.grpc = grpc;
  }

  /** The CLI exit status for this code; 1 for codes a CLI never reports (sidecar-only ones). */
  public int exitStatus() {
    return exit == null ? 1 : exit;
  }

  /** Whether spec/errors.json gives this code a CLI exit status. */
  public boolean hasExitStatus() {
    return exit != null;
  }

  /** The gRPC status name the sidecar answers with ({@code INVALID_ARGUMENT}, ...), or null for CLI-only codes. */
  public String grpcStatus() {
    return grpc;
  }

  /** The code named {@code name}, or null. */
  public static ErrorCode fromName(String name) {
    for (ErrorCode c : values()) {
      if (c.name().equals(name)) {
        return c;
      }
    }
    return null;
  }
}
