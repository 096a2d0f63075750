"""Offline scoring at scale: 10,000 digit images and 2,000 MiniLM sentences through a local Spark (local[2]) and
the local engine; every output row equals Pipeline.run on that row alone (ints/strings exact, floats within the
vectors' tolerance). One Spark session for the module (the JVM start is most of its cost)."""

from __future__ import annotations

import io
import json
import os
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyspark")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from examples.score_data import digits_table, encode_png, sentences_table  # noqa: E402
from onnxpipe_runtime import InputError, Pipeline  # noqa: E402
from onnxpipe_runtime.score import score_file  # noqa: E402
from onnxpipe_runtime.vectors import load_set, mismatches  # noqa: E402

VECTORS = Path(__file__).resolve().parent / "vectors"
DIGITS = VECTORS / "digits" / "model.onnx"
MINILM = VECTORS / "minilm" / "model.generated.onnx"
N_DIGITS, N_SENTENCES = 10_000, 2_000


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (SparkSession.builder.master("local[2]").appName("onnxpipe tests")
               .config("spark.ui.showConsoleProgress", "false").config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@lru_cache(maxsize=None)
def _digits() -> pa.Table:
    return digits_table(N_DIGITS, sizes=((28, 28), (24, 20)), seed=11)


@lru_cache(maxsize=None)
def _expected_digits() -> dict[str, np.ndarray]:
    """Pipeline.run on each image alone (decoded here, independently of the scoring code)."""
    from PIL import Image

    rows: dict[str, list] = {}
    with Pipeline.load(DIGITS, threads=1) as pipe:
        for blob in _digits()["image"].to_pylist():
            image = np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))
            for k, v in pipe.run(image=image[None]).items():
                rows.setdefault(k, []).append(v[0])
    return {k: np.stack(v) for k, v in rows.items()}


@lru_cache(maxsize=None)
def _expected_sentences() -> dict[str, np.ndarray]:
    with Pipeline.load(MINILM, threads=2) as pipe:
        return {"embedding": np.stack([pipe.run(text=[s])["embedding"][0]
                                       for s in _sentences()["text"].to_pylist()])}


@lru_cache(maxsize=None)
def _sentences() -> pa.Table:
    return sentences_table(N_SENTENCES, seed=12)


def _assert_rows_equal(table: pa.Table, expected: dict[str, np.ndarray], vectors: str) -> None:
    assert table.num_rows == len(next(iter(expected.values())))
    assert table["id"].to_pylist() == list(range(table.num_rows)), "rows out of order"
    got = {k: np.array(table[k].to_pylist(), dtype=v.dtype) for k, v in expected.items()}
    problems = mismatches(got, expected, load_set(VECTORS / vectors).tolerance)
    assert not problems, problems


@pytest.fixture(scope="module")
def digits_parquet(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("digits") / "digits.parquet"
    pq.write_table(_digits(), path, row_group_size=1_250)
    return path


def test_spark_engine_scores_10000_digit_images_like_pipeline_run(spark, digits_parquet, tmp_path):
    from onnxpipe_runtime.spark import score_with_spark

    out = tmp_path / "scores.parquet"
    summary = score_with_spark(DIGITS, digits_parquet, out, master="local[2]", keep=["id"], progress=False)
    assert (summary.rows_in, summary.rows_out, summary.errors) == (N_DIGITS, N_DIGITS, 0)
    _assert_rows_equal(pq.read_table(out), _expected_digits(), "digits")


def test_local_engine_scores_10000_digit_images_like_pipeline_run(digits_parquet, tmp_path):
    out = tmp_path / "scores.parquet"
    score_file(DIGITS, digits_parquet, out, keep=["id"], progress=False)
    _assert_rows_equal(pq.read_table(out), _expected_digits(), "digits")


def test_pipeline_udf_in_withcolumn(spark, digits_parquet):
    from onnxpipe_runtime.spark import pipeline_udf

    digits = pipeline_udf(DIGITS, spark=spark)
    df = spark.read.parquet(str(digits_parquet)).where("id < 1500")
    rows = df.withColumn("pred", digits("image")).select("id", "pred.*").toArrow().sort_by("id")
    expected = {k: v[:1500] for k, v in _expected_digits().items()}
    _assert_rows_equal(rows, expected, "digits")


needs_minilm = pytest.mark.skipif(not MINILM.is_file(), reason=f"{MINILM} absent: run `make generated-models`")


@needs_minilm
def test_spark_engine_scores_2000_sentences_like_pipeline_run(spark, tmp_path):
    from onnxpipe_runtime.spark import score_with_spark

    pq.write_table(_sentences(), tmp_path / "text.parquet", row_group_size=250)
    out = tmp_path / "emb.parquet"
    score_with_spark(MINILM, tmp_path / "text.parquet", out, keep=["id"], progress=False)
    table = pq.read_table(out)
    assert table.schema.field("embedding").type == pa.list_(pa.float32())
    _assert_rows_equal(table, _expected_sentences(), "minilm")


@needs_minilm
def test_local_engine_scores_sentences_like_pipeline_run(tmp_path):
    """The first 600 of the 2,000 (the row-by-row reference is the cost here), from JSON Lines."""
    n = 600
    with open(tmp_path / "text.jsonl", "w", encoding="utf-8") as f:
        for row in _sentences().slice(0, n).to_pylist():
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    out = tmp_path / "emb.parquet"
    score_file(MINILM, tmp_path / "text.jsonl", out, keep=["id"], progress=False)
    table = pq.read_table(out)
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 384)
    _assert_rows_equal(table, {k: v[:n] for k, v in _expected_sentences().items()}, "minilm")


