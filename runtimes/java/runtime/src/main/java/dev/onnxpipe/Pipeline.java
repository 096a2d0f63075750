package dev.onnxpipe;

import ai.onnxruntime.NodeInfo;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OnnxValue;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtLoggingLevel;
import ai.onnxruntime.OrtSession;
import ai.onnxruntime.TensorInfo;
import ai.onnxruntime.ValueInfo;
import dev.onnxpipe.core.DType;
import dev.onnxpipe.core.ErrorCode;
import dev.onnxpipe.core.Json;
import dev.onnxpipe.core.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * An exported onnxpipe file, loaded and ready to run: raw inputs in (pixels, strings), final answers out
 * (labels, boxes, tags, embeddings).
 *
 * <pre>{@code
 * try (Pipeline pipe = Pipeline.load(Path.of("digits.onnx"))) {
 *   Outputs out = pipe.run(Map.of("image", Images.read(Path.of("seven.png"))));
 *   String[] labels = out.strings("label");
 * }
 * }</pre>
 *
 * <p>{@link #run} is thread-safe: many threads may share one pipeline. Inputs are checked against the
 * {@link #signature()} before ONNX Runtime is called; any problem is a {@link PipelineException} whose code
 * says what kind. After {@link #close()}, {@code run} throws it with code {@code CLOSED}.
 */
public final class Pipeline implements AutoCloseable {
  /** The custom-op domain of onnxruntime-extensions (tokenizers). */
  public static final String CONTRIB_DOMAIN = "ai.onnx.contrib";

  private final Path path;
  private final OrtEnvironment env;
  private final OrtSession session;
  private final OrtSession.SessionOptions sessionOptions;
  private final Signature signature;
  private final Map<String, OnnxTensor> defaults;
  private final Set<String> outputNames;
  private final int intraOpThreads;
  /** The graph has a Resize node: zero-size inputs must not reach ONNX Runtime 1.29 ({@link ZeroSize}). */
  private final boolean resizes;
  private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
  private volatile boolean closed;

  private Pipeline(Path path, OrtEnvironment env, OrtSession session, OrtSession.SessionOptions sessionOptions,
      Signature signature, Map<String, OnnxTensor> defaults, int intraOpThreads, boolean resizes) {
    this.path = path;
    this.env = env;
    this.session = session;
    this.sessionOptions = sessionOptions;
    this.signature = signature;
    this.defaults = defaults;
    this.outputNames = new LinkedHashSet<>(signature.outputNames());
    this.intraOpThreads = intraOpThreads;
    this.resizes = resizes;
  }

  /** Loads {@code path} with {@link Options#defaults()}. */
  public static Pipeline load(Path path) {
    return load(path, Options.defaults());
  }

  /**
   * Loads an onnxpipe file (or a plain ONNX file: its signature then comes from ONNX Runtime).
   *
   * @throws PipelineException {@code MODEL_LOAD} if the file cannot be read, is not an ONNX model, has an invalid
   *     manifest or one that does not match the graph; {@code MISSING_EXTENSION} if it needs a custom-op library
   *     that cannot be loaded
   */
  public static Pipeline load(Path path, Options options) {
    Objects.requireNonNull(path, "path");
    Objects.requireNonNull(options, "options");
    String where = "model file '" + path + "'";
    byte[] bytes;
    try {
      bytes = Files.readAllBytes(path);
    } catch (IOException | OutOfMemoryError e) {
      throw PipelineException.modelLoad(where + ": cannot read it (" + describe(e) + ")", e);
    }
    OnnxModel file = OnnxModel.read(bytes, where);
    String manifestText = file.metadata.get(Manifest.KEY);
    Signature manifest = manifestText == null ? null : Manifest.parse(manifestText, where);
    int threads = options.intraOpThreads();

    // the process-wide environment, shared with the application if it already made one
    OrtEnvironment env = OrtEnvironment.getEnvironment();
    OrtSession.SessionOptions so = new OrtSession.SessionOptions();
    OrtSession session = null;
    Map<String, OnnxTensor> defaults = new LinkedHashMap<>();
    try {
      so.setIntraOpNumThreads(threads);
      so.setInterOpNumThreads(options.interOpThreads());
      so.setExecutionMode(options.interOpThreads() > 1
          ? OrtSession.SessionOptions.ExecutionMode.PARALLEL : OrtSession.SessionOptions.ExecutionMode.SEQUENTIAL);
      // failures reach the caller as exceptions; ONNX Runtime's own log lines would only repeat them on stderr
      so.setSessionLogLevel(OrtLoggingLevel.ORT_LOGGING_LEVEL_FATAL);
      registerCustomOps(so, options, manifest != null ? manifest.domains() : file.domains, where);
      try {
        session = env.createSession(file.sessionBytes(), so);
      } catch (OrtException e) {
        throw PipelineException.modelLoad(where + ": ONNX Runtime cannot load it: " + e.getMessage(), e);
      }
      Signature sig = manifest != null ? manifest : fromSession(session, file);
      GraphCheck.check(sig, session, file.parameters.keySet(), where);
      for (TensorSpec s : sig.inputs()) {
        if (s.optional()) {
          defaults.put(s.name(), OrtValues.toOrt(env, defaultOf(s, file, where)));
        }
      }
      return new Pipeline(path, env, session, so, sig, defaults, threads, file.opTypes.contains("Resize"));
    } catch (OrtException e) {
      closeQuietly(session, so, defaults);
      throw PipelineException.modelLoad(where + ": " + e.getMessage(), e);
    } catch (RuntimeException | Error e) {
      closeQuietly(session, so, defaults);
      throw e;
    }
  }

  /** A parameter's value when the caller gives none: its initializer, else the manifest's scalar default. */
  private static Tensor defaultOf(TensorSpec s, OnnxModel file, String where) {
    Tensor init = file.parameters.get(s.name());
    if (init != null) {
      Defaults.checkAgainstManifest(s, init, where);
      return init;
    }
    if (s.rank() == 0 && s.defaultValue() instanceof Number n) {
      return switch (s.dtype()) {
        case FLOAT32 -> Tensor.scalar(n.floatValue());
        case FLOAT64 -> Tensor.scalar(n.doubleValue());
        case INT64 -> Tensor.scalar(n.longValue());
        case INT32 -> Tensor.scalar(n.intValue());
        default -> throw noDefault(s, where);
      };
    }
    throw noDefault(s, where);
  }

  private static PipelineException noDefault(TensorSpec s, String where) {
    return PipelineException.modelLoad(where + ": optional input '" + s.name() + "' has neither an initializer in"
        + " the graph nor a scalar default in the manifest; expected one of them", null);
  }

  /** Registers the library of every custom-op domain the pipeline lists (ai.onnx and ai.onnx.ml are built in). */
  private static void registerCustomOps(OrtSession.SessionOptions so, Options options, Iterable<String> domains,
      String where) {
    for (String d : domains) {
      if (d.equals(CONTRIB_DOMAIN)) {
        registerExtensions(so, options, where);
      } else if (!d.equals("ai.onnx") && !d.equals("ai.onnx.ml") && !d.startsWith("com.microsoft")) {
        throw new PipelineException(ErrorCode.MISSING_EXTENSION, where + " needs custom ops from domain '" + d
            + "', for which this runtime knows no library; it registers " + CONTRIB_DOMAIN
            + " (onnxruntime-extensions)");
      }
    }
  }

  private static void registerExtensions(OrtSession.SessionOptions so, Options options, String where) {
    String library;
    if (options.extensionsLibrary() != null) {
      library = options.extensionsLibrary().toString();
    } else {
      try {
        library = Extensions.libraryPath();
      } catch (LinkageError | RuntimeException e) {
        throw new PipelineException(ErrorCode.MISSING_EXTENSION, where + " uses custom ops from domain '"
            + CONTRIB_DOMAIN + "', which need onnxruntime-extensions: add the Maven dependency "
            + "com.microsoft.onnxruntime:onnxruntime-extensions (" + describe(e) + ")", e);
      }
    }
    try {
      so.registerCustomOpLibrary(library);
    } catch (OrtException | RuntimeException e) {
      throw new PipelineException(ErrorCode.MISSING_EXTENSION, where + " uses custom ops from domain '"
          + CONTRIB_DOMAIN + "', but the onnxruntime-extensions library '" + library + "' cannot be loaded: "
          + e.getMessage(), e);
    }
  }

  /** Keeps the reference to the extensions jar in its own class, so a missing jar is a LinkageError here. */
  private static final class Extensions {
    static String libraryPath() {
      // static in 0.13.0 (the docs write OrtxPackage.getPackage().getLibraryPath()); extracts the native library
      return ai.onnxruntime.extensions.OrtxPackage.getLibraryPath();
    }
  }

  /** The signature of a plain ONNX file, from ONNX Runtime's info; overridable initializers are optional. */
  private static Signature fromSession(OrtSession session, OnnxModel file) throws OrtException {
    List<TensorSpec> inputs = new ArrayList<>();
    for (NodeInfo n : session.getInputInfo().values()) {
      Tensor def = file.parameters.get(n.getName());
      inputs.add(spec(n, def != null, def == null ? null : defaultJson(def)));
    }
    List<TensorSpec> outputs = new ArrayList<>();
    for (NodeInfo n : session.getOutputInfo().values()) {
      outputs.add(spec(n, false, null));
    }
    List<String> domains = new ArrayList<>();
    for (String d : file.domains) {
      if (!d.equals("ai.onnx")) {
        domains.add(d);
      }
    }
    return new Signature("onnxruntime", inputs, outputs, null, domains);
  }

  private static TensorSpec spec(NodeInfo n, boolean optional, Object defaultValue) {
    ValueInfo info = n.getInfo();
    DType dtype = info instanceof TensorInfo t ? OrtValues.dtype(t) : null;
    if (dtype == null) {
      throw PipelineException.modelLoad("'" + n.getName() + "': type " + info + " is not supported; expected a tensor"
          + " of one of " + DType.names(), null);
    }
    TensorInfo t = (TensorInfo) info;
    long[] shape = t.getShape();
    String[] names = t.getDimensionNames();
    List<Object> dims = new ArrayList<>();
    for (int i = 0; i < shape.length; i++) {
      if (shape[i] >= 0) {
        dims.add(shape[i]);
      } else {
        dims.add(names != null && i < names.length && !names[i].isEmpty() ? names[i] : null);
      }
    }
    return new TensorSpec(n.getName(), dtype, dims, optional, defaultValue);
  }

  private static Object defaultJson(Tensor t) {
    List<Object> values = new ArrayList<>();
    for (int i = 0; i < t.size(); i++) {
      values.add(switch (t.dtype()) {
        case FLOAT32 -> new Json.Num(Float.toString(t.floats()[i]));
        case FLOAT64 -> new Json.Num(Double.toString(t.doubles()[i]));
        case INT64 -> t.longs()[i];
        case INT32 -> t.ints()[i];
        case UINT8 -> Byte.toUnsignedInt(t.bytes()[i]);
        case INT8 -> (int) t.bytes()[i];
        case BOOL -> t.booleans()[i];
        case STRING -> t.strings()[i];
      });
    }
    return t.rank() == 0 ? values.get(0) : values;
  }

  /** The pipeline's inputs and outputs (from the manifest, or ONNX Runtime for a plain file). */
  public Signature signature() {
    return signature;
  }

  public Path path() {
    return path;
  }

  /** The intra-op thread count the session was created with. */
  public int intraOpThreads() {
    return intraOpThreads;
  }

  /**
   * Runs the pipeline. Values are {@link Tensor}s, or {@code String[]} for a 1-D string input. Optional inputs
   * (thresholds) may be omitted: the graph's default is used.
   *
   * <p>dtypes must match the signature, except these lossless widenings (numpy's "safe" casts, as in the
   * Python runtime): uint8 and int8 to int32, int64, float32 or float64; int32 to int64 or float64; float32
   * to float64.
   *
   * @return every output of the signature, in manifest order
   * @throws PipelineException {@code INVALID_INPUT} (before ONNX Runtime is called), {@code RUNTIME}, or
   *     {@code CLOSED} after {@link #close()}
   */
  public Outputs run(Map<String, ?> inputs) {
    lock.readLock().lock();
    try {
      if (closed) {
        throw new PipelineException(ErrorCode.CLOSED, "pipeline '" + path.getFileName() + "' is closed; load it again");
      }
      Map<String, Tensor> checked = InputCheck.validate(signature, inputs);
      Outputs empty = zeroSize(checked);
      if (empty != null) {
        return empty;
      }
      List<OnnxTensor> created = new ArrayList<>();
      try {
        Map<String, OnnxTensor> feeds = new HashMap<>();
        for (Map.Entry<String, Tensor> e : checked.entrySet()) {
          OnnxTensor t = OrtValues.toOrt(env, e.getValue());
          created.add(t);
          feeds.put(e.getKey(), t);
        }
        // every parameter on every run: the caller's value or its default, in the one session
        for (Map.Entry<String, OnnxTensor> e : defaults.entrySet()) {
          feeds.putIfAbsent(e.getKey(), e.getValue());
        }
        try (OrtSession.Result result = session.run(feeds, outputNames)) {
          Map<String, Tensor> out = new LinkedHashMap<>();
          for (TensorSpec spec : signature.outputs()) {
            OnnxValue v = result.get(spec.name()).orElseThrow(() -> new PipelineException(
                ErrorCode.RUNTIME, "ONNX Runtime returned no output '" + spec.name() + "'"));
            out.put(spec.name(), OrtValues.fromOrt(spec, v));
          }
          return new Outputs(out);
        }
      } catch (OrtException e) {
        throw new PipelineException(ErrorCode.RUNTIME,
            "ONNX Runtime failed" + failedNode(e.getMessage()) + " on " + path.getFileName() + ": " + e.getMessage(), e);
      } finally {
        for (OnnxTensor t : created) {
          t.close();
        }
      }
    } finally {
      lock.readLock().unlock();
    }
  }

  /** The answer for inputs ONNX Runtime must not see ({@link ZeroSize}), or null to run them. */
  private Outputs zeroSize(Map<String, Tensor> checked) {
    String precision = signature.precision();
    if ("int8".equals(precision) || "mixed".equals(precision)) {
      String input = ZeroSize.zeroSizeInput(checked);
      if (input != null) {
        throw ZeroSize.quantized(signature, input, checked.get(input));
      }
    }
    String emptyBatch = resizes ? ZeroSize.emptyBatchInput(signature, checked) : null;
    return emptyBatch == null ? null : ZeroSize.emptyResult(signature, checked, emptyBatch);
  }

  /** Releases the native session; waits for runs in progress. Idempotent. */
  @Override
  public void close() {
    lock.writeLock().lock();
    try {
      if (closed) {
        return;
      }
      closed = true;
      closeQuietly(session, sessionOptions, defaults);
    } finally {
      lock.writeLock().unlock();
    }
  }

  public boolean isClosed() {
    return closed;
  }

  private static void closeQuietly(OrtSession session, OrtSession.SessionOptions so, Map<String, OnnxTensor> tensors) {
    for (OnnxTensor t : tensors.values()) {
      t.close();
    }
    if (session != null) {
      try {
        session.close();
      } catch (OrtException e) {
        // nothing left to release that the caller could act on
      }
    }
    so.close();
  }

  private static final java.util.regex.Pattern NODE =
      java.util.regex.Pattern.compile("running (\\S+) node\\. Name:'([^']*)'");

  /** " in stage 'pre' (node 'pre/tokenizer', BertTokenizer)" from ONNX Runtime's message, if it names a node. */
  static String failedNode(String message) {
    java.util.regex.Matcher m = NODE.matcher(message == null ? "" : message);
    if (!m.find()) {
      return "";
    }
    String node = m.group(2);
    int slash = node.indexOf('/');
    String stage = slash > 0 ? " in stage '" + node.substring(0, slash) + "'" : "";
    return stage + " (node '" + node + "', " + m.group(1) + ")";
  }

  static String describe(Throwable e) {
    String m = e.getMessage();
    return e.getClass().getSimpleName() + (m == null || m.isEmpty() ? "" : ": " + m);
  }

  @Override
  public String toString() {
    return "Pipeline(" + path.getFileName() + ", inputs=" + signature.inputs() + ")";
  }
}
