package dev.onnxpipe;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.opentest4j.AssertionFailedError;
import org.opentest4j.MultipleFailuresError;
import org.opentest4j.TestAbortedException;

/** The golden-vector harness itself: it must fail on wrong answers and missing files, skip only generated models. */
class VectorHarnessTest {
  private static final String SPEC = "{\"name\": \"%s\", \"model\": \"%s\", \"generate\": \"make vectors\", "
      + "\"requires\": [], \"tolerance\": {\"float32\": {\"atol\": 1e-5, \"rtol\": 1e-4}}, "
      + "\"cases\": [{\"name\": \"c\", \"inputs\": \"inputs_0.json\", \"expected\": \"expected_0.json\"}]}";
  private static final String INPUTS = "{\"features\": {\"dtype\": \"float32\", \"shape\": [1, 3], \"data\": [0, 0, 0]},"
      + " \"pixels\": {\"dtype\": \"uint8\", \"shape\": [1, 1, 1, 3], \"data\": [1, 2, 3]}}";

  private static Path set(Path root, String name, String model, String expected) throws IOException {
    Path dir = Files.createDirectories(root.resolve(name));
    Files.writeString(dir.resolve("vector.json"), String.format(SPEC, name, model));
    Files.writeString(dir.resolve("inputs_0.json"), INPUTS);
    Files.writeString(dir.resolve("expected_0.json"), expected);
    return dir;
  }

  private static String expected(String score, String pixelSum, boolean extraOutput) {
    return "{\"score\": {\"dtype\": \"float32\", \"shape\": [1, 3], \"data\": [" + score + "]},"
        + " \"label_id\": {\"dtype\": \"int64\", \"shape\": [1], \"data\": [0]},"
        + " \"label\": {\"dtype\": \"string\", \"shape\": [1], \"data\": [\"cat\"]},"
        + " \"confident\": {\"dtype\": \"bool\", \"shape\": [1], \"data\": [false]},"
        + " \"pixel_sum\": {\"dtype\": \"int64\", \"shape\": [1], \"data\": [" + pixelSum + "]}"
        + (extraOutput ? ", \"extra\": {\"dtype\": \"bool\", \"shape\": [], \"data\": [true]}" : "") + "}";
  }

  private static void run(Path dir) throws Throwable {
    VectorTest.set(dir).getExecutable().execute();
  }

  @Test
  void rightAnswersPassWithinTolerance(@TempDir Path tmp) throws Throwable {
    Path dir = set(tmp, "ok", "model.onnx", expected("0.333334, 0.33333, 0.3333333", "6", false));
    Files.copy(Fixtures.fixture("basic.onnx"), dir.resolve("model.onnx"));
    run(dir);
  }

  @Test
  void wrongAnswersFail(@TempDir Path tmp) throws Throwable {
    for (String[] bad : new String[][] {
        {"0.3334, 0.3333333, 0.3333333", "6"}, // float outside the tolerance
        {"0.3333333, 0.3333333, 0.3333333", "7"}, // integer off by one
    }) {
      Path dir = set(tmp, "bad" + bad[1], "model.onnx", expected(bad[0], bad[1], false));
      Files.copy(Fixtures.fixture("basic.onnx"), dir.resolve("model.onnx"));
      assertThrows(MultipleFailuresError.class, () -> run(dir));
    }
    Path extra = set(tmp, "extra", "model.onnx", expected("0.3333333, 0.3333333, 0.3333333", "6", true));
    Files.copy(Fixtures.fixture("basic.onnx"), extra.resolve("model.onnx"));
    assertThrows(MultipleFailuresError.class, () -> run(extra));
  }

  @Test
  void missingModelFailsUnlessGenerated(@TempDir Path tmp) throws IOException {
    Path committed = set(tmp, "committed", "model.onnx", expected("0, 0, 0", "6", false));
    assertThrows(AssertionFailedError.class, () -> run(committed));
    Path generated = set(tmp, "harness-self-test", "model.generated.onnx", expected("0, 0, 0", "6", false));
    TestAbortedException e = assertThrows(TestAbortedException.class, () -> run(generated));
    assertTrue(e.getMessage().contains("make vectors"), e.getMessage());
  }

  @Test
  void noSetsAtAllFails(@TempDir Path tmp) {
    assertThrows(AssertionFailedError.class, () -> VectorTest.sets(tmp));
    assertThrows(AssertionFailedError.class, () -> VectorTest.sets(tmp.resolve("absent")));
  }
}
