package dev.onnxpipe.sidecar;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.onnxpipe.core.ErrorCode;
import dev.onnxpipe.core.Json;
import dev.onnxpipe.core.OnnxpipeException;
import dev.onnxpipe.core.TensorJson;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * The client's tensor-JSON reader (the core's, which the example and callers use) against every case of
 * spec/cases/: an {@code inputs_text} case with an {@code error} that the reader refuses must be refused with that
 * code (one it reads is a pipeline-level case: the live sidecar checks it in {@code SidecarServerTest.specCases}
 * and the runtime's SpecConformanceTest everywhere); every {@code inputs} document must read.
 */
class SpecReaderTest {
  static List<Path> caseFiles() throws IOException {
    try (Stream<Path> files = Files.list(SidecarProcess.root().resolve("spec/cases"))) {
      return files.filter(p -> p.toString().endsWith(".json")).sorted().toList();
    }
  }

  static Map<?, ?> read(Path file) throws IOException {
    try {
      return (Map<?, ?>) Json.parse(Files.readString(file));
    } catch (Json.ParseException e) {
      throw new IOException(file + ": " + e.getMessage(), e);
    }
  }

  @TestFactory
  Stream<DynamicTest> readerCases() throws IOException {
    List<DynamicTest> tests = new ArrayList<>();
    for (Path file : caseFiles()) {
      Object cases = read(file).get("cases");
      if (!(cases instanceof List<?> list)) {
        continue; // a load_error file: nothing to read
      }
      for (Object o : list) {
        Map<?, ?> c = (Map<?, ?>) o;
        String name = file.getFileName() + "/" + c.get("name");
        if (c.get("inputs_text") instanceof String text && c.get("error") instanceof String code) {
          tests.add(DynamicTest.dynamicTest(name, () -> {
            try {
              TensorJson.parse(text);
            } catch (OnnxpipeException e) {
              assertEquals(ErrorCode.fromName(code), e.code(), e.getMessage());
            }
          }));
        } else if (c.get("inputs") != null) {
          tests.add(DynamicTest.dynamicTest(name, () -> TensorJson.parse(Json.write(c.get("inputs")))));
        }
      }
    }
    return tests.stream();
  }
}
