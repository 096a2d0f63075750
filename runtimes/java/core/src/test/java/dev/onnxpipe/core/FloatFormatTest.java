package dev.onnxpipe.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Float text equal to Python's tensor JSON, bit pattern by bit pattern (oracle: models/floats.json). */
class FloatFormatTest {
  @Test
  void float32AndFloat64TextIsPythons() throws IOException, Json.ParseException {
    Map<?, ?> doc = (Map<?, ?>) Json.parse(Files.readString(Spec.path("spec/models/floats.json")));
    int n = 0;
    for (Object o : (List<?>) doc.get("float32")) {
      List<?> pair = (List<?>) o;
      float f = Float.intBitsToFloat((int) Long.parseLong(pair.get(0).toString()));
      assertEquals(pair.get(1), FloatFormat.format(f), "float32 bits " + pair.get(0));
      n++;
    }
    for (Object o : (List<?>) doc.get("float64")) {
      List<?> pair = (List<?>) o;
      double d = Double.longBitsToDouble(Long.parseUnsignedLong((String) pair.get(0)));
      assertEquals(pair.get(1), FloatFormat.format(d), "float64 bits " + pair.get(0));
      n++;
    }
    assertTrue(n > 5000, "oracle has " + n + " values");
  }

  @Test
  void examples() {
    assertEquals("0.1", FloatFormat.format(0.1f));
    assertEquals("1e-45", FloatFormat.format(Float.MIN_VALUE)); // Java's Float.toString says 1.4E-45
    assertEquals("2.5057761e-05", FloatFormat.format(2.5057761e-05f));
    assertEquals("100000.0", FloatFormat.format(100000f));
    assertEquals("1e+16", FloatFormat.format(1e16));
    assertEquals("-0.0", FloatFormat.format(-0.0f));
  }
}
