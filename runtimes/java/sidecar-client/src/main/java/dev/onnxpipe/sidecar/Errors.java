package dev.onnxpipe.sidecar;

import dev.onnxpipe.core.ErrorCode;
import io.grpc.Metadata;
import io.grpc.Status;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** A failed call as a {@link SidecarException}: the sidecar's own code first, else one from the status. */
final class Errors {
  /** Trailing metadata key in which the sidecar sends its error code (docs/serving.md, "Errors"). */
  static final Metadata.Key<String> CODE_KEY =
      Metadata.Key.of("onnxpipe-error-code", Metadata.ASCII_STRING_MARSHALLER);

  private static final Pattern PREFIX = Pattern.compile("^\\[([A-Z_]+)\\] ?");

  private Errors() {}

  /**
   * @param status the call's final status
   * @param trailers its trailing metadata (may be null)
   * @param context what was being done, e.g. {@code "model 'digits'"}, put before the sidecar's message
   * @param target the server address, named when the server could not be reached
   */
  static SidecarException fromStatus(Status status, Metadata trailers, String context, String target) {
    String description = status.getDescription() == null ? "" : status.getDescription();
    Matcher m = PREFIX.matcher(description);
    String prefixCode = m.find() ? m.group(1) : null;
    String message = prefixCode != null ? description.substring(m.end()) : description;
    String metadataCode = trailers == null ? null : trailers.get(CODE_KEY);

    ErrorCode code = known(metadataCode);
    if (code == null) {
      code = known(prefixCode);
    }
    boolean fromServer = code != null;
    if (code == null) {
      code = fromGrpc(status.getCode());
    }
    StringBuilder text = new StringBuilder(context).append(": ");
    if (!fromServer && code == ErrorCode.UNAVAILABLE) {
      text.append("sidecar at ").append(target).append(" is unavailable");
      if (!message.isEmpty()) {
        text.append(" (").append(message).append(')');
      }
      text.append("; is it running on that host and port (and with TLS if the client uses TLS)?");
    } else if (!fromServer && code == ErrorCode.DEADLINE) {
      text.append("no answer from ").append(target).append(" before the deadline");
      if (!message.isEmpty()) {
        text.append(" (").append(message).append(')');
      }
    } else {
      text.append(message.isEmpty() ? "gRPC status " + status.getCode() : message);
    }
    return new SidecarException(code, text.toString(), status.getCode(), status.getCause());
  }

  private static ErrorCode known(String name) {
    if (name == null) {
      return null;
    }
    for (ErrorCode c : ErrorCode.values()) {
      if (c.name().equals(name)) {
        return c;
      }
    }
    return null;
  }

  /** For failures that did not come from the sidecar's own handlers (transport, gRPC limits, other servers). */
  static ErrorCode fromGrpc(Status.Code code) {
    switch (code) {
      case INVALID_ARGUMENT:
      case FAILED_PRECONDITION:
      case OUT_OF_RANGE:
        return ErrorCode.INVALID_INPUT;
      case NOT_FOUND:
        return ErrorCode.NOT_FOUND;
      case UNAUTHENTICATED:
      case PERMISSION_DENIED:
        return ErrorCode.UNAUTHENTICATED;
      case UNAVAILABLE:
        return ErrorCode.UNAVAILABLE;
      case RESOURCE_EXHAUSTED:
        return ErrorCode.OVERLOADED;
      case DEADLINE_EXCEEDED:
        return ErrorCode.DEADLINE;
      default:
        return ErrorCode.RUNTIME;
    }
  }
}
