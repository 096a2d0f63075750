package dev.onnxpipe.core;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** The repository's spec/ folder, read by the tests (Surefire passes the repository root as onnxpipe.root). */
final class Spec {
  private Spec() {}

  static Path root() {
    return Path.of(System.getProperty("onnxpipe.root", "../../..")).toAbsolutePath().normalize();
  }

  static Path path(String fromRoot) {
    return root().resolve(fromRoot);
  }

  static Object json(String fromRoot) {
    try {
      return Json.parse(Files.readString(path(fromRoot)));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (Json.ParseException e) {
      throw new IllegalStateException(fromRoot + ": " + e.getMessage(), e);
    }
  }
}
