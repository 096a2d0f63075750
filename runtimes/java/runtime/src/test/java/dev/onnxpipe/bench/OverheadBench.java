package dev.onnxpipe.bench;

import ai.onnxruntime.OnnxJavaType;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OnnxValue;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtLoggingLevel;
import ai.onnxruntime.OrtSession;
import dev.onnxpipe.Options;
import dev.onnxpipe.Pipeline;
import dev.onnxpipe.core.Tensor;
import dev.onnxpipe.core.TensorJson;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Issue 11 §7: what onnxpipe's {@link Pipeline#run} costs over the raw ONNX Runtime Java API, for digits and MiniLM
 * at batch 1 and 8. Both sides use one intra-op thread, sequential execution and the same inputs, and both hand
 * back Java arrays: the raw side creates its OnnxTensors, runs, copies each output out and closes, as a caller of
 * the raw API must. The two alternate call by call, so drift in machine load hits both; the table gives the
 * median over rounds of each side's mean latency per call.
 *
 * <pre>make -C runtimes/java bench [BENCH_ARGS="--seconds 2 --rounds 7 --minilm OTHER.onnx"]</pre>
 */
public final class OverheadBench {
  private static final java.lang.management.ThreadMXBean CPU = java.lang.management.ManagementFactory.getThreadMXBean();

  private OverheadBench() {}

  private record Config(String model, Path file, Map<String, Tensor> inputs, int batch) {}

  public static void main(String[] args) throws Exception {
    Path root = Path.of(".");
    Path minilmFile = null;
    double seconds = 3;
    int rounds = 5;
    for (int i = 0; i < args.length; i++) {
      switch (args[i]) {
        case "--root" -> root = Path.of(args[++i]);
        case "--seconds" -> seconds = Double.parseDouble(args[++i]);
        case "--rounds" -> rounds = Integer.parseInt(args[++i]);
        case "--minilm" -> minilmFile = Path.of(args[++i]);
        default -> throw new IllegalArgumentException("unknown argument " + args[i]);
      }
    }
    List<Config> configs = new ArrayList<>();
    Path digits = root.resolve("tests/vectors/digits");
    for (int batch : new int[] {1, 8}) {
      configs.add(new Config("digits", digits.resolve("model.onnx"), batched(digits.resolve("inputs_0.json"), batch),
          batch));
    }
    // the MiniLM file `make generated-models` builds (the Go harness reads the same one)
    Path minilm = minilmFile != null ? minilmFile : root.resolve("tests/vectors/minilm/model.generated.onnx");
    if (!Files.exists(minilm)) {
      System.out.println("note: MiniLM skipped: " + minilm + " is absent (run `make generated-models` at the root)");
    } else {
      for (int batch : new int[] {1, 8}) {
        configs.add(new Config("MiniLM", minilm, batched(root.resolve("tests/vectors/minilm/inputs_0.json"), batch),
            batch));
      }
    }
    System.out.printf("onnxpipe Pipeline.run vs raw ONNX Runtime %s (Java %s), 1 intra-op thread, calls"
        + " alternating, calling thread's CPU time, median of %d rounds of %.1f s; %d CPUs%n%n", OrtEnvironment.getEnvironment().getVersion(), Runtime.version(),
        rounds, seconds,
        Runtime.getRuntime().availableProcessors());
    System.out.println("| model | batch | raw ORT (CPU ms/call) | onnxpipe (CPU ms/call) | overhead |");
    System.out.println("|---|---:|---:|---:|---:|");
    for (Config c : configs) {
      double[] r = measure(c, seconds, rounds);
      System.out.printf("| %s | %d | %.3f | %.3f | %+.1f %% |%n", c.model(), c.batch(), r[0], r[1],
          100 * (r[1] - r[0]) / r[0]);
    }
  }

  /** {raw ms/call, onnxpipe ms/call}: medians over rounds. */
  private static double[] measure(Config c, double seconds, int rounds) throws Exception {
    boolean contrib = c.model().equals("MiniLM");
    try (Pipeline pipe = Pipeline.load(c.file(), Options.defaults().withIntraOpThreads(1));
        Raw raw = new Raw(c.file(), contrib)) {
      Runnable onnxpipe = () -> pipe.run(c.inputs());
      Runnable direct = () -> raw.run(c.inputs());
      time(onnxpipe, direct, seconds); // warm-up: JIT on both paths, ORT's arenas
      double[] p = new double[rounds];
      double[] r = new double[rounds];
      for (int i = 0; i < rounds; i++) {
        double[] t = time(onnxpipe, direct, seconds);
        p[i] = t[0];
        r[i] = t[1];
      }
      return new double[] {median(r), median(p)};
    }
  }

