package dev.onnxpipe.sidecar;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.onnxpipe.core.ErrorCode;
import dev.onnxpipe.core.Tensor;
import dev.onnxpipe.core.TensorJson;
import io.grpc.Status;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** A sidecar started with --token: calls without the bearer token, or with a wrong one, are refused. */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class TokenTest {
  static final String TOKEN = "s3cret-token";
  static SidecarProcess server;
  static Vectors basic;

  @BeforeAll
  static void start() throws Exception {
    basic = new Vectors("basic");
    server = SidecarProcess.start(Map.of("basic", basic.model), TOKEN, null);
  }

  @AfterAll
  static void stop() throws Exception {
    if (server != null) {
      server.close();
    }
  }

  private static SidecarClient client(String token) {
    SidecarClient.Builder b = SidecarClient.builder("127.0.0.1", server.port).timeout(Duration.ofSeconds(30));
    return token == null ? b.build() : b.token(token).build();
  }

  @Test
  void theRightTokenRuns() throws Exception {
    try (SidecarClient c = client(TOKEN)) {
      Vectors.Case k = basic.cases.get(0);
      basic.check("with token", TensorJson.read(k.expected()), c.infer("basic", TensorJson.read(k.inputs())));
    }
  }

  @Test
  void noTokenOrAWrongOneIsUnauthenticated() throws Exception {
    Map<String, Tensor> inputs = TensorJson.read(basic.cases.get(0).inputs());
    for (String token : new String[] {null, "wrong-token"}) {
      try (SidecarClient c = client(token)) {
        SidecarException e = assertThrows(SidecarException.class, () -> c.infer("basic", inputs));
        assertEquals(ErrorCode.UNAUTHENTICATED, e.code(), "token " + token);
        assertEquals(Status.Code.UNAUTHENTICATED, e.grpcStatus());
        assertTrue(e.getMessage().contains("bearer token"), e.getMessage());
        // waiting does not fix a missing token: awaitReady says so at once instead of timing out
        SidecarException wait = assertThrows(SidecarException.class, () -> c.awaitReady(Duration.ofSeconds(20)));
        assertEquals(ErrorCode.UNAUTHENTICATED, wait.code());
      }
    }
  }
}
