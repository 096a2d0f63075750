package dev.onnxpipe.core;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** spec/README.md "Reading tensor JSON" and spec/limits.json, rule by rule. */
class ReaderRulesTest {
  private static String one(String dtype, String shape, String data) {
    return "{\"x\": {\"dtype\": \"" + dtype + "\", \"shape\": " + shape + ", \"data\": " + data + "}}";
  }

  private static OnnxpipeException refused(ErrorCode code, String json, String... parts) {
    OnnxpipeException e = assertThrows(OnnxpipeException.class, () -> TensorJson.parse(json));
    assertEquals(code, e.code(), e.getMessage());
    for (String p : parts) {
      assertTrue(e.getMessage().contains(p), "message should mention '" + p + "': " + e.getMessage());
    }
    return e;
  }

  @Test
  void duplicateKeysAtEveryLevel() {
    refused(ErrorCode.INVALID_INPUT, "{\"x\": " + "{\"dtype\": \"bool\", \"shape\": [], \"data\": [true]}, \"x\": "
        + "{\"dtype\": \"bool\", \"shape\": [], \"data\": [true]}}", "duplicate tensor 'x'");
    refused(ErrorCode.INVALID_INPUT, "{\"x\": {\"dtype\": \"bool\", \"dtype\": \"bool\", \"shape\": [], \"data\": [true]}}",
        "'x'", "duplicate field 'dtype'");
  }

  @Test
  void unknownFields() {
    refused(ErrorCode.INVALID_INPUT, "{\"x\": {\"dtype\": \"bool\", \"shape\": [], \"data\": [true], \"layout\": 1}}",
        "'x'", "unknown field 'layout'");
  }

  @Test
  void numbersOutsideTheirDtype() {
    refused(ErrorCode.INVALID_INPUT, one("float32", "[1]", "[1e39]"), "'x'", "data[0]", "1e39", "float32");
    refused(ErrorCode.INVALID_INPUT, one("float32", "[1]", "[-3.5e38]"), "float32");
    refused(ErrorCode.INVALID_INPUT, one("float64", "[1]", "[1e309]"), "float64");
    assertEquals(Float.MAX_VALUE, TensorJson.parse(one("float32", "[1]", "[3.4028235e38]")).get("x").floats()[0]);
    refused(ErrorCode.INVALID_INPUT, one("int64", "[1]", "[1e2]"), "data[0]", "1e2", "integer");
    refused(ErrorCode.INVALID_INPUT, one("int32", "[1]", "[2.0]"), "data[0]", "2.0", "integer");
    refused(ErrorCode.INVALID_INPUT, one("int32", "[1]", "[2147483648]"), "out of range");
    refused(ErrorCode.INVALID_INPUT, one("int8", "[1]", "[-129]"), "out of range");
    refused(ErrorCode.INVALID_INPUT, one("int64", "[1]", "[-9223372036854775809]"), "out of range");
    assertArrayEquals(new long[] {Long.MAX_VALUE, Long.MIN_VALUE},
        TensorJson.parse(one("int64", "[2]", "[9223372036854775807, -9223372036854775808]")).get("x").longs());
    refused(ErrorCode.INVALID_INPUT, one("float32", "[1]", "[01]"), "not valid JSON");
    refused(ErrorCode.INVALID_INPUT, one("float32", "[1]", "[true]"), "expected a number");
  }

  @Test
  void surrogatesAndUtf8() {
    refused(ErrorCode.INVALID_INPUT, one("string", "[1]", "[\"a\\ud800\"]"), "'x'", "data[0]", "lone surrogate");
    refused(ErrorCode.INVALID_INPUT, one("string", "[1]", "[\"\\udc00b\"]"), "lone surrogate");
    refused(ErrorCode.INVALID_INPUT, one("string", "[1]", "[\"\\ud800\\u0041\"]"), "lone surrogate");
    assertEquals("\uD83D\uDE00", TensorJson.parse(one("string", "[1]", "[\"\\ud83d\\ude00\"]")).get("x").strings()[0]);
    assertEquals("é😀", TensorJson.parse(one("string", "[1]", "[\"é😀\"]")).get("x").strings()[0]);
    // a Java string with a lone surrogate, and UTF-8 bytes that are not UTF-8
    refused(ErrorCode.INVALID_INPUT, one("string", "[1]", "[\"\uD800\"]"), "lone surrogate");
    byte[] good = one("string", "[1]", "[\"ab\"]").getBytes(StandardCharsets.UTF_8);
    for (byte[] bad : new byte[][] {{(byte) 0xED, (byte) 0xA0, (byte) 0x80}, {(byte) 0xC0, (byte) 0xAF},
        {(byte) 0xFF}, {(byte) 0xE2, (byte) 0x82}}) {
      byte[] doc = new byte[good.length + bad.length];
      int at = new String(good, StandardCharsets.UTF_8).indexOf("ab") + 1;
      System.arraycopy(good, 0, doc, 0, at);
      System.arraycopy(bad, 0, doc, at, bad.length);
      System.arraycopy(good, at, doc, at + bad.length, good.length - at);
      OnnxpipeException e = assertThrows(OnnxpipeException.class, () -> TensorJson.parse(doc, Limits.defaults()));
      assertTrue(e.getMessage().contains("invalid UTF-8"), e.getMessage());
    }
  }

