package dev.onnxpipe.sidecar;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.onnxpipe.core.ErrorCode;
import dev.onnxpipe.core.TensorJson;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** A sidecar with --tls-cert/--tls-key (a self-signed certificate made by openssl) and --token. */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class TlsTest {
  static final String TOKEN = "tls-token";
  @TempDir static Path dir;
  static Path cert;
  static SidecarProcess server;
  static Vectors basic;

  @BeforeAll
  static void start() throws Exception {
    cert = dir.resolve("cert.pem");
    Path key = dir.resolve("key.pem");
    List<String> cmd = List.of("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-keyout", key.toString(), "-out", cert.toString());
    Process p;
    try {
      p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(dir.resolve("openssl.log").toFile()).start();
    } catch (IOException e) {
      Assumptions.abort("skipped: openssl is not installed, so no test certificate can be made (" + e.getMessage() + ")");
      return;
    }
    if (!p.waitFor(30, TimeUnit.SECONDS)) {
      p.destroyForcibly();
      throw new IllegalStateException("openssl did not make a certificate within 30 s");
    }
    assertEquals(0, p.exitValue(), () -> "openssl failed: " + read(dir.resolve("openssl.log")));
    basic = new Vectors("basic");
    server = SidecarProcess.start(Map.of("basic", basic.model), TOKEN, new Path[] {cert, key});
  }

  private static String read(Path p) {
    try {
      return Files.readString(p);
    } catch (IOException e) {
      return e.toString();
    }
  }

  @AfterAll
  static void stop() throws Exception {
    if (server != null) {
      server.close();
    }
  }

  @Test
  void tlsWithTheTokenRuns() throws Exception {
    try (SidecarClient c = SidecarClient.builder("127.0.0.1", server.port).tls(cert).token(TOKEN).build()) {
      Vectors.Case k = basic.cases.get(1);
      basic.check("over TLS", TensorJson.read(k.expected()), c.infer("basic", TensorJson.read(k.inputs())));
    }
  }

  @Test
  void tlsWithoutTheTokenIsUnauthenticated() {
    try (SidecarClient c = SidecarClient.builder("127.0.0.1", server.port).tls(cert).build()) {
      assertEquals(ErrorCode.UNAUTHENTICATED, assertThrows(SidecarException.class, c::isReady).code());
    }
  }

  @Test
  void plaintextOrAnUntrustedCertificateIsUnavailable() {
    try (SidecarClient plain = SidecarClient.builder("127.0.0.1", server.port).token(TOKEN)
            .timeout(Duration.ofSeconds(10)).build();
        SidecarClient systemRoots = SidecarClient.builder("127.0.0.1", server.port).tls().token(TOKEN)
            .timeout(Duration.ofSeconds(10)).build()) {
      for (SidecarClient c : new SidecarClient[] {plain, systemRoots}) {
        SidecarException e = assertThrows(SidecarException.class, c::isLive);
        assertEquals(ErrorCode.UNAVAILABLE, e.code(), e.getMessage());
        assertTrue(e.getMessage().contains("127.0.0.1:" + server.port), e.getMessage());
      }
    }
  }
}
