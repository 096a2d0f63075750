package dev.onnxpipe.sidecar;

import io.grpc.Status;

/**
 * The one error type of the sidecar client. Its {@link Code} is the onnxpipe error code the sidecar sent
 * (trailing metadata {@code onnxpipe-error-code}, or the {@code [CODE]} prefix of the status message), or,
 * when the failure never reached the sidecar, one derived from the gRPC status. The message names the
 * model, the input or output, what was given and what was expected, without the {@code [CODE]} prefix.
 *
 * <p>Using a {@link SidecarClient} after {@link SidecarClient#close()} is a programming error and throws
 * {@link IllegalStateException} instead.
 */
public final class SidecarException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  /** What went wrong, as a stable code shared with the Python, Java and Go runtimes and the sidecar. */
  public enum Code {
    /** An input is missing, unknown or repeated, or has the wrong datatype, shape or data size. */
    INVALID_INPUT,
    /** Unknown model, version or output. */
    NOT_FOUND,
    /** Missing or wrong bearer token. */
    UNAUTHENTICATED,
    /** The sidecar cannot be reached (not running, wrong address, connection lost, TLS handshake failed). */
    UNAVAILABLE,
    /** The sidecar is shutting down and accepts no new requests. */
    CLOSED,
    /** The model's queue is full, or a message is larger than the sidecar or this client allows. */
    OVERLOADED,
    /** The call's deadline passed. */
    DEADLINE,
    /** ONNX Runtime failed on a validated input, or the sidecar's answer could not be decoded. */
    RUNTIME,
    /** The sidecar could not load a model file. */
    MODEL_LOAD,
    /** The model needs onnxruntime-extensions, which the sidecar could not load. */
    MISSING_EXTENSION
  }

  private final Code code;
  private final Status.Code grpcStatus;

  SidecarException(Code code, String message) {
    this(code, message, null, null);
  }

  SidecarException(Code code, String message, Status.Code grpcStatus, Throwable cause) {
    super(message, cause);
    this.code = code;
    this.grpcStatus = grpcStatus;
  }

  /** The onnxpipe error code. */
  public Code code() {
    return code;
  }

  /** The gRPC status the call ended with; null when the error was found before or after the call. */
  public Status.Code grpcStatus() {
    return grpcStatus;
  }

  @Override
  public String toString() {
    return code + ": " + getMessage();
  }

  static SidecarException invalidInput(String message) {
    return new SidecarException(Code.INVALID_INPUT, message);
  }
}
