package dev.onnxpipe;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * What the runtime needs from a serialized ONNX {@code ModelProto} before ONNX Runtime sees it, read from the
 * protobuf wire format without a protobuf library: the opset imports (which custom-op libraries to register),
 * the metadata (the manifest), and the graph's overridable initializers.
 *
 * <p>Why the rewrite: a run-time threshold is a graph input backed by an initializer of the same name (so it
 * has a default). ONNX Runtime's C API can feed such an input, but its Java API only accepts names listed by
 * {@code getInputInfo()}, which leaves them out. So {@link #withoutInitializers} removes those initializers
 * from the graph, making the inputs ordinary ones, and keeps their values: {@link Pipeline} feeds them when
 * the caller omits the input, which is what ONNX Runtime would have done.
 */
final class ModelFile {
  private static final int MODEL_GRAPH = 7;
  private static final int MODEL_OPSET_IMPORT = 8;
  private static final int MODEL_METADATA_PROPS = 14;
  private static final int GRAPH_INITIALIZER = 5;
  private static final int GRAPH_INPUT = 11;

  /** Domain -> opset version; the default domain is reported as {@code ai.onnx}. */
  final Map<String, Long> opsets = new LinkedHashMap<>();
  final Map<String, String> metadata = new LinkedHashMap<>();
  /** Graph inputs that have an initializer of the same name, in graph input order, with their values. */
  final Map<String, Tensor> overridable = new LinkedHashMap<>();
  private final Set<String> undecodable = new LinkedHashSet<>();
  private final byte[] bytes;

  private ModelFile(byte[] bytes) {
    this.bytes = bytes;
  }

  /** Thrown when the bytes are not a protobuf ModelProto. */
  static final class FormatException extends Exception {
    private static final long serialVersionUID = 1L;

    FormatException(String message) {
      super(message);
    }
  }

  static ModelFile scan(byte[] bytes) throws FormatException {
    ModelFile m = new ModelFile(bytes);
    boolean hasGraph = false;
    List<Field> graphs = new ArrayList<>();
    for (Field f : fields(bytes, 0, bytes.length)) {
      if (f.number == MODEL_GRAPH && f.wire == 2) {
        hasGraph = true;
        graphs.add(f);
      } else if (f.number == MODEL_OPSET_IMPORT && f.wire == 2) {
        String domain = "";
        long version = 0;
        for (Field g : fields(bytes, f.start, f.end)) {
          if (g.number == 1 && g.wire == 2) {
            domain = g.string(bytes);
          } else if (g.number == 2 && g.wire == 0) {
            version = g.varint;
          }
        }
        m.opsets.put(domain.isEmpty() ? "ai.onnx" : domain, version);
      } else if (f.number == MODEL_METADATA_PROPS && f.wire == 2) {
        String key = "";
        String value = "";
        for (Field g : fields(bytes, f.start, f.end)) {
          if (g.number == 1 && g.wire == 2) {
            key = g.string(bytes);
          } else if (g.number == 2 && g.wire == 2) {
            value = g.string(bytes);
          }
        }
        m.metadata.put(key, value);
      }
    }
    if (!hasGraph) {
      throw new FormatException("no graph");
    }
    Set<String> inputs = new LinkedHashSet<>();
    Map<String, Field> inits = new LinkedHashMap<>();
    for (Field g : graphs) {
      for (Field f : fields(bytes, g.start, g.end)) {
        if (f.number == GRAPH_INPUT && f.wire == 2) {
          for (Field v : fields(bytes, f.start, f.end)) {
            if (v.number == 1 && v.wire == 2) {
              inputs.add(v.string(bytes));
            }
          }
        } else if (f.number == GRAPH_INITIALIZER && f.wire == 2) {
          inits.put(tensorName(bytes, f), f);
        }
      }
    }
    for (String name : inputs) {
      Field init = inits.get(name);
      if (init != null) {
        Tensor value = TensorProtos.decode(bytes, init.start, init.end);
        if (value != null) {
          m.overridable.put(name, value);
        } else {
          m.undecodable.add(name);
        }
      }
    }
    return m;
  }

  /** Names of overridable initializers this runtime cannot decode (external data, float16, ...). */
  Set<String> undecodable() {
    return undecodable;
  }

  /** The model with the initializers of {@link #overridable} removed from its graph (a new array). */
  byte[] withoutInitializers() throws FormatException {
    if (overridable.isEmpty()) {
      return bytes;
    }
    ByteArrayOutputStream out = new ByteArrayOutputStream(bytes.length);
    for (Field f : fields(bytes, 0, bytes.length)) {
      if (f.number == MODEL_GRAPH && f.wire == 2) {
        ByteArrayOutputStream graph = new ByteArrayOutputStream(f.end - f.start);
        for (Field g : fields(bytes, f.start, f.end)) {
          boolean drop = g.number == GRAPH_INITIALIZER && g.wire == 2
              && overridable.containsKey(tensorName(bytes, g));
          if (!drop) {
            graph.write(bytes, g.tagStart, g.end - g.tagStart);
          }
        }
        writeVarint(out, ((long) MODEL_GRAPH << 3) | 2);
        writeVarint(out, graph.size());
        out.write(graph.toByteArray(), 0, graph.size());
      } else {
        out.write(bytes, f.tagStart, f.end - f.tagStart);
      }
    }
    return out.toByteArray();
  }

  private static String tensorName(byte[] buf, Field tensor) throws FormatException {
    for (Field t : fields(buf, tensor.start, tensor.end)) {
      if (t.number == 8 && t.wire == 2) {
        return t.string(buf);
      }
    }
    return "";
  }

  // ---- protobuf wire format ---------------------------------------------------------------------------

  /** One field: for wire type 2, payload in [start, end); for 0, the value in {@code varint}. */
  static final class Field {
    int number;
    int wire;
    int tagStart;
    int start;
    int end;
    long varint;

    String string(byte[] buf) {
      return new String(buf, start, end - start, StandardCharsets.UTF_8);
    }
  }

  static List<Field> fields(byte[] buf, int from, int to) throws FormatException {
    List<Field> out = new ArrayList<>();
    int[] pos = {from};
    while (pos[0] < to) {
      Field f = new Field();
      f.tagStart = pos[0];
      long key = varint(buf, pos, to);
      f.number = (int) (key >>> 3);
      f.wire = (int) (key & 7);
      if (f.number <= 0 || key >>> 3 > Integer.MAX_VALUE) {
        throw new FormatException("invalid field number at byte " + f.tagStart);
      }
      switch (f.wire) {
        case 0 -> {
          f.start = pos[0];
          f.varint = varint(buf, pos, to);
        }
        case 1 -> {
          f.start = pos[0];
          pos[0] += 8;
        }
        case 2 -> {
          long n = varint(buf, pos, to);
          if (n < 0 || n > to - pos[0]) {
            throw new FormatException("field " + f.number + " at byte " + f.tagStart + " runs past the end");
          }
          f.start = pos[0];
          pos[0] += (int) n;
        }
        case 5 -> {
          f.start = pos[0];
          pos[0] += 4;
        }
        default -> throw new FormatException("unsupported wire type " + f.wire + " at byte " + f.tagStart);
      }
      if (pos[0] > to) {
        throw new FormatException("truncated field " + f.number + " at byte " + f.tagStart);
      }
      f.end = pos[0];
      out.add(f);
    }
    return out;
  }

  static long varint(byte[] buf, int[] pos, int to) throws FormatException {
    long result = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos[0] >= to) {
        throw new FormatException("truncated varint at byte " + pos[0]);
      }
      byte b = buf[pos[0]++];
      result |= (long) (b & 0x7F) << shift;
      if ((b & 0x80) == 0) {
        return result;
      }
    }
    throw new FormatException("varint too long at byte " + pos[0]);
  }

  private static void writeVarint(ByteArrayOutputStream out, long v) {
    while ((v & ~0x7FL) != 0) {
      out.write((int) ((v & 0x7F) | 0x80));
      v >>>= 7;
    }
    out.write((int) v);
  }

  /** Decoding a TensorProto's values (the initializers above). */
  static final class TensorProtos {
    private TensorProtos() {}

    // TensorProto.DataType
    private static final int FLOAT = 1;
    private static final int UINT8 = 2;
    private static final int INT8 = 3;
    private static final int INT32 = 6;
    private static final int INT64 = 7;
    private static final int STRING = 8;
    private static final int BOOL = 9;
    private static final int DOUBLE = 11;

    /** The tensor's value, or null if this runtime cannot decode it (external data, other dtypes). */
    static Tensor decode(byte[] buf, int from, int to) throws FormatException {
      List<Long> dims = new ArrayList<>();
      int dataType = 0;
      Field raw = null;
      List<Field> floats = new ArrayList<>();
      List<Field> int32s = new ArrayList<>();
      List<Field> int64s = new ArrayList<>();
      List<Field> doubles = new ArrayList<>();
      List<String> strings = new ArrayList<>();
      for (Field f : fields(buf, from, to)) {
        switch (f.number) {
          case 1 -> collectVarints(buf, f, dims);
          case 2 -> dataType = (int) f.varint;
          case 4 -> floats.add(f);
          case 5 -> int32s.add(f);
          case 6 -> strings.add(f.string(buf));
          case 7 -> int64s.add(f);
          case 9 -> raw = f;
          case 10 -> doubles.add(f);
          case 13, 14 -> {
            if (f.number == 13 || f.varint != 0) {
              return null; // external data
            }
          }
          default -> { }
        }
      }
      long[] shape = dims.stream().mapToLong(Long::longValue).toArray();
      long count = 1;
      for (long d : shape) {
        if (d < 0) {
          return null;
        }
        count *= d;
      }
      if (count > 1 << 24) {
        return null;
      }
      int n = (int) count;
      ByteBuffer rawBuf = raw == null ? null
          : ByteBuffer.wrap(buf, raw.start, raw.end - raw.start).slice().order(ByteOrder.LITTLE_ENDIAN);
      switch (dataType) {
        case FLOAT: {
          float[] v = new float[n];
          if (rawBuf != null) {
            if (rawBuf.remaining() != 4L * n) {
              return null;
            }
            rawBuf.asFloatBuffer().get(v);
          } else {
            List<Long> bits = new ArrayList<>();
            for (Field f : floats) {
              collectFixed(buf, f, 4, bits);
            }
            if (bits.size() != n) {
              return null;
            }
            for (int i = 0; i < n; i++) {
              v[i] = Float.intBitsToFloat((int) (long) bits.get(i));
            }
          }
          return Tensor.ofFloats(v, shape);
        }
        case DOUBLE: {
          double[] v = new double[n];
          if (rawBuf != null) {
            if (rawBuf.remaining() != 8L * n) {
              return null;
            }
            rawBuf.asDoubleBuffer().get(v);
          } else {
            List<Long> bits = new ArrayList<>();
            for (Field f : doubles) {
              collectFixed(buf, f, 8, bits);
            }
            if (bits.size() != n) {
              return null;
            }
            for (int i = 0; i < n; i++) {
              v[i] = Double.longBitsToDouble(bits.get(i));
            }
          }
          return Tensor.ofDoubles(v, shape);
        }
        case INT64: {
          long[] v = new long[n];
          if (rawBuf != null) {
            if (rawBuf.remaining() != 8L * n) {
              return null;
            }
            rawBuf.asLongBuffer().get(v);
          } else {
            List<Long> vals = new ArrayList<>();
            for (Field f : int64s) {
              collectVarints(buf, f, vals);
            }
            if (vals.size() != n) {
              return null;
            }
            for (int i = 0; i < n; i++) {
              v[i] = vals.get(i);
            }
          }
          return Tensor.ofLongs(v, shape);
        }
        case INT32: case UINT8: case INT8: case BOOL: {
          int width = dataType == INT32 ? 4 : 1;
          long[] v = new long[n];
          if (rawBuf != null) {
            if (rawBuf.remaining() != (long) width * n) {
              return null;
            }
            for (int i = 0; i < n; i++) {
              v[i] = width == 4 ? rawBuf.getInt() : rawBuf.get();
            }
          } else {
            List<Long> vals = new ArrayList<>();
            for (Field f : int32s) {
              collectVarints(buf, f, vals);
            }
            if (vals.size() != n) {
              return null;
            }
            for (int i = 0; i < n; i++) {
              v[i] = vals.get(i);
            }
          }
          switch (dataType) {
            case INT32: {
              int[] a = new int[n];
              for (int i = 0; i < n; i++) {
                a[i] = (int) v[i];
              }
              return Tensor.ofInts(a, shape);
            }
            case BOOL: {
              boolean[] a = new boolean[n];
              for (int i = 0; i < n; i++) {
                a[i] = v[i] != 0;
              }
              return Tensor.ofBooleans(a, shape);
            }
            default: {
              byte[] a = new byte[n];
              for (int i = 0; i < n; i++) {
                a[i] = (byte) v[i];
              }
              return dataType == UINT8 ? Tensor.ofUint8(a, shape) : Tensor.ofInt8(a, shape);
            }
          }
        }
        case STRING:
          if (strings.size() != n) {
            return null;
          }
          return Tensor.ofStrings(strings.toArray(new String[0]), shape);
        default:
          return null;
      }
    }

    /** Repeated varint field, packed (wire 2) or not (wire 0). */
    private static void collectVarints(byte[] buf, Field f, List<Long> out) throws FormatException {
      if (f.wire == 0) {
        out.add(f.varint);
      } else if (f.wire == 2) {
        int[] pos = {f.start};
        while (pos[0] < f.end) {
          out.add(varint(buf, pos, f.end));
        }
      }
    }

    /** Repeated fixed32/fixed64 field, packed or not, as raw bits. */
    private static void collectFixed(byte[] buf, Field f, int width, List<Long> out) {
      ByteBuffer b = ByteBuffer.wrap(buf, f.start, f.end - f.start).slice().order(ByteOrder.LITTLE_ENDIAN);
      while (b.remaining() >= width) {
        out.add(width == 4 ? (long) b.getInt() : b.getLong());
      }
    }
  }
}
