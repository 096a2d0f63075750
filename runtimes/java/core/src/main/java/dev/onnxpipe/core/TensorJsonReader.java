package dev.onnxpipe.core;

import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;

/**
 * The tensor-JSON reader of spec/README.md ("Reading tensor JSON"), streaming: it walks the document once, byte by
 * byte, and parses each {@code data} array straight into the primitive array of its dtype, allocated from the
 * declared shape after the limits are checked. No tree, no boxed numbers: beyond the tensors themselves it holds
 * a 64 KiB window and one token.
 *
 * <p>Refused with INVALID_INPUT, naming the tensor and the field: malformed JSON, a duplicate key at any level, a
 * field other than dtype/shape/data, a number outside its dtype (float32 1e39 included) or with a fraction or
 * exponent for an integer dtype, a lone surrogate or invalid UTF-8, nested or wrong-length data. Over a {@link
 * Limits} value: TOO_LARGE. The document is at most three levels deep (object, tensor, array); anything deeper
 * is refused where it starts, so no input can recurse and there is no depth limit to configure.
 */
final class TensorJsonReader {
  private static final int MAX_NUMBER_CHARS = 1100;

  private final ByteSource in;
  private final Limits limits;
  private final StringBuilder text = new StringBuilder();
  private final char[] number = new char[MAX_NUMBER_CHARS];
  private long elements;
  private long stringBytes;

  TensorJsonReader(ByteSource in, Limits limits) {
    this.in = in;
    this.limits = limits;
  }

  Map<String, Tensor> document() {
    space();
    int c = in.peek();
    if (c < 0) {
      throw syntax("tensor JSON", "an empty document");
    }
    if (c != '{') {
      throw invalid("tensor JSON: expected an object of named tensors, got " + kindAt(c));
    }
    in.read();
    Map<String, Tensor> out = new LinkedHashMap<>();
    space();
    if (in.peek() == '}') {
      in.read();
    } else {
      do {
        space();
        String name = key("tensor JSON");
        if (out.containsKey(name)) {
          throw invalid("tensor JSON: duplicate tensor " + Names.quote(name));
        }
        out.put(name, tensor(name));
        space();
      } while (comma('}', "tensor JSON"));
    }
    space();
    if (in.read() != -1) {
      throw syntax("tensor JSON", "unexpected content after the document");
    }
    return out;
  }

  /** One {@code {"dtype", "shape", "data"}} object; a {@code data} array before dtype and shape is read on a second pass. */
  private Tensor tensor(String name) {
    String where = "tensor " + Names.quote(name);
    int c = in.peek();
    if (c < 0) {
      throw syntax(where, "unexpected end of input");
    }
    if (c != '{') {
      throw invalid(where + ": expected an object with dtype, shape and data, got " + kindAt(c));
    }
    in.read();
    DType dtype = null;
    long[] shape = null;
    long dataAt = -1;
    Tensor tensor = null;
    Set<String> seen = new HashSet<>();
    space();
    if (in.peek() == '}') {
      in.read();
    } else {
      do {
        space();
        String field = key(where);
        if (!seen.add(field)) {
          throw invalid(where + ": duplicate field " + Names.quote(field));
        }
        switch (field) {
          case "dtype" -> dtype = dtype(where);
          case "shape" -> shape = shape(where);
          case "data" -> {
            if (dtype != null && shape != null) {
              tensor = data(where, dtype, shape);
            } else {
              dataAt = in.position();
              skipData(where);
            }
          }
          default -> throw invalid(where + ": unknown field " + Names.quote(field) + "; expected dtype, shape and data");
        }
        space();
      } while (comma('}', where));
    }
    if (dtype == null || shape == null || !seen.contains("data")) {
      java.util.List<String> missing = new java.util.ArrayList<>();
      for (String k : new String[] {"dtype", "shape", "data"}) {
        if (!seen.contains(k)) {
          missing.add(k);
        }
      }
      throw invalid(where + ": missing field(s) " + missing + "; expected dtype, shape and data");
    }
    if (tensor == null) {
      long end = in.position();
      in.seek(dataAt);
      tensor = data(where, dtype, shape);
      in.seek(end);
    }
    return tensor;
  }

