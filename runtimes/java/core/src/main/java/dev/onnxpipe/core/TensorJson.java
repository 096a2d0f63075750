package dev.onnxpipe.core;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Map;
import java.util.Optional;

/**
 * Tensor JSON (docs/tensor-json.md, spec/README.md): named tensors as {@code {"name": {"dtype", "shape", "data"}}}.
 *
 * <p>Reading follows the spec's reader rules and {@link Limits} (see {@link TensorJsonReader}): every number is
 * parsed at its tensor's dtype, straight into a primitive array, and nothing out of range is rounded into it.
 * Errors are {@link OnnxpipeException}s: {@code INVALID_INPUT} naming the tensor and the field, or {@code
 * TOO_LARGE} naming the limit.
 *
 * <p>Writing emits the canonical form, byte-identical to the Python runtime ({@code json.dumps(...,
 * ensure_ascii=False)}): separators {@code ", "} and {@code ": "}, floats as the shortest decimal that round-trips
 * at the tensor's precision in Python's {@code repr} layout ({@link FloatFormat}), {@code "NaN"}, {@code
 * "Infinity"}, {@code "-Infinity"} for non-finite values.
 */
public final class TensorJson {
  private TensorJson() {}

  /** Reads a tensor-JSON file with {@link Limits#defaults()}; keys keep their order. */
  public static Map<String, Tensor> read(Path file) {
    return read(file, Limits.defaults());
  }

  /** Reads a tensor-JSON file, streaming (the file is never in memory whole). */
  public static Map<String, Tensor> read(Path file, Limits limits) {
    try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
      checkSize(ch.size(), limits, "tensor JSON file '" + file + "'");
      return new TensorJsonReader(ByteSource.of(ch), limits).document();
    } catch (NoSuchFileException e) {
      throw OnnxpipeException.invalidInput("tensor JSON file '" + file + "': no such file");
    } catch (IOException | UncheckedIOException e) {
      throw OnnxpipeException.invalidInput("tensor JSON file '" + file + "': cannot read it (" + e.getMessage() + ")");
    }
  }

  /** Parses a tensor-JSON document given as UTF-8 bytes. */
  public static Map<String, Tensor> parse(byte[] utf8, Limits limits) {
    checkSize(utf8.length, limits, "tensor JSON");
    return new TensorJsonReader(ByteSource.of(utf8), limits).document();
  }

  /** Parses a tensor-JSON document with {@link Limits#defaults()}. */
  public static Map<String, Tensor> parse(String text) {
    return parse(text, Limits.defaults());
  }

  /** Parses a tensor-JSON document; a lone surrogate anywhere in {@code text} is refused. */
  public static Map<String, Tensor> parse(String text, Limits limits) {
    for (int i = 0; i < text.length(); i++) {
      char c = text.charAt(i);
      if (Character.isSurrogate(c)) {
        if (Character.isHighSurrogate(c) && i + 1 < text.length() && Character.isLowSurrogate(text.charAt(i + 1))) {
          i++;
        } else {
          throw OnnxpipeException.invalidInput("tensor JSON: a lone surrogate (U+" + String.format("%04X", (int) c)
              + ") at character " + i + "; expected UTF-16 text");
        }
      }
    }
    return parse(text.getBytes(StandardCharsets.UTF_8), limits);
  }

  private static void checkSize(long bytes, Limits limits, String what) {
    if (bytes > limits.maxDocumentBytes()) {
      throw OnnxpipeException.tooLarge(what + ": " + bytes + " bytes, over max_document_bytes = "
          + limits.maxDocumentBytes());
    }
  }

  // ---- writing ----------------------------------------------------------------------------------------

  /** The tensors as one line of canonical tensor JSON, in the map's order. */
  public static String write(Map<String, Tensor> tensors) {
    StringBuilder sb = new StringBuilder();
    write(sb, tensors);
    return sb.toString();
  }

  /** Appends the canonical tensor JSON of {@code tensors} to {@code sb}. */
  public static void write(StringBuilder sb, Map<String, Tensor> tensors) {
    sb.append('{');
    boolean first = true;
    for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
      if (!first) {
        sb.append(", ");
      }
      first = false;
      Json.quote(sb, e.getKey());
      sb.append(": ");
      encode(sb, e.getValue());
    }
    sb.append('}');
  }

  static void encode(StringBuilder sb, Tensor t) {
    sb.append("{\"dtype\": \"").append(t.dtype().jsonName()).append("\", \"shape\": [");
    long[] shape = t.shape();
    for (int i = 0; i < shape.length; i++) {
      sb.append(i > 0 ? ", " : "").append(shape[i]);
    }
    sb.append("], \"data\": [");
    int n = t.size();
    for (int i = 0; i < n; i++) {
      if (i > 0) {
        sb.append(", ");
      }
      element(sb, t, i);
    }
    sb.append("]}");
  }

  private static void element(StringBuilder sb, Tensor t, int i) {
    switch (t.dtype()) {
      case FLOAT32 -> {
        float f = t.floats()[i];
        sb.append(special(f).orElseGet(() -> FloatFormat.format(f)));
      }
      case FLOAT64 -> {
        double d = t.doubles()[i];
        sb.append(special(d).orElseGet(() -> FloatFormat.format(d)));
      }
      case INT64 -> sb.append(t.longs()[i]);
      case INT32 -> sb.append(t.ints()[i]);
      case UINT8 -> sb.append(Byte.toUnsignedInt(t.bytes()[i]));
      case INT8 -> sb.append(t.bytes()[i]);
      case BOOL -> sb.append(t.booleans()[i]);
      case STRING -> Json.quote(sb, t.strings()[i]);
    }
  }

  private static Optional<String> special(double v) {
    if (Double.isNaN(v)) {
      return Optional.of("\"NaN\"");
    }
    if (Double.isInfinite(v)) {
      return Optional.of(v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    }
    return Optional.empty();
  }

  /** "an object", "a list", ... for a value of {@link Json#parse}, in messages. */
  public static String kind(Object v) {
    if (v == null) {
      return "null";
    }
    if (v instanceof Map) {
      return "an object";
    }
    if (v instanceof java.util.List) {
      return "a list";
    }
    if (v instanceof String) {
      return "a string";
    }
    if (v instanceof Boolean) {
      return "a boolean";
    }
    return "a number";
  }
}
