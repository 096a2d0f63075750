package dev.onnxpipe;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/** One version number: the repository's VERSION file is the pom's ${revision}, passed and defaulted. */
class VersionTest {
  private static String version() throws IOException {
    return Files.readString(Fixtures.root().resolve("VERSION")).trim();
  }

  @Test
  void buildVersionIsTheRepositoryVersion() throws IOException {
    assertEquals(version(), System.getProperty("onnxpipe.version"),
        "pom version (-Drevision) differs from VERSION; build with `make -C runtimes/java test`");
  }

  @Test
  void pomDefaultRevisionIsTheRepositoryVersion() throws IOException {
    // the default is what a consumer of the installed pom sees, so it must not drift either
    String pom = Files.readString(Fixtures.root().resolve("runtimes/java/pom.xml"));
    Matcher m = Pattern.compile("<revision>([^<]+)</revision>").matcher(pom);
    assertTrue(m.find(), "pom.xml has no <revision> property");
    assertEquals(version(), m.group(1), "pom.xml <revision> default differs from VERSION");
  }
}