  private DType dtype(String where) {
    if (in.peek() != '"') {
      throw invalid(where + ": dtype must be a string, one of " + DType.names() + "; got " + kindAt(in.peek()));
    }
    String s = string(where + ": dtype", -1);
    DType d = DType.fromName(s);
    if (d == null) {
      throw invalid(where + ": dtype " + Names.quote(s) + " is not one of " + DType.names());
    }
    return d;
  }

  private long[] shape(String where) {
    String bad = where + ": shape must be a list of non-negative integers";
    if (in.peek() != '[') {
      throw invalid(bad + ", got " + kindAt(in.peek()));
    }
    in.read();
    long[] dims = new long[4];
    int rank = 0;
    space();
    if (in.peek() == ']') {
      in.read();
      return new long[0];
    }
    do {
      space();
      int c = in.peek();
      if (c != '-' && (c < '0' || c > '9')) {
        throw invalid(bad + ", got " + kindAt(c) + " at dimension " + rank);
      }
      int len = numberToken(where + ": shape");
      if (number[0] == '-' || !isInteger(len) || len > 18) {
        throw invalid(bad + ", got " + new String(number, 0, len) + " at dimension " + rank);
      }
      if (rank == 64) {
        throw invalid(where + ": shape has more than " + rank + " dimensions");
      }
      if (rank == dims.length) {
        dims = java.util.Arrays.copyOf(dims, rank * 2);
      }
      dims[rank++] = Long.parseLong(new String(number, 0, len));
      space();
    } while (comma(']', where + ": shape"));
    return java.util.Arrays.copyOf(dims, rank);
  }

  /** The element count of {@code shape}, after the limits: TOO_LARGE over max_elements, checked before allocating. */
  private int count(String where, long[] shape) {
    boolean empty = false;
    for (long d : shape) {
      empty |= d == 0;
    }
    long count = 1;
    for (long d : shape) {
      if (d > limits.maxElements()) {
        // even in a zero-size tensor (spec/limits.json): no dimension may pass the element limit
        throw new OnnxpipeException(ErrorCode.TOO_LARGE, where + ": shape " + Shapes.str(shape) + " has dimension "
            + d + ", over max_elements = " + limits.maxElements());
      }
      count = empty ? 0 : count * d;
      if (count > limits.maxElements()) {
        break;
      }
    }
    if (count > limits.maxElements() - elements) {
      throw new OnnxpipeException(ErrorCode.TOO_LARGE, where + ": shape " + Shapes.str(shape) + " has " + count
          + " elements; with the " + elements + " before it that is over max_elements = " + limits.maxElements());
    }
    elements += count;
    return (int) Math.min(count, Integer.MAX_VALUE - 8);
  }

  private Tensor data(String where, DType dtype, long[] shape) {
    int n = count(where, shape);
    if (in.peek() != '[') {
      throw invalid(where + ": data must be a flat list, got " + kindAt(in.peek()));
    }
    in.read();
    // strings are filled in as read; the primitive arrays start zeroed
    Object values = dtype == DType.STRING ? new String[n] : Tensor.newArray(dtype, n);
    int i = 0;
    String list = where + ": data";
    space();
    if (in.peek() == ']') {
      in.read();
    } else {
      do {
        space();
        if (i == n) {
          long given = n + skipRest(where);
          throw invalid(where + ": shape " + Shapes.str(shape) + " needs " + n + " values but data has " + given);
        }
        element(where, dtype, values, i++);
        space();
      } while (comma(']', list));
    }
    if (i != n) {
      throw invalid(where + ": shape " + Shapes.str(shape) + " needs " + n + " values but data has " + i);
    }
    return Tensor.of(dtype, values, shape);
  }

