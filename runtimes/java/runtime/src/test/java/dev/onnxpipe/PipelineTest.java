package dev.onnxpipe;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.onnxpipe.core.DType;
import dev.onnxpipe.core.ErrorCode;
import dev.onnxpipe.core.OnnxpipeException;
import dev.onnxpipe.core.Tensor;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Loading, signatures, input validation and lifetime, on tests/fixtures/ and the Java test models. */
class PipelineTest {
  private static Pipeline basic;

  @BeforeAll
  static void open() {
    basic = Pipeline.load(Fixtures.fixture("basic.onnx"), Options.defaults().withIntraOpThreads(1));
  }

  @AfterAll
  static void close() {
    basic.close();
  }

  static Tensor features(int batch) {
    float[] f = new float[batch * 3];
    for (int i = 0; i < f.length; i++) {
      f[i] = (i % 3) * 0.5f - 0.25f * (i / 3);
    }
    return Tensor.ofFloats(f, batch, 3);
  }

  static Tensor pixels(int batch, int h, int w) {
    byte[] p = new byte[batch * h * w * 3];
    for (int i = 0; i < p.length; i++) {
      p[i] = (byte) (i * 37);
    }
    return Tensor.ofUint8(p, batch, h, w, 3);
  }

  static Map<String, Object> good(int batch) {
    Map<String, Object> in = new HashMap<>();
    in.put("features", features(batch));
    in.put("pixels", pixels(batch, 2, 3));
    return in;
  }

  private static PipelineException invalid(Map<String, ?> inputs) {
    PipelineException e = assertThrows(PipelineException.class, () -> basic.run(inputs));
    assertEquals(ErrorCode.INVALID_INPUT, e.code(), e.getMessage());
    return e;
  }

  private static void assertMentions(Throwable e, String... parts) {
    for (String p : parts) {
      assertTrue(e.getMessage().contains(p), "message should mention '" + p + "': " + e.getMessage());
    }
  }

  // ---- signature ----------------------------------------------------------------------------------------

  @Test
  void signatureComesFromTheManifest() {
    Signature s = basic.signature();
    assertEquals("manifest", s.source());
    assertEquals(List.of("features", "pixels", "score_threshold"), s.inputNames());
    assertEquals(List.of("score", "label_id", "label", "confident", "pixel_sum"), s.outputNames());
    assertEquals(List.of("batch", 3L), s.input("features").shape());
    assertEquals(DType.UINT8, s.input("pixels").dtype());
    TensorSpec threshold = s.input("score_threshold");
    assertTrue(threshold.optional());
    assertEquals(0.5, threshold.defaultValue());
    assertEquals(List.of("cat", "dog", "bird"), s.labels());
    assertEquals(List.of("features", "pixels"), s.requiredInputs().stream().map(TensorSpec::name).toList());
    assertEquals(List.of(), s.domains());
  }

  @Test
  void plainOnnxFallsBackToOnnxRuntimeInfo() {
    try (Pipeline p = Pipeline.load(Fixtures.fixture("plain.onnx"))) {
      Signature s = p.signature();
      assertEquals("onnxruntime", s.source());
      assertEquals(List.of("features", "pixels", "score_threshold"), s.inputNames());
      assertEquals(List.of("batch", "height", "width", 3L), s.input("pixels").shape());
      assertTrue(s.input("score_threshold").optional(), "an overridable initializer is an optional input");
      assertEquals(0.5, s.input("score_threshold").defaultValue());
      assertNull(s.labels());
      Outputs out = p.run(good(2));
      assertEquals(List.of("score", "label_id", "label", "confident", "pixel_sum"), out.names());
    }
  }

  // ---- running ------------------------------------------------------------------------------------------

  @Test
  void runReturnsTypedOutputsInManifestOrder() {
    Outputs out = basic.run(good(2));
    assertEquals(List.of("score", "label_id", "label", "confident", "pixel_sum"), out.names());
    assertArrayEquals(new long[] {2, 3}, out.shape("score"));
    assertEquals(6, out.floats("score").length);
    assertEquals(DType.STRING, out.dtype("label"));
    long[] ids = out.longs("label_id");
    String[] labels = out.strings("label");
    for (int i = 0; i < 2; i++) {
      assertEquals(List.of("cat", "dog", "bird").get((int) ids[i]), labels[i]);
    }
    // pixel_sum computed here from the same bytes: the uint8 values must reach the graph unsigned
    byte[] px = ((Tensor) good(2).get("pixels")).bytes();
    long sum0 = 0;
    for (int i = 0; i < px.length / 2; i++) {
      sum0 += Byte.toUnsignedInt(px[i]);
    }
    assertEquals(sum0, out.longs("pixel_sum")[0]);
    assertThrows(IllegalArgumentException.class, () -> out.floats("label"));
    IllegalArgumentException unknown = assertThrows(IllegalArgumentException.class, () -> out.floats("nope"));
    assertMentions(unknown, "nope", "score");
  }