  @Test
  void nestingAndLength() {
    refused(ErrorCode.INVALID_INPUT, one("float32", "[1, 2]", "[[1, 2]]"), "'x'", "flat list");
    refused(ErrorCode.INVALID_INPUT, one("float32", "[2]", "[1, [2]]"), "flat list");
    refused(ErrorCode.INVALID_INPUT, one("float32", "[2]", "[1, 2, 3]"), "needs 2 values but data has 3");
    refused(ErrorCode.INVALID_INPUT, "{\"x\": " + "[".repeat(100_000), "expected an object");
    refused(ErrorCode.INVALID_INPUT, one("float32", "[1]", "[" + "[".repeat(100_000)), "flat list");
  }

  @Test
  void dataBeforeDtypeAndShape() {
    Map<String, Tensor> t = TensorJson.parse("{\"x\": {\"data\": [1, 2, 3], \"shape\": [3], \"dtype\": \"uint8\"},"
        + " \"y\": {\"shape\": [1], \"data\": [\"s\"], \"dtype\": \"string\"}}");
    assertArrayEquals(new byte[] {1, 2, 3}, t.get("x").bytes());
    assertEquals("s", t.get("y").strings()[0]);
    refused(ErrorCode.INVALID_INPUT, "{\"x\": {\"data\": [1, 2], \"shape\": [3], \"dtype\": \"uint8\"}}", "needs 3");
    refused(ErrorCode.INVALID_INPUT, "{\"x\": {\"data\": [300], \"shape\": [1], \"dtype\": \"uint8\"}}", "out of range");
  }

  @Test
  void limitsBeforeAllocating() {
    // 2^40 elements: refused from the shape, long before an array could be made
    refused(ErrorCode.TOO_LARGE, one("float32", "[1048576, 1048576]", "[]"), "'x'", "max_elements = 16777216");
    // the sum over tensors counts
    Limits small = Limits.defaults().withMaxElements(4);
    String two = "{\"a\": {\"dtype\": \"uint8\", \"shape\": [3], \"data\": [1, 2, 3]}, "
        + "\"b\": {\"dtype\": \"uint8\", \"shape\": [2], \"data\": [1, 2]}}";
    OnnxpipeException e = assertThrows(OnnxpipeException.class, () -> TensorJson.parse(two, small));
    assertEquals(ErrorCode.TOO_LARGE, e.code());
    assertTrue(e.getMessage().contains("'b'"), e.getMessage());
    // a zero-size tensor counts 0 elements, but no dimension may pass max_elements
    assertEquals(0, TensorJson.parse(one("float32", "[0, 16777216]", "[]")).get("x").size());
    refused(ErrorCode.TOO_LARGE, one("float32", "[0, 4294967296, 4294967296]", "[]"), "4294967296");
    OnnxpipeException big = assertThrows(OnnxpipeException.class, () -> TensorJson.parse(
        one("uint8", "[3]", "[1, 2, 3]"), Limits.defaults().withMaxDocumentBytes(20)));
    assertEquals(ErrorCode.TOO_LARGE, big.code());
    assertTrue(big.getMessage().contains("max_document_bytes = 20"), big.getMessage());
    OnnxpipeException s = assertThrows(OnnxpipeException.class, () -> TensorJson.parse(
        one("string", "[2]", "[\"abc\", \"déf\"]"), Limits.defaults().withMaxStringBytes(6)));
    assertEquals(ErrorCode.TOO_LARGE, s.code());
    assertTrue(s.getMessage().contains("max_string_bytes = 6"), s.getMessage());
    assertEquals(2, TensorJson.parse(one("string", "[2]", "[\"abc\", \"dé\"]"), Limits.defaults().withMaxStringBytes(6))
        .get("x").size());
  }

  @Test
  void longNamesAreCutInMessages() {
    String name = "n".repeat(20_000);
    OnnxpipeException e = assertThrows(OnnxpipeException.class,
        () -> TensorJson.parse("{\"" + name + "\": {\"dtype\": \"float16\", \"shape\": [], \"data\": [1]}}"));
    assertTrue(e.getMessage().length() < 600, "message of " + e.getMessage().length() + " characters");
  }

  @Test
  void writerEscapesOnlyWhatPythonEscapes() {
    String s = "\"\\/\b\f\n\r\t\u0000\u001f\u007f<>&\u2028\u2029é😀";
    String json = TensorJson.write(Map.of("s", Tensor.ofStrings(s)));
    assertEquals("{\"s\": {\"dtype\": \"string\", \"shape\": [1], \"data\": [\"\\\"\\\\/\\b\\f\\n\\r\\t\\u0000\\u001f"
        + "\u007f<>&\u2028\u2029é😀\"]}}", json);
    assertEquals(s, TensorJson.parse(json).get("s").strings()[0]);
  }
}
