package dev.onnxpipe.core;

import java.util.Arrays;
import java.util.Objects;

/**
 * A dense tensor: a dtype, a shape and the elements flattened in row-major order. What the runtime runs and
 * returns and what the sidecar client sends and receives.
 *
 * <p>The factories wrap the given array without copying it: do not change it while a call uses the tensor.
 * {@code uint8} and {@code int8} both store Java {@code byte}s; the dtype tells them apart ({@link #bytes()} of a
 * {@code uint8} tensor holds 255 as {@code (byte) -1}; {@link #unsignedBytes()} widens them). A shape that does
 * not fit the data, or has a negative dimension, is an {@link ErrorCode#INVALID_INPUT} error.
 *
 * <pre>{@code
 * Tensor features = Tensor.ofFloats(new float[] {0.1f, 0.2f, 0.3f}, 1, 3);
 * Tensor threshold = Tensor.scalar(0.4f);
 * Tensor text = Tensor.ofStrings("hello", "world");
 * }</pre>
 */
public final class Tensor {
  private final DType dtype;
  private final long[] shape;
  private final Object data;
  private final int size;

  private Tensor(DType dtype, long[] shape, Object data, int length) {
    this.dtype = dtype;
    this.data = Objects.requireNonNull(data, "data");
    this.shape = Objects.requireNonNull(shape, "shape").clone();
    long count = elementCount(this.shape, "tensor");
    if (count != length) {
      throw OnnxpipeException.invalidInput("tensor: shape " + Shapes.str(this.shape) + " needs " + count
          + " element(s), the " + dtype + " data has " + length);
    }
    this.size = length;
  }

  /**
   * The number of elements of a shape (0 if any dimension is 0); an INVALID_INPUT error naming {@code what} on a
   * negative dimension or more elements than a Java array holds.
   */
  public static long elementCount(long[] shape, String what) {
    boolean empty = false;
    for (long d : shape) {
      if (d < 0) {
        throw OnnxpipeException.invalidInput(
            what + ": shape " + Shapes.str(shape) + " has a negative dimension; expected sizes >= 0");
      }
      empty |= d == 0;
    }
    if (empty) {
      return 0;
    }
    long count = 1;
    for (long d : shape) {
      if (count > (Integer.MAX_VALUE - 8) / d) {
        throw OnnxpipeException.invalidInput(what + ": shape " + Shapes.str(shape) + " has more than "
            + (Integer.MAX_VALUE - 8) + " elements, more than a Java array holds");
      }
      count *= d;
    }
    return count;
  }

  public static Tensor ofFloats(float[] data, long... shape) {
    return new Tensor(DType.FLOAT32, shape, data, data.length);
  }

  public static Tensor ofDoubles(double[] data, long... shape) {
    return new Tensor(DType.FLOAT64, shape, data, data.length);
  }

  public static Tensor ofLongs(long[] data, long... shape) {
    return new Tensor(DType.INT64, shape, data, data.length);
  }

  public static Tensor ofInts(int[] data, long... shape) {
    return new Tensor(DType.INT32, shape, data, data.length);
  }

  /** uint8 elements (0..255) stored as Java bytes: {@code (byte) 255} is 255. */
  public static Tensor ofUint8(byte[] data, long... shape) {
    return new Tensor(DType.UINT8, shape, data, data.length);
  }

  /** int8 elements (-128..127). */
  public static Tensor ofInt8(byte[] data, long... shape) {
    return new Tensor(DType.INT8, shape, data, data.length);
  }

  public static Tensor ofBooleans(boolean[] data, long... shape) {
    return new Tensor(DType.BOOL, shape, data, data.length);
  }

  /** UTF-8 strings; no element may be null. */
  public static Tensor ofStrings(String[] data, long... shape) {
    for (int i = 0; i < data.length; i++) {
      if (data[i] == null) {
        throw OnnxpipeException.invalidInput("tensor: string element " + i + " is null; expected a string");
      }
    }
    return new Tensor(DType.STRING, shape, data, data.length);
  }

  /** A 1-D string tensor of the given elements. */
  public static Tensor ofStrings(String... data) {
    return ofStrings(data, data.length);
  }

  /**
   * A tensor of {@code dtype} over {@code data}, the array type of that dtype (float[] for float32, byte[] for
   * uint8 and int8, String[] for string, ...); for code that chooses the dtype at run time.
   */
  public static Tensor of(DType dtype, Object data, long... shape) {
    return switch (dtype) {
      case FLOAT32 -> ofFloats((float[]) data, shape);
      case FLOAT64 -> ofDoubles((double[]) data, shape);
      case INT64 -> ofLongs((long[]) data, shape);
      case INT32 -> ofInts((int[]) data, shape);
      case UINT8 -> ofUint8((byte[]) data, shape);
      case INT8 -> ofInt8((byte[]) data, shape);
      case BOOL -> ofBooleans((boolean[]) data, shape);
      case STRING -> ofStrings((String[]) data, shape);
    };
  }

  /** A zero-filled (empty-string) array of {@code n} elements of {@code dtype}'s Java type. */
  public static Object newArray(DType dtype, int n) {
    return switch (dtype) {
      case FLOAT32 -> new float[n];
      case FLOAT64 -> new double[n];
      case INT64 -> new long[n];
      case INT32 -> new int[n];
      case UINT8, INT8 -> new byte[n];
      case BOOL -> new boolean[n];
      case STRING -> {
        String[] a = new String[n];
        java.util.Arrays.fill(a, "");
        yield a;
      }
    };
  }

  /** A tensor with no elements: {@code shape} must hold a 0. */
  public static Tensor empty(DType dtype, long... shape) {
    return of(dtype, newArray(dtype, 0), shape);
  }

  /** A float32 scalar (shape {@code []}), e.g. a threshold. */
  public static Tensor scalar(float value) {
    return ofFloats(new float[] {value});
  }

  public static Tensor scalar(double value) {
    return ofDoubles(new double[] {value});
  }

  public static Tensor scalar(long value) {
    return ofLongs(new long[] {value});
  }

  public static Tensor scalar(int value) {
    return ofInts(new int[] {value});
  }

  public static Tensor scalar(boolean value) {
    return ofBooleans(new boolean[] {value});
  }

  public static Tensor scalar(String value) {
    return ofStrings(new String[] {value});
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

  /** The elements of a float32 tensor (the backing array, not a copy). */
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

  /** The elements of a uint8 or int8 tensor as Java bytes. */
  public byte[] bytes() {
    if (dtype != DType.UINT8 && dtype != DType.INT8) {
      throw new IllegalStateException("tensor is " + dtype + ", not uint8 or int8");
    }
    return (byte[]) data;
  }

  /** The elements of a uint8 tensor as 0..255 (a copy). */
  public int[] unsignedBytes() {
    byte[] b = (byte[]) as(DType.UINT8);
    int[] out = new int[b.length];
    for (int i = 0; i < b.length; i++) {
      out[i] = Byte.toUnsignedInt(b[i]);
    }
    return out;
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
