package dev.onnxpipe.sidecar;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import com.google.gson.Strictness;
import com.google.gson.stream.JsonReader;
import com.google.gson.stream.JsonToken;
import java.io.StringReader;
import java.io.IOException;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Named tensors as JSON (docs/tensor-json.md): {@code {"name": {"dtype": "float32", "shape": [1, 3], "data":
 * [...]}}}. Errors name the tensor and the field; nothing is converted silently (300 is not a uint8, 1.5 is
 * not an int64).
 */
public final class TensorJson {
  private static final Gson STRINGS = new GsonBuilder().disableHtmlEscaping().create();

  private TensorJson() {}

  /** The tensors of a tensor-JSON file, in file order. */
  public static Map<String, Tensor> read(Path file) throws IOException {
    String text = Files.readString(file, StandardCharsets.UTF_8);
    try {
      return parse(text);
    } catch (SidecarException e) {
      throw SidecarException.invalidInput(file + ": " + e.getMessage());
    }
  }

  /** The tensors of a tensor-JSON document, in document order. */
  public static Map<String, Tensor> parse(String json) {
    JsonElement root;
    try (JsonReader reader = new JsonReader(new StringReader(json))) {
      reader.setStrictness(Strictness.STRICT);
      root = JsonParser.parseReader(reader);
      if (reader.peek() != JsonToken.END_DOCUMENT) {
        throw new JsonParseException("text after the document");
      }
    } catch (JsonParseException | IOException e) {
      throw SidecarException.invalidInput("tensor JSON: not valid JSON (" + e.getMessage() + ")");
    }
    if (!root.isJsonObject()) {
      throw SidecarException.invalidInput("tensor JSON: expected an object of name -> tensor, got " + kind(root));
    }
    Map<String, Tensor> out = new LinkedHashMap<>();
    for (Map.Entry<String, JsonElement> e : root.getAsJsonObject().entrySet()) {
      out.put(e.getKey(), tensor(e.getKey(), e.getValue()));
    }
    return out;
  }