  @Test
  void optionalThresholdDefaultsAndCanBeGiven() {
    Map<String, Object> in = new HashMap<>();
    in.put("features", Tensor.ofFloats(new float[] {0.1f, 0.2f, 0.3f}, 1, 3)); // max score ~0.367
    in.put("pixels", pixels(1, 1, 1));
    assertFalse(basic.run(in).booleans("confident")[0], "default threshold 0.5");
    in.put("score_threshold", Tensor.scalar(0.2f));
    assertTrue(basic.run(in).booleans("confident")[0], "given threshold 0.2");
    in.put("score_threshold", Tensor.scalar(0.9f));
    assertFalse(basic.run(in).booleans("confident")[0], "given threshold 0.9");
  }

  @Test
  void emptyBatchIsValidWhereTheDimIsDynamic() {
    Outputs out = basic.run(good(0));
    assertEquals(0, out.longs("pixel_sum").length);
    assertEquals(0, out.strings("label").length);
    assertEquals(0, out.shape("pixel_sum")[0]);
  }

  @Test
  void losslessWideningIsAcceptedAndNothingElse() {
    try (Pipeline p = Pipeline.load(Fixtures.resource("dtypes.onnx"))) {
      Map<String, Object> in = dtypeInputs();
      in.put("f64", Tensor.ofFloats(new float[] {1.5f, -2f}, 2)); // float32 -> float64
      in.put("i32", Tensor.ofUint8(new byte[] {(byte) 200, 7}, 2)); // uint8 -> int32
      Outputs out = p.run(in);
      assertArrayEquals(new double[] {1.5, -2}, out.doubles("f64_out"));
      assertArrayEquals(new int[] {200, 7}, out.ints("i32_out"));
      in.put("i32", Tensor.ofLongs(new long[] {1, 2}, 2)); // int64 -> int32 may lose information
      PipelineException e = assertThrows(PipelineException.class, () -> p.run(in));
      assertMentions(e, "'i32'", "int64", "int32", "lose");
    }
  }

  @Test
  void nulInAStringIsKeptWithoutContribOps() {
    try (Pipeline p = Pipeline.load(Fixtures.resource("dtypes.onnx"))) {
      Map<String, Object> in = dtypeInputs();
      in.put("text", new String[] {"ab\u0000cd", "x"});
      assertArrayEquals(new String[] {"ab\u0000cd", "x"}, p.run(in).strings("text_out"));
    }
  }

  static Map<String, Object> dtypeInputs() {
    Map<String, Object> in = new HashMap<>();
    in.put("f64", Tensor.ofDoubles(new double[] {1.25, Double.NaN}, 2));
    in.put("i32", Tensor.ofInts(new int[] {Integer.MIN_VALUE, Integer.MAX_VALUE}, 2));
    in.put("i8", Tensor.ofInt8(new byte[] {-128, 127}, 2));
    in.put("flag", Tensor.ofBooleans(new boolean[] {true, false}, 2));
    in.put("text", new String[] {"héllo", ""});
    return in;
  }

  @Test
  void everyDtypeRoundTripsAndInitializerDefaultsAreRead() {
    try (Pipeline p = Pipeline.load(Fixtures.resource("dtypes.onnx"))) {
      Outputs out = p.run(dtypeInputs());
      assertArrayEquals(new double[] {1.25, Double.NaN}, out.doubles("f64_out"));
      assertArrayEquals(new int[] {Integer.MIN_VALUE, Integer.MAX_VALUE}, out.ints("i32_out"));
      assertArrayEquals(new byte[] {-128, 127}, out.bytes("i8_out"));
      assertEquals(DType.INT8, out.dtype("i8_out"));
      assertArrayEquals(new boolean[] {true, false}, out.booleans("flag_out"));
      assertArrayEquals(new String[] {"héllo", ""}, out.strings("text_out"));
      // defaults: offset from raw_data, scale from double_data
      assertArrayEquals(new long[] {10, -20}, out.longs("offset_out"));
      assertEquals(1.25 * 2.5, out.doubles("scaled")[0]);
      assertEquals(List.of(10L, -20L), p.signature().input("offset").defaultValue());
      Map<String, Object> in = dtypeInputs();
      in.put("offset", Tensor.ofLongs(new long[] {1, 2}, 2));
      in.put("scale", Tensor.scalar(-1.0));
      Outputs given = p.run(in);
      assertArrayEquals(new long[] {1, 2}, given.longs("offset_out"));
      assertEquals(-1.25, given.doubles("scaled")[0]);
    }
  }

