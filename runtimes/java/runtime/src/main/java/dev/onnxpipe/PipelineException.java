package dev.onnxpipe;

import dev.onnxpipe.core.ErrorCode;
import dev.onnxpipe.core.OnnxpipeException;

/**
 * What the runtime throws: an {@link OnnxpipeException} whose {@link ErrorCode} (spec/errors.json) is shared with
 * the Python and Go runtimes and the gRPC sidecar: {@code INVALID_INPUT} and {@code TOO_LARGE} for inputs,
 * {@code MODEL_LOAD} and {@code MISSING_EXTENSION} at load, {@code RUNTIME} when ONNX Runtime fails, {@code
 * CLOSED} for a run after {@link Pipeline#close()}. The message names the input (or file), what was given and
 * what was expected.
 */
public final class PipelineException extends OnnxpipeException {
  private static final long serialVersionUID = 1L;

  public PipelineException(ErrorCode code, String message) {
    super(code, message);
  }

  public PipelineException(ErrorCode code, String message, Throwable cause) {
    super(code, message, cause);
  }

  static PipelineException invalidInput(String message) {
    return new PipelineException(ErrorCode.INVALID_INPUT, message);
  }

  static PipelineException modelLoad(String message, Throwable cause) {
    return new PipelineException(ErrorCode.MODEL_LOAD, message, cause);
  }
}
