package dev.onnxpipe;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.onnxpipe.core.DType;
import dev.onnxpipe.core.ErrorCode;
import dev.onnxpipe.core.Tensor;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class ImagesTest {
  private static BufferedImage image(int w, int h, int seed) {
    BufferedImage img = new BufferedImage(w, h, BufferedImage.TYPE_INT_ARGB);
    for (int y = 0; y < h; y++) {
      for (int x = 0; x < w; x++) {
        img.setRGB(x, y, 0x80000000 | ((x * 40 + seed) & 0xFF) << 16 | ((y * 70) & 0xFF) << 8 | ((x + y + 250) & 0xFF));
      }
    }
    return img;
  }

  @Test
  void pixelsAreRgbHwcUint8() {
    Tensor t = Images.toTensor(image(3, 2, 0));
    assertEquals(DType.UINT8, t.dtype());
    assertArrayEquals(new long[] {1, 2, 3, 3}, t.shape());
    byte[] p = t.bytes();
    // row 1, column 2: R = 80, G = 70, B = (2 + 1 + 250) = 253
    int off = (1 * 3 + 2) * 3;
    assertEquals(80, Byte.toUnsignedInt(p[off]));
    assertEquals(70, Byte.toUnsignedInt(p[off + 1]));
    assertEquals(253, Byte.toUnsignedInt(p[off + 2]));
  }

  @Test
  void pngFileRoundTripsAndFeedsAPipeline(@TempDir Path tmp) throws IOException {
    BufferedImage img = image(5, 4, 7);
    Path png = tmp.resolve("x.png");
    ImageIO.write(img, "png", png.toFile());
    Tensor t = Images.read(png);
    assertArrayEquals(Images.toTensor(img).bytes(), t.bytes());
    Tensor batch = Images.batch(List.of(img, image(5, 4, 9)));
    assertArrayEquals(new long[] {2, 4, 5, 3}, batch.shape());
    try (Pipeline p = Pipeline.load(Fixtures.fixture("basic.onnx"))) {
      Outputs out = p.run(Map.of("pixels", batch, "features", Tensor.ofFloats(new float[6], 2, 3)));
      long sum = 0;
      for (int i = 0; i < 4 * 5 * 3; i++) {
        sum += Byte.toUnsignedInt(batch.bytes()[i]);
      }
      assertEquals(sum, out.longs("pixel_sum")[0]);
    }
  }

  @Test
  void badImagesAreInvalidInput(@TempDir Path tmp) throws IOException {
    Path notImage = tmp.resolve("x.png");
    Files.writeString(notImage, "not an image");
    assertEquals(ErrorCode.INVALID_INPUT,
        assertThrows(PipelineException.class, () -> Images.read(notImage)).code());
    assertThrows(IllegalArgumentException.class, () -> Images.batch(List.of(image(2, 2, 0), image(3, 2, 0))));
  }
}
