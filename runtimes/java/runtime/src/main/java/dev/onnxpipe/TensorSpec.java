package dev.onnxpipe;

import dev.onnxpipe.core.DType;
import dev.onnxpipe.core.FloatFormat;
import dev.onnxpipe.core.Json;
import dev.onnxpipe.core.Shapes;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * One input or output of a pipeline's {@link Signature}.
 *
 * <p>{@link #shape()} holds one entry per dimension: a {@link Long} for a fixed size, a {@link String} for a
 * named dynamic dimension ({@code "batch"}), or {@code null} for an unnamed dynamic one. Inputs sharing a
 * dimension name must agree on its size. An optional input ({@link #optional()}) is a run-time parameter such
 * as a threshold; when omitted, the graph uses {@link #defaultValue()}.
 */
public final class TensorSpec {
  private final String name;
  private final DType dtype;
  private final List<Object> shape;
  private final boolean optional;
  private final Object defaultValue;
  private final double[] range;

  TensorSpec(String name, DType dtype, List<Object> shape, boolean optional, Object defaultValue) {
    this(name, dtype, shape, optional, defaultValue, null);
  }

  TensorSpec(String name, DType dtype, List<Object> shape, boolean optional, Object defaultValue, double[] range) {
    this.name = Objects.requireNonNull(name);
    this.dtype = Objects.requireNonNull(dtype);
    this.shape = Collections.unmodifiableList(new ArrayList<>(shape));
    this.optional = optional;
    this.defaultValue = defaultValue;
    this.range = range == null ? null : range.clone();
  }

  /** {@code [low, high]} (inclusive) a run-time parameter must lie in (manifest "range"), or null. */
  public double[] range() {
    return range == null ? null : range.clone();
  }

  public String name() {
    return name;
  }

  public DType dtype() {
    return dtype;
  }

  /** Per dimension: Long (fixed), String (named dynamic) or null (unnamed dynamic). */
  public List<Object> shape() {
    return shape;
  }

  public int rank() {
    return shape.size();
  }

  public boolean optional() {
    return optional;
  }

  /**
   * The value used when an optional input is omitted, as in the manifest: a number, a list of numbers, or
   * null when unknown. Only meaningful when {@link #optional()}.
   */
  public Object defaultValue() {
    return plain(defaultValue);
  }

  private static Object plain(Object v) {
    if (v instanceof Json.Num n) {
      if (n.isInteger()) {
        try {
          return Long.parseLong(n.text());
        } catch (NumberFormatException e) {
          return Double.parseDouble(n.text());
        }
      }
      return Double.parseDouble(n.text());
    }
    if (v instanceof List<?> list) {
      return list.stream().map(TensorSpec::plain).toList();
    }
    return v;
  }

  /** {@code float32 [batch, 3]}. */
  public String describe() {
    return dtype + " " + Shapes.spec(shape);
  }

  Map<String, Object> toJsonMap() {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("name", name);
    m.put("dtype", dtype.jsonName());
    m.put("shape", shape);
    if (optional) {
      m.put("optional", true);
      m.put("default", defaultValue);
    }
    if (range != null) {
      m.put("range", List.of(new Json.Num(FloatFormat.format(range[0])), new Json.Num(FloatFormat.format(range[1]))));
    }
    return m;
  }

  @Override
  public String toString() {
    return name + ": " + describe() + (optional ? " (optional)" : "");
  }
}
