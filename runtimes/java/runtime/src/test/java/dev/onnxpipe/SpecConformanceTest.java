package dev.onnxpipe;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.onnxpipe.cli.Main;
import dev.onnxpipe.core.DType;
import dev.onnxpipe.core.ErrorCode;
import dev.onnxpipe.core.Json;
import dev.onnxpipe.core.OnnxpipeException;
import dev.onnxpipe.core.Tensor;
import dev.onnxpipe.core.TensorJson;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicContainer;
import org.junit.jupiter.api.DynamicNode;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * Every case of every spec/cases/*.json (spec/README.md, "Conformance cases"), twice: through {@link Pipeline#run}
 * in process (the inputs read by the core's tensor-JSON reader), and through the CLI {@link Main} (exit status per
 * spec/errors.json, one stderr line {@code onnxpipe-java: error [CODE]: ...}, stdout compared as tensor JSON).
 */
class SpecConformanceTest {
  private static final Map<String, Double[]> DEFAULT_TOLERANCE = Map.of(
      "float32", new Double[] {1e-5, 1e-4}, "float64", new Double[] {1e-9, 1e-7});

  @TestFactory
  Stream<DynamicNode> everySpecCase() throws IOException {
    List<DynamicNode> files = new ArrayList<>();
    try (Stream<Path> list = Files.list(Fixtures.root().resolve("spec/cases"))) {
      for (Path file : list.filter(p -> p.toString().endsWith(".json")).sorted().toList()) {
        files.add(DynamicContainer.dynamicContainer(file.getFileName().toString(), cases(file)));
      }
    }
    assertTrue(files.size() > 0, "no spec/cases/*.json");
    return files.stream();
  }

  private static Stream<DynamicNode> cases(Path file) throws IOException {
    Map<?, ?> doc = json(Files.readString(file));
    Path model = Fixtures.root().resolve((String) doc.get("model"));
    List<DynamicNode> tests = new ArrayList<>();
    if (doc.get("load_error") instanceof String code) {
      tests.add(DynamicTest.dynamicTest("load_error " + code, () -> {
        PipelineException e = assertThrows(PipelineException.class, () -> Pipeline.load(model).close());
        assertEquals(ErrorCode.fromName(code), e.code(), e.getMessage());
        assertCliError(cli("inspect", model.toString()), code);
      }));
      return tests.stream();
    }
    Map<DType, Fixtures.Tolerance> tol = tolerance(doc.get("tolerance"), defaults());
    for (Object o : (List<?>) doc.get("cases")) {
      Map<?, ?> c = (Map<?, ?>) o;
      String text = c.get("inputs") != null ? Json.write(c.get("inputs")) : (String) c.get("inputs_text");
      String error = (String) c.get("error");
      Object expected = c.get("expected") != null ? c.get("expected")
          : c.get("expected_file") != null ? Fixtures.root().resolve((String) c.get("expected_file")) : null;
      String name = String.valueOf(c.get("name"));
      Map<DType, Fixtures.Tolerance> t = c.get("tolerance") != null ? tolerance(c.get("tolerance"), tol) : tol;
      tests.add(DynamicTest.dynamicTest(name + " (Pipeline.run)", () -> library(model, text, error, expected, t)));
      tests.add(DynamicTest.dynamicTest(name + " (CLI)", () -> viaCli(model, text, error, expected, t)));
    }
    return tests.stream();
  }

  private static void library(Path model, String text, String error, Object expected,
      Map<DType, Fixtures.Tolerance> tol) {
    try (Pipeline pipe = Pipeline.load(model)) {
      if (error != null) {
        OnnxpipeException e = assertThrows(OnnxpipeException.class, () -> pipe.run(TensorJson.parse(text)));
        assertEquals(ErrorCode.fromName(error), e.code(), e.getMessage());
        return;
      }
      Fixtures.assertOutputs("outputs", expected(expected), pipe.run(TensorJson.parse(text)), tol);
    }
  }

  private static void viaCli(Path model, String text, String error, Object expected,
      Map<DType, Fixtures.Tolerance> tol) throws IOException {
    Path inputs = Files.createTempFile("spec-case", ".json");
    try {
      Files.writeString(inputs, text, StandardCharsets.UTF_8);
      String[] r = cli("run", model.toString(), "--inputs", inputs.toString());
      if (error != null) {
        assertCliError(r, error);
        return;
      }
      assertEquals("0", r[0], r[2]);
      assertEquals("", r[2]);
      Map<String, Tensor> got = TensorJson.parse(r[1]);
      Map<String, Tensor> want = expected(expected);
      assertEquals(List.copyOf(want.keySet()), List.copyOf(got.keySet()), "outputs in manifest order");
      for (Map.Entry<String, Tensor> e : want.entrySet()) {
        Fixtures.assertTensor("output '" + e.getKey() + "'", e.getValue(), got.get(e.getKey()), tol);
      }
    } finally {
      Files.deleteIfExists(inputs);
    }
  }

  private static void assertCliError(String[] r, String code) {
    assertEquals(Integer.toString(ErrorCode.fromName(code).exitStatus()), r[0], r[2]);
    assertEquals("", r[1], "nothing on stdout");
    assertEquals(1, r[2].strip().lines().count(), "one stderr line: " + r[2]);
    assertTrue(r[2].startsWith("onnxpipe-java: error [" + code + "]: "), r[2]);
  }

  /** {exit status, stdout, stderr}. */
  private static String[] cli(String... args) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    int code = Main.run(args, new PrintStream(out, true, StandardCharsets.UTF_8),
        new PrintStream(err, true, StandardCharsets.UTF_8));
    return new String[] {Integer.toString(code), out.toString(StandardCharsets.UTF_8),
        err.toString(StandardCharsets.UTF_8)};
  }

  private static Map<String, Tensor> expected(Object expected) {
    return expected instanceof Path file ? TensorJson.read(file) : TensorJson.parse(Json.write(expected));
  }

  private static Map<DType, Fixtures.Tolerance> defaults() {
    Map<DType, Fixtures.Tolerance> tol = new EnumMap<>(DType.class);
    for (Map.Entry<String, Double[]> d : DEFAULT_TOLERANCE.entrySet()) {
      tol.put(DType.fromName(d.getKey()), new Fixtures.Tolerance(d.getValue()[0], d.getValue()[1]));
    }
    return tol;
  }

  /** {@code base} with the dtypes {@code given} names (file or case level {@code tolerance}) replaced. */
  private static Map<DType, Fixtures.Tolerance> tolerance(Object given, Map<DType, Fixtures.Tolerance> base) {
    Map<DType, Fixtures.Tolerance> tol = new EnumMap<>(base);
    if (given instanceof Map<?, ?> m) {
      for (Map.Entry<?, ?> e : m.entrySet()) {
        Map<?, ?> t = (Map<?, ?>) e.getValue();
        tol.put(DType.fromName((String) e.getKey()), new Fixtures.Tolerance(
            Double.parseDouble(t.get("atol").toString()), Double.parseDouble(t.get("rtol").toString())));
      }
    }
    return tol;
  }

  private static Map<?, ?> json(String text) {
    try {
      return (Map<?, ?>) Json.parse(text);
    } catch (Json.ParseException e) {
      throw new IllegalStateException(e.getMessage(), e);
    }
  }
}
