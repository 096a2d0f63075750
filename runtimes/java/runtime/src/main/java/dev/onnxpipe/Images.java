package dev.onnxpipe;

import dev.onnxpipe.core.Tensor;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import javax.imageio.ImageIO;

/**
 * Images as the uint8 RGB pixels (height x width x 3, row-major) that image pipelines take; the pipeline's own
 * pre-processing stage resizes and normalizes them.
 *
 * <p>Decoders differ: a PNG gives the same pixels in every language, a JPEG may differ by a few levels
 * between Java's decoder and Python's (libjpeg). For identical answers across runtimes, use lossless files.
 */
public final class Images {
  private Images() {}

  /** One image as a batch of one: uint8 {@code [1, height, width, 3]}. */
  public static Tensor toTensor(BufferedImage image) {
    return batch(List.of(image));
  }

  /** Reads an image file (PNG, JPEG, BMP, GIF) as uint8 {@code [1, height, width, 3]}. */
  public static Tensor read(Path file) {
    return toTensor(load(file));
  }

  /** Images of one size as uint8 {@code [n, height, width, 3]}. */
  public static Tensor batch(List<BufferedImage> images) {
    if (images.isEmpty()) {
      throw new IllegalArgumentException("no images given");
    }
    int h = images.get(0).getHeight();
    int w = images.get(0).getWidth();
    byte[] data = new byte[Math.multiplyExact(Math.multiplyExact(images.size(), h), w * 3)];
    int off = 0;
    for (int n = 0; n < images.size(); n++) {
      BufferedImage img = images.get(n);
      if (img.getHeight() != h || img.getWidth() != w) {
        throw new IllegalArgumentException("image " + n + " is " + img.getWidth() + "x" + img.getHeight()
            + " but image 0 is " + w + "x" + h + "; a batch needs one size");
      }
      int[] row = new int[w];
      for (int y = 0; y < h; y++) {
        // getRGB converts any colour model (grey, indexed, alpha) to sRGB; alpha is dropped
        img.getRGB(0, y, w, 1, row, 0, w);
        for (int x = 0; x < w; x++) {
          int p = row[x];
          data[off++] = (byte) (p >>> 16);
          data[off++] = (byte) (p >>> 8);
          data[off++] = (byte) p;
        }
      }
    }
    return Tensor.ofUint8(data, images.size(), h, w, 3);
  }

  /** Decodes an image file; INVALID_INPUT if it cannot be read or is not an image. */
  public static BufferedImage load(Path file) {
    BufferedImage img;
    try (var in = Files.newInputStream(file)) {
      img = ImageIO.read(in);
    } catch (IOException e) {
      throw PipelineException.invalidInput("image file '" + file + "': cannot read it (" + e.getMessage() + ")");
    }
    if (img == null) {
      throw PipelineException.invalidInput("image file '" + file + "': not an image format Java can decode"
          + " (expected PNG, JPEG, BMP or GIF)");
    }
    return img;
  }
}