  /**
   * Mean ms per call of {@code a} and {@code b} over about {@code seconds}, the two alternating call by call (in
   * turn a-b and b-a). Time is the calling thread's CPU time: with one intra-op thread ONNX Runtime runs every
   * kernel on the caller, so this counts all the work of a call, and not the time other processes on a busy
   * machine take the CPU away.
   */
  private static double[] time(Runnable a, Runnable b, double seconds) {
    long budget = (long) (seconds * 1e9);
    long start = System.nanoTime();
    long ta = 0;
    long tb = 0;
    int n = 0;
    while (System.nanoTime() - start < budget) {
      Runnable first = n % 2 == 0 ? a : b;
      Runnable second = n % 2 == 0 ? b : a;
      long t0 = CPU.getCurrentThreadCpuTime();
      first.run();
      long t1 = CPU.getCurrentThreadCpuTime();
      second.run();
      long t2 = CPU.getCurrentThreadCpuTime();
      ta += n % 2 == 0 ? t1 - t0 : t2 - t1;
      tb += n % 2 == 0 ? t2 - t1 : t1 - t0;
      n++;
    }
    return new double[] {ta / 1e6 / n, tb / 1e6 / n};
  }

  private static double median(double[] v) {
    double[] s = v.clone();
    Arrays.sort(s);
    return s[s.length / 2];
  }

  /** The first tensor-JSON case, repeated along the batch axis to {@code batch} rows. */
  private static Map<String, Tensor> batched(Path inputs, int batch) {
    Map<String, Tensor> out = new LinkedHashMap<>();
    for (Map.Entry<String, Tensor> e : TensorJson.read(inputs).entrySet()) {
      Tensor t = e.getValue();
      long[] shape = t.shape();
      int n = t.size();
      shape[0] *= batch;
      Object data = Tensor.newArray(t.dtype(), n * batch);
      for (int b = 0; b < batch; b++) {
        System.arraycopy(t.data(), 0, data, b * n, n);
      }
      out.put(e.getKey(), Tensor.of(t.dtype(), data, shape));
    }
    return out;
  }

  /** The raw ONNX Runtime Java API on the same file, options and inputs. */
  private static final class Raw implements AutoCloseable {
    private final OrtEnvironment env = OrtEnvironment.getEnvironment();
    private final OrtSession.SessionOptions options = new OrtSession.SessionOptions();
    private final OrtSession session;

    Raw(Path file, boolean contrib) throws OrtException {
      options.setIntraOpNumThreads(1);
      options.setInterOpNumThreads(1);
      options.setExecutionMode(OrtSession.SessionOptions.ExecutionMode.SEQUENTIAL);
      options.setSessionLogLevel(OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL);
      if (contrib) {
        options.registerCustomOpLibrary(ai.onnxruntime.extensions.OrtxPackage.getLibraryPath());
      }
      session = env.createSession(file.toString(), options);
    }

    void run(Map<String, Tensor> inputs) {
      Map<String, OnnxTensor> feeds = new HashMap<>();
      try {
        for (Map.Entry<String, Tensor> e : inputs.entrySet()) {
          Tensor t = e.getValue();
          feeds.put(e.getKey(), switch (t.dtype()) {
            case UINT8 -> OnnxTensor.createTensor(env, ByteBuffer.wrap(t.bytes()), t.shape(), OnnxJavaType.UINT8);
            case STRING -> OnnxTensor.createTensor(env, t.strings(), t.shape());
            default -> throw new IllegalArgumentException("bench inputs are uint8 or string, got " + t.dtype());
          });
        }
        try (OrtSession.Result result = session.run(feeds)) {
          for (Map.Entry<String, OnnxValue> o : result) {
            copyOut((OnnxTensor) o.getValue());
          }
        }
      } catch (OrtException e) {
        throw new IllegalStateException(e);
      } finally {
        feeds.values().forEach(OnnxTensor::close);
      }
    }

    private static Object copyOut(OnnxTensor t) throws OrtException {
      int n = (int) t.getInfo().getNumElements();
      return switch (t.getInfo().type) {
        case FLOAT -> {
          float[] a = new float[n];
          t.getFloatBuffer().get(a);
          yield a;
        }
        case INT64 -> {
          long[] a = new long[n];
          t.getLongBuffer().get(a);
          yield a;
        }
        default -> t.getValue(); // strings
      };
    }

    @Override
    public void close() throws OrtException {
      session.close();
      options.close();
    }
  }
}
