"""Offline scoring, local engine: tables in, one output row per input row, equal to Pipeline.run on that row.

Small tables of every column kind (PNG bytes of several sizes, nested lists, flat lists, strings, scalars),
every output kind (fixed-size lists, variable lists, a detection table as lists of structs), the bad-row
policies and the command line. The large parity runs (10,000 images, 2,000 sentences) are in test_spark.py.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from examples.score_data import digit_images, encode_png  # noqa: E402
from onnxpipe_runtime import InputError, Pipeline  # noqa: E402
from onnxpipe_runtime.cli import main as runtime_main  # noqa: E402
from onnxpipe_runtime.score import read_table, score_file  # noqa: E402
from onnxpipe_runtime.vectors import load_set, mismatches  # noqa: E402

VECTORS = Path(__file__).resolve().parent / "vectors"
DIGITS = VECTORS / "digits" / "model.onnx"
TOL = load_set(VECTORS / "digits").tolerance


def _rows_equal(pipe: Pipeline, table, inputs_of_row, outputs=None) -> None:
    """Every row of ``table`` equals ``pipe.run`` on that row alone (ints/strings exact, floats at TOL)."""
    names = outputs or [o.name for o in pipe.signature.outputs]
    for i in range(table.num_rows):
        want = pipe.run(inputs_of_row(i))
        got = {n: np.asarray(table.column(n)[i].as_py(), dtype=want[n].dtype).reshape(want[n].shape[1:])[None]
               for n in names}
        problems = mismatches(got, {n: want[n] for n in names}, TOL)
        assert not problems, f"row {i}: {problems}"


def test_png_images_of_several_sizes_match_pipeline_run(tmp_path):
    images = digit_images(150, sizes=((28, 28), (20, 24), (32, 30)), seed=1)
    pq.write_table(pa.table({"id": np.arange(150), "png": [encode_png(a) for a in images]}), tmp_path / "in.parquet")
    summary = score_file(DIGITS, tmp_path / "in.parquet", tmp_path / "out.parquet", batch_size=32,
                         columns={"image": "png"}, keep=["id"], progress=False)
    assert (summary.rows_in, summary.rows_out, summary.errors) == (150, 150, 0)
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.column_names == ["id", "score", "label_id", "label"]
    assert out.schema.field("score").type == pa.list_(pa.float32(), 3)
    assert out.schema.field("label").type == pa.list_(pa.string(), 3)
    assert out["id"].to_pylist() == list(range(150))  # order kept
    with Pipeline.load(DIGITS) as pipe:
        _rows_equal(pipe, out, lambda i: {"image": images[i][None]})


def test_nested_and_flat_lists_scalars_and_strings_from_json_lines(tmp_path):
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(7, 3)).astype(np.float32)
    pixels = [rng.integers(0, 256, size=(h, 5, 3), dtype=np.uint8) for h in (1, 2, 2, 4, 1, 3, 2)]
    with open(tmp_path / "in.jsonl", "w") as f:
        for x, p in zip(feats, pixels):
            f.write(json.dumps({"features": x.tolist(), "pixels": p.tolist()}) + "\n")
    score_file(VECTORS / "basic" / "model.onnx", tmp_path / "in.jsonl", tmp_path / "out.jsonl", batch_size=4,
               progress=False)
    lines = [json.loads(s) for s in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(lines) == 7
    out = pa.Table.from_pylist(lines)
    with Pipeline.load(VECTORS / "basic" / "model.onnx") as pipe:
        # JSON carries float64: the values are float32 in the file and read back to float32 exactly
        _rows_equal(pipe, out, lambda i: {"features": feats[i:i + 1].astype(np.float64).tolist(),
                                          "pixels": pixels[i][None]})


def test_variable_length_rows_and_a_detection_table(tmp_path):
    rng = np.random.default_rng(3)
    tokens = [rng.integers(1, 30, size=n).tolist() for n in (5, 1, 12, 5, 7)]
    pq.write_table(pa.table({"tokens": tokens, "lengths": [len(t) for t in tokens]}), tmp_path / "t.parquet")
    score_file(VECTORS / "tagger" / "model.onnx", tmp_path / "t.parquet", tmp_path / "tags.parquet", progress=False)
    tags = pq.read_table(tmp_path / "tags.parquet")
    assert tags.schema.field("tags").type == pa.list_(pa.int64())
    with Pipeline.load(VECTORS / "tagger" / "model.onnx") as pipe:
        for i, t in enumerate(tokens):
            assert tags["tags"][i].as_py() == pipe.run(tokens=[t], lengths=[len(t)])["tags"][0].tolist()

    from examples.detector import draw

    images = [draw(h, w, rng)[0] for h, w in ((64, 64), (64, 64), (48, 80), (64, 64))]
    pq.write_table(pa.table({"image": [encode_png(a) for a in images]}), tmp_path / "d.parquet")
    score_file(VECTORS / "detector" / "model.onnx", tmp_path / "d.parquet", tmp_path / "det.parquet",
               params={"score_threshold": 0.2}, progress=False)
    det = pq.read_table(tmp_path / "det.parquet")
    fields = ["x1", "y1", "x2", "y2", "score", "class_id"]
    assert det.schema.field("detections").type == pa.list_(pa.struct([(f, pa.float32()) for f in fields]))
    with Pipeline.load(VECTORS / "detector" / "model.onnx") as pipe:
        found = 0
        for i, image in enumerate(images):
            want = pipe.run(image=image[None], score_threshold=np.float32(0.2))["detections"]
            got = np.array([[d[f] for f in fields] for d in det["detections"][i].as_py()], np.float32).reshape(-1, 6)
            assert not mismatches({"d": got}, {"d": want[:, 1:]}, TOL), f"image {i}"
            found += len(want)
        assert found > 0


def _bad_digits(tmp_path: Path) -> tuple[Path, list]:
    images = digit_images(10, seed=4)
    blobs: list = [encode_png(a) for a in images]
    blobs[3] = b"not an image"
    blobs[7] = None
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"id": np.arange(10), "image": pa.array(blobs, pa.binary())}), path)
    return path, images


def test_bad_row_fails_naming_row_column_and_expected(tmp_path):
    path, _ = _bad_digits(tmp_path)
    with pytest.raises(InputError) as e:
        score_file(DIGITS, path, tmp_path / "out.parquet", batch_size=4, progress=False)
    msg = str(e.value)
    assert "row 3, column 'image'" in msg and "cannot decode" in msg and "uint8 [height, width, 3]" in msg
    assert not list(tmp_path.glob("out.parquet*"))  # nothing half-written


def test_bad_rows_null_keeps_every_row_in_order(tmp_path):
    path, images = _bad_digits(tmp_path)
    summary = score_file(DIGITS, path, tmp_path / "out.parquet", batch_size=4, keep=["id"], on_error="null",
                         progress=False)
    assert (summary.rows_in, summary.rows_out, summary.errors) == (10, 10, 2)
    out = pq.read_table(tmp_path / "out.parquet")
    assert out["id"].to_pylist() == list(range(10))
    errors = out["error"].to_pylist()
    assert [i for i, e in enumerate(errors) if e] == [3, 7]
    assert "row 7, column 'image': a null value" in errors[7]
    assert out["score"][3].as_py() is None and out["label"][7].as_py() is None
    with Pipeline.load(DIGITS) as pipe:
        good = [i for i in range(10) if i not in (3, 7)]
        _rows_equal(pipe, out.take(good), lambda k: {"image": images[good[k]][None]})


def test_bad_rows_skip_writes_the_rest_and_lists_them(tmp_path):
    path, _ = _bad_digits(tmp_path)
    summary = score_file(DIGITS, path, tmp_path / "out.parquet", batch_size=4, keep=["id"], on_error="skip",
                         progress=False)
    assert (summary.rows_in, summary.rows_out, summary.errors) == (10, 8, 2)
    assert pq.read_table(tmp_path / "out.parquet")["id"].to_pylist() == [0, 1, 2, 4, 5, 6, 8, 9]
    listed = [json.loads(s) for s in (tmp_path / "out.parquet.errors.jsonl").read_text().splitlines()]
    assert [e["row"] for e in listed] == [3, 7]


def test_bad_values_in_lists_are_row_errors(tmp_path):
    rows = [{"features": [1, 2, 3], "pixels": [[[1, 2, 3]]]},
            {"features": [1, 2], "pixels": [[[1, 2, 3]]]},                 # wrong length
            {"features": [1, 2, 3], "pixels": [[[1, 2, 300]]]},            # out of uint8
            {"features": [1, 2, 3], "pixels": [[[1, 2, 3]], [[4, 5]]]},   # ragged
            {"features": [1, None, 3], "pixels": [[[1, 2, 3]]]},           # null inside
            {"features": "1,2,3", "pixels": [[[1, 2, 3]]]}]                # not a list
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "{oops\n")
    score_file(VECTORS / "basic" / "model.onnx", tmp_path / "in.jsonl", tmp_path / "out.jsonl", on_error="null",
               progress=False)
    errors = [json.loads(s)["error"] for s in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(errors) == 7 and errors[0] is None
    assert "column 'features'" in errors[1] and "dimension 0 is 2, expected 3" in errors[1]
    assert "outside uint8" in errors[2]
    assert "ragged" in errors[3]
    assert "null value" in errors[4]
    assert "column 'features'" in errors[5]
    assert "row 6" in errors[6] and "not a JSON object" in errors[6]


def test_wrong_column_type_fails_the_job_whatever_the_policy(tmp_path):
    pq.write_table(pa.table({"image": ["a", "b"]}), tmp_path / "in.parquet")
    with pytest.raises(InputError, match="column 'image' is string; input 'image' expects uint8"):
        score_file(DIGITS, tmp_path / "in.parquet", tmp_path / "out.parquet", on_error="null", progress=False)


def test_reads_in_bounded_batches(tmp_path):
    pq.write_table(pa.table({"x": np.arange(1000)}), tmp_path / "in.parquet", row_group_size=300)
    total, batches = read_table(tmp_path / "in.parquet", ["x"], 64)
    sizes = [b.num_rows for b in batches]
    assert total == 1000 and sum(sizes) == 1000 and max(sizes) == 64


def test_cli_progress_summary_and_exit_codes(tmp_path, capsys):
    images = digit_images(20, seed=5)
    pq.write_table(pa.table({"png": [encode_png(a) for a in images]}), tmp_path / "in.parquet")
    args = ["score", str(DIGITS), "--input", str(tmp_path / "in.parquet"), "--output", str(tmp_path / "o.parquet")]
    assert runtime_main(args + ["--columns", "image=png", "--param", "score_threshold=0.9"]) == 0
    err = capsys.readouterr().err
    assert "scored 20 rows" in err and "rows/s" in err
    out = pq.read_table(tmp_path / "o.parquet")
    assert out.num_rows == 20
    with Pipeline.load(DIGITS) as pipe:
        want = pipe.run(image=images[0][None], score_threshold=0.9)["label"][0].tolist()
    assert out["label"][0].as_py() == want

    assert runtime_main(args) == 3  # no column 'image': INVALID_INPUT
    assert "no column 'image'" in capsys.readouterr().err
    assert runtime_main(args + ["--columns", "image=png", "--param", "nope=1"]) == 3
    assert "not an optional input" in capsys.readouterr().err


def test_progress_line_has_rate_and_eta():
    from onnxpipe_runtime.score import Progress

    stream = io.StringIO()
    bar = Progress("scoring x.onnx", 1000, stream)
    bar.done = 250
    line = bar.line(bar.start + 2.0)
    assert "250/1,000 rows (25%)" in line and "125 rows/s" in line and "ETA 0:06" in line


def test_empty_table_gives_an_empty_table(tmp_path):
    (tmp_path / "in.jsonl").write_text("")
    summary = score_file(DIGITS, tmp_path / "in.jsonl", tmp_path / "out.parquet", progress=False)
    assert (summary.rows_in, summary.rows_out) == (0, 0)
    assert pq.read_table(tmp_path / "out.parquet").column_names == ["score", "label_id", "label"]


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_a_closed_writer_refuses_rows(tmp_path, suffix):
    import pyarrow as pa

    from onnxpipe_runtime.pipeline import ClosedError
    from onnxpipe_runtime.score import TableWriter

    batch = pa.RecordBatch.from_pydict({"x": [1, 2]})
    writer = TableWriter(tmp_path / f"out{suffix}", batch.schema)
    writer.write(batch)
    writer.commit()
    with pytest.raises(ClosedError, match="is closed; it takes no more rows"):
        writer.write(batch)
    assert writer.rows == 2 and (tmp_path / f"out{suffix}").exists()
