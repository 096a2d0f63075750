package dev.onnxpipe.sidecar;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class TensorJsonTest {
  @Test
  void readsEveryDtypeExactly() {
    Map<String, Tensor> t = TensorJson.parse("{"
        + "\"f\": {\"dtype\": \"float32\", \"shape\": [1, 3], \"data\": [0.1, \"NaN\", \"-Infinity\"]},"
        + "\"d\": {\"dtype\": \"float64\", \"shape\": [], \"data\": [0.1]},"
        + "\"l\": {\"dtype\": \"int64\", \"shape\": [2], \"data\": [9007199254740993, -9223372036854775808]},"
        + "\"u\": {\"dtype\": \"uint8\", \"shape\": [2], \"data\": [255, 0]},"
        + "\"i\": {\"dtype\": \"int8\", \"shape\": [1], \"data\": [-128]},"
        + "\"b\": {\"dtype\": \"bool\", \"shape\": [1], \"data\": [true]},"
        + "\"s\": {\"dtype\": \"string\", \"shape\": [0, 2], \"data\": []}}");
    assertEquals(List.of("f", "d", "l", "u", "i", "b", "s"), List.copyOf(t.keySet()));
    assertArrayEquals(new float[] {0.1f, Float.NaN, Float.NEGATIVE_INFINITY}, t.get("f").floats());
    assertEquals(0, t.get("d").rank());
    assertArrayEquals(new long[] {9007199254740993L, Long.MIN_VALUE}, t.get("l").longs());
    assertArrayEquals(new int[] {255, 0}, t.get("u").unsignedBytes());
    assertArrayEquals(new byte[] {-128}, t.get("i").bytes());
    assertArrayEquals(new boolean[] {true}, t.get("b").booleans());
    assertEquals(0, t.get("s").size());
  }

  @Test
  void writeThenReadGivesTheSameTensors() {
    Map<String, Tensor> t = TensorJson.parse("{\"f\": {\"dtype\": \"float32\", \"shape\": [2], \"data\": [0.1, \"Infinity\"]},"
        + "\"s\": {\"dtype\": \"string\", \"shape\": [1], \"data\": [\"a \\\"q\\\" <é>\"]}}");
    Map<String, Tensor> again = TensorJson.parse(TensorJson.write(t));
    assertArrayEquals(t.get("f").floats(), again.get("f").floats());
    assertArrayEquals(new String[] {"a \"q\" <é>"}, again.get("s").strings());
    assertEquals("{}", TensorJson.write(Map.of()));
  }

  @Test
  void errorsNameTheTensorAndTheField() {
    String[][] cases = {
        {"{\"p\": {\"dtype\": \"uint8\", \"shape\": [1], \"data\": [300]}}", "tensor 'p': data[0] (uint8) is 300"},
        {"{\"n\": {\"dtype\": \"int64\", \"shape\": [1], \"data\": [1.5]}}", "tensor 'n': data[0] (int64) is 1.5"},
        {"{\"x\": {\"dtype\": \"float16\", \"shape\": [1], \"data\": [1]}}", "tensor 'x': dtype \"float16\""},
        {"{\"x\": {\"dtype\": \"float32\", \"shape\": [2], \"data\": [1]}}", "tensor 'x': data has 1 element(s), shape [2] needs 2"},
        {"{\"x\": {\"dtype\": \"float32\", \"shape\": [-1], \"data\": []}}", "tensor 'x': shape[0]"},
        {"{\"x\": {\"dtype\": \"float32\", \"data\": []}}", "tensor 'x': missing field 'shape'"},
        {"{\"x\": {\"dtype\": \"float32\", \"shape\": [1], \"data\": [NaN]}}", "not valid JSON"},
        {"[1]", "expected an object"},
    };
    for (String[] c : cases) {
      SidecarException e = assertThrows(SidecarException.class, () -> TensorJson.parse(c[0]), c[0]);
      assertEquals(SidecarException.Code.INVALID_INPUT, e.code());
      assertTrue(e.getMessage().contains(c[1]), e.getMessage() + " should contain " + c[1]);
    }
  }
}
