package dev.onnxpipe.sidecar;

import com.google.protobuf.ByteString;
import dev.onnxpipe.core.DType;
import dev.onnxpipe.core.ErrorCode;
import dev.onnxpipe.core.Tensor;
import dev.onnxpipe.serve.inference.InferTensorContents;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;

/**
 * Tensors to and from the protocol: raw bytes (little-endian, row-major; a BYTES element is a 4-byte
 * little-endian length followed by its UTF-8 bytes) and typed {@code contents}. Every size is checked
 * against the bytes actually received before anything is allocated from a claimed shape.
 */
final class Codec {
  private Codec() {}

  /**
   * An input value as a tensor: a {@link Tensor}; a float[], double[], long[], int[], boolean[] or String[]
   * (1-D); or a Float, Double, Long, Integer, Boolean or String (a scalar). A bare byte[] is refused: uint8
   * and int8 differ, so it must say which ({@link Tensor#ofUint8} / {@link Tensor#ofInt8}).
   */
  static Tensor toTensor(String name, Object value) {
    if (value instanceof Tensor) {
      return (Tensor) value;
    }
    try {
      if (value instanceof float[]) {
        float[] a = (float[]) value;
        return Tensor.ofFloats(a, a.length);
      } else if (value instanceof double[]) {
        double[] a = (double[]) value;
        return Tensor.ofDoubles(a, a.length);
      } else if (value instanceof long[]) {
        long[] a = (long[]) value;
        return Tensor.ofLongs(a, a.length);
      } else if (value instanceof int[]) {
        int[] a = (int[]) value;
        return Tensor.ofInts(a, a.length);
      } else if (value instanceof boolean[]) {
        boolean[] a = (boolean[]) value;
        return Tensor.ofBooleans(a, a.length);
      } else if (value instanceof String[]) {
        String[] a = (String[]) value;
        return Tensor.ofStrings(a, a.length);
      } else if (value instanceof Float) {
        return Tensor.scalar((float) (Float) value);
      } else if (value instanceof Double) {
        return Tensor.scalar((double) (Double) value);
      } else if (value instanceof Long) {
        return Tensor.scalar((long) (Long) value);
      } else if (value instanceof Integer) {
        return Tensor.scalar((int) (Integer) value);
      } else if (value instanceof Boolean) {
        return Tensor.scalar((boolean) (Boolean) value);
      } else if (value instanceof String) {
        return Tensor.scalar((String) value);
      }
    } catch (SidecarException e) {
      throw SidecarException.invalidInput("input '" + name + "': " + e.getMessage());
    }
    if (value instanceof byte[]) {
      throw SidecarException.invalidInput("input '" + name + "': a bare byte[] could be uint8 or int8; "
          + "expected Tensor.ofUint8(data, shape...) or Tensor.ofInt8(data, shape...)");
    }
    String given = value == null ? "null" : value.getClass().getSimpleName();
    throw SidecarException.invalidInput("input '" + name + "': " + given + " given, expected a Tensor, "
        + "float[], double[], long[], int[], boolean[], String[] or a Float, Double, Long, Integer, Boolean or "
        + "String scalar");
  }

  /** The raw form of a tensor. */
  static ByteString encodeRaw(Tensor t) {
    Object data = t.data();
    switch (t.dtype()) {
      case FLOAT32: {
        ByteBuffer b = buffer(t.size() * 4L);
        b.asFloatBuffer().put((float[]) data);
        return ByteString.copyFrom(b.array());
      }
      case FLOAT64: {
        ByteBuffer b = buffer(t.size() * 8L);
        b.asDoubleBuffer().put((double[]) data);
        return ByteString.copyFrom(b.array());
      }
      case INT64: {
        ByteBuffer b = buffer(t.size() * 8L);
        b.asLongBuffer().put((long[]) data);
        return ByteString.copyFrom(b.array());
      }
      case INT32: {
        ByteBuffer b = buffer(t.size() * 4L);
        b.asIntBuffer().put((int[]) data);
        return ByteString.copyFrom(b.array());
      }
      case UINT8:
      case INT8:
        return ByteString.copyFrom((byte[]) data);
      case BOOL: {
        boolean[] a = (boolean[]) data;
        byte[] out = new byte[a.length];
        for (int i = 0; i < a.length; i++) {
          out[i] = (byte) (a[i] ? 1 : 0);
        }
        return ByteString.copyFrom(out);
      }
      case STRING: {
        ByteString.Output out = ByteString.newOutput();
        byte[] len = new byte[4];
        for (String s : (String[]) data) {
          byte[] utf8 = s.getBytes(StandardCharsets.UTF_8);
          ByteBuffer.wrap(len).order(ByteOrder.LITTLE_ENDIAN).putInt(utf8.length);
          out.write(len, 0, 4);
          out.write(utf8, 0, utf8.length);
        }
        return out.toByteString();
      }
      default:
        throw new IllegalStateException("no raw encoding for " + t.dtype());
    }
  }

