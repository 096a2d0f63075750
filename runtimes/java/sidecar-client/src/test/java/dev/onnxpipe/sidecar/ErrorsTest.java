package dev.onnxpipe.sidecar;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.onnxpipe.core.ErrorCode;
import io.grpc.Metadata;
import io.grpc.Status;
import org.junit.jupiter.api.Test;

/** gRPC status + trailing metadata -> SidecarException, without a server. */
class ErrorsTest {
  private static Metadata code(String code) {
    Metadata m = new Metadata();
    m.put(Errors.CODE_KEY, code);
    return m;
  }

  @Test
  void theSidecarsCodeAndMessage() {
    SidecarException e = Errors.fromStatus(
        Status.INVALID_ARGUMENT.withDescription("[INVALID_INPUT] input 'features': datatype FP64 given, expected FP32 [-1, 3]"),
        code("INVALID_INPUT"), "model 'basic'", "127.0.0.1:1");
    assertEquals(ErrorCode.INVALID_INPUT, e.code());
    assertEquals(Status.Code.INVALID_ARGUMENT, e.grpcStatus());
    assertEquals("model 'basic': input 'features': datatype FP64 given, expected FP32 [-1, 3]", e.getMessage());
  }

  @Test
  void metadataFirstThenPrefixThenStatus() {
    // the metadata code wins over the gRPC status: CLOSED and MODEL_LOAD have no status of their own
    assertEquals(ErrorCode.CLOSED,
        Errors.fromStatus(Status.UNAVAILABLE.withDescription("[CLOSED] shutting down"), code("CLOSED"), "m", "t").code());
    assertEquals(ErrorCode.MISSING_EXTENSION,
        Errors.fromStatus(Status.INTERNAL.withDescription("[MISSING_EXTENSION] x"), null, "m", "t").code());
    SidecarException unknown = Errors.fromStatus(Status.INTERNAL.withDescription("[SOMETHING_NEW] x"), code("SOMETHING_NEW"), "m", "t");
    assertEquals(ErrorCode.RUNTIME, unknown.code());
    assertEquals("m: x", unknown.getMessage());
    assertEquals(ErrorCode.OVERLOADED,
        Errors.fromStatus(Status.RESOURCE_EXHAUSTED.withDescription("gRPC message too large"), null, "m", "t").code());
    assertEquals(ErrorCode.NOT_FOUND, Errors.fromStatus(Status.NOT_FOUND, null, "m", "t").code());
  }

  @Test
  void transportFailuresNameTheAddress() {
    SidecarException e = Errors.fromStatus(Status.UNAVAILABLE.withDescription("io exception"), new Metadata(),
        "model 'digits'", "127.0.0.1:9");
    assertEquals(ErrorCode.UNAVAILABLE, e.code());
    assertTrue(e.getMessage().startsWith("model 'digits': sidecar at 127.0.0.1:9 is unavailable (io exception)"),
        e.getMessage());
    SidecarException d = Errors.fromStatus(Status.DEADLINE_EXCEEDED, null, "model 'digits'", "127.0.0.1:9");
    assertEquals(ErrorCode.DEADLINE, d.code());
    assertTrue(d.getMessage().contains("before the deadline"), d.getMessage());
  }
}
