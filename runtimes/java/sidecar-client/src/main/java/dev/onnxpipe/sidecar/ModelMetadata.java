package dev.onnxpipe.sidecar;

import dev.onnxpipe.core.DType;
import java.util.Arrays;
import java.util.List;

/**
 * A served model's signature as the sidecar reports it (ModelMetadata, from the file's manifest).
 *
 * @param name the model's name
 * @param versions its versions ({@code ["1"]} for onnxpipe)
 * @param platform {@code onnxruntime_onnx} for onnxpipe
 * @param inputs the inputs, in signature order
 * @param outputs the outputs, in manifest order
 */
public record ModelMetadata(
    String name, List<String> versions, String platform, List<TensorInfo> inputs, List<TensorInfo> outputs) {

  public ModelMetadata {
    versions = List.copyOf(versions);
    inputs = List.copyOf(inputs);
    outputs = List.copyOf(outputs);
  }

  /**
   * One input or output.
   *
   * @param name its name
   * @param datatype the protocol's datatype name ({@code FP32}, {@code UINT8}, {@code BYTES}, ...)
   * @param shape its shape; -1 is a dimension of variable size
   */
  public record TensorInfo(String name, String datatype, long[] shape) {
    public TensorInfo {
      shape = shape.clone();
    }

    @Override
    public long[] shape() {
      return shape.clone();
    }

    /** The datatype as a {@link DType}, or null when it is not one onnxpipe serves. */
    public DType dtype() {
      return DType.fromKserveName(datatype);
    }

    @Override
    public boolean equals(Object o) {
      return o instanceof TensorInfo t && t.name.equals(name) && t.datatype.equals(datatype)
          && Arrays.equals(t.shape, shape);
    }

    @Override
    public int hashCode() {
      return 31 * (31 * name.hashCode() + datatype.hashCode()) + Arrays.hashCode(shape);
    }

    @Override
    public String toString() {
      return name + ": " + datatype + " " + Arrays.toString(shape);
    }
  }
}