  private static ByteBuffer buffer(long bytes) {
    if (bytes > Integer.MAX_VALUE) {
      throw SidecarException.invalidInput("tensor of " + bytes + " bytes is larger than one message can carry");
    }
    return ByteBuffer.allocate((int) bytes).order(ByteOrder.LITTLE_ENDIAN);
  }

  /** The datatype of a response output, or a RUNTIME error naming it. */
  static DType outputType(String name, String datatype) {
    DType t = DType.fromKserveName(datatype);
    if (t == null) {
      throw decodeError("output '" + name + "': datatype '" + datatype + "' is not one this client reads; "
          + "expected one of " + DType.kserveNames());
    }
    return t;
  }

  /** A response output from its raw bytes. */
  static Tensor decodeRaw(String name, DType type, long[] shape, ByteString raw) {
    int count = (int) count(name, shape);
    ByteBuffer b = raw.asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
    if (type != DType.STRING) {
      long need = (long) count * type.byteWidth();
      if (raw.size() != need) {
        throw decodeError("output '" + name + "': raw data has " + raw.size() + " bytes, shape "
            + Arrays.toString(shape) + " of " + type + " needs " + need);
      }
    }
    switch (type) {
      case FLOAT32: {
        float[] out = new float[count];
        b.asFloatBuffer().get(out);
        return Tensor.ofFloats(out, shape);
      }
      case FLOAT64: {
        double[] out = new double[count];
        b.asDoubleBuffer().get(out);
        return Tensor.ofDoubles(out, shape);
      }
      case INT64: {
        long[] out = new long[count];
        b.asLongBuffer().get(out);
        return Tensor.ofLongs(out, shape);
      }
      case INT32: {
        int[] out = new int[count];
        b.asIntBuffer().get(out);
        return Tensor.ofInts(out, shape);
      }
      case UINT8:
        return Tensor.ofUint8(raw.toByteArray(), shape);
      case INT8:
        return Tensor.ofInt8(raw.toByteArray(), shape);
      case BOOL: {
        boolean[] out = new boolean[count];
        for (int i = 0; i < count; i++) {
          out[i] = b.get(i) != 0;
        }
        return Tensor.ofBooleans(out, shape);
      }
      case STRING:
        return Tensor.ofStrings(unpackStrings(name, b, count), shape);
      default:
        throw new IllegalStateException("no raw decoding for " + type);
    }
  }

  private static String[] unpackStrings(String name, ByteBuffer b, int count) {
    // each element needs at least its 4-byte length: a claimed shape larger than the data fails here,
    // before the array is allocated
    if ((long) count * 4 > b.remaining()) {
      throw decodeError("output '" + name + "': raw BYTES data has " + b.remaining() + " bytes, too few for "
          + count + " elements (4-byte length each)");
    }
    String[] out = new String[count];
    for (int i = 0; i < count; i++) {
      if (b.remaining() < 4) {
        throw decodeError("output '" + name + "': raw BYTES data ends at element " + i + " of " + count);
      }
      long len = Integer.toUnsignedLong(b.getInt());
      if (len > b.remaining()) {
        throw decodeError("output '" + name + "': element " + i + " claims " + len + " bytes, "
            + b.remaining() + " remain");
      }
      ByteBuffer slice = b.slice();
      slice.limit((int) len);
      b.position(b.position() + (int) len);
      out[i] = utf8(name, i, slice);
    }
    if (b.remaining() != 0) {
      throw decodeError("output '" + name + "': raw BYTES data has " + b.remaining()
          + " bytes left after its " + count + " elements");
    }
    return out;
  }

