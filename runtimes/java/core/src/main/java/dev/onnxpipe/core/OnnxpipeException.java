package dev.onnxpipe.core;

/**
 * The root of onnxpipe's error family in Java: every error raised on purpose carries an {@link ErrorCode} shared
 * with the Python and Go runtimes and the sidecar. The runtime's {@code PipelineException} and the sidecar
 * client's {@code SidecarException} extend it; the tensor-JSON reader throws it directly. Messages name the
 * tensor, input or file, what was given and what was expected.
 */
public class OnnxpipeException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final ErrorCode code;

  public OnnxpipeException(ErrorCode code, String message) {
    this(code, message, null);
  }

  public OnnxpipeException(ErrorCode code, String message, Throwable cause) {
    super(message, cause);
    this.code = java.util.Objects.requireNonNull(code, "code");
  }

  public final ErrorCode code() {
    return code;
  }

  @Override
  public String toString() {
    return code + ": " + getMessage();
  }

  static OnnxpipeException invalidInput(String message) {
    return new OnnxpipeException(ErrorCode.INVALID_INPUT, message);
  }

  static OnnxpipeException tooLarge(String message) {
    return new OnnxpipeException(ErrorCode.TOO_LARGE, message);
  }
}
