package dev.onnxpipe;

import dev.onnxpipe.core.Shapes;
import dev.onnxpipe.core.Tensor;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Inputs with a zero-size dimension, kept away from ONNX Runtime 1.29.0's Resize kernel: on an empty batch it
 * divides by zero and the JVM dies with SIGFPE (issue 13 §2; Python and Go run ORT 1.31, which returns an empty
 * result). So for a graph with a Resize node, an input with a zero in its shape never reaches native code:
 *
 * <ul>
 *   <li>if the manifest's output shapes make every output empty, that empty result is returned: a fixed dim as
 *       is, a named dim at the size the inputs give it, and a name no input binds (a data-dependent count such as
 *       {@code detections}) at 0, since no element exists to produce one. This is what ORT 1.31 answers for the
 *       image pipelines (digits: score {@code [0, 3]}; detector: detections {@code [0, 7]}).
 *   <li>otherwise (a zero height or width with a non-empty batch, whose answer the manifest cannot state) it is
 *       INVALID_INPUT naming the input.
 * </ul>
 *
 * Graphs without Resize run zero-size inputs through ONNX Runtime as usual (the basic model's empty batch).
 */
final class ZeroSize {
  private ZeroSize() {}

  /** The first input with a zero in its shape, or null. */
  static String zeroSizeInput(Map<String, Tensor> inputs) {
    for (Map.Entry<String, Tensor> e : inputs.entrySet()) {
      for (long d : e.getValue().shape()) {
        if (d == 0) {
          return e.getKey();
        }
      }
    }
    return null;
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
            + " would not be empty; its image resizing cannot take an empty image (expected every dimension > 0)");
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
