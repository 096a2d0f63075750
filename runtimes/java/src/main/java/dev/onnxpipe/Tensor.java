package dev.onnxpipe;

import java.util.Arrays;
import java.util.Objects;

/**
 * A dense tensor: a dtype, a shape and the elements flattened in row-major order.
 *
 * <p>The factories wrap the given array without copying it: do not change it while a run uses the tensor.
 * {@code uint8} and {@code int8} both store Java {@code byte}s; the dtype tells them apart.
 *
 * <pre>{@code
 * Tensor features = Tensor.ofFloats(new float[] {0.1f, 0.2f, 0.3f}, 1, 3);
 * Tensor threshold = Tensor.scalar(0.4f);
 * Tensor text = Tensor.ofStrings(new String[] {"hello", "world"}, 2);
 * }</pre>
 */
public final class Tensor {
  private final DType dtype;
  private final long[] shape;
  private final Object data;
  private final int size;

  private Tensor(DType dtype, long[] shape, Object data, int length) {
    this.dtype = dtype;
    this.shape = shape.clone();
    this.data = data;
    long count = 1;
    boolean overflow = false;
    for (long d : this.shape) {
      if (d < 0) {
        throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " has a negative dimension");
      }
      if (d > 0 && !overflow) {
        overflow = count > Long.MAX_VALUE / d;
        count = overflow ? count : count * d;
      }
    }
    if (Arrays.stream(this.shape).anyMatch(d -> d == 0)) {
      count = 0;
      overflow = false;
    }
    if (overflow || count != length) {
      throw new IllegalArgumentException(
          "shape " + Arrays.toString(shape) + " requires " + (overflow ? "more than 2^63" : count)
              + " elements but the " + dtype
              + " data has " + length);
    }
    this.size = length;
  }

  public static Tensor ofFloats(float[] data, long... shape) {
    return new Tensor(DType.FLOAT32, shape, Objects.requireNonNull(data, "data"), data.length);
  }

  public static Tensor ofDoubles(double[] data, long... shape) {
    return new Tensor(DType.FLOAT64, shape, Objects.requireNonNull(data, "data"), data.length);
  }

  public static Tensor ofLongs(long[] data, long... shape) {
    return new Tensor(DType.INT64, shape, Objects.requireNonNull(data, "data"), data.length);
  }

  public static Tensor ofInts(int[] data, long... shape) {
    return new Tensor(DType.INT32, shape, Objects.requireNonNull(data, "data"), data.length);
  }

  /** uint8 elements (0..255) stored as Java bytes: {@code (byte) 255} is 255. */
  public static Tensor ofUint8(byte[] data, long... shape) {
    return new Tensor(DType.UINT8, shape, Objects.requireNonNull(data, "data"), data.length);
  }

  /** int8 elements (-128..127). */
  public static Tensor ofInt8(byte[] data, long... shape) {
    return new Tensor(DType.INT8, shape, Objects.requireNonNull(data, "data"), data.length);
  }

  public static Tensor ofBooleans(boolean[] data, long... shape) {
    return new Tensor(DType.BOOL, shape, Objects.requireNonNull(data, "data"), data.length);
  }

  /** UTF-8 strings; no element may be null. */
  public static Tensor ofStrings(String[] data, long... shape) {
    Objects.requireNonNull(data, "data");
    for (int i = 0; i < data.length; i++) {
      if (data[i] == null) {
        throw new IllegalArgumentException("string element " + i + " is null");
      }
    }
    return new Tensor(DType.STRING, shape, data, data.length);
  }

  /** A 1-D string tensor of {@code data.length} elements. */
  public static Tensor ofStrings(String... data) {
    return ofStrings(data, data.length);
  }

  /** A float32 scalar (shape {@code []}), e.g. a threshold. */
  public static Tensor scalar(float value) {
    return ofFloats(new float[] {value});
  }

  /** A float64 scalar. */
  public static Tensor scalar(double value) {
    return ofDoubles(new double[] {value});
  }

  /** An int64 scalar. */
  public static Tensor scalar(long value) {
    return ofLongs(new long[] {value});
  }

  public DType dtype() {
    return dtype;
  }

  /** A copy of the shape; {@code []} for a scalar. */
  public long[] shape() {
    return shape.clone();
  }

  public int rank() {
    return shape.length;
  }

  /** Number of elements (the product of the shape). */
  public int size() {
    return size;
  }

  public float[] floats() {
    return (float[]) as(DType.FLOAT32);
  }

  public double[] doubles() {
    return (double[]) as(DType.FLOAT64);
  }

  public long[] longs() {
    return (long[]) as(DType.INT64);
  }

  public int[] ints() {
    return (int[]) as(DType.INT32);
  }

  /** The elements of a uint8 or int8 tensor. */
  public byte[] bytes() {
    if (dtype != DType.UINT8 && dtype != DType.INT8) {
      throw new IllegalStateException("tensor is " + dtype + ", not uint8 or int8");
    }
    return (byte[]) data;
  }

  public boolean[] booleans() {
    return (boolean[]) as(DType.BOOL);
  }

  public String[] strings() {
    return (String[]) as(DType.STRING);
  }

  /** The backing array (float[], double[], long[], int[], byte[], boolean[] or String[]). */
  public Object data() {
    return data;
  }

  private Object as(DType want) {
    if (dtype != want) {
      throw new IllegalStateException("tensor is " + dtype + " " + Arrays.toString(shape) + ", not " + want);
    }
    return data;
  }

  @Override
  public String toString() {
    return "Tensor(" + dtype + " " + Arrays.toString(shape) + ")";
  }
}
