package dev.onnxpipe;

import dev.onnxpipe.core.DType;
import dev.onnxpipe.core.Json;
import dev.onnxpipe.core.TensorJson;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** Reads the manifest (docs/manifest.md) into a {@link Signature}; MODEL_LOAD errors name the field. */
final class Manifest {
  static final String KEY = "onnxpipe.manifest";
  static final int SUPPORTED_FORMAT_VERSION = 1;

  private Manifest() {}

  /** The manifest's signature; {@code where} (the file) prefixes error messages. */
  static Signature parse(String text, String where) {
    try {
      return parse(text);
    } catch (PipelineException e) {
      throw PipelineException.modelLoad(where + ": " + e.getMessage(), e.getCause());
    }
  }

  static Signature parse(String text) {
    Object doc;
    try {
      doc = Json.parse(text);
    } catch (Json.ParseException e) {
      throw bad("metadata '" + KEY + "' is not valid JSON (" + e.getMessage() + ")");
    }
    if (!(doc instanceof Map<?, ?> m) || !"onnxpipe.manifest".equals(m.get("format"))) {
      throw bad("metadata '" + KEY + "': expected an object with format 'onnxpipe.manifest'");
    }
    Object version = m.get("format_version");
    if (!(version instanceof Json.Num n) || !n.isInteger() || n.text().length() > 9
        || Integer.parseInt(n.text()) > SUPPORTED_FORMAT_VERSION) {
      throw bad("manifest format_version " + Json.write(version) + " is not supported; this runtime reads up to "
          + SUPPORTED_FORMAT_VERSION + " (upgrade onnxpipe-runtime)");
    }
    List<TensorSpec> inputs = specs(m.get("inputs"), "inputs", true);
    List<TensorSpec> outputs = specs(m.get("outputs"), "outputs", false);
    List<String> labels = null;
    if (m.get("labels") instanceof List<?> l) {
      labels = new ArrayList<>();
      for (Object o : l) {
        labels.add(String.valueOf(o));
      }
    }
    List<String> domains = new ArrayList<>();
    if (m.get("domains") instanceof List<?> l) {
      for (Object o : l) {
        if (o instanceof Map<?, ?> d && d.get("domain") instanceof String s) {
          domains.add(s);
        }
      }
    }
    String precision = m.get("precision") instanceof String p ? p : null;
    return new Signature("manifest", inputs, outputs, labels, domains, verification(m.get("verification")), precision);
  }

  private static List<TensorSpec> specs(Object list, String field, boolean inputs) {
    if (!(list instanceof List<?> l)) {
      throw bad("manifest " + field + ": expected a list, got " + TensorJson.kind(list));
    }
    List<TensorSpec> out = new ArrayList<>();
    for (Object entry : l) {
      if (!(entry instanceof Map<?, ?> e) || !(e.get("name") instanceof String name)) {
        throw bad("manifest " + field + ": expected an object with a name, got " + Json.write(entry));
      }
      Object dt = e.get("dtype");
      DType dtype = dt instanceof String s ? DType.fromName(s) : null;
      if (dtype == null) {
        throw bad("manifest " + field + " '" + name + "': dtype " + Json.write(dt) + " is not one of " + DType.names());
      }
      if (!(e.get("shape") instanceof List<?> shape)) {
        throw bad("manifest " + field + " '" + name + "': shape must be a list, got " + Json.write(e.get("shape")));
      }
      List<Object> dims = new ArrayList<>();
      for (Object d : shape) {
        if (d == null || d instanceof String) {
          dims.add(d);
        } else if (d instanceof Json.Num num && num.isInteger() && !num.text().startsWith("-")) {
          dims.add(Long.parseLong(num.text()));
        } else {
          throw bad("manifest " + field + " '" + name + "': shape " + Json.write(shape)
              + " must hold non-negative integers, names or null");
        }
      }
      boolean optional = inputs && Boolean.TRUE.equals(e.get("optional"));
      double[] range = null;
      if (optional && e.get("range") instanceof List<?> r && r.size() == 2
          && r.get(0) instanceof Json.Num lo && r.get(1) instanceof Json.Num hi) {
        range = new double[] {Double.parseDouble(lo.text()), Double.parseDouble(hi.text())};
      }
      out.add(new TensorSpec(name, dtype, dims, optional, optional ? e.get("default") : null, range));
    }
    return out;
  }

  /** "passed", "failed" or "not run"; files written before "status" existed say passed / skipped. */
  private static String verification(Object v) {
    if (!(v instanceof Map<?, ?> ver)) {
      return "not run";
    }
    if (ver.get("status") instanceof String s) {
      return s;
    }
    if (Boolean.TRUE.equals(ver.get("passed"))) {
      return "passed";
    }
    return Boolean.TRUE.equals(ver.get("skipped")) ? "not run" : "failed";
  }

  private static PipelineException bad(String message) {
    return PipelineException.modelLoad(message, null);
  }
}