  private void element(String where, DType dtype, Object values, int i) {
    int c = in.peek();
    if (c == '[' || c == '{') {
      throw invalid(at(where, i) + " is " + kindAt(c) + "; data must be a flat list");
    }
    switch (dtype) {
      case FLOAT32 -> ((float[]) values)[i] = (float) floating(where, i, c, true);
      case FLOAT64 -> ((double[]) values)[i] = floating(where, i, c, false);
      case INT64 -> ((long[]) values)[i] = integer(where, i, c, dtype, Long.MIN_VALUE, Long.MAX_VALUE);
      case INT32 -> ((int[]) values)[i] = (int) integer(where, i, c, dtype, Integer.MIN_VALUE, Integer.MAX_VALUE);
      case UINT8 -> ((byte[]) values)[i] = (byte) integer(where, i, c, dtype, 0, 255);
      case INT8 -> ((byte[]) values)[i] = (byte) integer(where, i, c, dtype, -128, 127);
      case BOOL -> {
        if (c != 't' && c != 'f') {
          throw invalid(at(where, i) + " is " + kindAt(c) + "; expected true or false");
        }
        ((boolean[]) values)[i] = literal(where);
      }
      case STRING -> {
        if (c != '"') {
          throw invalid(at(where, i) + " is " + kindAt(c) + "; expected a string");
        }
        ((String[]) values)[i] = string(where, i);
      }
    }
  }

  private static String label(String where, long index) {
    return index >= 0 ? at(where, index) : where;
  }

  /** "tensor 'x': data[3]", made only for a message: never per element. */
  private static String at(String where, long i) {
    return where + ": data[" + i + "]";
  }

  private double floating(String where, int i, int c, boolean single) {
    if (c == '"') {
      String s = string(where, -1);
      switch (s) {
        case "NaN":
          return Double.NaN;
        case "Infinity":
          return Double.POSITIVE_INFINITY;
        case "-Infinity":
          return Double.NEGATIVE_INFINITY;
        default:
          throw invalid(at(where, i) + " is " + Json.write(Names.cut(s)) + "; expected a number, \"NaN\", \"Infinity\" or \"-Infinity\"");
      }
    }
    if (c != '-' && (c < '0' || c > '9')) {
      throw invalid(at(where, i) + " is " + kindAt(c) + "; expected a number");
    }
    int len = numberToken(where);
    String s = new String(number, 0, len);
    // float32 straight from the decimal: through a double first could round twice
    double v = single ? Float.parseFloat(s) : Double.parseDouble(s);
    if (Double.isInfinite(v)) {
      throw invalid(at(where, i) + " is " + s + "; out of range for " + (single ? "float32" : "float64")
          + " (its magnitude rounds beyond the largest finite value)");
    }
    return v;
  }

  private long integer(String where, int i, int c, DType dtype, long min, long max) {
    if (c != '-' && (c < '0' || c > '9')) {
      throw invalid(at(where, i) + " is " + kindAt(c) + "; expected an integer for " + dtype);
    }
    int len = numberToken(where);
    if (!isInteger(len)) {
      throw invalid(at(where, i) + " is " + new String(number, 0, len) + "; expected an integer for " + dtype
          + " (no fraction or exponent)");
    }
    boolean negative = number[0] == '-';
    long v = 0;
    boolean overflow = len > 20;
    for (int k = negative ? 1 : 0; k < len && !overflow; k++) {
      int d = number[k] - '0';
      // accumulate negatively: Long.MIN_VALUE has no positive twin
      overflow = v < (Long.MIN_VALUE + d) / 10;
      v = v * 10 - d;
    }
    if (!negative) {
      overflow |= v == Long.MIN_VALUE;
      v = -v;
    }
    if (overflow || v < min || v > max) {
      throw invalid(at(where, i) + " is " + new String(number, 0, len) + "; out of range for " + dtype + " [" + min + ", " + max
          + "]");
    }
    return v;
  }

  private boolean isInteger(int len) {
    for (int k = 0; k < len; k++) {
      char ch = number[k];
      if (ch == '.' || ch == 'e' || ch == 'E') {
        return false;
      }
    }
    return true;
  }

