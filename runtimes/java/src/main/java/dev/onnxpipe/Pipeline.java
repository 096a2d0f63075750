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
 * says what kind. After {@link #close()}, {@code run} throws {@link IllegalStateException}.
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
  private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
  private volatile boolean closed;

  private Pipeline(Path path, OrtEnvironment env, OrtSession session, OrtSession.SessionOptions sessionOptions,
      Signature signature, Map<String, OnnxTensor> defaults, int intraOpThreads) {
    this.path = path;
    this.env = env;
    this.session = session;
    this.sessionOptions = sessionOptions;
    this.signature = signature;
    this.defaults = defaults;
    this.outputNames = new LinkedHashSet<>(signature.outputNames());
    this.intraOpThreads = intraOpThreads;
  }

  /** Loads {@code path} with {@link Options#defaults()}. */
  public static Pipeline load(Path path) {
    return load(path, Options.defaults());
  }

  /**
   * Loads an onnxpipe file (or a plain ONNX file: its signature then comes from ONNX Runtime).
   *
   * @throws PipelineException {@code MODEL_LOAD} if the file cannot be read, is not an ONNX model or has an
   *     invalid manifest; {@code MISSING_EXTENSION} if it needs onnxruntime-extensions and that cannot be loaded
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
    ModelFile file;
    byte[] model;
    try {
      file = ModelFile.scan(bytes);
      model = file.withoutInitializers();
    } catch (ModelFile.FormatException e) {
      throw PipelineException.modelLoad(where + ": not a valid ONNX model file (" + e.getMessage() + ")", e);
    }
    String manifestText = file.metadata.get(Manifest.KEY);
    Signature early = manifestText == null ? null : Manifest.parse(manifestText, where); // fail fast on a bad manifest
    boolean needsExtensions = file.opsets.containsKey(CONTRIB_DOMAIN)
        || (early != null && early.domains().contains(CONTRIB_DOMAIN));
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
      if (needsExtensions) {
        registerExtensions(so, options, where);
      }
      try {
        session = env.createSession(model, so);
      } catch (OrtException e) {
        throw PipelineException.modelLoad(where + ": ONNX Runtime cannot load it: " + e.getMessage(), e);
      }
      Map<String, String> custom = session.getMetadata().getCustomMetadata();
      String text = custom.get(Manifest.KEY);
      Signature sig = text != null ? Manifest.parse(text, where) : fromSession(session, file);
      check(sig, session, file, where);
      for (Map.Entry<String, Tensor> e : file.overridable.entrySet()) {
        defaults.put(e.getKey(), OrtValues.toOrt(env, e.getValue()));
      }
      return new Pipeline(path, env, session, so, sig, defaults, threads);
    } catch (OrtException e) {
      closeQuietly(session, so, defaults);
      throw PipelineException.modelLoad(where + ": " + e.getMessage(), e);
    } catch (RuntimeException | Error e) {
      closeQuietly(session, so, defaults);
      throw e;
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
        throw new PipelineException(PipelineException.Code.MISSING_EXTENSION, where + " uses custom ops from domain '"
            + CONTRIB_DOMAIN + "', which need onnxruntime-extensions: add the Maven dependency "
            + "com.microsoft.onnxruntime:onnxruntime-extensions (" + describe(e) + ")", e);
      }
    }
    try {
      so.registerCustomOpLibrary(library);
    } catch (OrtException | RuntimeException e) {
      throw new PipelineException(PipelineException.Code.MISSING_EXTENSION, where + " uses custom ops from domain '"
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
  private static Signature fromSession(OrtSession session, ModelFile file) throws OrtException {
    List<TensorSpec> inputs = new ArrayList<>();
    for (NodeInfo n : session.getInputInfo().values()) {
      Tensor def = file.overridable.get(n.getName());
      inputs.add(spec(n, def != null, def == null ? null : defaultJson(def)));
    }
    List<TensorSpec> outputs = new ArrayList<>();
    for (NodeInfo n : session.getOutputInfo().values()) {
      outputs.add(spec(n, false, null));
    }
    List<String> domains = new ArrayList<>();
    for (String d : file.opsets.keySet()) {
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

  /** The manifest must describe the graph it came with. */
  private static void check(Signature sig, OrtSession session, ModelFile file, String where) throws OrtException {
    Set<String> graphInputs = session.getInputNames();
    Set<String> graphOutputs = session.getOutputNames();
    for (TensorSpec s : sig.inputs()) {
      if (!graphInputs.contains(s.name())) {
        String why = file.undecodable().contains(s.name())
            ? " (its initializer uses external data or a dtype this runtime cannot read)" : "";
        throw PipelineException.modelLoad(where + ": the manifest lists input '" + s.name()
            + "', which the graph does not accept" + why + "; graph inputs: " + graphInputs, null);
      }
    }
    for (String g : graphInputs) {
      if (sig.input(g) == null && !file.overridable.containsKey(g)) {
        throw PipelineException.modelLoad(where + ": graph input '" + g + "' is missing from the manifest's inputs "
            + sig.inputNames(), null);
      }
    }
    for (TensorSpec s : sig.outputs()) {
      if (!graphOutputs.contains(s.name())) {
        throw PipelineException.modelLoad(where + ": the manifest lists output '" + s.name()
            + "', which the graph does not produce; graph outputs: " + graphOutputs, null);
      }
    }
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
   * @throws PipelineException {@code INVALID_INPUT} (before ONNX Runtime is called) or {@code RUNTIME}
   * @throws IllegalStateException after {@link #close()}
   */
  public Outputs run(Map<String, ?> inputs) {
    lock.readLock().lock();
    try {
      if (closed) {
        throw new IllegalStateException("pipeline '" + path + "' is closed");
      }
      Map<String, Tensor> checked = InputCheck.validate(signature, inputs);
      List<OnnxTensor> created = new ArrayList<>();
      try {
        Map<String, OnnxTensor> feeds = new HashMap<>();
        for (Map.Entry<String, Tensor> e : checked.entrySet()) {
          OnnxTensor t = OrtValues.toOrt(env, e.getValue());
          created.add(t);
          feeds.put(e.getKey(), t);
        }
        for (Map.Entry<String, OnnxTensor> e : defaults.entrySet()) {
          feeds.putIfAbsent(e.getKey(), e.getValue());
        }
        try (OrtSession.Result result = session.run(feeds, outputNames)) {
          Map<String, Tensor> out = new LinkedHashMap<>();
          for (TensorSpec spec : signature.outputs()) {
            OnnxValue v = result.get(spec.name()).orElseThrow(() -> new PipelineException(
                PipelineException.Code.RUNTIME, "ONNX Runtime returned no output '" + spec.name() + "'"));
            out.put(spec.name(), OrtValues.fromOrt(spec, v));
          }
          return new Outputs(out);
        }
      } catch (OrtException e) {
        throw new PipelineException(PipelineException.Code.RUNTIME,
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
