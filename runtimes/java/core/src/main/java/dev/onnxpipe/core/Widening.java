package dev.onnxpipe.core;

/**
 * The lossless dtype conversions an input accepts: exactly spec/dtypes.json's {@code widens_from}
 * ({@link DType#widensFrom()}, numpy's "safe" casts). Nothing else is converted.
 */
public final class Widening {
  private Widening() {}

  /** {@code t} as {@code to}, or null if {@code to} does not widen from {@code t}'s dtype. */
  public static Tensor widen(Tensor t, DType to) {
    if (!to.widensFrom().contains(t.dtype())) {
      return null;
    }
    long[] shape = t.shape();
    int n = t.size();
    switch (t.dtype()) {
      case UINT8:
      case INT8: {
        boolean unsigned = t.dtype() == DType.UINT8;
        byte[] b = t.bytes();
        switch (to) {
          case INT32: {
            int[] v = new int[n];
            for (int i = 0; i < n; i++) {
              v[i] = unsigned ? Byte.toUnsignedInt(b[i]) : b[i];
            }
            return Tensor.ofInts(v, shape);
          }
          case INT64: {
            long[] v = new long[n];
            for (int i = 0; i < n; i++) {
              v[i] = unsigned ? Byte.toUnsignedInt(b[i]) : b[i];
            }
            return Tensor.ofLongs(v, shape);
          }
          case FLOAT32: {
            float[] v = new float[n];
            for (int i = 0; i < n; i++) {
              v[i] = unsigned ? Byte.toUnsignedInt(b[i]) : b[i];
            }
            return Tensor.ofFloats(v, shape);
          }
          case FLOAT64: {
            double[] v = new double[n];
            for (int i = 0; i < n; i++) {
              v[i] = unsigned ? Byte.toUnsignedInt(b[i]) : b[i];
            }
            return Tensor.ofDoubles(v, shape);
          }
          default:
            return null;
        }
      }
      case INT32: {
        int[] a = t.ints();
        if (to == DType.INT64) {
          long[] v = new long[n];
          for (int i = 0; i < n; i++) {
            v[i] = a[i];
          }
          return Tensor.ofLongs(v, shape);
        }
        if (to == DType.FLOAT64) {
          double[] v = new double[n];
          for (int i = 0; i < n; i++) {
            v[i] = a[i];
          }
          return Tensor.ofDoubles(v, shape);
        }
        return null;
      }
      case FLOAT32: {
        if (to != DType.FLOAT64) {
          return null;
        }
        float[] a = t.floats();
        double[] v = new double[n];
        for (int i = 0; i < n; i++) {
          v[i] = a[i];
        }
        return Tensor.ofDoubles(v, shape);
      }
      default:
        return null;
    }
  }
}
