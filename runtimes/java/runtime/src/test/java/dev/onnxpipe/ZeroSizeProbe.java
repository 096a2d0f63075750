package dev.onnxpipe;

import dev.onnxpipe.core.OnnxpipeException;
import dev.onnxpipe.core.Tensor;
import dev.onnxpipe.core.TensorJson;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The child JVM of {@link ZeroSizeTest}: loads one model and runs valid inputs with a zero in every position of
 * every input's shape, and with every input's first axis zero (an empty batch). It prints a line before each run
 * and its outcome after, so an abort inside native code shows which run it was.
 */
public final class ZeroSizeProbe {
  private ZeroSizeProbe() {}

  public static void main(String[] args) {
    Path model = Path.of(args[0]);
    Map<String, Tensor> valid = TensorJson.read(Path.of(args[1]));
    try (Pipeline pipe = Pipeline.load(model, Options.defaults().withIntraOpThreads(1))) {
      int index = 0;
      int only = args.length > 2 ? Integer.parseInt(args[2]) : -1;
      for (Map.Entry<String, Map<String, Tensor>> c : variants(valid).entrySet()) {
        if (only >= 0 && index++ != only) {
          continue;
        }
        System.out.println("run " + c.getKey());
        System.out.flush();
        String outcome;
        try {
          Outputs out = pipe.run(c.getValue());
          List<String> shapes = new ArrayList<>();
          for (Map.Entry<String, Tensor> e : out.asMap().entrySet()) {
            shapes.add(e.getKey() + java.util.Arrays.toString(e.getValue().shape()));
          }
          outcome = "OK " + shapes;
        } catch (OnnxpipeException e) {
          outcome = e.code() + " " + e.getMessage();
        }
        System.out.println("  -> " + outcome);
        System.out.flush();
      }
    }
    System.out.println("done");
  }

  /** Name -> inputs: each input with one axis 0, and all inputs with axis 0 zero. */
  static Map<String, Map<String, Tensor>> variants(Map<String, Tensor> valid) {
    Map<String, Map<String, Tensor>> out = new LinkedHashMap<>();
    for (Map.Entry<String, Tensor> e : valid.entrySet()) {
      for (int axis = 0; axis < e.getValue().rank(); axis++) {
        Map<String, Tensor> in = new LinkedHashMap<>(valid);
        in.put(e.getKey(), zeroed(e.getValue(), axis));
        out.put(e.getKey() + " axis " + axis + " = 0", in);
      }
    }
    Map<String, Tensor> empty = new LinkedHashMap<>();
    for (Map.Entry<String, Tensor> e : valid.entrySet()) {
      empty.put(e.getKey(), e.getValue().rank() > 0 ? zeroed(e.getValue(), 0) : e.getValue());
    }
    out.put("empty batch (axis 0 of every input = 0)", empty);
    return out;
  }

  static Tensor zeroed(Tensor t, int axis) {
    long[] shape = t.shape();
    shape[axis] = 0;
    return Tensor.empty(t.dtype(), shape);
  }

}
