package dev.onnxpipe;

import dev.onnxpipe.core.Json;
import dev.onnxpipe.core.Tensor;
import dev.onnxpipe.core.TensorJson;
import java.util.List;
import java.util.Map;

/**
 * A parameter's default is fed from the graph's initializer; the manifest's {@code default} must say the same value
 * (spec/README.md: the caller's value, or the manifest's default), compared at the parameter's dtype. A file where
 * they differ is MODEL_LOAD: a runtime and plain ONNX Runtime would answer differently.
 */
final class Defaults {
  private Defaults() {}

  static void checkAgainstManifest(TensorSpec spec, Tensor init, String where) {
    Object declared = spec.defaultValue();
    if (declared == null) {
      return; // the manifest does not state one: the initializer is the default
    }
    List<?> values = declared instanceof List<?> l ? l : List.of(declared);
    boolean same = values.size() == init.size();
    for (int i = 0; same && i < values.size(); i++) {
      same = values.get(i) instanceof Number n && equal(init, i, n);
    }
    if (!same) {
      throw PipelineException.modelLoad(where + ": parameter '" + spec.name() + "' has default "
          + Json.write(declared) + " in the manifest but " + describe(spec.name(), init) + " in the graph's"
          + " initializer; expected the same value", null);
    }
  }

  private static boolean equal(Tensor t, int i, Number n) {
    return switch (t.dtype()) {
      case FLOAT32 -> Float.compare(t.floats()[i], n.floatValue()) == 0;
      case FLOAT64 -> Double.compare(t.doubles()[i], n.doubleValue()) == 0;
      case INT64 -> t.longs()[i] == n.longValue() && n.doubleValue() == t.longs()[i];
      case INT32 -> t.ints()[i] == n.longValue();
      case UINT8 -> Byte.toUnsignedInt(t.bytes()[i]) == n.longValue();
      case INT8 -> t.bytes()[i] == n.longValue();
      case BOOL, STRING -> false;
    };
  }

  private static String describe(String name, Tensor t) {
    return TensorJson.write(Map.of(name, t));
  }
}
