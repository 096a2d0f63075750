package dev.onnxpipe;

import ai.onnxruntime.NodeInfo;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import ai.onnxruntime.TensorInfo;
import dev.onnxpipe.core.DType;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * At load, the manifest must describe the graph ONNX Runtime reports (spec/README.md, "Loading"): every manifest
 * input and output exists with the same dtype and rank, and every graph input is in the manifest. A mismatch is
 * MODEL_LOAD, naming the tensor, the manifest's view and the graph's.
 */
final class GraphCheck {
  private GraphCheck() {}

  static void check(Signature sig, OrtSession session, Set<String> parameters, String where) throws OrtException {
    Map<String, NodeInfo> graphInputs = session.getInputInfo();
    Map<String, NodeInfo> graphOutputs = session.getOutputInfo();
    for (TensorSpec s : sig.inputs()) {
      same(s, graphInputs.get(s.name()), "input", graphInputs.keySet(), where);
    }
    for (String g : graphInputs.keySet()) {
      if (sig.input(g) == null) {
        String kind = parameters.contains(g) ? "parameter (an input with an initializer)" : "input";
        throw PipelineException.modelLoad(where + ": graph " + kind + " '" + g + "' is missing from the manifest's"
            + " inputs " + sig.inputNames(), null);
      }
    }
    for (TensorSpec s : sig.outputs()) {
      same(s, graphOutputs.get(s.name()), "output", graphOutputs.keySet(), where);
    }
  }

  private static void same(TensorSpec s, NodeInfo node, String kind, Set<String> names, String where) {
    if (node == null) {
      throw PipelineException.modelLoad(where + ": the manifest lists " + kind + " '" + s.name() + "', which the graph"
          + (kind.equals("input") ? " does not accept" : " does not produce") + "; graph " + kind + "s: "
          + List.copyOf(names), null);
    }
    if (!(node.getInfo() instanceof TensorInfo t)) {
      throw PipelineException.modelLoad(where + ": graph " + kind + " '" + s.name() + "' is " + node.getInfo()
          + ", not a tensor; the manifest says " + s.describe(), null);
    }
    DType dtype = OrtValues.dtype(t);
    long[] shape = t.getShape();
    if (dtype != s.dtype() || shape.length != s.rank()) {
      throw PipelineException.modelLoad(where + ": " + kind + " '" + s.name() + "' is " + s.describe()
          + " in the manifest but " + (dtype != null ? dtype : t.type) + " of rank " + shape.length
          + " in the graph", null);
    }
  }
}
