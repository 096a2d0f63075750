package dev.onnxpipe;

/**
 * The lossless dtype conversions {@link Pipeline#run} accepts (numpy's "safe" casts among tensor-JSON dtypes,
 * as the Python runtime does): uint8/int8 -> int32, int64, float32, float64; int32 -> int64, float64;
 * float32 -> float64. Nothing else is converted.
 */
final class Widening {
  private Widening() {}

  /** {@code t} as {@code to}, or null if that conversion could lose information. */
  static Tensor widen(Tensor t, DType to) {
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
