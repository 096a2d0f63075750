package dev.onnxpipe;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.onnxpipe.core.ErrorCode;
import dev.onnxpipe.core.Tensor;
import dev.onnxpipe.onnx.OnnxProto.ModelProto;
import dev.onnxpipe.onnx.OnnxProto.StringStringEntryProto;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Run-time parameters against the manifest's range, and the verification state (docs/manifest.md). */
class ParametersTest {
  @Test
  void iouThresholdOutsideItsRangeIsInvalidInput() {
    try (Pipeline p = Pipeline.load(Fixtures.root().resolve("tests/vectors/detector/model.onnx"))) {
      TensorSpec iou = p.signature().input("iou_threshold");
      assertArrayEquals(new double[] {0, 1}, iou.range());
      assertEquals("passed", p.signature().verification());
      assertTrue(p.signature().toJson().contains("\"range\": [0.0, 1.0]"), p.signature().toJson());
      Tensor image = Tensor.ofUint8(new byte[8 * 8 * 3], 1, 8, 8, 3);
      for (float v : new float[] {1.5f, -0.1f, Float.NaN, Float.POSITIVE_INFINITY}) {
        PipelineException e = assertThrows(PipelineException.class,
            () -> p.run(Map.of("image", image, "iou_threshold", Tensor.scalar(v))));
        assertEquals(ErrorCode.INVALID_INPUT, e.code(), e.getMessage());
        assertTrue(e.getMessage().contains("iou_threshold") && e.getMessage().contains("[0, 1]"), e.getMessage());
      }
      p.run(Map.of("image", image, "iou_threshold", Tensor.scalar(1f)));
    }
  }

  /** spec/README.md: a parameter's default is the manifest's; the graph's initializer must hold the same value. */
  @Test
  void aManifestDefaultThatDisagreesWithTheInitializerIsModelLoad(@TempDir Path tmp) throws Exception {
    ModelProto model = ModelProto.parseFrom(Files.readAllBytes(Fixtures.fixture("basic.onnx")));
    ModelProto.Builder b = model.toBuilder();
    for (int i = 0; i < b.getMetadataPropsCount(); i++) {
      StringStringEntryProto e = b.getMetadataProps(i);
      if (e.getKey().equals("onnxpipe.manifest")) {
        String changed = e.getValue().replace("\"default\":0.5", "\"default\":0.75");
        assertTrue(!changed.equals(e.getValue()), "the fixture's manifest has default 0.5: " + e.getValue());
        b.setMetadataProps(i, e.toBuilder().setValue(changed));
      }
    }
    Path file = tmp.resolve("disagrees.onnx");
    Files.write(file, b.build().toByteArray());
    PipelineException e = assertThrows(PipelineException.class, () -> Pipeline.load(file));
    assertEquals(ErrorCode.MODEL_LOAD, e.code(), e.getMessage());
    assertTrue(e.getMessage().contains("score_threshold") && e.getMessage().contains("0.75"), e.getMessage());
  }

  @Test
  void plainOnnxHasUnknownVerification() {
    try (Pipeline p = Pipeline.load(Fixtures.fixture("plain.onnx"))) {
      assertEquals("unknown", p.signature().verification());
    }
  }
}
