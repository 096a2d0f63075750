package dev.onnxpipe;

import ai.onnxruntime.OnnxJavaType;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OnnxValue;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.TensorInfo;
import dev.onnxpipe.core.DType;
import dev.onnxpipe.core.ErrorCode;
import dev.onnxpipe.core.Tensor;
import java.nio.ByteBuffer;
import java.nio.DoubleBuffer;
import java.nio.FloatBuffer;
import java.nio.IntBuffer;
import java.nio.LongBuffer;
import java.util.ArrayList;
import java.util.List;

/** Conversions between {@link Tensor} and ONNX Runtime's {@link OnnxTensor}. */
final class OrtValues {
  private OrtValues() {}

  /** The tensor-JSON dtype of an ONNX Runtime tensor type, or null if onnxpipe has none. */
  static DType dtype(TensorInfo info) {
    return switch (info.type) {
      case FLOAT -> DType.FLOAT32;
      case DOUBLE -> DType.FLOAT64;
      case INT64 -> DType.INT64;
      case INT32 -> DType.INT32;
      case UINT8 -> DType.UINT8;
      case INT8 -> DType.INT8;
      case BOOL -> DType.BOOL;
      case STRING -> DType.STRING;
      default -> null;
    };
  }

  static OnnxTensor toOrt(OrtEnvironment env, Tensor t) throws OrtException {
    long[] shape = t.shape();
    return switch (t.dtype()) {
      case FLOAT32 -> OnnxTensor.createTensor(env, FloatBuffer.wrap(t.floats()), shape);
      case FLOAT64 -> OnnxTensor.createTensor(env, DoubleBuffer.wrap(t.doubles()), shape);
      case INT64 -> OnnxTensor.createTensor(env, LongBuffer.wrap(t.longs()), shape);
      case INT32 -> OnnxTensor.createTensor(env, IntBuffer.wrap(t.ints()), shape);
      case UINT8 -> OnnxTensor.createTensor(env, ByteBuffer.wrap(t.bytes()), shape, OnnxJavaType.UINT8);
      case INT8 -> OnnxTensor.createTensor(env, ByteBuffer.wrap(t.bytes()), shape, OnnxJavaType.INT8);
      case BOOL -> {
        boolean[] b = t.booleans();
        byte[] bytes = new byte[b.length];
        for (int i = 0; i < b.length; i++) {
          bytes[i] = (byte) (b[i] ? 1 : 0);
        }
        yield OnnxTensor.createTensor(env, ByteBuffer.wrap(bytes), shape, OnnxJavaType.BOOL);
      }
      case STRING -> OnnxTensor.createTensor(env, t.strings(), shape);
    };
  }

  /** An output as a Tensor; RUNTIME error if it is not a tensor of the spec's dtype. */
  static Tensor fromOrt(TensorSpec spec, OnnxValue value) throws OrtException {
    if (!(value instanceof OnnxTensor t)) {
      throw runtime("output '" + spec.name() + "' is " + value.getType() + ", expected a tensor " + spec.describe());
    }
    TensorInfo info = t.getInfo();
    DType got = dtype(info);
    if (got != spec.dtype()) {
      throw runtime("output '" + spec.name() + "' is " + (got != null ? got : info.type) + ", but the signature says "
          + spec.describe());
    }
    long[] shape = info.getShape();
    long count = info.getNumElements();
    if (count > Integer.MAX_VALUE - 8) {
      throw runtime("output '" + spec.name() + "' has " + count + " elements, too many for one Java array");
    }
    int n = (int) count;
    switch (got) {
      case FLOAT32: {
        float[] a = new float[n];
        t.getFloatBuffer().get(0, a);
        return Tensor.ofFloats(a, shape);
      }
      case FLOAT64: {
        double[] a = new double[n];
        t.getDoubleBuffer().get(0, a);
        return Tensor.ofDoubles(a, shape);
      }
      case INT64: {
        long[] a = new long[n];
        t.getLongBuffer().get(0, a);
        return Tensor.ofLongs(a, shape);
      }
      case INT32: {
        int[] a = new int[n];
        t.getIntBuffer().get(0, a);
        return Tensor.ofInts(a, shape);
      }
      case UINT8:
      case INT8: {
        byte[] a = new byte[n];
        t.getByteBuffer().get(0, a);
        return got == DType.UINT8 ? Tensor.ofUint8(a, shape) : Tensor.ofInt8(a, shape);
      }
      case BOOL: {
        byte[] raw = new byte[n];
        t.getByteBuffer().get(0, raw);
        boolean[] a = new boolean[n];
        for (int i = 0; i < n; i++) {
          a[i] = raw[i] != 0;
        }
        return Tensor.ofBooleans(a, shape);
      }
      case STRING: {
        List<String> flat = new ArrayList<>(n);
        if (n > 0) {
          flatten(t.getValue(), flat);
        }
        return Tensor.ofStrings(flat.toArray(new String[0]), shape);
      }
      default:
        throw new AssertionError(got);
    }
  }

  private static void flatten(Object v, List<String> out) {
    if (v instanceof String s) {
      out.add(s);
    } else if (v instanceof Object[] arr) {
      for (Object o : arr) {
        flatten(o, out);
      }
    }
  }

  private static PipelineException runtime(String message) {
    return new PipelineException(ErrorCode.RUNTIME, message);
  }
}
