package dev.onnxpipe.sidecar;

import dev.onnxpipe.core.OnnxpipeException;
import dev.onnxpipe.core.Tensor;
import dev.onnxpipe.core.TensorJson;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Calls a running sidecar with a tensor-JSON inputs file and prints the outputs as tensor JSON.
 *
 * <pre>
 * onnxpipe serve digits.onnx &amp;
 * onnxpipe-sidecar-example-java digits tests/vectors/digits/inputs_0.json
 * onnxpipe-sidecar-example-java --port 8001 basic inputs.json score label   # only these outputs
 * </pre>
 *
 * <p>Exit status: 0 done, 1 the call failed (stderr: {@code [CODE] message}), 2 bad usage or unreadable inputs.
 */
public final class Example {
  static final String PROG = "onnxpipe-sidecar-example-java";
  static final String USAGE = "usage: " + PROG + " [--host HOST] [--port PORT] [--token TOKEN] [--tls | --tls-ca PEM]\n"
      + "       [--timeout-s SECONDS] [--metadata] MODEL [INPUTS.json [OUTPUT ...]]\n"
      + "  Runs MODEL on the onnxpipe sidecar (default 127.0.0.1:8001) with the tensors of INPUTS.json\n"
      + "  (docs/tensor-json.md) and prints the outputs (all, or the OUTPUTs named) as tensor JSON.\n"
      + "  --metadata prints the model's inputs and outputs instead. --token defaults to $ONNXPIPE_TOKEN.";

  private Example() {}

  public static void main(String[] args) {
    System.exit(run(args, System.out, System.err));
  }

  static int run(String[] args, PrintStream out, PrintStream err) {
    String host = "127.0.0.1";
    int port = 8001;
    String token = System.getenv("ONNXPIPE_TOKEN");
    boolean tls = false;
    Path tlsCa = null;
    double timeoutS = 30;
    boolean metadata = false;
    List<String> positional = new ArrayList<>();
    try {
      for (int i = 0; i < args.length; i++) {
        String a = args[i];
        switch (a) {
          case "-h":
          case "--help":
            out.println(USAGE);
            return 0;
          case "--host":
            host = value(args, ++i, a);
            break;
          case "--port":
            port = Integer.parseInt(value(args, ++i, a));
            break;
          case "--token":
            token = value(args, ++i, a);
            break;
          case "--tls":
            tls = true;
            break;
          case "--tls-ca":
            tlsCa = Path.of(value(args, ++i, a));
            break;
          case "--timeout-s":
            timeoutS = Double.parseDouble(value(args, ++i, a));
            break;
          case "--metadata":
            metadata = true;
            break;
          default:
            if (a.startsWith("--")) {
              throw new IllegalArgumentException("unknown option " + a);
            }
            positional.add(a);
        }
      }
      if (positional.isEmpty() || (!metadata && positional.size() < 2)) {
        throw new IllegalArgumentException(metadata ? "MODEL is missing" : "MODEL and INPUTS.json are required");
      }
      if (!(timeoutS > 0)) {
        throw new IllegalArgumentException("--timeout-s " + timeoutS + " given, expected > 0");
      }
    } catch (IllegalArgumentException e) {
      err.println(PROG + ": " + e.getMessage() + "\n" + USAGE);
      return 2;
    }

    String model = positional.get(0);
    Map<String, Tensor> inputs = null;
    if (!metadata) {
      Path file = Path.of(positional.get(1));
      if (!Files.exists(file)) {
        err.println(PROG + ": inputs file '" + positional.get(1) + "' does not exist");
        return 2;
      }
      try {
        inputs = TensorJson.read(file);
      } catch (OnnxpipeException e) {
        err.println(PROG + ": [" + e.code() + "] " + e.getMessage());
        return 2;
      }
    }
    String[] outputs = positional.subList(Math.min(2, positional.size()), positional.size()).toArray(new String[0]);

    SidecarClient.Builder builder;
    try {
      builder = SidecarClient.builder(host, port).timeout(Duration.ofMillis((long) (timeoutS * 1000)));
      if (token != null && !token.isEmpty()) {
        builder.token(token);
      }
      if (tlsCa != null) {
        builder.tls(tlsCa);
      } else if (tls) {
        builder.tls();
      }
    } catch (IllegalArgumentException e) {
      err.println(PROG + ": " + e.getMessage());
      return 2;
    }
    try (SidecarClient client = builder.build()) {
      if (metadata) {
        ModelMetadata m = client.metadata(model);
        out.println("model " + m.name() + " (" + m.platform() + ", versions " + m.versions() + ")");
        m.inputs().forEach(t -> out.println("  input  " + t));
        m.outputs().forEach(t -> out.println("  output " + t));
      } else {
        out.println(TensorJson.write(client.infer(model, inputs, outputs)));
      }
      return 0;
    } catch (SidecarException e) {
      err.println(PROG + ": [" + e.code() + "] " + e.getMessage());
      return 1;
    } catch (IllegalArgumentException e) {
      err.println(PROG + ": " + e.getMessage());
      return 2;
    }
  }

  private static String value(String[] args, int i, String option) {
    if (i >= args.length) {
      throw new IllegalArgumentException(option + " needs a value");
    }
    return args[i];
  }
}