  // ---- bad inputs ---------------------------------------------------------------------------------------

  @Test
  void missingInput() {
    Map<String, Object> in = good(1);
    in.remove("pixels");
    assertMentions(invalid(in), "missing input 'pixels'", "uint8 [batch, height, width, 3]");
  }

  @Test
  void unknownInput() {
    Map<String, Object> in = good(1);
    in.put("pixel", pixels(1, 1, 1));
    assertMentions(invalid(in), "unknown input 'pixel'", "[features, pixels, score_threshold]");
    Map<String, Object> longName = good(1);
    longName.put("n".repeat(20_000), pixels(1, 1, 1));
    assertTrue(invalid(longName).getMessage().length() < 600, "a 20,000-character name is cut in the message");
  }

  @Test
  void wrongDtype() {
    Map<String, Object> in = good(1);
    in.put("features", Tensor.ofDoubles(new double[] {1, 2, 3}, 1, 3));
    assertMentions(invalid(in), "input 'features'", "float64 given", "float32 [batch, 3]");
    in = good(1);
    in.put("pixels", Tensor.ofInt8(new byte[3], 1, 1, 1, 3));
    assertMentions(invalid(in), "input 'pixels'", "int8 given", "uint8");
    in = good(1);
    in.put("features", new String[] {"a", "b", "c"});
    assertMentions(invalid(in), "input 'features'", "string given");
  }

  @Test
  void wrongValueType() {
    Map<String, Object> in = good(1);
    in.put("features", new float[] {1, 2, 3});
    assertMentions(invalid(in), "input 'features'", "[F given", "Tensor");
    in.put("features", null);
    assertMentions(invalid(in), "input 'features'", "null");
    assertMentions(invalid(null), "null");
  }

  @Test
  void wrongRank() {
    Map<String, Object> in = good(1);
    in.put("pixels", Tensor.ofUint8(new byte[6], 1, 2, 3));
    assertMentions(invalid(in), "input 'pixels'", "rank 3", "[1, 2, 3]", "rank 4");
    in = good(1);
    in.put("score_threshold", Tensor.ofFloats(new float[] {0.5f}, 1));
    assertMentions(invalid(in), "input 'score_threshold'", "rank 1", "rank 0");
  }

  @Test
  void wrongFixedDimension() {
    Map<String, Object> in = good(2);
    in.put("features", Tensor.ofFloats(new float[8], 2, 4));
    assertMentions(invalid(in), "input 'features'", "dimension 1 is 4", "expected 3");
    in = good(1);
    in.put("pixels", Tensor.ofUint8(new byte[4], 1, 1, 1, 4));
    assertMentions(invalid(in), "input 'pixels'", "dimension 3 is 4", "expected 3");
  }

  @Test
  void namedDimensionsMustAgree() {
    Map<String, Object> in = good(2);
    in.put("pixels", pixels(3, 1, 1));
    assertMentions(invalid(in), "input 'pixels'", "'batch'", "3", "'features'", "= 2");
  }

  @Test
  void badTensorsAreRejectedWhenBuilt() {
    OnnxpipeException e = assertThrows(OnnxpipeException.class, () -> Tensor.ofFloats(new float[5], 2, 3));
    assertEquals(ErrorCode.INVALID_INPUT, e.code());
    assertMentions(e, "[2, 3]", "6", "5");
    assertThrows(OnnxpipeException.class, () -> Tensor.ofFloats(new float[0], -1));
    assertThrows(OnnxpipeException.class, () -> Tensor.ofFloats(new float[0], 0, -1));
    assertThrows(OnnxpipeException.class, () -> Tensor.ofFloats(new float[1], 1L << 40, 1L << 40));
    assertEquals(0, Tensor.ofFloats(new float[0], 1L << 40, 1L << 40, 0).size());
    assertThrows(OnnxpipeException.class, () -> Tensor.ofStrings(new String[] {"a", null}));
    assertThrows(IllegalStateException.class, () -> Tensor.scalar(1f).longs());
  }

