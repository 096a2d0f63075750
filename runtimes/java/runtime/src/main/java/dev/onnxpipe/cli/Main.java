package dev.onnxpipe.cli;

import dev.onnxpipe.Options;
import dev.onnxpipe.Outputs;
import dev.onnxpipe.Pipeline;
import dev.onnxpipe.core.ErrorCode;
import dev.onnxpipe.core.Limits;
import dev.onnxpipe.core.OnnxpipeException;
import dev.onnxpipe.core.Tensor;
import dev.onnxpipe.core.TensorJson;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * {@code onnxpipe-java}: run or inspect an onnxpipe file from the command line.
 *
 * <pre>
 * onnxpipe-java run MODEL --inputs FILE.json [--threads N] [--max-elements N] ...   outputs as tensor JSON
 * onnxpipe-java inspect MODEL                                                         the signature as JSON
 * </pre>
 *
 * <p>Errors (spec/errors.json): nothing on stdout, one line on stderr, {@code onnxpipe-java: error [CODE]:
 * message}, and the code's exit status: 2 usage (and files named on the command line that do not exist), 3
 * INVALID_INPUT / TOO_LARGE, 4 MODEL_LOAD / MISSING_EXTENSION, 5 RUNTIME / CLOSED. {@code --stacktrace} (or
 * {@code ONNXPIPE_DEBUG=1}) adds the Java stack trace.
 */
public final class Main {
  static final String PROGRAM = "onnxpipe-java";
  static final String USAGE = String.join("\n",
      "usage: onnxpipe-java run MODEL --inputs FILE.json [--threads N] [--max-elements N] [--max-string-bytes N]",
      "                         [--max-document-bytes N] [--stacktrace]",
      "       onnxpipe-java inspect MODEL [--stacktrace]",
      "       onnxpipe-java --version",
      "",
      "run      run the pipeline on the tensor-JSON inputs; print the outputs as tensor JSON",
      "inspect  print the pipeline's signature (inputs, outputs, labels, domains) as JSON",
      "",
      "limits (spec/limits.json): --max-elements " + Limits.DEFAULT_MAX_ELEMENTS + ", --max-string-bytes "
          + Limits.DEFAULT_MAX_STRING_BYTES + ", --max-document-bytes " + Limits.DEFAULT_MAX_DOCUMENT_BYTES,
      "exit: 0 ok, 2 usage, 3 INVALID_INPUT/TOO_LARGE, 4 MODEL_LOAD/MISSING_EXTENSION, 5 RUNTIME/CLOSED",
      "env: ONNXPIPE_THREADS  intra-op threads (default: the CPUs this JVM may use)");

  private Main() {}

