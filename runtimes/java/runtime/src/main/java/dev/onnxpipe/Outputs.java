package dev.onnxpipe;

import dev.onnxpipe.core.DType;
import dev.onnxpipe.core.Shapes;
import dev.onnxpipe.core.Tensor;
import dev.onnxpipe.core.TensorJson;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The results of one {@link Pipeline#run}: every output of the signature, in manifest order.
 *
 * <pre>{@code
 * float[] scores = out.floats("score");      // row-major, shape out.shape("score")
 * String[] labels = out.strings("label");
 * }</pre>
 *
 * <p>A getter for an unknown name, or of the wrong type for the output's dtype, throws {@link
 * IllegalArgumentException} naming the outputs or the dtype.
 */
public final class Outputs {
  private final Map<String, Tensor> tensors;

  Outputs(Map<String, Tensor> tensors) {
    this.tensors = Collections.unmodifiableMap(new LinkedHashMap<>(tensors));
  }

  /** Output name -> tensor, in manifest order (unmodifiable). */
  public Map<String, Tensor> asMap() {
    return tensors;
  }

  public List<String> names() {
    return List.copyOf(tensors.keySet());
  }

  public Tensor tensor(String name) {
    Tensor t = tensors.get(name);
    if (t == null) {
      throw new IllegalArgumentException("unknown output '" + name + "'; expected one of " + tensors.keySet());
    }
    return t;
  }

  public long[] shape(String name) {
    return tensor(name).shape();
  }

  public DType dtype(String name) {
    return tensor(name).dtype();
  }

  public float[] floats(String name) {
    return (float[]) typed(name, DType.FLOAT32);
  }

  public double[] doubles(String name) {
    return (double[]) typed(name, DType.FLOAT64);
  }

  public long[] longs(String name) {
    return (long[]) typed(name, DType.INT64);
  }

  public int[] ints(String name) {
    return (int[]) typed(name, DType.INT32);
  }

  /** A uint8 or int8 output. */
  public byte[] bytes(String name) {
    Tensor t = tensor(name);
    if (t.dtype() != DType.UINT8 && t.dtype() != DType.INT8) {
      throw new IllegalArgumentException("output '" + name + "' is " + t.dtype() + ", not uint8 or int8");
    }
    return t.bytes();
  }

  public boolean[] booleans(String name) {
    return (boolean[]) typed(name, DType.BOOL);
  }

  public String[] strings(String name) {
    return (String[]) typed(name, DType.STRING);
  }

  private Object typed(String name, DType want) {
    Tensor t = tensor(name);
    if (t.dtype() != want) {
      throw new IllegalArgumentException(
          "output '" + name + "' is " + t.dtype() + " " + Shapes.str(t.shape()) + ", not " + want);
    }
    return t.data();
  }

  /** The outputs as tensor JSON (docs/tensor-json.md). */
  public String toJson() {
    return TensorJson.write(tensors);
  }

  @Override
  public String toString() {
    return "Outputs" + tensors;
  }
}
