package dev.onnxpipe;

import static org.junit.jupiter.api.Assertions.assertAll;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.onnxpipe.cli.Main;
import dev.onnxpipe.core.DType;
import dev.onnxpipe.core.Json;
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
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.DynamicNode;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.function.Executable;

/**
 * Every golden vector set in tests/vectors/ (docs/vectors.md), found at test time: the Java runtime must give
 * Python's answers. A set whose model is generated ({@code *.generated.onnx}, built by {@code make vectors})
 * and absent is skipped; any other missing file fails.
 */
class VectorTest {
  @TestFactory
  Stream<DynamicNode> goldenVectors() throws IOException {
    // -Donnxpipe.vectors=DIR runs another folder of sets (e.g. freshly generated ones) through the same checks
    String other = System.getProperty("onnxpipe.vectors");
    return sets(other != null ? Path.of(other) : Fixtures.root().resolve("tests/vectors"));
  }

  /** One test per folder of {@code dir} holding a vector.json; fails if there is none. */
  static Stream<DynamicNode> sets(Path dir) throws IOException {
    List<Path> sets = new ArrayList<>();
    if (Files.isDirectory(dir)) {
      try (Stream<Path> s = Files.list(dir)) {
        s.filter(p -> Files.isRegularFile(p.resolve("vector.json"))).sorted().forEach(sets::add);
      }
    }
    assertFalse(sets.isEmpty(), "no golden vector sets (*/vector.json) under " + dir);
    return sets.stream().map(VectorTest::set);
  }

  static DynamicTest set(Path dir) {
    Map<?, ?> spec;
    try {
      spec = (Map<?, ?>) Json.parse(Files.readString(dir.resolve("vector.json"), StandardCharsets.UTF_8));
    } catch (IOException | Json.ParseException | ClassCastException e) {
      return DynamicTest.dynamicTest(dir.getFileName() + ": vector.json", () -> {
        throw new AssertionError("cannot read " + dir.resolve("vector.json") + ": " + e);
      });
    }
    String name = String.valueOf(spec.get("name"));
    Path model = dir.resolve((String) spec.get("model"));
    Map<DType, Fixtures.Tolerance> tol = tolerance(spec.get("tolerance"));
    List<?> cases = (List<?>) spec.get("cases");
    // one test per set: the model (up to ~90 MB) is loaded once for all its cases
    return DynamicTest.dynamicTest(name + " (" + cases.size() + " cases)", () -> {
      if (!Files.exists(model) && model.getFileName().toString().endsWith(".generated.onnx")) {
        String why = "skipped vector set " + name + ": generated model " + model.getFileName()
            + " is missing; run `" + spec.get("generate") + "` first";
        System.out.println("VectorTest: " + why);
        Assumptions.abort(why);
      }
      assertTrue(Files.isRegularFile(model), name + ": model file " + model + " is missing");
      assertFalse(cases.isEmpty(), name + ": no cases");
      try (Pipeline pipe = Pipeline.load(model, Options.defaults().withIntraOpThreads(2))) {
        List<Executable> checks = new ArrayList<>();
        for (Object c : cases) {
          Map<?, ?> cs = (Map<?, ?>) c;
          String caseName = name + "/" + cs.get("name");
          checks.add(() -> {
            Map<String, Tensor> inputs = TensorJson.read(dir.resolve((String) cs.get("inputs")));
            Map<String, Tensor> expected = TensorJson.read(dir.resolve((String) cs.get("expected")));
            Fixtures.assertOutputs(caseName, expected, pipe.run(inputs), tol);
          });
        }
        assertAll(name, checks.stream());
      }
      // the CLI on the first case: what `onnxpipe-java run` prints must be the same answers, in the same order
      Map<?, ?> first = (Map<?, ?>) cases.get(0);
      Map<String, Tensor> expected = TensorJson.read(dir.resolve((String) first.get("expected")));
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      ByteArrayOutputStream err = new ByteArrayOutputStream();
      int code = Main.run(new String[] {"run", model.toString(), "--inputs", dir.resolve((String) first.get("inputs")).toString(),
          "--threads", "2"}, new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err, true, StandardCharsets.UTF_8));
      assertEquals(0, code, name + " CLI: " + err.toString(StandardCharsets.UTF_8));
      Map<String, Tensor> printed = TensorJson.parse(out.toString(StandardCharsets.UTF_8));
      assertEquals(new ArrayList<>(expected.keySet()), new ArrayList<>(printed.keySet()), name + " CLI: output order");
      for (Map.Entry<String, Tensor> e : expected.entrySet()) {
        Fixtures.assertTensor(name + " CLI output '" + e.getKey() + "'", e.getValue(), printed.get(e.getKey()), tol);
      }
    });
  }

  private static Map<DType, Fixtures.Tolerance> tolerance(Object obj) {
    Map<DType, Fixtures.Tolerance> out = new EnumMap<>(DType.class);
    if (obj instanceof Map<?, ?> m) {
      for (Map.Entry<?, ?> e : m.entrySet()) {
        DType d = DType.fromName(String.valueOf(e.getKey()));
        Map<?, ?> t = (Map<?, ?>) e.getValue();
        out.put(d, new Fixtures.Tolerance(number(t.get("atol")), number(t.get("rtol"))));
      }
    }
    return out;
  }

  private static double number(Object o) {
    return o instanceof Json.Num n ? Double.parseDouble(n.text()) : 0;
  }
}
