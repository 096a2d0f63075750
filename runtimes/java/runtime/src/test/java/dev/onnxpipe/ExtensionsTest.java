package dev.onnxpipe;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.onnxpipe.core.ErrorCode;
import dev.onnxpipe.core.Tensor;
import dev.onnxpipe.core.TensorJson;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * ai.onnx.contrib models (onnxruntime-extensions): a BertTokenizer built by models/make_models.py, whose
 * expected outputs come from Python's onnxruntime + onnxruntime-extensions.
 */
class ExtensionsTest {
  @Test
  void tokenizerGivesPythonsIds() {
    Map<String, Tensor> inputs = TensorJson.read(Fixtures.resource("tokenizer_inputs.json"));
    Map<String, Tensor> expected = TensorJson.read(Fixtures.resource("tokenizer_expected.json"));
    try (Pipeline p = Pipeline.load(Fixtures.resource("tokenizer.onnx"))) {
      assertEquals(List.of("ai.onnx.contrib"), p.signature().domains());
      Fixtures.assertOutputs("tokenizer", expected, p.run(inputs), Map.of());
      // String[] is accepted for a 1-D string input
      Outputs out = p.run(Map.of("text", new String[] {"the cat sat"}));
      assertEquals(List.of(2L, 7L, 8L, 9L, 3L), java.util.Arrays.stream(out.longs("input_ids")).boxed().toList());
    }
  }

  @Test
  void failureInsideTheGraphIsRuntimeNamingTheStage() {
    try (Pipeline p = Pipeline.load(Fixtures.resource("tokenizer.onnx"))) {
      // this BertTokenizer takes one text or a pair; three is an error raised inside ONNX Runtime
      PipelineException e = assertThrows(PipelineException.class,
          () -> p.run(Map.of("text", new String[] {"a", "b", "c"})));
      assertEquals(ErrorCode.RUNTIME, e.code());
      assertTrue(e.getMessage().contains("in stage 'pre' (node 'pre/tokenizer', BertTokenizer)"), e.getMessage());
      assertEquals(1, p.run(Map.of("text", new String[] {"cat"})).longs("attention_mask")[1], "still usable");
    }
  }

  @Test
  void opsetImportAloneLoadsTheExtensions() {
    try (Pipeline p = Pipeline.load(Fixtures.resource("tokenizer_plain.onnx"))) {
      assertEquals("onnxruntime", p.signature().source());
      assertEquals(List.of("ai.onnx.contrib"), p.signature().domains());
      assertEquals(5, p.run(Map.of("text", new String[] {"hello world!"})).longs("input_ids").length);
    }
  }

  @Test
  void nulInAStringIsRefusedForContribModels() {
    try (Pipeline p = Pipeline.load(Fixtures.fixture("contrib.onnx"))) {
      assertEquals(List.of("ai.onnx.contrib"), p.signature().domains());
      PipelineException e = assertThrows(PipelineException.class,
          () -> p.run(Map.of("text", new String[] {"ok", "ab\u0000cd"})));
      assertEquals(ErrorCode.INVALID_INPUT, e.code());
      assertEquals("input 'text': element 1 contains a NUL character at position 2; this pipeline's string ops"
          + " (ai.onnx.contrib) would silently drop everything after it", e.getMessage());
      // a Tensor is checked like a String[]; the position counts code points, as in Python
      e = assertThrows(PipelineException.class,
          () -> p.run(Map.of("text", Tensor.ofStrings(new String[] {"\uD83D\uDE00\u0000"}, 1))));
      assertTrue(e.getMessage().startsWith("input 'text': element 0 contains a NUL character at position 1;"),
          e.getMessage());
      assertArrayEquals(new String[] {"hello"}, p.run(Map.of("text", new String[] {"HeLLo"})).strings("lower"));
    }
    // a plain file needing the domain only through its opset imports is checked too
    try (Pipeline p = Pipeline.load(Fixtures.resource("tokenizer_plain.onnx"))) {
      PipelineException e = assertThrows(PipelineException.class,
          () -> p.run(Map.of("text", new String[] {"\u0000hello"})));
      assertEquals(ErrorCode.INVALID_INPUT, e.code());
      assertTrue(e.getMessage().startsWith("input 'text': element 0 contains a NUL character at position 0;"),
          e.getMessage());
    }
  }

  @Test
  void unloadableLibraryIsMissingExtension() {
    Options bogus = Options.defaults().withExtensionsLibrary(Path.of("/nonexistent/libortextensions.so"));
    PipelineException e = assertThrows(PipelineException.class,
        () -> Pipeline.load(Fixtures.resource("tokenizer.onnx"), bogus));
    assertEquals(ErrorCode.MISSING_EXTENSION, e.code());
    assertTrue(e.getMessage().contains("ai.onnx.contrib") && e.getMessage().contains("/nonexistent/"),
        e.getMessage());
  }

  @Test
  void standardModelsDoNotNeedTheLibrary() {
    Options bogus = Options.defaults().withExtensionsLibrary(Path.of("/nonexistent/libortextensions.so"));
    try (Pipeline p = Pipeline.load(Fixtures.fixture("basic.onnx"), bogus)) {
      assertEquals(List.of(), p.signature().domains());
    }
  }
}
