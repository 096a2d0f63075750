package dev.onnxpipe;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.onnxpipe.core.ErrorCode;
import dev.onnxpipe.core.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** N threads x M runs on one Pipeline, each with its own inputs, each result checked against Java math. */
class ConcurrencyTest {
  private static final int THREADS = 8;
  private static final int RUNS = 40;
  private static final String[] LABELS = {"cat", "dog", "bird"};

  @Test
  void sharedPipelineGivesEveryCallerItsOwnAnswer() throws Exception {
    try (Pipeline pipe = Pipeline.load(Fixtures.fixture("basic.onnx"), Options.defaults().withIntraOpThreads(1))) {
      ExecutorService pool = Executors.newFixedThreadPool(THREADS);
      CountDownLatch start = new CountDownLatch(1);
      List<Future<Integer>> futures = new ArrayList<>();
      for (int t = 0; t < THREADS; t++) {
        final int thread = t;
        futures.add(pool.submit(() -> {
          start.await();
          int checked = 0;
          for (int r = 0; r < RUNS; r++) {
            check(pipe, thread * 1000 + r);
            checked++;
          }
          return checked;
        }));
      }
      start.countDown();
      int total = 0;
      for (Future<Integer> f : futures) {
        total += f.get(120, TimeUnit.SECONDS);
      }
      pool.shutdown();
      assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS));
      assertEquals(THREADS * RUNS, total);
    }
  }

  @Test
  void closeWhileRunningLetsRunsFinishThenRefusesNewOnes() throws Exception {
    Pipeline pipe = Pipeline.load(Fixtures.fixture("basic.onnx"), Options.defaults().withIntraOpThreads(1));
    ExecutorService pool = Executors.newFixedThreadPool(4);
    java.util.concurrent.atomic.AtomicInteger done = new java.util.concurrent.atomic.AtomicInteger();
    List<Future<Boolean>> futures = new ArrayList<>();
    for (int t = 0; t < 4; t++) {
      final int thread = t;
      futures.add(pool.submit(() -> {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        for (int r = 0; System.nanoTime() < deadline; r++) {
          try {
            check(pipe, thread * 100000 + r); // a run that started before close() completes correctly
            done.incrementAndGet();
          } catch (PipelineException e) {
            return e.code() == ErrorCode.CLOSED;
          }
        }
        return false;
      }));
    }
    while (done.get() < 20) {
      Thread.sleep(1);
    }
    pipe.close();
    for (Future<Boolean> f : futures) {
      assertTrue(f.get(120, TimeUnit.SECONDS), "every thread's next run after close() is refused");
    }
    pool.shutdown();
    assertTrue(pool.awaitTermination(10, TimeUnit.SECONDS));
  }

  /** A run whose batch size, features and pixels depend on {@code seed}; expected values computed here. */
  private static void check(Pipeline pipe, int seed) {
    int batch = 1 + seed % 4;
    java.util.Random rnd = new java.util.Random(seed);
    float[] f = new float[batch * 3];
    for (int i = 0; i < f.length; i++) {
      f[i] = (float) rnd.nextGaussian() * 3;
    }
    byte[] px = new byte[batch * 2 * 2 * 3];
    rnd.nextBytes(px);
    float threshold = (seed % 3) * 0.3f;
    Outputs out = pipe.run(Map.of(
        "features", Tensor.ofFloats(f, batch, 3),
        "pixels", Tensor.ofUint8(px, batch, 2, 2, 3),
        "score_threshold", Tensor.scalar(threshold)));
    float[] score = out.floats("score");
    long[] ids = out.longs("label_id");
    long[] sums = out.longs("pixel_sum");
    for (int b = 0; b < batch; b++) {
      double max = Math.max(f[3 * b], Math.max(f[3 * b + 1], f[3 * b + 2]));
      double[] e = new double[3];
      double z = 0;
      for (int k = 0; k < 3; k++) {
        e[k] = Math.exp(f[3 * b + k] - max);
        z += e[k];
      }
      int best = 0;
      for (int k = 0; k < 3; k++) {
        assertEquals(e[k] / z, score[3 * b + k], 1e-5, "seed " + seed + " score");
        if (e[k] > e[best]) {
          best = k;
        }
      }
      assertEquals(best, ids[b], "seed " + seed + " label_id");
      assertEquals(LABELS[best], out.strings("label")[b], "seed " + seed + " label");
      assertEquals(score[3 * b + best] >= threshold, out.booleans("confident")[b], "seed " + seed + " confident");
      long sum = 0;
      for (int i = b * 12; i < (b + 1) * 12; i++) {
        sum += Byte.toUnsignedInt(px[i]);
      }
      assertEquals(sum, sums[b], "seed " + seed + " pixel_sum");
    }
    assertArrayEquals(new long[] {batch, 3}, out.shape("score"));
  }
}