  /** Reads one JSON number into {@link #number}; returns its length. */
  private int numberToken(String where) {
    int len = 0;
    int c = in.peek();
    if (c == '-') {
      number[len++] = (char) in.read();
    }
    int intDigits = digits(where, len);
    if (intDigits == len) {
      throw syntax(where, "invalid number");
    }
    if (number[len] == '0' && intDigits - len > 1) {
      throw syntax(where, "invalid number (leading zero)");
    }
    len = intDigits;
    if (in.peek() == '.') {
      number[len++] = (char) in.read();
      int after = digits(where, len);
      if (after == len) {
        throw syntax(where, "invalid number: digits expected after '.'");
      }
      len = after;
    }
    c = in.peek();
    if (c == 'e' || c == 'E') {
      number[len++] = (char) in.read();
      c = in.peek();
      if (c == '+' || c == '-') {
        number[len++] = (char) in.read();
      }
      int after = digits(where, len);
      if (after == len) {
        throw syntax(where, "invalid number: digits expected in the exponent");
      }
      len = after;
    }
    return len;
  }

  private int digits(String where, int len) {
    int c;
    while ((c = in.peek()) >= '0' && c <= '9') {
      if (len == MAX_NUMBER_CHARS - 2) {
        throw invalid(where + ": a number longer than " + (MAX_NUMBER_CHARS - 2) + " characters");
      }
      number[len++] = (char) in.read();
    }
    return len;
  }

  private boolean literal(String at) {
    boolean t = in.peek() == 't';
    String word = t ? "true" : "false";
    for (int k = 0; k < word.length(); k++) {
      if (in.read() != word.charAt(k)) {
        throw syntax(at, "invalid literal");
      }
    }
    return t;
  }

  /** Skips a data array that came before dtype and shape, checking that it is flat. */
  private void skipData(String where) {
    if (in.peek() != '[') {
      throw invalid(where + ": data must be a flat list, got " + kindAt(in.peek()));
    }
    in.read();
    space();
    if (in.peek() == ']') {
      in.read();
      return;
    }
    skipRest(where);
  }

  /** Skips the rest of a flat array (after its '[' or a ','); returns the elements skipped. */
  private long skipRest(String where) {
    long n = 0;
    String list = where + ": data";
    do {
      space();
      skipScalar(where, n);
      n++;
      space();
    } while (comma(']', list));
    return n;
  }

  private void skipScalar(String where, long i) {
    int c = in.peek();
    if (c == '"') {
      string(where, -1);
    } else if (c == 't' || c == 'f') {
      literal(where);
    } else if (c == 'n') {
      throw invalid(at(where, i) + " is null; expected a value of the tensor's dtype");
    } else if (c == '-' || (c >= '0' && c <= '9')) {
      numberToken(where);
    } else if (c == '[' || c == '{') {
      throw invalid(at(where, i) + " is " + kindAt(c) + "; data must be a flat list");
    } else {
      throw syntax(where, c < 0 ? "unexpected end of input" : "unexpected character");
    }
  }

  private String key(String where) {
    if (in.peek() != '"') {
      throw syntax(where, "expected a string key");
    }
    String k = string(where + ": key", -1);
    space();
    if (in.read() != ':') {
      throw syntax(where, "expected ':' after key " + Names.quote(k));
    }
    space();
    return k;
  }

  /** After a value: true on ',', false on {@code close}. */
  private boolean comma(char close, String where) {
    int c = in.read();
    if (c == ',') {
      return true;
    }
    if (c == close) {
      return false;
    }
    if ((c == '[' || c == '{') && close == ']') {
      throw invalid(where + " must be a flat list");
    }
    throw syntax(where, c < 0 ? "unexpected end of input" : "expected ',' or '" + close + "'");
  }

  private void space() {
    int c;
    while ((c = in.peek()) == ' ' || c == '\n' || c == '\r' || c == '\t') {
      in.read();
    }
  }

  // ---- strings: strict UTF-8 and escapes, no lone surrogates ----------------------------------------

  /** A string token; {@code index >= 0}: data element {@code index}, counted against max_string_bytes. */
  private String string(String where, long index) {
    boolean element = index >= 0;
    in.read(); // opening quote
    text.setLength(0);
    long bytes = 0;
    while (true) {
      int b = in.read();
      if (b == '"') {
        break;
      }
      if (b < 0) {
        throw syntax(where, "unterminated string");
      }
      if (b < 0x20) {
        throw invalid(label(where, index) + ": a control character (U+" + String.format("%04X", b) + ") in a string; escape it");
      }
      if (b == '\\') {
        bytes += escape(where, index);
      } else if (b < 0x80) {
        text.append((char) b);
        bytes++;
      } else {
        bytes += utf8(where, index, b);
      }
      if (element && stringBytes + bytes > limits.maxStringBytes()) {
        throw new OnnxpipeException(ErrorCode.TOO_LARGE, at(where, index) + ": strings over max_string_bytes = "
            + limits.maxStringBytes() + " UTF-8 bytes");
      }
    }
    if (element) {
      stringBytes += bytes;
    }
    return text.toString();
  }

