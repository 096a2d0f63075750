package dev.onnxpipe.sidecar;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import dev.onnxpipe.core.DType;
import dev.onnxpipe.core.Json;
import dev.onnxpipe.core.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/** A golden-vector set (docs/vectors.md): its model, cases and per-dtype tolerances. */
final class Vectors {
  record Case(String name, Path inputs, Path expected) {}

  final String name;
  final Path dir;
  final Path model;
  final List<Case> cases = new ArrayList<>();
  private final Map<String, double[]> tolerance = new HashMap<>();

  Vectors(String name) throws IOException {
    this.name = name;
    this.dir = SidecarProcess.vectors().resolve(name);
    Map<?, ?> v;
    try {
      v = (Map<?, ?>) Json.parse(Files.readString(dir.resolve("vector.json")));
    } catch (Json.ParseException e) {
      throw new IOException(dir.resolve("vector.json") + ": " + e.getMessage(), e);
    }
    this.model = dir.resolve((String) v.get("model"));
    for (Object c : (List<?>) v.get("cases")) {
      Map<?, ?> o = (Map<?, ?>) c;
      cases.add(new Case((String) o.get("name"), dir.resolve((String) o.get("inputs")),
          dir.resolve((String) o.get("expected"))));
    }
    for (Map.Entry<?, ?> t : ((Map<?, ?>) v.get("tolerance")).entrySet()) {
      tolerance.put((String) t.getKey(), tolerance((Map<?, ?>) t.getValue()));
    }
  }

  /** {@code {"atol": a, "rtol": r}} as {a, r}. */
  static double[] tolerance(Map<?, ?> o) {
    return new double[] {Double.parseDouble(o.get("atol").toString()), Double.parseDouble(o.get("rtol").toString())};
  }

  /** Every expected output, and no other, with the same dtype and shape; floats within tolerance. */
  void check(String where, Map<String, Tensor> expected, Map<String, Tensor> got) {
    assertEquals(List.copyOf(expected.keySet()).stream().sorted().toList(),
        List.copyOf(got.keySet()).stream().sorted().toList(), where + ": output names");
    for (Map.Entry<String, Tensor> e : expected.entrySet()) {
      String at = where + ": output '" + e.getKey() + "'";
      Tensor want = e.getValue();
      Tensor have = got.get(e.getKey());
      assertEquals(want.dtype(), have.dtype(), at + " dtype");
      assertArrayEquals(want.shape(), have.shape(), at + " shape");
      switch (want.dtype()) {
        case FLOAT32: {
          double[] tol = tolerance(want.dtype());
          float[] w = want.floats();
          float[] h = have.floats();
          for (int i = 0; i < w.length; i++) {
            close(at, i, w[i], h[i], tol);
          }
          break;
        }
        case FLOAT64: {
          double[] tol = tolerance(want.dtype());
          double[] w = want.doubles();
          double[] h = have.doubles();
          for (int i = 0; i < w.length; i++) {
            close(at, i, w[i], h[i], tol);
          }
          break;
        }
        case INT64:
          assertArrayEquals(want.longs(), have.longs(), at);
          break;
        case INT32:
          assertArrayEquals(want.ints(), have.ints(), at);
          break;
        case UINT8:
        case INT8:
          assertArrayEquals(want.bytes(), have.bytes(), at);
          break;
        case BOOL:
          assertArrayEquals(want.booleans(), have.booleans(), at);
          break;
        case STRING:
          assertArrayEquals(want.strings(), have.strings(), at);
          break;
        default:
          fail(at + ": unhandled dtype " + want.dtype());
      }
    }
  }

  private double[] tolerance(DType t) {
    double[] tol = tolerance.get(t.jsonName());
    if (tol == null) {
      fail(name + "/vector.json has no tolerance for " + t.jsonName());
    }
    return tol;
  }

  private static void close(String at, int i, double want, double got, double[] tol) {
    if (Double.isNaN(want) || Double.isInfinite(want)) {
      if (Double.compare(want, got) != 0) {
        fail(at + "[" + i + "]: expected " + want + ", got " + got);
      }
      return;
    }
    double limit = tol[0] + tol[1] * Math.abs(want);
    if (!(Math.abs(got - want) <= limit)) {
      fail(at + "[" + i + "]: expected " + want + ", got " + got + " (|diff| " + Math.abs(got - want) + " > " + limit + ")");
    }
  }
}