  public static void main(String[] args) {
    PrintStream out = new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), false, StandardCharsets.UTF_8);
    PrintStream err = new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.err), true, StandardCharsets.UTF_8);
    int code = run(args, out, err);
    out.flush();
    err.flush();
    System.exit(code);
  }

  /** A bad command line: exit 2. */
  private static final class Usage extends Exception {
    private static final long serialVersionUID = 1L;

    Usage(String message) {
      super(message);
    }
  }

  /** What the command line asked for. */
  private record Command(String name, Path model, Path inputs, Integer threads, Limits limits, boolean stacktrace) {}

  /** Runs the CLI; returns the exit status. */
  public static int run(String[] args, PrintStream out, PrintStream err) {
    boolean stacktrace = "1".equals(System.getenv("ONNXPIPE_DEBUG")) || List.of(args).contains("--stacktrace");
    try {
      if (args.length == 1 && (args[0].equals("-h") || args[0].equals("--help"))) {
        out.println(USAGE);
        return 0;
      }
      if (args.length == 1 && args[0].equals("--version")) {
        out.println(PROGRAM + " " + version() + " (onnxruntime "
            + ai.onnxruntime.OrtEnvironment.getEnvironment().getVersion() + ", Java " + Runtime.version() + ")");
        return 0;
      }
      Command c = parse(args);
      String result = execute(c, err);
      out.println(result);
      out.flush();
      return 0;
    } catch (Usage e) {
      return fail(err, ErrorCode.USAGE, e.getMessage() + " (see " + PROGRAM + " --help)", e, false);
    } catch (OnnxpipeException e) {
      return fail(err, e.code(), e.getMessage(), e, stacktrace);
    } catch (OutOfMemoryError e) {
      return fail(err, ErrorCode.TOO_LARGE, "out of Java heap (" + e.getMessage() + "); lower --max-elements or give"
          + " the JVM more memory (ONNXPIPE_JAVA_OPTS=-Xmx...)", e, stacktrace);
    } catch (RuntimeException | Error e) {
      // a bug, not an input: still one line, with the RUNTIME status
      return fail(err, ErrorCode.RUNTIME, "unexpected " + e, e, stacktrace);
    }
  }

  private static int fail(PrintStream err, ErrorCode code, String message, Throwable e, boolean stacktrace) {
    err.println(PROGRAM + ": error [" + code + "]: " + oneLine(message));
    if (stacktrace) {
      e.printStackTrace(err);
    }
    return code.exitStatus();
  }

  private static String execute(Command c, PrintStream err) {
    Options options = Options.defaults();
    if (c.threads() != null) {
      options = options.withIntraOpThreads(c.threads());
    }
    try (Pipeline pipe = Pipeline.load(c.model(), options)) {
      if (c.name().equals("inspect")) {
        if (!pipe.signature().source().equals("manifest")) {
          err.println(PROGRAM + ": no onnxpipe manifest (plain ONNX); the signature comes from ONNX Runtime");
        }
        return pipe.signature().toJson();
      }
      Map<String, Tensor> given = TensorJson.read(c.inputs(), c.limits());
      Outputs result = pipe.run(given);
      return result.toJson();
    }
  }

  private static Command parse(String[] args) throws Usage {
    List<String> rest = new ArrayList<>();
    String inputs = null;
    Integer threads = null;
    Limits limits = Limits.defaults();
    for (int i = 0; i < args.length; i++) {
      String a = args[i];
      switch (a) {
        case "--stacktrace" -> { }
        case "--inputs" -> inputs = value(args, ++i, a);
        case "--threads" -> threads = (int) number(args, ++i, a, Integer.MAX_VALUE);
        case "--max-elements" -> limits = limits.withMaxElements(number(args, ++i, a, Integer.MAX_VALUE - 8));
        case "--max-string-bytes" -> limits = limits.withMaxStringBytes(number(args, ++i, a, Long.MAX_VALUE));
        case "--max-document-bytes" -> limits = limits.withMaxDocumentBytes(number(args, ++i, a, Long.MAX_VALUE));
        default -> {
          if (a.startsWith("--inputs=")) {
            inputs = a.substring("--inputs=".length());
          } else if (a.startsWith("-") && !a.equals("-")) {
            throw new Usage("unknown option '" + a + "'");
          } else {
            rest.add(a);
          }
        }
      }
    }
    if (rest.isEmpty()) {
      throw new Usage("missing command: run or inspect");
    }
    String command = rest.get(0);
    if (!command.equals("run") && !command.equals("inspect")) {
      throw new Usage("unknown command '" + command + "'; expected run or inspect");
    }
    if (rest.size() != 2) {
      throw new Usage(command + ": expected exactly one MODEL path, got " + (rest.size() - 1));
    }
    if (command.equals("run") && inputs == null) {
      throw new Usage("run: --inputs FILE.json is required");
    }
    if (command.equals("inspect") && inputs != null) {
      throw new Usage("inspect: --inputs is only for run");
    }
    return new Command(command, existing(rest.get(1), "MODEL"), inputs == null ? null : existing(inputs, "--inputs"),
        threads, limits, false);
  }

  /** A file named on the command line that does not exist is a usage error (spec/errors.json USAGE). */
  private static Path existing(String name, String what) throws Usage {
    Path p = Path.of(name);
    if (!Files.exists(p)) {
      throw new Usage(what + " '" + name + "': no such file");
    }
    return p;
  }

  private static String value(String[] args, int i, String option) throws Usage {
    if (i >= args.length) {
      throw new Usage(option + " needs a value");
    }
    return args[i];
  }

  private static long number(String[] args, int i, String option, long max) throws Usage {
    String v = value(args, i, option);
    long n;
    try {
      n = Long.parseLong(v);
    } catch (NumberFormatException e) {
      n = 0;
    }
    if (n < 1 || n > max) {
      throw new Usage(option + ": expected a whole number in [1, " + max + "], got '" + v + "'");
    }
    return n;
  }

  private static String oneLine(String s) {
    return s == null ? "" : s.replaceAll("\\s*\\R\\s*", " ").trim();
  }

  static String version() {
    String v = Main.class.getPackage().getImplementationVersion();
    return v != null ? v : "dev";
  }
}
