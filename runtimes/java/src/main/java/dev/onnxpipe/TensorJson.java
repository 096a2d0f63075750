package dev.onnxpipe;

import java.io.IOException;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Tensor JSON (docs/tensor-json.md): named tensors as {@code {"name": {"dtype", "shape", "data"}}}.
 *
 * <p>Reading parses every number at its tensor's dtype (int64 exactly, float32 from the decimal text);
 * writing emits the shortest decimal that round-trips at the tensor's precision, formatted as Python does
 * ({@link FloatFormat}: byte-identical to the Python runtime) and {@code "NaN"}, {@code "Infinity"},
 * {@code "-Infinity"} for non-finite values. Errors are
 * {@link PipelineException} with code {@code INVALID_INPUT}, naming the tensor and the field.
 */
public final class TensorJson {
  private TensorJson() {}

  /** Reads a tensor-JSON file; keys keep their order. */
  public static Map<String, Tensor> read(Path file) {
    String text;
    try {
      text = StandardCharsets.UTF_8.newDecoder().decode(java.nio.ByteBuffer.wrap(Files.readAllBytes(file))).toString();
    } catch (CharacterCodingException e) {
      throw PipelineException.invalidInput("tensor JSON file '" + file + "': not UTF-8 text");
    } catch (IOException e) {
      throw PipelineException.invalidInput("tensor JSON file '" + file + "': cannot read it (" + describe(e) + ")");
    }
    return parse(text);
  }

  /** Parses a tensor-JSON document. */
  public static Map<String, Tensor> parse(String text) {
    Object doc;
    try {
      doc = Json.parse(text);
    } catch (Json.ParseException e) {
      throw PipelineException.invalidInput("tensor JSON: not valid JSON (" + e.getMessage() + ")");
    }
    if (!(doc instanceof Map<?, ?> map)) {
      throw PipelineException.invalidInput(
          "tensor JSON: expected an object of named tensors, got " + kind(doc));
    }
    Map<String, Tensor> out = new LinkedHashMap<>();
    for (Map.Entry<?, ?> e : map.entrySet()) {
      String name = (String) e.getKey();
      out.put(name, decode(name, e.getValue()));
    }
    return out;
  }

