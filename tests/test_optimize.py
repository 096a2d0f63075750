"""onnxpipe.optimize: only the model stage changes, the gate decides, failures write nothing, errors are typed.

Models: a small token-MLP whose one layer has an outlier channel (int8 per-tensor ruins exactly that layer,
so mixed precision must keep it in fp32), the committed digits and detector vectors (CNNs: static QDQ),
Hugging Face BERT from a config through both exporters (attention fusion), and MiniLM (dynamo, real weights).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx.version_converter
import pytest
import torch
from onnxpipe_runtime import Pipeline, tensor_json
from onnxpipe_runtime.format import Manifest
from onnxpipe_runtime.signature import TensorSpec

import onnxpipe
from onnxpipe import RuntimeInput, export_pipeline
from onnxpipe._optimize import _fusion, _stage, load_cases
from onnxpipe._optimize._gate import Gate, evaluate, parse_gate
from onnxpipe.errors import GateError, OptimizeError

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "tests" / "vectors"


class Embed(torch.nn.Module):
    """pre: scale the features (a real stage, so 'pre unchanged' means something)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.5 + 0.1


class OutlierMLP(torch.nn.Module):
    """[batch, tokens, 16] -> [batch, tokens, 8]; layer ``mid`` reads activations with one channel ~1000x larger
    than the rest, which per-tensor int8 activation quantization flattens to zero."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.inp = torch.nn.Linear(16, 64)
        self.mid = torch.nn.Linear(64, 64)
        self.out = torch.nn.Linear(64, 8)
        with torch.no_grad():
            for layer in (self.inp, self.mid, self.out):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) / layer.weight.shape[1] ** 0.5)
                layer.bias.zero_()
            self.inp.bias[0] = 2000.0  # channel 0 of mid's input: the outlier (weights stay ordinary)
            self.mid.weight[:, 0].div_(2000.0)  # ... which mid scales back, so fp32 is well-behaved

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.mid(torch.relu(self.inp(x)))))


class Pool(torch.nn.Module):
    """post: mean over tokens, L2-normalize, and a run-time threshold on the first component."""

    def __init__(self) -> None:
        super().__init__()
        self.threshold = RuntimeInput("score_threshold", 0.0)

    def forward(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        v = torch.nn.functional.normalize(h.mean(1), dim=-1)
        return {"embedding": v, "positive": (v[:, 0] > self.threshold.value()).to(torch.int64)}


def features(batch: int, tokens: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, tokens, 16)).astype(np.float32)


@pytest.fixture(scope="module")
def mlp_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mlp") / "mlp.onnx"
    export_pipeline(Embed(), OutlierMLP().eval(), Pool(), example_inputs={"x": torch.from_numpy(features(2, 5, 0))},
                    dynamic_axes={"x": {0: "batch", 1: "tokens"}}, path=path, metadata={"name": "mlp"})
    return path


def mid_matmul(path: Path) -> str:
    """The MatMul of the ``mid`` layer: the one that reads the first ReLU's output."""
    g = onnx.load(str(path)).graph
    relu = [n for n in g.node if n.op_type == "Relu" and n.name.startswith("model/")][0]
    return next(n.name for n in g.node if n.op_type == "MatMul" and n.input[0] == relu.output[0])


def mlp_cases(n: int, seed: int) -> list[dict[str, np.ndarray]]:
    return [{"x": features(4, 6, seed + i)} for i in range(n)]


def test_mixed_precision_keeps_exactly_the_harmful_node_in_fp32(mlp_file, tmp_path):
    out = tmp_path / "mlp.opt.onnx"
    report = onnxpipe.optimize(mlp_file, validation=mlp_cases(4, 100), calibration=mlp_cases(4, 200),
                               gate="cosine>=0.999", candidates=["int8-dynamic", "mixed"], path_out=out,
                               include_fp32=False, runs=3, threads=1)
    rows = {c.name: c for c in report.candidates}
    assert rows["int8-dynamic"].passed is False, rows["int8-dynamic"].metrics
    mixed = rows["mixed"]
    assert mixed.passed and report.chosen == "mixed"
    assert mixed.fp32_nodes == [mid_matmul(mlp_file)], mixed.fp32_nodes
    with Pipeline.load(out) as opt, Pipeline.load(mlp_file) as ref:
        for case in mlp_cases(3, 500):  # held out from both sets above
            got, want = opt.run(case), ref.run(case)
            cos = np.sum(got["embedding"] * want["embedding"], axis=1)
            assert cos.min() >= 0.999
            np.testing.assert_array_equal(opt.run(case, score_threshold=0.2)["positive"],
                                          ref.run(case, score_threshold=0.2)["positive"])
        manifest = opt.manifest.to_dict()
    assert manifest["precision"] == "mixed"
    assert manifest["optimization"]["stages"]["model"]["fp32_nodes"] == mixed.fp32_nodes
    assert manifest["optimization"]["gate"]["rule"].startswith("cosine>=0.999")
    # thresholds stay run-time inputs backed by their defaults
    g = onnx.load(str(out)).graph
    assert "score_threshold" in {i.name for i in g.input} and "score_threshold" in {i.name for i in g.initializer}