  /** One escape after the backslash; returns its UTF-8 length. */
  private int escape(String where, long index) {
    int e = in.read();
    switch (e) {
      case '"', '\\', '/' -> text.append((char) e);
      case 'b' -> text.append('\b');
      case 'f' -> text.append('\f');
      case 'n' -> text.append('\n');
      case 'r' -> text.append('\r');
      case 't' -> text.append('\t');
      case 'u' -> {
        char c = hex4(where);
        if (Character.isLowSurrogate(c)) {
          throw invalid(label(where, index) + ": a lone surrogate \\u" + String.format("%04x", (int) c) + " in a string");
        }
        if (!Character.isHighSurrogate(c)) {
          text.append(c);
          return c < 0x80 ? 1 : c < 0x800 ? 2 : 3;
        }
        if (in.read() != '\\' || in.read() != 'u') {
          throw invalid(label(where, index) + ": a lone surrogate \\u" + String.format("%04x", (int) c) + " in a string");
        }
        char low = hex4(where);
        if (!Character.isLowSurrogate(low)) {
          throw invalid(label(where, index) + ": a lone surrogate \\u" + String.format("%04x", (int) c) + " in a string");
        }
        text.append(c).append(low);
        return 4;
      }
      default -> throw syntax(where, e < 0 ? "unterminated string" : "invalid escape '\\" + (char) e + "'");
    }
    return 1;
  }

  private char hex4(String where) {
    int v = 0;
    for (int k = 0; k < 4; k++) {
      int d = Character.digit(in.read(), 16);
      if (d < 0) {
        throw syntax(where, "invalid \\u escape");
      }
      v = v * 16 + d;
    }
    return (char) v;
  }

  /** A multi-byte UTF-8 sequence starting with {@code lead}: no overlong forms, no surrogates, at most U+10FFFF. */
  private int utf8(String where, long index, int lead) {
    int n;
    int cp;
    int lo = 0x80;
    int hi = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
      n = 2;
      cp = lead & 0x1F;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      n = 3;
      cp = lead & 0x0F;
      lo = lead == 0xE0 ? 0xA0 : 0x80;
      hi = lead == 0xED ? 0x9F : 0xBF;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      n = 4;
      cp = lead & 0x07;
      lo = lead == 0xF0 ? 0x90 : 0x80;
      hi = lead == 0xF4 ? 0x8F : 0xBF;
    } else {
      throw invalid(label(where, index) + ": invalid UTF-8 (byte 0x" + Integer.toHexString(lead) + ")");
    }
    for (int k = 1; k < n; k++) {
      int b = in.read();
      if (b < lo || b > hi) {
        throw invalid(label(where, index) + ": invalid UTF-8 (a truncated or overlong sequence, or an encoded surrogate)");
      }
      cp = (cp << 6) | (b & 0x3F);
      lo = 0x80;
      hi = 0xBF;
    }
    text.appendCodePoint(cp);
    return n;
  }

  // ---- messages ------------------------------------------------------------------------------------

  private static String kindAt(int c) {
    return switch (c) {
      case '{' -> "an object";
      case '[' -> "a list";
      case '"' -> "a string";
      case 't', 'f' -> "a boolean";
      case 'n' -> "null";
      case -1 -> "the end of the input";
      default -> c == '-' || (c >= '0' && c <= '9') ? "a number" : "'" + (char) c + "'";
    };
  }

  private OnnxpipeException syntax(String where, String what) {
    return invalid(where + ": not valid JSON (" + what + " at byte " + in.position() + ")");
  }

  private static OnnxpipeException invalid(String message) {
    return OnnxpipeException.invalidInput(message);
  }
}
