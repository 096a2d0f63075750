package dev.onnxpipe;

import java.nio.file.Path;

/**
 * How a {@link Pipeline} runs. Immutable; each {@code with...} returns a copy.
 *
 * <p>Intra-op threads: {@link #withIntraOpThreads} if set, else the {@code ONNXPIPE_THREADS} environment
 * variable, else {@link Runtime#availableProcessors()} (which the JVM already bounds by the container's CPU
 * quota and the process's CPU affinity; ONNX Runtime's own default would use every core of the host).
 * Inter-op threads: 1 unless set (the graphs run sequentially).
 */
public final class Options {
  /** Environment variable overriding the default intra-op thread count. */
  public static final String THREADS_ENV = "ONNXPIPE_THREADS";

  private final int intraOpThreads;
  private final int interOpThreads;
  private final Path extensionsLibrary;

  private Options(int intraOpThreads, int interOpThreads, Path extensionsLibrary) {
    this.intraOpThreads = intraOpThreads;
    this.interOpThreads = interOpThreads;
    this.extensionsLibrary = extensionsLibrary;
  }

  /** Threads chosen as described above; extensions found on the classpath. */
  public static Options defaults() {
    return new Options(0, 1, null);
  }

  /** Threads ONNX Runtime may use inside one operator; must be at least 1. */
  public Options withIntraOpThreads(int threads) {
    if (threads < 1) {
      throw new IllegalArgumentException("intra-op threads must be >= 1, got " + threads);
    }
    return new Options(threads, interOpThreads, extensionsLibrary);
  }

  /** Threads for running independent operators in parallel; must be at least 1. */
  public Options withInterOpThreads(int threads) {
    if (threads < 1) {
      throw new IllegalArgumentException("inter-op threads must be >= 1, got " + threads);
    }
    return new Options(intraOpThreads, threads, extensionsLibrary);
  }

  /**
   * The onnxruntime-extensions shared library to register for {@code ai.onnx.contrib} models, instead of the
   * one shipped in the {@code com.microsoft.onnxruntime:onnxruntime-extensions} jar.
   */
  public Options withExtensionsLibrary(Path library) {
    return new Options(intraOpThreads, interOpThreads, library);
  }

  /** The intra-op thread count a pipeline will use (resolving the environment and the default). */
  public int intraOpThreads() {
    if (intraOpThreads > 0) {
      return intraOpThreads;
    }
    return threadsFrom(System.getenv(THREADS_ENV));
  }

  static int threadsFrom(String env) {
    if (env != null && !env.isBlank()) {
      int n;
      try {
        n = Integer.parseInt(env.trim());
      } catch (NumberFormatException e) {
        n = 0;
      }
      if (n < 1) {
        throw PipelineException.invalidInput(THREADS_ENV + " is '" + env + "'; expected a whole number of threads >= 1");
      }
      return n;
    }
    return Math.max(1, Runtime.getRuntime().availableProcessors());
  }

  public int interOpThreads() {
    return interOpThreads;
  }

  /** The extensions library set with {@link #withExtensionsLibrary}, or null (use the jar's). */
  public Path extensionsLibrary() {
    return extensionsLibrary;
  }

  @Override
  public String toString() {
    return "Options(intraOpThreads=" + (intraOpThreads > 0 ? intraOpThreads : "auto") + ", interOpThreads="
        + interOpThreads + (extensionsLibrary != null ? ", extensionsLibrary=" + extensionsLibrary : "") + ")";
  }
}