def test_pre_and_post_stay_byte_for_byte_the_same(mlp_file, tmp_path):
    out = tmp_path / "mlp.opt.onnx"
    onnxpipe.optimize(mlp_file, validation=mlp_cases(2, 100), gate="cosine>=0.5", candidates=["int8-weights"],
                      path_out=out, include_fp32=False, runs=2, threads=1)
    before, after = onnx.load(str(mlp_file)), onnx.load(str(out))
    assert _stage.stage_fingerprint(before) == _stage.stage_fingerprint(after)
    model_ops = {n.op_type for n in after.graph.node if n.name.startswith("model/")}
    assert "MatMulNBits" in model_ops and "MatMul" not in model_ops, model_ops
    assert [vi.name for vi in before.graph.input] == [vi.name for vi in after.graph.input]
    assert [vi.SerializeToString() for vi in before.graph.output] == [vi.SerializeToString() for vi in after.graph.output]


def test_gate_failure_writes_nothing_and_cli_exits_2(mlp_file, tmp_path):
    out = tmp_path / "never.onnx"
    with pytest.raises(GateError) as info:
        onnxpipe.optimize(mlp_file, validation=mlp_cases(2, 100), gate="cosine>=1.0",
                          candidates=["int8-dynamic", "int8-dynamic-pc"], path_out=out, runs=2, threads=1)
    assert not out.exists() and not list(tmp_path.glob(".never.onnx*"))
    assert {c.name for c in info.value.report.candidates} >= {"fp32", "int8-dynamic", "int8-dynamic-pc"}
    assert "FAIL" in info.value.report.table()

    cases = tmp_path / "v.json"
    cases.write_text(json.dumps([json.loads(tensor_json.dumps(c)) for c in mlp_cases(2, 100)]))
    proc = subprocess.run([sys.executable, "-m", "onnxpipe.cli", "-q", "optimize", str(mlp_file), "-o", str(out),
                           "--validation", str(cases), "--gate", "cosine>=1.0", "--candidates", "int8-dynamic"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("onnxpipe: error [GATE]: no candidate passed"), proc.stderr
    assert "int8-dynamic" in proc.stdout and "FAIL" in proc.stdout
    assert not out.exists()


def test_cli_writes_the_file_and_inspect_shows_its_status(mlp_file, tmp_path):
    out = tmp_path / "mlp.opt.onnx"
    folder = tmp_path / "cases"
    folder.mkdir()
    for i, c in enumerate(mlp_cases(3, 100)):
        tensor_json.dump(c, folder / f"case_{i}.json")
    proc = subprocess.run([sys.executable, "-m", "onnxpipe.cli", "-q", "optimize", str(mlp_file), "-o", str(out),
                           "--validation", str(folder), "--gate", "cosine>=0.5", "--candidates", "int8-weights",
                           "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "candidate" in proc.stdout and "int8-weights" in proc.stdout
    if out.exists():  # written unless the fp32 file was faster here, which the output then says
        inspect = subprocess.run([sys.executable, "-m", "onnxpipe.cli", "inspect", str(out)], capture_output=True,
                                 text=True, timeout=120)
        assert "optimization: int8-weights" in inspect.stdout and "pre/post unchanged" in inspect.stdout
    else:
        assert "nothing written" in proc.stdout


@pytest.mark.parametrize("kwargs, pattern", [
    ({"validation": None}, "validation: no inputs given"),
    ({"validation": {"x": np.zeros((2, 5, 16), np.int64)}}, "validation case 0: .*'x'"),
    ({"validation": [{"y": np.zeros((1, 2, 16), np.float32)}]}, "validation case 0: unknown input 'y'"),
    ({"gate": "cosine>0.9"}, "gate: cannot read 'cosine>0.9'"),
    ({"gate": "accuracy>=0.9"}, "unknown metric 'accuracy'"),
    ({"candidates": ["int4"]}, r"candidates: unknown \['int4'\]"),
    ({"batch_sizes": [0]}, "batch_sizes: expected positive integers"),
])
def test_bad_arguments_are_typed_errors(mlp_file, kwargs, pattern):
    args = {"validation": mlp_cases(1, 1)} | kwargs
    with pytest.raises(OptimizeError, match=pattern):
        onnxpipe.optimize(mlp_file, **args)


def test_files_it_refuses(mlp_file, tmp_path):
    with pytest.raises(OptimizeError, match="no onnxpipe manifest"):
        onnxpipe.optimize(ROOT / "tests" / "fixtures" / "plain.onnx", validation=mlp_cases(1, 1))
    with pytest.raises(OptimizeError, match="does not exist"):
        onnxpipe.optimize(tmp_path / "missing.onnx", validation=mlp_cases(1, 1))
    with pytest.raises(OptimizeError, match="is the input file"):
        onnxpipe.optimize(mlp_file, validation=mlp_cases(1, 1), path_out=mlp_file)
    out = tmp_path / "o.onnx"
    onnxpipe.optimize(mlp_file, validation=mlp_cases(2, 1), gate="cosine>=0.5", candidates=["int8-weights"],
                      path_out=out, include_fp32=False, runs=2, threads=1)
    with pytest.raises(OptimizeError, match="already optimized .*optimize the fp32 file it came from .*mlp.onnx"):
        onnxpipe.optimize(out, validation=mlp_cases(1, 1))


def test_load_cases_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(OptimizeError, match="case 0: expected a tensor-JSON object"):
        load_cases(bad)
    bad.write_text('{"x": {"dtype": "float32", "shape": [2], "data": [1]}}')
    with pytest.raises(OptimizeError, match="case 0"):
        load_cases(bad)
    with pytest.raises(OptimizeError, match="has no .json files"):
        load_cases(_empty_dir(tmp_path))


def _empty_dir(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir()
    return d


# -- the gate's metrics ------------------------------------------------------------------------------------
def test_gate_metrics_by_output_kind():
    manifest = Manifest(name="m", inputs=(), outputs=tuple(TensorSpec(n, "float32", ()) for n in ("det", "v", "label")),
                        metadata={"det": "batch_index,x1,y1,x2,y2,score,class_id"})
    det = np.array([[0, 0, 0, 10, 10, 0.9, 1], [0, 20, 20, 30, 30, 0.8, 2], [1, 0, 0, 5, 5, 0.7, 0]], np.float32)
    moved = det.copy()
    moved[0, 1:5] += 1  # IoU 0.68: still a match
    moved[1, 6] = 1  # other class: no match
    ref = [{"det": det, "v": np.array([[1.0, 0.0], [0.0, 2.0]], np.float32), "label": np.array(["a", "b"])}]
    got = [{"det": moved[:2], "v": np.array([[1.0, 0.1], [0.0, 2.0]], np.float32), "label": np.array(["a", "c"])}]
    m = evaluate(ref, got, manifest, Gate())
    assert m["recall"] == pytest.approx(1 / 3) and m["precision"] == pytest.approx(1 / 2)
    assert m["cosine"] == pytest.approx(1 / np.sqrt(1.01), rel=1e-6)
    assert m["agreement"] == 0.5
    custom = Gate(custom={"maxdiff": (lambda r, c: 1 - float(np.abs(r[0]["v"] - c[0]["v"]).max()), 0.95)})
    assert evaluate(ref, got, manifest, custom)["maxdiff"] == pytest.approx(0.9)
    assert parse_gate("cosine>=0.95, agreement>=1").minimum == {"cosine": 0.95, "agreement": 1.0, "recall": 0.98,
                                                                 "precision": 0.98}


# -- graph fusions -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_attention_fusion_on_hugging_face_bert_from_both_exporters(exporter, attention, tmp_path):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128, max_position_embeddings=64, attn_implementation=attention)
    bert = BertModel(cfg).eval()

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.bert(input_ids=ids, attention_mask=mask).last_hidden_state

    ids = torch.randint(1, 120, (2, 7))
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    path = tmp_path / f"bert_{exporter}.onnx"
    export_pipeline(None, Encoder().eval(), None, example_inputs={"ids": ids, "mask": mask}, exporter=exporter,
                    dynamic_axes={"ids": {0: "batch", 1: "seq"}, "mask": {0: "batch", 1: "seq"}}, path=path,
                    verify_inputs=[{"ids": torch.randint(1, 120, (3, 11)),
                                    "mask": torch.tensor([[1] * 11, [1] * 2 + [0] * 9, [1] * 6 + [0] * 5])}])
    stage = _stage.extract(onnx.load(str(path)))
    fused, counts = _fusion.transformer_fusions(stage.model)
    assert counts.get("Attention") == 2, counts
    assert counts.get("SkipLayerNormalization", 0) >= 2 and counts.get("BiasGelu", 0) + counts.get("Gelu", 0) >= 2
    import onnxruntime as ort

    a = ort.InferenceSession(stage.model.SerializeToString(), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(fused.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for batch, seq in ((1, 5), (4, 13)):
        feed_ids = rng.integers(1, 120, (batch, seq))
        feed_mask = (np.arange(seq)[None, :] < rng.integers(1, seq + 1, (batch, 1))).astype(np.int64)
        names = [i.name for i in a.get_inputs()]
        feed = dict(zip(names, (feed_ids, feed_mask)))
        want = a.run(None, feed)[0]
        got = b.run(None, feed)[0]
        keep = feed_mask.astype(bool)  # padded positions are not compared: BERT's own output there is arbitrary
        np.testing.assert_allclose(got[keep], want[keep], atol=2e-5, rtol=1e-4)
        with torch.no_grad():
            eager = bert(input_ids=torch.from_numpy(feed_ids), attention_mask=torch.from_numpy(feed_mask))
        np.testing.assert_allclose(got[keep], eager.last_hidden_state.numpy()[keep], atol=5e-5, rtol=1e-4)
    if exporter == "dynamo" and attention == "sdpa":
        # this pipeline returns every position, padding included: removing padding would change its outputs,
        # so optimize must refuse it (and keep the fusions)
        cases = [{"ids": rng.integers(1, 120, (3, 9)),
                  "mask": (np.arange(9)[None, :] < np.array([[9], [4], [2]])).astype(np.int64)}]
        report = onnxpipe.optimize(path, validation=cases, candidates=["fp32-fused"], include_fp32=False,
                                   path_out=tmp_path / "bert.opt.onnx", runs=2, threads=1)
        fused_row = report.candidate("fp32-fused")
        assert fused_row.fusions.get("Attention") == 2 and "packed" not in fused_row.fusions, fused_row.fusions


def _minilm_file() -> Path:
    path = VECTORS / "minilm" / "model.generated.onnx"
    if not path.is_file():
        pytest.skip(f"{path} is absent: make generated-models builds it (make test does)")
    return path


@pytest.mark.slow
def test_minilm_dynamo_graph_fuses_every_attention_block_and_drops_padding():
    import onnxruntime as ort

    stage = _stage.extract(onnx.load(str(_minilm_file())))
    fused, counts = _fusion.transformer_fusions(stage.model)
    assert counts == {"Attention": 6, "BiasGelu": 6, "SkipLayerNormalization": 12}, counts
    assert not any(n.op_type in ("IsNaN", "Softmax") for n in fused.graph.node)
    packed = onnx.ModelProto()
    packed.CopyFrom(fused)
    assert _fusion.pack_tokens(packed) == 36  # per layer: 2 SkipLayerNorm, 3 MatMul, 1 BiasGelu
    a = ort.InferenceSession(fused.SerializeToString(), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(packed.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    for batch, seq in ((1, 7), (5, 19), (0, 4)):
        mask = (np.arange(seq)[None, :] < rng.integers(1, seq + 1, (batch, 1))).astype(np.int64)
        ids = rng.integers(1000, 20000, (batch, seq)) * mask
        feed = {"pre/input_ids": ids, "pre/token_type_ids": np.zeros_like(ids), "pre/attention_mask": mask}
        want, got = a.run(None, feed)[0], b.run(None, feed)[0]
        keep = mask.astype(bool)
        assert got.shape == want.shape
        np.testing.assert_allclose(got[keep], want[keep], atol=1e-5)
        assert not got[~keep].any()  # padded positions: zeros


# -- portable integer graphs ---------------------------------------------------------------------------------
def test_portable_int8_runs_in_onnx_reference_evaluator(tmp_path):
    from onnx.reference import ReferenceEvaluator

    src = VECTORS / "digits" / "model.onnx"
    cases = [tensor_json.load(p) for p in sorted((VECTORS / "digits").glob("inputs_*.json"))]
    out = tmp_path / "digits.int8.onnx"
    report = onnxpipe.optimize(src, validation=cases, portable=True, include_fp32=False, path_out=out, runs=2,
                               threads=1)
    assert report.chosen == "int8-static"
    model = onnx.load(str(out))
    domains = {n.domain for n in model.graph.node}
    assert domains <= {"", "ai.onnx"}, domains
    ops = {n.op_type for n in model.graph.node if n.name.startswith("model/")}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert model.graph.node and all(imp.domain in ("", "ai.onnx") for imp in model.opset_import)
    # onnx's reference evaluator implements QuantizeLinear/DequantizeLinear from opset 19 on: lift the file
    # with onnx's own version converter (the file stays at the export's opset for every runtime)
    ref = ReferenceEvaluator(onnx.version_converter.convert_version(model, 19))
    names = [o.name for o in model.graph.output]
    with Pipeline.load(out, threads=1) as pipe:
        for case in cases:
            got_ort = pipe.run(case)
            got_ref = dict(zip(names, ref.run(None, case)))
            np.testing.assert_array_equal(got_ref["label"], got_ort["label"])
            np.testing.assert_allclose(got_ref["score"], got_ort["score"], atol=2e-3)
    assert json.loads(next(p.value for p in model.metadata_props if p.key == "onnxpipe.manifest"))[
        "optimization"]["portable"] is True


def test_detector_static_int8_keeps_detection_recall_and_precision(tmp_path):
    src = VECTORS / "detector" / "model.onnx"
    cases = [tensor_json.load(p) for p in sorted((VECTORS / "detector").glob("inputs_*.json"))]
    report = onnxpipe.optimize(src, validation=cases, candidates=["int8-static"], include_fp32=False,
                               path_out=tmp_path / "det.onnx", runs=2, threads=1)
    row = report.candidate("int8-static")
    assert set(row.metrics) == {"recall", "precision"}
    assert row.passed and row.metrics["recall"] >= 0.98 and row.metrics["precision"] >= 0.98, row.metrics


def test_accelerator_candidates_are_gated_and_recommended(tmp_path):
    from onnxpipe_runtime import accelerators

    if not any(a == "openvino" for a, _ in accelerators.candidates()):
        pytest.skip("the openvino extra is not installed (make setup installs it)")
    src = VECTORS / "digits" / "model.onnx"
    cases = [tensor_json.load(p) for p in sorted((VECTORS / "digits").glob("inputs_*.json"))]
    out = tmp_path / "digits.ov.onnx"
    report = onnxpipe.optimize(src, validation=cases, candidates=["openvino-f32"], include_fp32=False,
                               path_out=out, runs=2, threads=1)
    row = report.candidate("openvino-f32")
    assert row.accelerator == "openvino" and row.passed and row.metrics["agreement"] == 1.0
    assert "openvino" in report.table()
    with Pipeline.load(out) as pipe:
        typed = pipe.manifest
    manifest = typed.to_dict()
    assert manifest["accelerator"]["recommended"] == "openvino" and manifest["accelerator"]["precision"] == "f32"
    assert manifest["precision"] == "fp32" and manifest["optimization"]["stages"]["model"]["accelerator"] == "openvino"
    assert accelerators.recommended(typed) == ("openvino", "f32")
    # the graph is the fp32 file's: only the manifest recommends where its model stage runs
    assert _stage.stage_fingerprint(onnx.load(str(src)), ("pre", "model", "post")) == \
        _stage.stage_fingerprint(onnx.load(str(out)), ("pre", "model", "post"))


def test_triton_repository_takes_an_optimized_file(tmp_path):
    from onnxpipe_runtime import triton_repo

    assert triton_repo.main([str(VECTORS / "digits-int8" / "model.onnx"), str(tmp_path / "repo"), "--name", "d8"]) == 0
    assert (tmp_path / "repo" / "d8" / "1" / "model.onnx").read_bytes() == (VECTORS / "digits-int8" / "model.onnx"
                                                                           ).read_bytes()


def test_a_row_without_a_model_stage_is_a_typed_error():
    from onnxpipe._optimize import Candidate, _model_of

    with pytest.raises(OptimizeError, match="'openvino-f32' .* has no model stage of its own"):
        _model_of(Candidate("openvino-f32", "f32", "fp32 file, model stage on openvino", accelerator="openvino"))