def _bad_table(tmp_path: Path) -> Path:
    table = digits_table(40, seed=13)
    blobs = table["image"].to_pylist()
    blobs[5] = b"\x89PNG broken"
    blobs[31] = encode_png(np.zeros((6, 6, 3), np.uint8))[:20]
    path = tmp_path / "bad.parquet"
    pq.write_table(table.set_column(1, "image", pa.array(blobs, pa.binary())), path)
    return path


def test_spark_bad_rows_fail_or_null(spark, tmp_path):
    from onnxpipe_runtime.spark import score_with_spark

    path = _bad_table(tmp_path)
    with pytest.raises(InputError, match=r"partition \d+, row \d+, column 'image': an image Pillow cannot decode"):
        score_with_spark(DIGITS, path, tmp_path / "f.parquet", keep=["id"], progress=False)
    summary = score_with_spark(DIGITS, path, tmp_path / "n.parquet", keep=["id"], on_error="null", progress=False)
    assert (summary.rows_in, summary.rows_out, summary.errors) == (40, 40, 2)
    out = pq.read_table(tmp_path / "n.parquet")
    assert out["id"].to_pylist() == list(range(40))
    assert [i for i, e in enumerate(out["error"].to_pylist()) if e] == [5, 31]
    summary = score_with_spark(DIGITS, path, tmp_path / "s.parquet", keep=["id"], on_error="skip", progress=False)
    assert (summary.rows_in, summary.rows_out, summary.errors) == (40, 38, 2)
    assert sorted(pq.read_table(tmp_path / "s.parquet")["id"].to_pylist()) == [i for i in range(40) if i not in (5, 31)]


def test_spark_reads_json_lines_with_base64_images(spark, tmp_path):
    import base64

    from onnxpipe_runtime.spark import score_with_spark

    table = digits_table(60, seed=14)
    with open(tmp_path / "in.jsonl", "w") as f:
        for row in table.to_pylist():
            f.write(json.dumps({"id": row["id"], "image": base64.b64encode(row["image"]).decode()}) + "\n")
    score_with_spark(DIGITS, tmp_path / "in.jsonl", tmp_path / "spark.jsonl", keep=["id"], progress=False)
    score_file(DIGITS, tmp_path / "in.jsonl", tmp_path / "local.jsonl", keep=["id"], progress=False)
    spark_rows = sorted((json.loads(s) for f in sorted((tmp_path / "spark.jsonl").glob("part-*"))
                         for s in f.read_text().splitlines()), key=lambda r: r["id"])
    local_rows = [json.loads(s) for s in (tmp_path / "local.jsonl").read_text().splitlines()]
    assert [r["id"] for r in spark_rows] == list(range(60))
    assert [r["label"] for r in spark_rows] == [r["label"] for r in local_rows]
    assert np.allclose([r["score"] for r in spark_rows], [r["score"] for r in local_rows], atol=1e-6)


def test_threads_follow_the_task_cpus_not_the_host(spark, monkeypatch):
    from onnxpipe_runtime.spark import task_threads

    monkeypatch.delenv("ONNXPIPE_THREADS", raising=False)

    # local[2] with spark.task.cpus = 1: one ONNX Runtime thread per task, two tasks at a time
    assert spark.sparkContext.parallelize(range(4), 2).map(lambda _: task_threads()).collect() == [1, 1, 1, 1]
    assert task_threads() == 1  # outside a task (the driver): one
