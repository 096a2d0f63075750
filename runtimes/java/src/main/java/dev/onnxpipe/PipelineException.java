package dev.onnxpipe;

/**
 * The one error type of the onnxpipe runtime. Its {@link Code} is shared with the Python and Go runtimes and
 * the gRPC sidecar; its message names the input (or file), what was given and what was expected.
 *
 * <p>Using a {@link Pipeline} after {@link Pipeline#close()} is a programming error and throws {@link
 * IllegalStateException} instead.
 */
public final class PipelineException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  /** What went wrong, as a stable code. */
  public enum Code {
    /**
     * An input is missing, unknown, or has the wrong type, dtype, rank or dimension, or is a string with a NUL
     * character for a pipeline whose {@code ai.onnx.contrib} string ops would drop what follows it.
     */
    INVALID_INPUT,
    /** The model file cannot be read, is not an ONNX model, or its manifest is invalid. */
    MODEL_LOAD,
    /** The model needs a custom-op library (onnxruntime-extensions) that cannot be loaded. */
    MISSING_EXTENSION,
    /** ONNX Runtime failed while running validated inputs, or produced an output the signature does not allow. */
    RUNTIME
  }

  private final Code code;

  public PipelineException(Code code, String message) {
    super(message);
    this.code = code;
  }

  public PipelineException(Code code, String message, Throwable cause) {
    super(message, cause);
    this.code = code;
  }

  public Code code() {
    return code;
  }

  @Override
  public String toString() {
    return code + ": " + getMessage();
  }

  static PipelineException invalidInput(String message) {
    return new PipelineException(Code.INVALID_INPUT, message);
  }

  static PipelineException modelLoad(String message, Throwable cause) {
    return new PipelineException(Code.MODEL_LOAD, message, cause);
  }
}
