package dev.onnxpipe.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedWriter;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 13 §5: the reader's memory overhead is at most 16 bytes per element. A 10^7-element file is read in a
 * separate JVM whose heap holds the tensor's array plus 16 bytes per element plus 24 MiB, and no more; a reader
 * that kept a tree of boxed numbers (~110 bytes per element) runs out of memory there. Out of memory must then
 * be a typed error, never "internal error": that is the runtime CLI's test.
 */
class LargeFileTest {
  static final int N = 10_000_000;

  @TempDir
  Path dir;

  @Test
  void tenMillionFloat32InABoundedHeap() throws Exception {
    Path file = write(dir.resolve("f32.json"), "float32", "0.123456789");
    long heapMiB = (N * 4L + N * 16L) / (1 << 20) + 24;
    List<String> out = readInChild(file, heapMiB);
    assertEquals("float32 " + N, out.get(0), out.toString());
  }

  @Test
  void tenMillionInt64InABoundedHeap() throws Exception {
    Path file = write(dir.resolve("i64.json"), "int64", "-1234567");
    long heapMiB = (N * 8L + N * 16L) / (1 << 20) + 24;
    List<String> out = readInChild(file, heapMiB);
    assertEquals("int64 " + N, out.get(0), out.toString());
  }

  private static Path write(Path file, String dtype, String value) throws IOException {
    try (BufferedWriter w = Files.newBufferedWriter(file, StandardCharsets.UTF_8)) {
      w.write("{\"x\": {\"dtype\": \"" + dtype + "\", \"shape\": [" + N + "], \"data\": [");
      for (int i = 0; i < N; i++) {
        w.write(i == 0 ? value : ", " + value);
      }
      w.write("]}}");
    }
    return file;
  }

  private static List<String> readInChild(Path file, long heapMiB) throws Exception {
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    List<String> cmd = new ArrayList<>(List.of(java, "-Xmx" + heapMiB + "m", "-XX:+UseSerialGC",
        "-cp", System.getProperty("java.class.path"), ReadOnce.class.getName(), file.toString()));
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String text = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(120, TimeUnit.SECONDS), "child still running");
    assertEquals(0, p.exitValue(), "child JVM (-Xmx" + heapMiB + "m) failed:\n" + text);
    System.out.println("[LargeFileTest] -Xmx" + heapMiB + "m: " + text.strip().replace('\n', ' '));
    return List.of(text.strip().split("\n"));
  }

  /** The child: reads the file, prints "dtype count" and what reading it allocated per element. */
  public static final class ReadOnce {
    public static void main(String[] args) {
      com.sun.management.ThreadMXBean threads = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
      long before = threads.getCurrentThreadAllocatedBytes();
      Tensor t = TensorJson.read(Path.of(args[0]), Limits.defaults()).get("x");
      long allocated = threads.getCurrentThreadAllocatedBytes() - before;
      System.gc();
      Runtime rt = Runtime.getRuntime();
      long used = rt.totalMemory() - rt.freeMemory();
      System.out.println(t.dtype() + " " + t.size());
      System.out.printf("retained %.1f B/element (array %d B/element), allocated %.1f B/element in all%n",
          (double) used / t.size(), t.dtype().byteWidth(), (double) allocated / t.size());
    }
  }
}
