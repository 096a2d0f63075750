package dev.onnxpipe.core;

import java.util.List;
import java.util.StringJoiner;

/** Shapes as text for messages: {@code [2, 3]}, and spec shapes {@code [batch, 3]} ({@code ?} = unnamed). */
public final class Shapes {
  private Shapes() {}

  public static String str(long[] shape) {
    StringJoiner j = new StringJoiner(", ", "[", "]");
    for (long d : shape) {
      j.add(Long.toString(d));
    }
    return j.toString();
  }

  public static String spec(List<Object> dims) {
    StringJoiner j = new StringJoiner(", ", "[", "]");
    for (Object d : dims) {
      j.add(d == null ? "?" : d.toString());
    }
    return j.toString();
  }
}