  /** One tensor from its {@code {"dtype", "shape", "data"}} object. */
  static Tensor decode(String name, Object obj) {
    String where = "tensor '" + name + "'";
    if (!(obj instanceof Map<?, ?> m)) {
      throw PipelineException.invalidInput(where + ": expected an object with dtype, shape and data, got " + kind(obj));
    }
    List<String> missing = new ArrayList<>();
    for (String k : List.of("dtype", "shape", "data")) {
      if (!m.containsKey(k)) {
        missing.add(k);
      }
    }
    if (!missing.isEmpty()) {
      throw PipelineException.invalidInput(where + ": missing field(s) " + missing + "; expected dtype, shape and data");
    }
    Object dt = m.get("dtype");
    DType dtype = dt instanceof String s ? DType.fromName(s) : null;
    if (dtype == null) {
      throw PipelineException.invalidInput(where + ": dtype " + Json.write(dt) + " is not one of " + DType.names());
    }
    long[] shape = shape(where, m.get("shape"));
    if (!(m.get("data") instanceof List<?> data)) {
      throw PipelineException.invalidInput(where + ": data must be a flat list, got " + kind(m.get("data")));
    }
    long count = 1;
    for (long d : shape) {
      count = count * d;
    }
    if (data.size() != count) {
      throw PipelineException.invalidInput(
          where + ": shape " + Shapes.str(shape) + " needs " + count + " values but data has " + data.size());
    }
    int n = data.size();
    switch (dtype) {
      case FLOAT32: {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
          v[i] = (float) floating(where, i, data.get(i), true);
        }
        return Tensor.ofFloats(v, shape);
      }
      case FLOAT64: {
        double[] v = new double[n];
        for (int i = 0; i < n; i++) {
          v[i] = floating(where, i, data.get(i), false);
        }
        return Tensor.ofDoubles(v, shape);
      }
      case INT64: {
        long[] v = new long[n];
        for (int i = 0; i < n; i++) {
          v[i] = integer(where, i, data.get(i), dtype, Long.MIN_VALUE, Long.MAX_VALUE);
        }
        return Tensor.ofLongs(v, shape);
      }
      case INT32: {
        int[] v = new int[n];
        for (int i = 0; i < n; i++) {
          v[i] = (int) integer(where, i, data.get(i), dtype, Integer.MIN_VALUE, Integer.MAX_VALUE);
        }
        return Tensor.ofInts(v, shape);
      }
      case UINT8: {
        byte[] v = new byte[n];
        for (int i = 0; i < n; i++) {
          v[i] = (byte) integer(where, i, data.get(i), dtype, 0, 255);
        }
        return Tensor.ofUint8(v, shape);
      }
      case INT8: {
        byte[] v = new byte[n];
        for (int i = 0; i < n; i++) {
          v[i] = (byte) integer(where, i, data.get(i), dtype, -128, 127);
        }
        return Tensor.ofInt8(v, shape);
      }
      case BOOL: {
        boolean[] v = new boolean[n];
        for (int i = 0; i < n; i++) {
          if (!(data.get(i) instanceof Boolean b)) {
            throw PipelineException.invalidInput(
                where + ": data[" + i + "] is " + Json.write(data.get(i)) + "; expected true or false");
          }
          v[i] = b;
        }
        return Tensor.ofBooleans(v, shape);
      }
      case STRING: {
        String[] v = new String[n];
        for (int i = 0; i < n; i++) {
          if (!(data.get(i) instanceof String s)) {
            throw PipelineException.invalidInput(
                where + ": data[" + i + "] is " + Json.write(data.get(i)) + "; expected a string");
          }
          v[i] = s;
        }
        return Tensor.ofStrings(v, shape);
      }
      default:
        throw new AssertionError(dtype);
    }
  }

  private static long[] shape(String where, Object obj) {
    String bad = where + ": shape must be a list of non-negative integers, got " + Json.write(obj);
    if (!(obj instanceof List<?> list)) {
      throw PipelineException.invalidInput(bad);
    }
    long[] shape = new long[list.size()];
    boolean empty = false;
    boolean huge = false;
    long count = 1;
    for (int i = 0; i < shape.length; i++) {
      if (!(list.get(i) instanceof Json.Num num) || !num.isInteger()) {
        throw PipelineException.invalidInput(bad);
      }
      try {
        shape[i] = Long.parseLong(num.text());
      } catch (NumberFormatException e) {
        throw PipelineException.invalidInput(bad);
      }
      if (shape[i] < 0) {
        throw PipelineException.invalidInput(bad);
      }
      empty |= shape[i] == 0;
      if (!huge && shape[i] > 0) {
        huge = count > (Integer.MAX_VALUE - 8) / shape[i]; // no overflow: stop multiplying once too large
        count *= huge ? 1 : shape[i];
      }
    }
    if (huge && !empty) {
      throw PipelineException.invalidInput(where + ": shape " + Json.write(obj) + " is too large for one Java array");
    }
    return shape;
  }

  private static double floating(String where, int i, Object v, boolean single) {
    if (v instanceof String s) {
      switch (s) {
        case "NaN":
          return Double.NaN;
        case "Infinity":
          return Double.POSITIVE_INFINITY;
        case "-Infinity":
          return Double.NEGATIVE_INFINITY;
        default:
          throw PipelineException.invalidInput(
              where + ": data[" + i + "] is " + Json.write(s) + "; expected a number, \"NaN\", \"Infinity\" or \"-Infinity\"");
      }
    }
    if (!(v instanceof Json.Num num)) {
      throw PipelineException.invalidInput(where + ": data[" + i + "] is " + Json.write(v) + "; expected a number");
    }
    // float32 straight from the decimal: parsing through double first could round twice
    return single ? Float.parseFloat(num.text()) : Double.parseDouble(num.text());
  }

  private static long integer(String where, int i, Object v, DType dtype, long min, long max) {
    if (!(v instanceof Json.Num num) || !num.isInteger()) {
      throw PipelineException.invalidInput(
          where + ": data[" + i + "] is " + Json.write(v) + "; expected an integer for " + dtype);
    }
    long x;
    try {
      x = Long.parseLong(num.text());
    } catch (NumberFormatException e) {
      throw PipelineException.invalidInput(
          where + ": data[" + i + "] is " + num.text() + "; out of range for " + dtype + " [" + min + ", " + max + "]");
    }
    if (x < min || x > max) {
      throw PipelineException.invalidInput(
          where + ": data[" + i + "] is " + x + "; out of range for " + dtype + " [" + min + ", " + max + "]");
    }
    return x;
  }

  // ---- writing ----------------------------------------------------------------------------------------

  /** The tensors as one line of tensor JSON, in the map's order. */
  public static String write(Map<String, Tensor> tensors) {
    StringBuilder sb = new StringBuilder();
    sb.append('{');
    boolean first = true;
    for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
      if (!first) {
        sb.append(", ");
      }
      first = false;
      Json.quote(sb, e.getKey());
      sb.append(": ");
      encode(sb, e.getValue());
    }
    return sb.append('}').toString();
  }

  static void encode(StringBuilder sb, Tensor t) {
    sb.append("{\"dtype\": \"").append(t.dtype().jsonName()).append("\", \"shape\": [");
    long[] shape = t.shape();
    for (int i = 0; i < shape.length; i++) {
      sb.append(i > 0 ? ", " : "").append(shape[i]);
    }
    sb.append("], \"data\": [");
    int n = t.size();
    for (int i = 0; i < n; i++) {
      if (i > 0) {
        sb.append(", ");
      }
      switch (t.dtype()) {
        case FLOAT32 -> {
          float f = t.floats()[i];
          sb.append(special(f).orElseGet(() -> FloatFormat.format(f)));
        }
        case FLOAT64 -> {
          double d = t.doubles()[i];
          sb.append(special(d).orElseGet(() -> FloatFormat.format(d)));
        }
        case INT64 -> sb.append(t.longs()[i]);
        case INT32 -> sb.append(t.ints()[i]);
        case UINT8 -> sb.append(Byte.toUnsignedInt(t.bytes()[i]));
        case INT8 -> sb.append(t.bytes()[i]);
        case BOOL -> sb.append(t.booleans()[i]);
        case STRING -> Json.quote(sb, t.strings()[i]);
        default -> throw new AssertionError(t.dtype());
      }
    }
    sb.append("]}");
  }

  private static java.util.Optional<String> special(double v) {
    if (Double.isNaN(v)) {
      return java.util.Optional.of("\"NaN\"");
    }
    if (Double.isInfinite(v)) {
      return java.util.Optional.of(v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    }
    return java.util.Optional.empty();
  }

  static String kind(Object v) {
    if (v == null) {
      return "null";
    }
    if (v instanceof Map) {
      return "an object";
    }
    if (v instanceof List) {
      return "a list";
    }
    if (v instanceof String) {
      return "a string";
    }
    if (v instanceof Boolean) {
      return "a boolean";
    }
    return "a number";
  }

  private static String describe(IOException e) {
    return e.getClass().getSimpleName() + (e.getMessage() == null ? "" : ": " + e.getMessage());
  }
}
