package dev.onnxpipe.sidecar;

import dev.onnxpipe.core.ErrorCode;
import dev.onnxpipe.core.OnnxpipeException;
import io.grpc.Status;

/**
 * What the sidecar client throws: an {@link OnnxpipeException} whose {@link ErrorCode} is the code the sidecar sent
 * (trailing metadata {@code onnxpipe-error-code}, or the {@code [CODE]} prefix of the status message), or, when the
 * failure never reached the sidecar, one derived from the gRPC status ({@link ErrorCode#UNAVAILABLE} when it could
 * not be reached). The message names the model, the input or output, what was given and what was expected,
 * without the {@code [CODE]} prefix. Tensor-JSON files the example reads fail with the core's {@link
 * OnnxpipeException} directly.
 *
 * <p>Using a {@link SidecarClient} after {@link SidecarClient#close()} is a programming error and throws
 * {@link IllegalStateException} instead.
 */
public final class SidecarException extends OnnxpipeException {
  private static final long serialVersionUID = 1L;

  private final Status.Code grpcStatus;

  SidecarException(ErrorCode code, String message) {
    this(code, message, null, null);
  }

  SidecarException(ErrorCode code, String message, Status.Code grpcStatus, Throwable cause) {
    super(code, message, cause);
    this.grpcStatus = grpcStatus;
  }

  /** The gRPC status the call ended with; null when the error was found before or after the call. */
  public Status.Code grpcStatus() {
    return grpcStatus;
  }

  static SidecarException invalidInput(String message) {
    return new SidecarException(ErrorCode.INVALID_INPUT, message);
  }
}
