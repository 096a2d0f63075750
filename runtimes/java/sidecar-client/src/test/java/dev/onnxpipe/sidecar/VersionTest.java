package dev.onnxpipe.sidecar;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Files;
import org.junit.jupiter.api.Test;

class VersionTest {
  @Test
  void theBuildUsesTheRepositoryVersion() throws Exception {
    assertEquals(Files.readString(SidecarProcess.root().resolve("VERSION")).trim(), System.getProperty("onnxpipe.version"),
        "pom.xml's ${revision} differs from VERSION: build with make (it passes -Drevision=$(cat ../../../VERSION))");
  }
}
