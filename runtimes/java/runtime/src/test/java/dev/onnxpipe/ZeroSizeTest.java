package dev.onnxpipe;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * Issue 13 §2: no input may abort the JVM. For every test model (every vector set whose model is present, and the
 * tokenizer of spec/models), a zero in every position of every input's shape and an empty batch run in a child
 * JVM ({@link ZeroSizeProbe}), so an abort inside ONNX Runtime fails this test instead of killing the runner.
 * Every run must end in a result or a typed error.
 */
class ZeroSizeTest {
  private static final Pattern OUTCOME = Pattern.compile("  -> (OK|INVALID_INPUT|TOO_LARGE|RUNTIME) .*");

  @TestFactory
  Stream<DynamicTest> zeroSizeDimsNeverAbort() throws Exception {
    List<DynamicTest> tests = new ArrayList<>();
    try (Stream<Path> sets = Files.list(Fixtures.root().resolve("tests/vectors"))) {
      for (Path dir : sets.sorted().toList()) {
        Path model = dir.resolve("model.onnx");
        if (Files.exists(model)) {
          tests.add(DynamicTest.dynamicTest(dir.getFileName().toString(), () -> probe(model, dir.resolve("inputs_0.json"))));
        }
      }
    }
    tests.add(DynamicTest.dynamicTest("spec/models/tokenizer", () -> probe(Fixtures.resource("tokenizer.onnx"),
        Fixtures.resource("tokenizer_inputs.json"))));
    return tests.stream();
  }

  private static void probe(Path model, Path inputs) throws Exception {
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    Process p = new ProcessBuilder(java, "-Xmx256m", "-cp", System.getProperty("java.class.path"),
        ZeroSizeProbe.class.getName(), model.toString(), inputs.toString()).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(120, TimeUnit.SECONDS), "probe still running");
    assertEquals(0, p.exitValue(), "the JVM died (exit " + p.exitValue() + ") on " + model + ":\n" + out);
    List<String> lines = out.lines().filter(l -> !l.isBlank()).toList();
    assertEquals("done", lines.get(lines.size() - 1), out);
    long runs = lines.stream().filter(l -> l.startsWith("run ")).count();
    long typed = lines.stream().filter(l -> OUTCOME.matcher(l).matches()).count();
    assertTrue(runs > 1, out);
    assertEquals(runs, typed, "every run ends in a result or a typed error:\n" + out);
  }
}