  // ---- bad files and lifetime ---------------------------------------------------------------------------

  @Test
  void corruptModelIsModelLoad() {
    PipelineException e = assertThrows(PipelineException.class, () -> Pipeline.load(Fixtures.fixture("corrupt.onnx")));
    assertEquals(ErrorCode.MODEL_LOAD, e.code());
    assertMentions(e, "corrupt.onnx", "not a valid ONNX model");
  }

  @Test
  void badManifestsAreModelLoad() {
    PipelineException bad = assertThrows(PipelineException.class,
        () -> Pipeline.load(Fixtures.resource("bad_manifest.onnx")));
    assertEquals(ErrorCode.MODEL_LOAD, bad.code());
    assertMentions(bad, "bad_manifest.onnx", "onnxpipe.manifest", "not valid JSON");
    PipelineException future = assertThrows(PipelineException.class,
        () -> Pipeline.load(Fixtures.resource("future_manifest.onnx")));
    assertEquals(ErrorCode.MODEL_LOAD, future.code());
    assertMentions(future, "future_manifest.onnx", "format_version 2", "up to 1");
  }

  @Test
  void missingFileIsModelLoad() {
    PipelineException e = assertThrows(PipelineException.class, () -> Pipeline.load(Path.of("no/such/model.onnx")));
    assertEquals(ErrorCode.MODEL_LOAD, e.code());
    assertMentions(e, "no/such/model.onnx", "cannot read");
  }

  @Test
  void truncatedAndEmptyFilesAreModelLoad(@TempDir Path tmp) throws IOException {
    byte[] good = Files.readAllBytes(Fixtures.fixture("basic.onnx"));
    for (int cut : new int[] {0, 1, 17, good.length / 2, good.length - 1}) {
      Path f = tmp.resolve("cut" + cut + ".onnx");
      Files.write(f, java.util.Arrays.copyOf(good, cut));
      PipelineException e = assertThrows(PipelineException.class, () -> Pipeline.load(f), "cut at " + cut);
      assertEquals(ErrorCode.MODEL_LOAD, e.code(), e.getMessage());
    }
  }

  @Test
  void mutatedFilesFailCleanly(@TempDir Path tmp) throws IOException {
    // random byte changes: each load/run either works or throws PipelineException, never anything else
    byte[] good = Files.readAllBytes(Fixtures.fixture("basic.onnx"));
    java.util.Random rnd = new java.util.Random(42);
    Path f = tmp.resolve("mutant.onnx");
    int loaded = 0;
    for (int i = 0; i < 150; i++) {
      byte[] b = good.clone();
      for (int k = 0; k <= rnd.nextInt(4); k++) {
        b[rnd.nextInt(b.length)] = (byte) rnd.nextInt(256);
      }
      Files.write(f, b);
      try (Pipeline p = Pipeline.load(f)) {
        loaded++;
        try {
          p.run(p.signature().inputNames().contains("features") ? good(1) : Map.of());
        } catch (PipelineException e) {
          assertTrue(e.getMessage() != null && !e.getMessage().isEmpty());
        }
      } catch (PipelineException e) {
        assertEquals(ErrorCode.MODEL_LOAD, e.code(), e.getMessage());
      }
    }
    assertTrue(loaded > 0, "some mutants (changed doc strings, names) still load");
  }

  @Test
  void useAfterCloseIsClosed() {
    Pipeline p = Pipeline.load(Fixtures.fixture("basic.onnx"));
    p.run(good(1));
    p.close();
    p.close(); // idempotent
    assertTrue(p.isClosed());
    PipelineException e = assertThrows(PipelineException.class, () -> p.run(good(1)));
    assertEquals(ErrorCode.CLOSED, e.code());
    assertMentions(e, "closed");
    assertEquals("manifest", p.signature().source(), "the signature stays readable");
  }

  @Test
  void threadsComeFromOptionsThenEnvironment() {
    try (Pipeline p = Pipeline.load(Fixtures.fixture("basic.onnx"), Options.defaults().withIntraOpThreads(3))) {
      assertEquals(3, p.intraOpThreads());
    }
    assertEquals(4, Options.threadsFrom("4"));
    assertEquals(Runtime.getRuntime().availableProcessors(), Options.threadsFrom(null));
    PipelineException e = assertThrows(PipelineException.class, () -> Options.threadsFrom("zero"));
    assertMentions(e, "ONNXPIPE_THREADS", "zero");
    assertThrows(IllegalArgumentException.class, () -> Options.defaults().withIntraOpThreads(0));
  }
}