  private static String utf8(String name, int index, ByteBuffer bytes) {
    try {
      return StandardCharsets.UTF_8.newDecoder()
          .onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT)
          .decode(bytes)
          .toString();
    } catch (CharacterCodingException e) {
      throw decodeError("output '" + name + "': element " + index + " is not valid UTF-8");
    }
  }

  /** A response output from typed {@code contents} (servers that answer typed despite raw inputs). */
  static Tensor decodeTyped(String name, DType type, long[] shape, InferTensorContents c) {
    int count = (int) count(name, shape);
    switch (type) {
      case FLOAT32: {
        checkCount(name, "fp32_contents", c.getFp32ContentsCount(), count);
        float[] out = new float[count];
        for (int i = 0; i < count; i++) {
          out[i] = c.getFp32Contents(i);
        }
        return Tensor.ofFloats(out, shape);
      }
      case FLOAT64: {
        checkCount(name, "fp64_contents", c.getFp64ContentsCount(), count);
        double[] out = new double[count];
        for (int i = 0; i < count; i++) {
          out[i] = c.getFp64Contents(i);
        }
        return Tensor.ofDoubles(out, shape);
      }
      case INT64: {
        checkCount(name, "int64_contents", c.getInt64ContentsCount(), count);
        long[] out = new long[count];
        for (int i = 0; i < count; i++) {
          out[i] = c.getInt64Contents(i);
        }
        return Tensor.ofLongs(out, shape);
      }
      case INT32: {
        checkCount(name, "int_contents", c.getIntContentsCount(), count);
        int[] out = new int[count];
        for (int i = 0; i < count; i++) {
          out[i] = c.getIntContents(i);
        }
        return Tensor.ofInts(out, shape);
      }
      case UINT8:
      case INT8: {
        boolean unsigned = type == DType.UINT8;
        List<Integer> values = unsigned ? c.getUintContentsList() : c.getIntContentsList();
        checkCount(name, unsigned ? "uint_contents" : "int_contents", values.size(), count);
        byte[] out = new byte[count];
        for (int i = 0; i < count; i++) {
          int v = values.get(i);
          if (unsigned ? (v < 0 || v > 255) : (v < -128 || v > 127)) {
            throw decodeError("output '" + name + "': element " + i + " is " + (unsigned ? Integer.toUnsignedString(v) : v)
                + ", outside " + type);
          }
          out[i] = (byte) v;
        }
        return unsigned ? Tensor.ofUint8(out, shape) : Tensor.ofInt8(out, shape);
      }
      case BOOL: {
        checkCount(name, "bool_contents", c.getBoolContentsCount(), count);
        boolean[] out = new boolean[count];
        for (int i = 0; i < count; i++) {
          out[i] = c.getBoolContents(i);
        }
        return Tensor.ofBooleans(out, shape);
      }
      case STRING: {
        checkCount(name, "bytes_contents", c.getBytesContentsCount(), count);
        String[] out = new String[count];
        for (int i = 0; i < count; i++) {
          out[i] = utf8(name, i, c.getBytesContents(i).asReadOnlyByteBuffer());
        }
        return Tensor.ofStrings(out, shape);
      }
      default:
        throw new IllegalStateException("no typed decoding for " + type);
    }
  }

  private static void checkCount(String name, String field, int given, int expected) {
    if (given != expected) {
      throw decodeError("output '" + name + "': " + field + " has " + given + " elements, the shape needs "
          + expected);
    }
  }

  private static long count(String name, long[] shape) {
    try {
      return Tensor.elementCount(shape, "output '" + name + "'");
    } catch (SidecarException e) {
      throw decodeError(e.getMessage());
    }
  }

  private static SidecarException decodeError(String message) {
    return new SidecarException(ErrorCode.RUNTIME, "sidecar response: " + message);
  }
}
