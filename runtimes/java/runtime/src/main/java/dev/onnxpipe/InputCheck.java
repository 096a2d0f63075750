package dev.onnxpipe;

import dev.onnxpipe.core.DType;
import dev.onnxpipe.core.FloatFormat;
import dev.onnxpipe.core.Names;
import dev.onnxpipe.core.Shapes;
import dev.onnxpipe.core.Tensor;
import dev.onnxpipe.core.Widening;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Checks run inputs against the signature before ONNX Runtime sees them; every error names the input. */
final class InputCheck {
  private InputCheck() {}

  /** The inputs as tensors of the signature's dtypes, in signature order. */
  static Map<String, Tensor> validate(Signature sig, Map<String, ?> given) {
    if (given == null) {
      throw PipelineException.invalidInput("inputs must be a map of input name -> Tensor, got null; expected "
          + sig.inputNames());
    }
    for (Object key : given.keySet()) {
      if (!(key instanceof String name) || sig.input(name) == null) {
        throw PipelineException.invalidInput("unknown input " + quote(key) + "; expected one of " + sig.inputNames());
      }
    }
    for (TensorSpec s : sig.requiredInputs()) {
      if (!given.containsKey(s.name())) {
        throw PipelineException.invalidInput("missing input '" + s.name() + "' (" + s.describe() + "); required: "
            + sig.requiredInputs().stream().map(TensorSpec::name).toList());
      }
    }
    Map<String, Tensor> out = new LinkedHashMap<>();
    Map<String, String> dimOwner = new LinkedHashMap<>();
    Map<String, Long> dimSize = new LinkedHashMap<>();
    for (TensorSpec spec : sig.inputs()) {
      if (!given.containsKey(spec.name())) {
        continue;
      }
      Tensor t = convert(spec, given.get(spec.name()));
      if (t.dtype() == DType.STRING && sig.domains().contains(Pipeline.CONTRIB_DOMAIN)) {
        rejectNul(spec, t.strings());
      }
      checkRange(spec, t);
      long[] shape = t.shape();
      List<Object> want = spec.shape();
      if (shape.length != want.size()) {
        throw PipelineException.invalidInput("input '" + spec.name() + "': rank " + shape.length + " (shape "
            + Shapes.str(shape) + ") given, expected rank " + want.size() + " " + Shapes.spec(want));
      }
      for (int axis = 0; axis < shape.length; axis++) {
        Object w = want.get(axis);
        if (w instanceof Long fixed && fixed != shape[axis]) {
          throw PipelineException.invalidInput("input '" + spec.name() + "': dimension " + axis + " is " + shape[axis]
              + " (shape " + Shapes.str(shape) + "), expected " + fixed + " " + Shapes.spec(want));
        }
        if (w instanceof String dim) {
          Long seen = dimSize.putIfAbsent(dim, shape[axis]);
          if (seen == null) {
            dimOwner.put(dim, spec.name());
          } else if (seen != shape[axis]) {
            throw PipelineException.invalidInput("input '" + spec.name() + "': dimension " + axis + " ('" + dim + "') is "
                + shape[axis] + ", but input '" + dimOwner.get(dim) + "' has '" + dim + "' = " + seen
                + "; inputs sharing a dimension name must agree");
          }
        }
      }
      out.put(spec.name(), t);
    }
    return out;
  }

  /** onnxruntime-extensions' string ops end a string at a NUL character; refuse rather than lose the rest. */
  /** A run-time parameter must be a finite number inside the manifest's range, as in every runtime. */
  private static void checkRange(TensorSpec spec, Tensor t) {
    double[] range = spec.range();
    if (!spec.optional() || range == null || t.dtype() != DType.FLOAT32) {
      return;
    }
    for (float v : t.floats()) {
      if (!Float.isFinite(v) || v < range[0] || v > range[1]) {
        throw PipelineException.invalidInput("input '" + spec.name() + "': " + v + " given, expected one number in ["
            + bound(range[0]) + ", " + bound(range[1]) + "]");
      }
    }
  }

  private static String bound(double d) {
    return d == Math.rint(d) && Math.abs(d) < 1e15 ? Long.toString((long) d) : FloatFormat.format(d);
  }

  private static void rejectNul(TensorSpec spec, String[] strings) {
    for (int i = 0; i < strings.length; i++) {
      int at = strings[i].indexOf('\0');
      if (at >= 0) {
        // in code points, as the Python runtime counts
        throw PipelineException.invalidInput("input '" + spec.name() + "': element " + i
            + " contains a NUL character at position " + strings[i].codePointCount(0, at)
            + "; this pipeline's string ops (" + Pipeline.CONTRIB_DOMAIN + ") would silently drop everything after it");
      }
    }
  }

  private static Tensor convert(TensorSpec spec, Object value) {
    String name = spec.name();
    if (value == null) {
      throw PipelineException.invalidInput("input '" + name + "': null given, expected a Tensor of " + spec.describe());
    }
    Tensor t;
    if (value instanceof Tensor tensor) {
      t = tensor;
    } else if (value instanceof String[] strings) {
      for (int i = 0; i < strings.length; i++) {
        if (strings[i] == null) {
          throw PipelineException.invalidInput("input '" + name + "': element " + i + " of the String[] is null");
        }
      }
      t = Tensor.ofStrings(strings, strings.length);
    } else {
      throw PipelineException.invalidInput("input '" + name + "': " + value.getClass().getName()
          + " given, expected a dev.onnxpipe.Tensor (or String[] for strings) of " + spec.describe());
    }
    if (t.dtype() == spec.dtype()) {
      return t;
    }
    Tensor widened = Widening.widen(t, spec.dtype());
    if (widened == null) {
      String why = t.dtype() == DType.STRING || spec.dtype() == DType.STRING ? ""
          : " (" + t.dtype() + " -> " + spec.dtype() + " would lose information; convert it explicitly)";
      throw PipelineException.invalidInput("input '" + name + "': dtype " + t.dtype() + " given, expected "
          + spec.describe() + why);
    }
    return widened;
  }

  private static String quote(Object key) {
    return key instanceof String s ? Names.quote(s) : Names.cut(String.valueOf(key));
  }
}
