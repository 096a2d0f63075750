package dev.onnxpipe.cli;

import dev.onnxpipe.Options;
import dev.onnxpipe.Outputs;
import dev.onnxpipe.Pipeline;
import dev.onnxpipe.PipelineException;
import dev.onnxpipe.Tensor;
import dev.onnxpipe.TensorJson;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * {@code onnxpipe-java}: run or inspect an onnxpipe file from the command line.
 *
 * <pre>
 * onnxpipe-java run MODEL --inputs FILE.json [--threads N]   outputs as tensor JSON on stdout
 * onnxpipe-java inspect MODEL                                 the signature as JSON on stdout
 * </pre>
 *
 * <p>Errors: exit 1 and one line on stderr ({@code onnxpipe-java: CODE: message}); exit 2 for a usage error.
 * {@code --stacktrace} (or {@code ONNXPIPE_DEBUG=1}) adds the Java stack trace.
 */
public final class Main {
  static final String USAGE = String.join("\n",
      "usage: onnxpipe-java run MODEL --inputs FILE.json [--threads N] [--stacktrace]",
      "       onnxpipe-java inspect MODEL [--stacktrace]",
      "       onnxpipe-java --version",
      "",
      "run      run the pipeline on the tensor-JSON inputs; print the outputs as tensor JSON",
      "inspect  print the pipeline's signature (inputs, outputs, labels, domains) as JSON",
      "",
      "env: ONNXPIPE_THREADS  intra-op threads (default: the CPUs this JVM may use)");

  private Main() {}

  public static void main(String[] args) {
    PrintStream out = new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), true, StandardCharsets.UTF_8);
    PrintStream err = new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.err), true, StandardCharsets.UTF_8);
    int code = run(args, out, err);
    out.flush();
    err.flush();
    System.exit(code);
  }

  private static final class Usage extends Exception {
    private static final long serialVersionUID = 1L;

    Usage(String message) {
      super(message);
    }
  }

  /** Runs the CLI; returns the exit code (0 ok, 1 error, 2 usage). */
  public static int run(String[] args, PrintStream out, PrintStream err) {
    List<String> rest = new ArrayList<>();
    boolean stacktrace = "1".equals(System.getenv("ONNXPIPE_DEBUG"));
    String inputs = null;
    Integer threads = null;
    try {
      for (int i = 0; i < args.length; i++) {
        String a = args[i];
        switch (a) {
          case "-h", "--help" -> {
            out.println(USAGE);
            return 0;
          }
          case "--version" -> {
            out.println("onnxpipe-java " + version() + " (onnxruntime "
                + ai.onnxruntime.OrtEnvironment.getEnvironment().getVersion() + ", Java " + Runtime.version() + ")");
            return 0;
          }
          case "--stacktrace" -> stacktrace = true;
          case "--inputs" -> inputs = value(args, ++i, a);
          case "--threads" -> {
            String v = value(args, ++i, a);
            try {
              threads = Integer.parseInt(v);
            } catch (NumberFormatException e) {
              threads = 0;
            }
            if (threads < 1) {
              throw new Usage("--threads: expected a whole number >= 1, got '" + v + "'");
            }
          }
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
      Options options = Options.defaults();
      if (threads != null) {
        options = options.withIntraOpThreads(threads);
      }
      Path model = Path.of(rest.get(1));
      try (Pipeline pipe = Pipeline.load(model, options)) {
        if (command.equals("inspect")) {
          out.println(pipe.signature().toJson());
        } else {
          Map<String, Tensor> given = TensorJson.read(Path.of(inputs));
          Outputs result = pipe.run(given);
          out.println(result.toJson());
        }
      }
      return 0;
    } catch (Usage e) {
      err.println("onnxpipe-java: " + e.getMessage() + " (see onnxpipe-java --help)");
      return 2;
    } catch (PipelineException e) {
      err.println("onnxpipe-java: " + e.code() + ": " + oneLine(e.getMessage()));
      if (stacktrace) {
        e.printStackTrace(err);
      }
      return 1;
    } catch (RuntimeException | Error e) {
      err.println("onnxpipe-java: internal error: " + oneLine(String.valueOf(e)));
      if (stacktrace) {
        e.printStackTrace(err);
      }
      return 1;
    }
  }

  private static String value(String[] args, int i, String option) throws Usage {
    if (i >= args.length) {
      throw new Usage(option + " needs a value");
    }
    return args[i];
  }

  private static String oneLine(String s) {
    return s == null ? "" : s.replaceAll("\\s*\\R\\s*", " ").trim();
  }

  static String version() {
    String v = Main.class.getPackage().getImplementationVersion();
    return v != null ? v : "dev";
  }
}
