package dev.onnxpipe;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import java.net.URISyntaxException;
import java.nio.file.Path;
import java.util.Map;

/** Paths of the shared test data, and tensor comparison with the golden vectors' rules. */
final class Fixtures {
  private Fixtures() {}

  static Path root() {
    return Path.of(System.getProperty("onnxpipe.root", "../..")).toAbsolutePath().normalize();
  }

  static Path fixture(String name) {
    return root().resolve("tests/fixtures").resolve(name);
  }

  static Path resource(String name) {
    try {
      return Path.of(Fixtures.class.getResource("/models/" + name).toURI());
    } catch (URISyntaxException | NullPointerException e) {
      throw new IllegalStateException("test resource models/" + name + " not found", e);
    }
  }

  /** A tolerance per float dtype: |got - want| <= atol + rtol * |want|, NaN equal to NaN. */
  record Tolerance(double atol, double rtol) {
    static final Tolerance EXACT = new Tolerance(0, 0);

    boolean close(double got, double want) {
      if (Double.isNaN(want) || Double.isNaN(got)) {
        return Double.isNaN(want) && Double.isNaN(got);
      }
      if (Double.isInfinite(want) || Double.isInfinite(got)) {
        return got == want;
      }
      return Math.abs(got - want) <= atol + rtol * Math.abs(want);
    }
  }

  /** Every expected output present with the same dtype, shape and values; no other outputs. */
  static void assertOutputs(String where, Map<String, Tensor> expected, Outputs got, Map<DType, Tolerance> tol) {
    assertEquals(expected.keySet(), got.asMap().keySet(), where + ": output names");
    for (Map.Entry<String, Tensor> e : expected.entrySet()) {
      assertTensor(where + " output '" + e.getKey() + "'", e.getValue(), got.tensor(e.getKey()), tol);
    }
  }

  static void assertTensor(String where, Tensor want, Tensor got, Map<DType, Tolerance> tol) {
    assertEquals(want.dtype(), got.dtype(), where + ": dtype");
    assertArrayEquals(want.shape(), got.shape(), where + ": shape");
    switch (want.dtype()) {
      case FLOAT32 -> {
        Tolerance t = tol.getOrDefault(DType.FLOAT32, Tolerance.EXACT);
        float[] w = want.floats();
        float[] g = got.floats();
        for (int i = 0; i < w.length; i++) {
          if (!t.close(g[i], w[i])) {
            fail(where + ": element " + i + " is " + g[i] + ", expected " + w[i] + " within " + t);
          }
        }
      }
      case FLOAT64 -> {
        Tolerance t = tol.getOrDefault(DType.FLOAT64, Tolerance.EXACT);
        double[] w = want.doubles();
        double[] g = got.doubles();
        for (int i = 0; i < w.length; i++) {
          if (!t.close(g[i], w[i])) {
            fail(where + ": element " + i + " is " + g[i] + ", expected " + w[i] + " within " + t);
          }
        }
      }
      case INT64 -> assertArrayEquals(want.longs(), got.longs(), where);
      case INT32 -> assertArrayEquals(want.ints(), got.ints(), where);
      case UINT8, INT8 -> assertArrayEquals(want.bytes(), got.bytes(), where);
      case BOOL -> assertArrayEquals(want.booleans(), got.booleans(), where);
      case STRING -> assertArrayEquals(want.strings(), got.strings(), where);
      default -> fail(where + ": unexpected dtype " + want.dtype());
    }
  }
}
