package dev.onnxpipe.sidecar;

import static org.junit.jupiter.api.Assertions.fail;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The Python sidecar ({@code python -m onnxpipe_runtime.serve}) as a test subprocess on a free loopback port.
 * Every wait is bounded; {@link #close()} (and a JVM shutdown hook, should the test JVM die first) ends it.
 */
final class SidecarProcess implements AutoCloseable {
  static final Duration START_LIMIT = Duration.ofSeconds(60);
  private static final Pattern LISTENING = Pattern.compile("listening on 127\\.0\\.0\\.1:(\\d+)");

  private final Process process;
  private final Path stderr;
  private final Thread killer;
  final int port;

  private SidecarProcess(Process process, Path stderr, int port) {
    this.process = process;
    this.stderr = stderr;
    this.port = port;
    this.killer = new Thread(process::destroyForcibly, "sidecar-killer");
    Runtime.getRuntime().addShutdownHook(killer);
  }

  static Path root() {
    return Path.of(System.getProperty("onnxpipe.root", "../../..")).toAbsolutePath().normalize();
  }

  static Path vectors() {
    return root().resolve("tests/vectors");
  }

  /** $ONNXPIPE_PYTHON, else the repository's .venv (made by {@code make setup}). */
  static Path python() {
    String env = System.getenv("ONNXPIPE_PYTHON");
    Path p = env != null && !env.isEmpty() ? Path.of(env) : root().resolve(".venv/bin/python");
    if (!Files.isExecutable(p)) {
      fail("no Python interpreter at " + p + ": run `make setup` at the repository root, or set ONNXPIPE_PYTHON "
          + "to a Python with onnxpipe_runtime[serve] installed");
    }
    return p;
  }

  /**
   * Starts the sidecar serving {@code models} (name -> file) with extra flags, and waits (bounded) until it
   * listens and answers ServerReady.
   *
   * @param token the sidecar's --token, or null; also what the readiness probe sends
   * @param tls the sidecar's --tls-cert and --tls-key (the probe trusts the certificate), or null
   */
  static SidecarProcess start(java.util.Map<String, Path> models, String token, Path[] tls, String... flags)
      throws IOException, InterruptedException {
    List<String> cmd = new ArrayList<>(List.of(python().toString(), "-m", "onnxpipe_runtime.serve"));
    for (Path file : models.values()) {
      cmd.add(file.toString());
    }
    for (String name : models.keySet()) {
      cmd.add("--name");
      cmd.add(name);
    }
    cmd.addAll(List.of("--host", "127.0.0.1", "--port", "0", "--threads", "2", "--grace-s", "2"));
    if (token != null) {
      cmd.addAll(List.of("--token", token));
    }
    if (tls != null) {
      cmd.addAll(List.of("--tls-cert", tls[0].toString(), "--tls-key", tls[1].toString()));
    }
    cmd.addAll(List.of(flags));
    Path stderr = Files.createTempFile("onnxpipe-sidecar-", ".log");
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectError(stderr.toFile());
    pb.environment().remove("ONNXPIPE_TOKEN");
    Process process = pb.start();
    CompletableFuture<Integer> port = new CompletableFuture<>();
    Thread reader = new Thread(() -> {
      try (BufferedReader r = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
        String line;
        while ((line = r.readLine()) != null) {
          Matcher m = LISTENING.matcher(line);
          if (m.find()) {
            port.complete(Integer.parseInt(m.group(1)));
          }
        }
      } catch (IOException e) {
        // the process ended; reported below
      }
      port.completeExceptionally(new IOException("stdout closed"));
    }, "sidecar-stdout");
    reader.setDaemon(true);
    reader.start();
    int p;
    try {
      p = port.get(START_LIMIT.toSeconds(), TimeUnit.SECONDS);
    } catch (ExecutionException | TimeoutException e) {
      boolean exited = process.waitFor(2, TimeUnit.SECONDS);
      String why = exited
          ? "exited with status " + process.exitValue() + " before listening"
          : "did not start listening within " + START_LIMIT.toSeconds() + " s";
      stop(process);
      String log = Files.readString(stderr);
      Files.deleteIfExists(stderr);
      throw new IllegalStateException("sidecar " + why + " (" + String.join(" ", cmd) + "); stderr:\n" + log);
    }
    SidecarProcess server = new SidecarProcess(process, stderr, p);
    SidecarClient.Builder b = SidecarClient.builder("127.0.0.1", p);
    if (token != null) {
      b.token(token);
    }
    if (tls != null) {
      b.tls(tls[0]);
    }
    try (SidecarClient probe = b.build()) {
      probe.awaitReady(START_LIMIT);
    } catch (RuntimeException e) {
      String log = server.stderr();
      server.close();
      throw new IllegalStateException("sidecar on port " + p + " never became ready: " + e + "\nstderr:\n" + log, e);
    }
    return server;
  }

  String stderr() {
    try {
      return Files.readString(stderr);
    } catch (IOException e) {
      return "(stderr unreadable: " + e + ")";
    }
  }

  boolean isAlive() {
    return process.isAlive();
  }

  /** SIGTERM (the sidecar drains, up to --grace-s), then SIGKILL after 10 s. */
  @Override
  public void close() {
    try {
      stop(process);
    } catch (InterruptedException e) {
      process.destroyForcibly();
      Thread.currentThread().interrupt();
    }
    try {
      Runtime.getRuntime().removeShutdownHook(killer);
    } catch (IllegalStateException shuttingDown) {
      // the hook runs anyway
    }
    try {
      Files.deleteIfExists(stderr);
    } catch (IOException ignored) {
      // a temp file
    }
  }

  private static void stop(Process process) throws InterruptedException {
    process.destroy();
    if (!process.waitFor(10, TimeUnit.SECONDS)) {
      process.destroyForcibly();
      process.waitFor(5, TimeUnit.SECONDS);
    }
  }
}
