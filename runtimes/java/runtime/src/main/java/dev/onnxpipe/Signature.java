package dev.onnxpipe;

import dev.onnxpipe.core.Json;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * What a pipeline takes and returns: from the manifest embedded in the file ({@code source() ==
 * "manifest"}), or for a plain ONNX file from ONNX Runtime's input/output info ({@code "onnxruntime"}).
 */
public final class Signature {
  private final String source;
  private final List<TensorSpec> inputs;
  private final List<TensorSpec> outputs;
  private final List<String> labels;
  private final List<String> domains;
  private final String verification;
  private final String precision;

  Signature(String source, List<TensorSpec> inputs, List<TensorSpec> outputs, List<String> labels,
      List<String> domains) {
    this(source, inputs, outputs, labels, domains, "unknown", null);
  }

  Signature(String source, List<TensorSpec> inputs, List<TensorSpec> outputs, List<String> labels,
      List<String> domains, String verification, String precision) {
    this.verification = verification;
    this.precision = precision;
    this.source = source;
    this.inputs = List.copyOf(inputs);
    this.outputs = List.copyOf(outputs);
    this.labels = labels == null ? null : List.copyOf(labels);
    this.domains = List.copyOf(domains);
  }

  /** {@code "manifest"} or {@code "onnxruntime"} (plain ONNX file). */
  public String source() {
    return source;
  }

  /** Inputs in call order. */
  public List<TensorSpec> inputs() {
    return inputs;
  }

  /** Outputs in manifest order: the order of {@link Outputs}. */
  public List<TensorSpec> outputs() {
    return outputs;
  }

  /** Inputs that must be given (not optional). */
  public List<TensorSpec> requiredInputs() {
    List<TensorSpec> out = new ArrayList<>();
    for (TensorSpec s : inputs) {
      if (!s.optional()) {
        out.add(s);
      }
    }
    return Collections.unmodifiableList(out);
  }

  /** The input named {@code name}, or null. */
  public TensorSpec input(String name) {
    return find(inputs, name);
  }

  /** The output named {@code name}, or null. */
  public TensorSpec output(String name) {
    return find(outputs, name);
  }

  /** Class labels embedded by a classification stage, or null. */
  public List<String> labels() {
    return labels;
  }

  /**
   * The export-time verification: {@code "passed"}, {@code "failed"}, {@code "not run"} (exported with
   * verify=False) or {@code "unknown"} (plain ONNX file); docs/manifest.md.
   */
  public String verification() {
    return verification;
  }

  /** The manifest's {@code precision} ({@code fp32}, {@code int8}, {@code mixed}, ...), or null (plain ONNX). */
  public String precision() {
    return precision;
  }

  /** Custom-op domains the graph needs, e.g. {@code ai.onnx.contrib}. */
  public List<String> domains() {
    return domains;
  }

  public List<String> inputNames() {
    return inputs.stream().map(TensorSpec::name).toList();
  }

  public List<String> outputNames() {
    return outputs.stream().map(TensorSpec::name).toList();
  }

  /** The signature as JSON (the same fields as the Python runtime's {@code Signature.to_dict()}). */
  public String toJson() {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("source", source);
    m.put("inputs", inputs.stream().map(TensorSpec::toJsonMap).toList());
    m.put("outputs", outputs.stream().map(TensorSpec::toJsonMap).toList());
    m.put("labels", labels);
    m.put("domains", domains);
    m.put("verification", verification);
    return Json.write(m);
  }

  private static TensorSpec find(List<TensorSpec> specs, String name) {
    for (TensorSpec s : specs) {
      if (s.name().equals(name)) {
        return s;
      }
    }
    return null;
  }

  @Override
  public String toString() {
    return "Signature(" + source + ", inputs=" + inputs + ", outputs=" + outputs + ")";
  }
}
