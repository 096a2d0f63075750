package dev.onnxpipe.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

class TensorJsonTest {
  private static void rejects(String json, String... parts) {
    OnnxpipeException e = assertThrows(OnnxpipeException.class, () -> TensorJson.parse(json));
    assertEquals(ErrorCode.INVALID_INPUT, e.code());
    for (String p : parts) {
      assertTrue(e.getMessage().contains(p), "message should mention '" + p + "': " + e.getMessage());
    }
  }

  @Test
  void readsEveryDtypeExactly() {
    Map<String, Tensor> t = TensorJson.parse("{"
        + "\"f\": {\"dtype\": \"float32\", \"shape\": [2, 2], \"data\": [0.1, \"NaN\", \"Infinity\", \"-Infinity\"]},"
        + "\"d\": {\"dtype\": \"float64\", \"shape\": [], \"data\": [1e-300]},"
        + "\"l\": {\"dtype\": \"int64\", \"shape\": [2], \"data\": [9007199254740993, -9223372036854775808]},"
        + "\"u\": {\"dtype\": \"uint8\", \"shape\": [2], \"data\": [0, 255]},"
        + "\"b\": {\"dtype\": \"bool\", \"shape\": [1], \"data\": [true]},"
        + "\"s\": {\"dtype\": \"string\", \"shape\": [0], \"data\": []},"
        + "\"e\": {\"dtype\": \"int32\", \"shape\": [2, 0, 3], \"data\": []}}");
    assertEquals(0.1f, t.get("f").floats()[0]);
    assertTrue(Float.isNaN(t.get("f").floats()[1]));
    assertEquals(Float.NEGATIVE_INFINITY, t.get("f").floats()[3]);
    assertEquals(1e-300, t.get("d").doubles()[0]);
    assertArrayEquals(new long[] {9007199254740993L, Long.MIN_VALUE}, t.get("l").longs());
    assertEquals(255, Byte.toUnsignedInt(t.get("u").bytes()[1]));
    assertArrayEquals(new long[] {2, 0, 3}, t.get("e").shape());
  }

  @Test
  void writesShortestFloat32AndSpecials() {
    Map<String, Tensor> m = new LinkedHashMap<>();
    m.put("z", Tensor.ofFloats(new float[] {0.1f, Float.NaN, Float.POSITIVE_INFINITY, -0.5f}, 4));
    m.put("a", Tensor.ofUint8(new byte[] {(byte) 255}, 1));
    m.put("s", Tensor.ofStrings("quote\" \\ \n é"));
    String json = TensorJson.write(m);
    assertEquals("{\"z\": {\"dtype\": \"float32\", \"shape\": [4], \"data\": [0.1, \"NaN\", \"Infinity\", -0.5]}, "
        + "\"a\": {\"dtype\": \"uint8\", \"shape\": [1], \"data\": [255]}, "
        + "\"s\": {\"dtype\": \"string\", \"shape\": [1], \"data\": [\"quote\\\" \\\\ \\n é\"]}}", json);
    Map<String, Tensor> back = TensorJson.parse(json);
    assertEquals(m.keySet(), back.keySet());
    assertArrayEquals(m.get("s").strings(), back.get("s").strings());
  }

  @Test
  void errorsNameTheTensorAndField() {
    rejects("{\"x\": {\"dtype\": \"float16\", \"shape\": [], \"data\": [1]}}", "'x'", "float16");
    rejects("{\"x\": {\"dtype\": \"float32\", \"shape\": [2], \"data\": [1]}}", "'x'", "needs 2 values", "has 1");
    rejects("{\"x\": {\"dtype\": \"uint8\", \"shape\": [1], \"data\": [300]}}", "'x'", "data[0]", "300", "uint8");
    rejects("{\"x\": {\"dtype\": \"int64\", \"shape\": [1], \"data\": [1.5]}}", "'x'", "data[0]", "1.5", "integer");
    rejects("{\"x\": {\"dtype\": \"int64\", \"shape\": [1], \"data\": [9223372036854775808]}}", "'x'", "out of range");
    rejects("{\"x\": {\"dtype\": \"bool\", \"shape\": [1], \"data\": [1]}}", "'x'", "true or false");
    rejects("{\"x\": {\"dtype\": \"string\", \"shape\": [1], \"data\": [1]}}", "'x'", "expected a string");
    rejects("{\"x\": {\"dtype\": \"float32\", \"shape\": [-1], \"data\": []}}", "'x'", "shape");
    rejects("{\"x\": {\"dtype\": \"float32\", \"shape\": [1]}}", "'x'", "missing", "data");
    rejects("{\"x\": {\"dtype\": \"float32\", \"shape\": [1], \"data\": [\"nan\"]}}", "'x'", "\"nan\"");
    rejects("[1, 2]", "expected an object");
    rejects("{\"x\": ", "not valid JSON");
    rejects("{\"x\": {\"dtype\": \"bool\", \"shape\": [], \"data\": [true]}} trailing", "not valid JSON");
  }
}
