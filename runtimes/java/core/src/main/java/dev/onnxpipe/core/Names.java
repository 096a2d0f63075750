package dev.onnxpipe.core;

/**
 * Names and values as error messages echo them: single-quoted, escaped as in JSON, and cut at 200 characters, so
 * a 20,000-character name cannot fill a log line or push a gRPC status past its metadata limit (issue 13 §8).
 */
public final class Names {
  /** The longest text a message echoes. */
  public static final int MAX_ECHO = 200;

  private Names() {}

  /** {@code s} cut at {@link #MAX_ECHO} characters ({@code ...} marks the cut). */
  public static String cut(String s) {
    return s.length() > MAX_ECHO ? s.substring(0, MAX_ECHO) + "..." : s;
  }

  /** {@code 'name'}: escaped, cut. */
  public static String quote(String name) {
    StringBuilder sb = new StringBuilder();
    Json.quote(sb, cut(name));
    return "'" + sb.substring(1, sb.length() - 1) + "'";
  }
}
