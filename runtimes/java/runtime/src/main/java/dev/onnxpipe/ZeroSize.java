package dev.onnxpipe;

import dev.onnxpipe.core.Shapes;
import dev.onnxpipe.core.Tensor;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Inputs with no elements (a zero-size dimension), kept from the ONNX Runtime kernels that abort the process on
 * them. spec/README.md ("Inputs"): such an input is valid and runs, except
 *
 * <ul>
 *   <li>in a pipeline of manifest {@code precision} {@code int8} or {@code mixed}: ONNX Runtime's quantized kernels
 *       abort on empty tensors (SIGFPE, 1.29 and 1.31), so it is INVALID_INPUT before ONNX Runtime;
 *   <li>Java only: ONNX Runtime 1.29.0's Resize kernel (Python and Go run 1.31) divides by zero on an empty
 *       batch (issue 13 §2). So for a graph with a Resize node, an input whose batch axis (its first, when that is
 *       a named dynamic dim) is 0 never reaches native code: the result is the one the manifest's output shapes
 *       state, every named dim at the size the inputs give it and a name no input binds (a data-dependent count
 *       such as {@code detections}) at 0 — what ORT 1.31 answers (digits: score {@code [0, 3]}; detector:
 *       detections {@code [0, 7]}). If the manifest cannot state an empty result, INVALID_INPUT naming the input.
 *       A zero elsewhere (height, width) runs: ORT 1.29 refuses it with an error (RUNTIME), as 1.31 does.
 * </ul>
 *
 * {@code ZeroSizeTest} runs a zero in every position of every test model's inputs in a child JVM.
 */
final class ZeroSize {
  private ZeroSize() {}

  /** The first input with a zero in its shape, or null. */
  static String zeroSizeInput(Map<String, Tensor> inputs) {
    for (Map.Entry<String, Tensor> e : inputs.entrySet()) {
      if (e.getValue().size() == 0 && e.getValue().rank() > 0) {
        return e.getKey();
      }
    }
    return null;
  }

  /** The first input whose batch axis (axis 0, a named dynamic dim in the signature) is 0, or null. */
  static String emptyBatchInput(Signature sig, Map<String, Tensor> inputs) {
    for (TensorSpec spec : sig.inputs()) {
      Tensor t = inputs.get(spec.name());
      if (t != null && t.rank() > 0 && t.shape()[0] == 0 && spec.shape().get(0) instanceof String) {
        return spec.name();
      }
    }
    return null;
  }

  /** INVALID_INPUT for an empty input of an int8 / mixed pipeline. */
  static PipelineException quantized(Signature sig, String input, Tensor t) {
    return PipelineException.invalidInput("input '" + input + "': shape " + Shapes.str(t.shape()) + " has no"
        + " elements; this pipeline's precision is " + sig.precision() + ", and ONNX Runtime's quantized kernels"
        + " abort on empty tensors (expected every dimension > 0)");
  }

  /** The empty result the manifest states for {@code inputs}, or INVALID_INPUT naming {@code input}. */
  static Outputs emptyResult(Signature sig, Map<String, Tensor> inputs, String input) {
    Map<String, Long> bound = new HashMap<>();
    for (TensorSpec spec : sig.inputs()) {
      Tensor t = inputs.get(spec.name());
      if (t == null) {
        continue;
      }
      long[] shape = t.shape();
      for (int axis = 0; axis < shape.length; axis++) {
        if (spec.shape().get(axis) instanceof String name) {
          bound.put(name, shape[axis]);
        }
      }
    }
    Map<String, Tensor> out = new LinkedHashMap<>();
    for (TensorSpec spec : sig.outputs()) {
      long[] shape = shape(spec.shape(), bound);
      if (shape == null || Tensor.elementCount(shape, "output '" + spec.name() + "'") != 0) {
        Tensor t = inputs.get(input);
        throw PipelineException.invalidInput("input '" + input + "': shape " + Shapes.str(t.shape())
            + " has a zero-size dimension, and this pipeline's output '" + spec.name() + "' " + spec.describe()
            + " would not be empty; its image resizing cannot take an empty batch (expected every dimension > 0)");
      }
      out.put(spec.name(), Tensor.empty(spec.dtype(), shape));
    }
    return new Outputs(out);
  }

  private static long[] shape(List<Object> dims, Map<String, Long> bound) {
    long[] shape = new long[dims.size()];
    for (int i = 0; i < shape.length; i++) {
      Object d = dims.get(i);
      if (d instanceof Long fixed) {
        shape[i] = fixed;
      } else if (d instanceof String name) {
        shape[i] = bound.getOrDefault(name, 0L);
      } else {
        return null; // an unnamed dynamic dim: the manifest does not say
      }
    }
    return shape;
  }
}