  private static Tensor tensor(String name, JsonElement element) {
    String where = "tensor '" + name + "'";
    if (!element.isJsonObject()) {
      throw SidecarException.invalidInput(where + ": expected an object with dtype, shape, data; got " + kind(element));
    }
    JsonObject o = element.getAsJsonObject();
    for (String key : o.keySet()) {
      if (!key.equals("dtype") && !key.equals("shape") && !key.equals("data")) {
        throw SidecarException.invalidInput(where + ": unknown field '" + key + "'; expected dtype, shape, data");
      }
    }
    JsonElement dtypeElement = field(o, where, "dtype");
    DataType type = dtypeElement.isJsonPrimitive() && dtypeElement.getAsJsonPrimitive().isString()
        ? DataType.fromJsonName(dtypeElement.getAsString())
        : null;
    if (type == null) {
      throw SidecarException.invalidInput(where + ": dtype " + dtypeElement + " given, expected one of "
          + DataType.jsonNames());
    }
    JsonElement shapeElement = field(o, where, "shape");
    if (!shapeElement.isJsonArray()) {
      throw SidecarException.invalidInput(where + ": shape: expected a list of integers >= 0, got " + kind(shapeElement));
    }
    JsonArray shapeArray = shapeElement.getAsJsonArray();
    long[] shape = new long[shapeArray.size()];
    for (int i = 0; i < shape.length; i++) {
      shape[i] = integer(shapeArray.get(i), where + ": shape[" + i + "]", 0, Long.MAX_VALUE).longValue();
    }
    JsonElement dataElement = field(o, where, "data");
    if (!dataElement.isJsonArray()) {
      throw SidecarException.invalidInput(where + ": data: expected a list, got " + kind(dataElement));
    }
    JsonArray data = dataElement.getAsJsonArray();
    long count;
    try {
      count = Tensor.elementCount(shape, where);
    } catch (SidecarException e) {
      throw SidecarException.invalidInput(e.getMessage());
    }
    if (data.size() != count) {
      throw SidecarException.invalidInput(where + ": data has " + data.size() + " element(s), shape "
          + java.util.Arrays.toString(shape) + " needs " + count);
    }
    int n = data.size();
    switch (type) {
      case FP32: {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) {
          a[i] = floatValue(data.get(i), where, i);
        }
        return Tensor.ofFloats(a, shape);
      }
      case FP64: {
        double[] a = new double[n];
        for (int i = 0; i < n; i++) {
          a[i] = doubleValue(data.get(i), where, i);
        }
        return Tensor.ofDoubles(a, shape);
      }
      case INT64: {
        long[] a = new long[n];
        for (int i = 0; i < n; i++) {
          a[i] = integer(data.get(i), where + ": data[" + i + "] (int64)", Long.MIN_VALUE, Long.MAX_VALUE).longValue();
        }
        return Tensor.ofLongs(a, shape);
      }
      case INT32: {
        int[] a = new int[n];
        for (int i = 0; i < n; i++) {
          a[i] = integer(data.get(i), where + ": data[" + i + "] (int32)", Integer.MIN_VALUE, Integer.MAX_VALUE).intValue();
        }
        return Tensor.ofInts(a, shape);
      }
      case UINT8:
      case INT8: {
        boolean unsigned = type == DataType.UINT8;
        byte[] a = new byte[n];
        for (int i = 0; i < n; i++) {
          a[i] = (byte) integer(data.get(i), where + ": data[" + i + "] (" + type.jsonName() + ")",
              unsigned ? 0 : -128, unsigned ? 255 : 127).intValue();
        }
        return unsigned ? Tensor.ofUint8(a, shape) : Tensor.ofInt8(a, shape);
      }
      case BOOL: {
        boolean[] a = new boolean[n];
        for (int i = 0; i < n; i++) {
          JsonElement v = data.get(i);
          if (!(v.isJsonPrimitive() && v.getAsJsonPrimitive().isBoolean())) {
            throw SidecarException.invalidInput(where + ": data[" + i + "] is " + v + ", expected true or false");
          }
          a[i] = v.getAsBoolean();
        }
        return Tensor.ofBooleans(a, shape);
      }
      case BYTES: {
        String[] a = new String[n];
        for (int i = 0; i < n; i++) {
          JsonElement v = data.get(i);
          if (!(v.isJsonPrimitive() && v.getAsJsonPrimitive().isString())) {
            throw SidecarException.invalidInput(where + ": data[" + i + "] is " + v + ", expected a string");
          }
          a[i] = v.getAsString();
        }
        return Tensor.ofStrings(a, shape);
      }
      default:
        throw new IllegalStateException("unhandled dtype " + type);
    }
  }

  private static JsonElement field(JsonObject o, String where, String key) {
    JsonElement e = o.get(key);
    if (e == null || e.isJsonNull()) {
      throw SidecarException.invalidInput(where + ": missing field '" + key + "'");
    }
    return e;
  }

  private static BigInteger integer(JsonElement v, String where, long min, long max) {
    if (v.isJsonPrimitive() && v.getAsJsonPrimitive().isNumber()) {
      BigDecimal d;
      try {
        d = new BigDecimal(v.getAsString());
      } catch (NumberFormatException e) {
        d = null;
      }
      if (d != null) {
        try {
          BigInteger i = d.toBigIntegerExact();
          if (i.compareTo(BigInteger.valueOf(min)) >= 0 && i.compareTo(BigInteger.valueOf(max)) <= 0) {
            return i;
          }
        } catch (ArithmeticException notWhole) {
          // reported below
        }
      }
    }
    throw SidecarException.invalidInput(where + " is " + v + ", expected an integer in [" + min + ", " + max + "]");
  }

  private static String special(JsonElement v) {
    if (v.isJsonPrimitive() && v.getAsJsonPrimitive().isString()) {
      String s = v.getAsString();
      if (s.equals("NaN") || s.equals("Infinity") || s.equals("-Infinity")) {
        return s;
      }
    }
    return null;
  }

  private static float floatValue(JsonElement v, String where, int i) {
    String s = special(v);
    if (s == null && v.isJsonPrimitive() && v.getAsJsonPrimitive().isNumber()) {
      s = v.getAsString();
    }
    if (s != null) {
      try {
        // parsed from the text, not through double: float32 values round once
        return Float.parseFloat(s);
      } catch (NumberFormatException e) {
        // reported below
      }
    }
    throw SidecarException.invalidInput(where + ": data[" + i + "] is " + v
        + ", expected a number or \"NaN\", \"Infinity\", \"-Infinity\"");
  }

  private static double doubleValue(JsonElement v, String where, int i) {
    String s = special(v);
    if (s == null && v.isJsonPrimitive() && v.getAsJsonPrimitive().isNumber()) {
      s = v.getAsString();
    }
    if (s != null) {
      try {
        return Double.parseDouble(s);
      } catch (NumberFormatException e) {
        // reported below
      }
    }
    throw SidecarException.invalidInput(where + ": data[" + i + "] is " + v
        + ", expected a number or \"NaN\", \"Infinity\", \"-Infinity\"");
  }

  private static String kind(JsonElement e) {
    if (e.isJsonObject()) {
      return "an object";
    } else if (e.isJsonArray()) {
      return "a list";
    } else if (e.isJsonNull()) {
      return "null";
    }
    return e.toString();
  }

  /** Tensor JSON of named tensors, one tensor per line, in the map's order. */
  public static String write(Map<String, Tensor> tensors) {
    StringBuilder b = new StringBuilder("{");
    boolean first = true;
    for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
      Tensor t = e.getValue();
      b.append(first ? "\n  " : ",\n  ").append(STRINGS.toJson(e.getKey()))
          .append(": {\"dtype\": \"").append(t.dataType().jsonName()).append("\", \"shape\": [");
      long[] shape = t.shape();
      for (int i = 0; i < shape.length; i++) {
        b.append(i == 0 ? "" : ", ").append(shape[i]);
      }
      b.append("], \"data\": [");
      for (int i = 0; i < t.size(); i++) {
        b.append(i == 0 ? "" : ", ");
        element(b, t, i);
      }
      b.append("]}");
      first = false;
    }
    return b.append(first ? "}" : "\n}").toString();
  }

  private static void element(StringBuilder b, Tensor t, int i) {
    switch (t.dataType()) {
      case FP32:
        number(b, t.floats()[i], Float.toString(t.floats()[i]));
        break;
      case FP64:
        number(b, t.doubles()[i], Double.toString(t.doubles()[i]));
        break;
      case INT64:
        b.append(t.longs()[i]);
        break;
      case INT32:
        b.append(t.ints()[i]);
        break;
      case UINT8:
        b.append(Byte.toUnsignedInt(t.bytes()[i]));
        break;
      case INT8:
        b.append(t.bytes()[i]);
        break;
      case BOOL:
        b.append(t.booleans()[i]);
        break;
      case BYTES:
        b.append(STRINGS.toJson(t.strings()[i]));
        break;
      default:
        throw new IllegalStateException("unhandled dtype " + t.dataType());
    }
  }

  private static void number(StringBuilder b, double value, String text) {
    if (Double.isNaN(value)) {
      b.append("\"NaN\"");
    } else if (Double.isInfinite(value)) {
      b.append(value > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    } else {
      b.append(text);
    }
  }
}
