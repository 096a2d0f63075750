package dev.onnxpipe;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.file.Files;
import org.junit.jupiter.api.Test;

/** One version number: the pom's ${revision} must be the repository's VERSION file. */
class VersionTest {
  @Test
  void pomVersionIsTheRepositoryVersion() throws IOException {
    String version = Files.readString(Fixtures.root().resolve("VERSION")).trim();
    assertEquals(version, System.getProperty("onnxpipe.version"),
        "pom version (-Drevision) differs from VERSION; build with `make -C runtimes/java test`");
  }
}
