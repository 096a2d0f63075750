package dev.onnxpipe.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.onnxpipe.core.Tensor;
import dev.onnxpipe.core.TensorJson;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The CLI round trip: tensor JSON in, tensor JSON out, errors as one line and an exit code. */
class MainTest {
  private static final Path ROOT = Path.of(System.getProperty("onnxpipe.root", "../../..")).toAbsolutePath().normalize();
  private static final Path BASIC = ROOT.resolve("tests/fixtures/basic.onnx");

  record Result(int code, String out, String err) {}

  static Result cli(String... args) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    int code = Main.run(args, new PrintStream(out, true, StandardCharsets.UTF_8),
        new PrintStream(err, true, StandardCharsets.UTF_8));
    return new Result(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
  }

  @Test
  void runPrintsEveryOutputInManifestOrder(@TempDir Path tmp) throws IOException {
    Path inputs = tmp.resolve("in.json");
    Files.writeString(inputs, "{\"features\": {\"dtype\": \"float32\", \"shape\": [1, 3], \"data\": [0.1, 0.2, 0.3]},"
        + " \"pixels\": {\"dtype\": \"uint8\", \"shape\": [1, 1, 1, 3], \"data\": [255, 255, 255]},"
        + " \"score_threshold\": {\"dtype\": \"float32\", \"shape\": [], \"data\": [0.2]}}");
    Result r = cli("run", BASIC.toString(), "--inputs", inputs.toString());
    assertEquals(0, r.code(), r.err());
    assertEquals("", r.err());
    Map<String, Tensor> out = TensorJson.parse(r.out());
    assertEquals(List.of("score", "label_id", "label", "confident", "pixel_sum"), new ArrayList<>(out.keySet()));
    assertEquals(765, out.get("pixel_sum").longs()[0]);
    assertEquals("bird", out.get("label").strings()[0]);
    assertTrue(out.get("confident").booleans()[0]);
    // float32 printed from float32: 0.3671654 (not 0.36716540157794952...)
    assertTrue(r.out().contains("0.3671654]"), r.out());
  }

  @Test
  void inspectPrintsTheSignature() {
    Result r = cli("inspect", BASIC.toString());
    assertEquals(0, r.code(), r.err());
    assertTrue(r.out().startsWith("{\"source\": \"manifest\", \"inputs\": [{\"name\": \"features\""), r.out());
    assertTrue(r.out().contains("\"optional\": true, \"default\": 0.5"), r.out());
  }

  @Test
  void errorsAreOneLineWithACode(@TempDir Path tmp) throws IOException {
    Result corrupt = cli("inspect", ROOT.resolve("tests/fixtures/corrupt.onnx").toString());
    assertEquals(4, corrupt.code());
    assertOneLine(corrupt.err(), "onnxpipe-java: error [MODEL_LOAD]: ", "corrupt.onnx");

    Path bad = tmp.resolve("bad.json");
    Files.writeString(bad, "{\"features\": {\"dtype\": \"float64\", \"shape\": [1, 3], \"data\": [1, 2, 3]},"
        + " \"pixels\": {\"dtype\": \"uint8\", \"shape\": [1, 1, 1, 3], \"data\": [1, 2, 3]}}");
    Result wrong = cli("run", BASIC.toString(), "--inputs", bad.toString());
    assertEquals(3, wrong.code());
    assertOneLine(wrong.err(), "onnxpipe-java: error [INVALID_INPUT]: ", "'features'", "float64");

    Result missing = cli("run", BASIC.toString(), "--inputs", tmp.resolve("nope.json").toString());
    assertEquals(2, missing.code());
    assertOneLine(missing.err(), "onnxpipe-java: error [USAGE]: ", "nope.json");

    Result usage = cli("run", BASIC.toString());
    assertEquals(2, usage.code());
    assertOneLine(usage.err(), "onnxpipe-java: error [USAGE]: ", "--inputs");
    assertEquals(2, cli("frobnicate", "x").code());
    assertEquals(0, cli("--help").code());
  }

  private static void assertOneLine(String err, String... parts) {
    assertEquals(1, err.strip().lines().count(), "one line expected: " + err);
    assertFalse(err.contains("\tat "), "no stack trace: " + err);
    for (String p : parts) {
      assertTrue(err.contains(p), "stderr should mention '" + p + "': " + err);
    }
  }

  /** Runs the CLI in a real JVM: exit status and stderr as a shell sees them. */
  private static Result process(String classpath, String... args) throws Exception {
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    List<String> cmd = new ArrayList<>(List.of(java, "-cp", classpath, Main.class.getName()));
    cmd.addAll(List.of(args));
    Process p = new ProcessBuilder(cmd).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
    String err = new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(60, TimeUnit.SECONDS));
    return new Result(p.exitValue(), "", err);
  }

  @Test
  void processExitsNonZeroWithoutAStackTrace() throws Exception {
    Result r = process(System.getProperty("java.class.path"),
        "inspect", ROOT.resolve("tests/fixtures/corrupt.onnx").toString());
    assertEquals(4, r.code(), r.err());
    assertOneLine(r.err(), "onnxpipe-java: error [MODEL_LOAD]: ");
  }

  /** Issue 13 §5: running out of heap on a large inputs file is TOO_LARGE (exit 3), never "internal error". */
  @Test
  void outOfHeapIsTooLarge(@TempDir Path tmp) throws Exception {
    Path big = tmp.resolve("big.json");
    int n = 12_000_000; // within max_elements; 48 MB of float32, in a 32 MB heap
    try (java.io.BufferedWriter w = Files.newBufferedWriter(big, StandardCharsets.UTF_8)) {
      w.write("{\"features\": {\"dtype\": \"float32\", \"shape\": [" + (n / 3) + ", 3], \"data\": [0");
      for (int i = 1; i < n; i++) {
        w.write(", 0");
      }
      w.write("]}}");
    }
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    Process p = new ProcessBuilder(java, "-Xmx32m", "-cp", System.getProperty("java.class.path"),
        Main.class.getName(), "run", BASIC.toString(), "--inputs", big.toString())
        .redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
    String err = new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(120, TimeUnit.SECONDS));
    assertEquals(3, p.exitValue(), err);
    assertOneLine(err, "onnxpipe-java: error [TOO_LARGE]: ", "heap");
  }

  @Test
  void withoutTheExtensionsJarATokenizerIsMissingExtension() throws Exception {
    String sep = System.getProperty("path.separator");
    String cp = String.join(sep, java.util.Arrays.stream(System.getProperty("java.class.path").split(sep))
        .filter(e -> !e.contains("onnxruntime-extensions")).toList());
    Path model = ROOT.resolve("spec/models/tokenizer.onnx");
    Result r = process(cp, "inspect", model.toString());
    assertEquals(4, r.code(), r.err());
    assertOneLine(r.err(), "onnxpipe-java: error [MISSING_EXTENSION]: ", "ai.onnx.contrib",
        "com.microsoft.onnxruntime:onnxruntime-extensions");
  }
}
