package dev.onnxpipe.sidecar;

import java.util.Arrays;
import java.util.Objects;

/**
 * A dense tensor: a datatype, a shape and the elements flattened in row-major order; what {@link
 * SidecarClient#infer} sends and returns.
 *
 * <p>The factories wrap the given array without copying it: do not change it while a call uses the
 * tensor. {@code uint8} and {@code int8} both store Java {@code byte}s; the datatype tells them apart
 * ({@link #bytes()} of a {@code uint8} tensor holds 255 as {@code (byte) -1}; {@link #unsignedBytes()}
 * widens them).
 *
 * <pre>{@code
 * Tensor image = Tensor.ofUint8(pixels, 1, 28, 28, 3);
 * Tensor threshold = Tensor.scalar(0.4f);
 * Tensor text = Tensor.ofStrings("hello", "world");
 * }</pre>
 */
public final class Tensor {
  private final DataType dataType;
  private final long[] shape;
  private final Object data;
  private final int size;

  private Tensor(DataType dataType, Object data, int length, long[] shape) {
    this.dataType = dataType;
    this.data = Objects.requireNonNull(data, "data");
    this.shape = Objects.requireNonNull(shape, "shape").clone();
    long count = elementCount(this.shape, "tensor");
    if (count != length) {
      throw SidecarException.invalidInput(
          "tensor: shape " + Arrays.toString(this.shape) + " needs " + count + " element(s), the "
              + dataType.jsonName() + " data has " + length);
    }
    this.size = length;
  }

  /**
   * The number of elements of a shape; errors (naming {@code what}) on a negative dimension or a count
   * beyond a Java array.
   */
  static long elementCount(long[] shape, String what) {
    boolean empty = false;
    for (long d : shape) {
      if (d < 0) {
        throw SidecarException.invalidInput(
            what + ": shape " + Arrays.toString(shape) + " has a negative dimension; expected sizes >= 0");
      }
      empty |= d == 0;
    }
    if (empty) {
      return 0;
    }
    long count = 1;
    for (long d : shape) {
      if (count > Integer.MAX_VALUE / d) {
        throw SidecarException.invalidInput(
            what + ": shape " + Arrays.toString(shape) + " has more than " + Integer.MAX_VALUE
                + " elements, more than a Java array holds");
      }
      count *= d;
    }
    return count;
  }

  /** {@code float32} ({@code FP32}). */
  public static Tensor ofFloats(float[] data, long... shape) {
    return new Tensor(DataType.FP32, data, data.length, shape);
  }

  /** {@code float64} ({@code FP64}). */
  public static Tensor ofDoubles(double[] data, long... shape) {
    return new Tensor(DataType.FP64, data, data.length, shape);
  }

  /** {@code int64} ({@code INT64}). */
  public static Tensor ofLongs(long[] data, long... shape) {
    return new Tensor(DataType.INT64, data, data.length, shape);
  }

  /** {@code int32} ({@code INT32}). */
  public static Tensor ofInts(int[] data, long... shape) {
    return new Tensor(DataType.INT32, data, data.length, shape);
  }

  /** {@code uint8} ({@code UINT8}): each byte is read as 0..255 (image pixels). */
  public static Tensor ofUint8(byte[] data, long... shape) {
    return new Tensor(DataType.UINT8, data, data.length, shape);
  }

  /** {@code int8} ({@code INT8}): each byte is read as -128..127. */
  public static Tensor ofInt8(byte[] data, long... shape) {
    return new Tensor(DataType.INT8, data, data.length, shape);
  }

  /** {@code bool} ({@code BOOL}). */
  public static Tensor ofBooleans(boolean[] data, long... shape) {
    return new Tensor(DataType.BOOL, data, data.length, shape);
  }

  /** {@code string} ({@code BYTES}), sent as UTF-8; no element may be null. */
  public static Tensor ofStrings(String[] data, long... shape) {
    for (int i = 0; i < data.length; i++) {
      if (data[i] == null) {
        throw SidecarException.invalidInput("tensor: string element " + i + " is null; expected a string");
      }
    }
    return new Tensor(DataType.BYTES, data, data.length, shape);
  }

  /** A 1-D {@code string} tensor of the given elements. */
  public static Tensor ofStrings(String... data) {
    return ofStrings(data, data.length);
  }

  /** A {@code float32} scalar (shape {@code []}), e.g. a score threshold. */
  public static Tensor scalar(float value) {
    return ofFloats(new float[] {value});
  }

  /** A {@code float64} scalar. */
  public static Tensor scalar(double value) {
    return ofDoubles(new double[] {value});
  }

  /** An {@code int64} scalar. */
  public static Tensor scalar(long value) {
    return ofLongs(new long[] {value});
  }

  /** An {@code int32} scalar. */
  public static Tensor scalar(int value) {
    return ofInts(new int[] {value});
  }

  /** A {@code bool} scalar. */
  public static Tensor scalar(boolean value) {
    return ofBooleans(new boolean[] {value});
  }

  /** A {@code string} scalar. */
  public static Tensor scalar(String value) {
    return ofStrings(new String[] {value});
  }

  public DataType dataType() {
    return dataType;
  }

  /** A copy of the shape; {@code []} for a scalar. */
  public long[] shape() {
    return shape.clone();
  }

  public int rank() {
    return shape.length;
  }

  /** The number of elements. */
  public int size() {
    return size;
  }

  /** The elements of a {@code float32} tensor (the backing array, not a copy). */
  public float[] floats() {
    return (float[]) expect(DataType.FP32);
  }

  public double[] doubles() {
    return (double[]) expect(DataType.FP64);
  }

  public long[] longs() {
    return (long[]) expect(DataType.INT64);
  }

  public int[] ints() {
    return (int[]) expect(DataType.INT32);
  }

  /** The elements of a {@code uint8} or {@code int8} tensor as Java bytes. */
  public byte[] bytes() {
    if (dataType != DataType.UINT8 && dataType != DataType.INT8) {
      throw new IllegalStateException("tensor is " + dataType.jsonName() + ", not uint8 or int8");
    }
    return (byte[]) data;
  }

  /** The elements of a {@code uint8} tensor as 0..255. */
  public int[] unsignedBytes() {
    byte[] b = (byte[]) expect(DataType.UINT8);
    int[] out = new int[b.length];
    for (int i = 0; i < b.length; i++) {
      out[i] = Byte.toUnsignedInt(b[i]);
    }
    return out;
  }

  public boolean[] booleans() {
    return (boolean[]) expect(DataType.BOOL);
  }

  public String[] strings() {
    return (String[]) expect(DataType.BYTES);
  }

  /** The backing array: float[], double[], long[], int[], byte[], boolean[] or String[]. */
  public Object data() {
    return data;
  }

  private Object expect(DataType wanted) {
    if (dataType != wanted) {
      throw new IllegalStateException("tensor is " + dataType.jsonName() + ", not " + wanted.jsonName());
    }
    return data;
  }

  @Override
  public String toString() {
    return "Tensor(" + dataType.jsonName() + " " + Arrays.toString(shape) + ")";
  }
}
