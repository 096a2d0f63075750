package dev.onnxpipe.core;

/**
 * The limits of spec/limits.json a reader of untrusted tensors enforces, checked from the declared shape and
 * string lengths before allocating; over a limit is {@link ErrorCode#TOO_LARGE}. Immutable.
 *
 * <pre>{@code
 * Map<String, Tensor> t = TensorJson.read(path, Limits.defaults().withMaxElements(100_000_000));
 * }</pre>
 */
public final class Limits {
  /** spec/limits.json {@code max_elements}: 2^24 elements per document. */
  public static final long DEFAULT_MAX_ELEMENTS = 16_777_216L;
  /** spec/limits.json {@code max_string_bytes}: 64 MiB of UTF-8 per document. */
  public static final long DEFAULT_MAX_STRING_BYTES = 67_108_864L;
  /** spec/limits.json {@code max_document_bytes}: 256 MiB per document, checked before parsing. */
  public static final long DEFAULT_MAX_DOCUMENT_BYTES = 268_435_456L;

  private final long maxElements;
  private final long maxStringBytes;
  private final long maxDocumentBytes;

  private Limits(long maxElements, long maxStringBytes, long maxDocumentBytes) {
    this.maxElements = maxElements;
    this.maxStringBytes = maxStringBytes;
    this.maxDocumentBytes = maxDocumentBytes;
  }

  public static Limits defaults() {
    return new Limits(DEFAULT_MAX_ELEMENTS, DEFAULT_MAX_STRING_BYTES, DEFAULT_MAX_DOCUMENT_BYTES);
  }

  /** Elements per document (sum over tensors); every dim must be at most this too. Java arrays cap it near 2^31. */
  public Limits withMaxElements(long n) {
    return new Limits(positive(n, "max_elements"), maxStringBytes, maxDocumentBytes);
  }

  public Limits withMaxStringBytes(long n) {
    return new Limits(maxElements, positive(n, "max_string_bytes"), maxDocumentBytes);
  }

  public Limits withMaxDocumentBytes(long n) {
    return new Limits(maxElements, maxStringBytes, positive(n, "max_document_bytes"));
  }

  public long maxElements() {
    return maxElements;
  }

  public long maxStringBytes() {
    return maxStringBytes;
  }

  public long maxDocumentBytes() {
    return maxDocumentBytes;
  }

  private static long positive(long n, String name) {
    if (n < 1) {
      throw new IllegalArgumentException(name + " must be >= 1, got " + n);
    }
    return n;
  }

  @Override
  public String toString() {
    return "Limits(max_elements=" + maxElements + ", max_string_bytes=" + maxStringBytes + ", max_document_bytes=" + maxDocumentBytes
        + ")";
  }
}
