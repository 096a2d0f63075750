"""onnxpipe.ops.text: BertTokenize against Hugging Face, the pooling modules, and the MiniLM example.

Tokenizer tests need only the vocabulary (no model); the MiniLM tests share one export (module fixture).
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnxruntime_extensions import get_library_path

import onnxpipe
from examples import minilm
from onnxpipe.ops.text import BertTokenize, L2Normalize, MeanPooling
from onnxpipe_runtime import Pipeline, tensor_json

VOCAB = minilm.model_dir() / "vocab.txt"
OUTPUTS = ("input_ids", "attention_mask", "token_type_ids")

# The parity corpus, by category (the list plus scripts, spacing and control characters).
CORPUS: dict[str, list[str]] = {
    "plain": ["Hello, world!", "The quick brown fox jumps over the lazy dog.", "MiXeD CaSe WoRdS", "x"],
    "accents": ["Café naïve résumé Über straße", "ÀÉÎÕÜ àéîõü ÇçÑñ Åland", "Crème brûlée à la mode",
                "combining e\u0301 vs é and \u0301leading", "İstanbul ıi ǅ ß ẞ ﬁ ligature"],
    "cjk": ["北京欢迎你！中文标点，測試", "日本語のテキスト、カタカナ。", "東京タワー", "한국어 문장입니다", "中😀"],
    "punctuation": ["don't stop-believing...", "a$b^c`d~e|f\\g{h}i[j]k<l>m", "C++ and C# (really?!)",
                    "quotes “curly” ‘single’ «guillemets» — em–dash … ellipsis", "fullwidth ＡＢＣ１２３！",
                    "50% off — today only!!!", "snake_case and kebab-case", "URL https://example.com/a?b=c&d=e#f",
                    "math ∑∫√∞≠≤≥", "© ® ™ § ¶ † ‡ • ° ± × ÷ a°b"],
    "emoji": ["emoji 😀👍🏽 family 👨‍👩‍👧 flags 🇫🇷", "I love it😍", "great😀!", "hello😀world",
              "thinking🤔about it", "😀😀😀"],
    "empty": ["", " ", "\t\n\r ", "\u200b"],
    "overlong": ["word " * 600, "x" * 150, "é" * 100, "supercalifragilisticexpialidocious " * 40,
                 "The committee discussed the quarterly report, " * 60],
    "scripts": ["Ελληνικά και Русский текст", "Σίσυφος ΣΑΣ", "مرحبا بالعالم", "नमस्ते दुनिया", "สวัสดีชาวโลก",
                "ქართული ენა", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙"],
    "special": ["hello [MASK] world", "[CLS] x [SEP]", "a[UNK]b", "[PAD]", "[[MASK]]", "[mask] [unused1]",
                "[MA\u200bSK]", "\x030\x03 x 😀0", "\x04\x05 [SEP]\x07[MA\x06SK]"],
    "spacing": ["   leading and trailing   ", "tabs\tand\nnewlines\r\nand\u00a0nbsp\u2003em-space\u3000ideographic",
                "zero\u200bwidth\u200djoiner\ufeffbom soft\u00adhyphen", "\u0007bell\u001bescape\u007fdel",
                "replacement \ufffd char, private \ue000 use"],
}
ALL = [s for strings in CORPUS.values() for s in strings]

# Known differences, as data: (id, text, why). Each must still differ (strict xfail) so a fix is noticed.
KNOWN_DIVERGENCES = [
    ("nul", "ab\x00cd ef",
     "onnxruntime-extensions' string ops read strings as C strings: everything from a NUL on is lost"),
]


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.register_custom_ops_library(get_library_path())
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    model.ir_version = 8
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module", params=[True, False], ids=["lower", "cased"])
def tok(request):
    """(stage, session, Hugging Face tokenizer) for lower_case True/False, max_length 512."""
    from transformers import BertTokenizerFast

    stage = BertTokenize(VOCAB, lower_case=request.param, max_length=512)
    hf = BertTokenizerFast(str(VOCAB), do_lower_case=request.param)
    return stage, _session(stage.build(18)), hf


def _graph(session: ort.InferenceSession, strings: list[str]) -> dict[str, np.ndarray]:
    out = session.run(list(OUTPUTS), {"text": np.array(strings, dtype=object)})
    return dict(zip(OUTPUTS, out))


def _hf(hf, strings: list[str], max_length: int = 512) -> dict[str, np.ndarray]:
    enc = hf(strings, padding=True, truncation=True, max_length=max_length, return_tensors="np")
    return {k: np.asarray(enc[k], dtype=np.int64) for k in OUTPUTS}


def _mismatches(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> list[str]:
    bad = []
    for k in OUTPUTS:
        if got[k].dtype != np.int64 or got[k].shape != want[k].shape or not np.array_equal(got[k], want[k]):
            bad.append(f"{k}: got {got[k].dtype}{list(got[k].shape)} {got[k].tolist()!s:.200}, "
                       f"want {list(want[k].shape)} {want[k].tolist()!s:.200}")
    return bad


# -- tokenizer parity ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("category", sorted(CORPUS))
def test_batch_of_one_matches_hugging_face(tok, category):
    stage, sess, hf = tok
    failures = {}
    for text in CORPUS[category]:
        bad = _mismatches(_graph(sess, [text]), _hf(hf, [text]))
        if bad:
            failures[text[:40]] = bad
    assert not failures, f"{len(failures)}/{len(CORPUS[category])} strings differ: {failures}"


@pytest.mark.parametrize("max_length", [512, 16, 2])
def test_whole_corpus_batch_matches_hugging_face(tok, max_length):
    stage, _, hf = tok
    stage = BertTokenize(VOCAB, lower_case=stage.lower_case, max_length=max_length)
    got = _graph(_session(stage.build(18)), ALL)
    want = _hf(hf, ALL, max_length)
    assert not _mismatches(got, want)
    assert got["input_ids"].shape == (len(ALL), min(max_length, want["input_ids"].shape[1]))
    if max_length == 2:  # only [CLS] [SEP] fit
        assert (got["input_ids"] == [[101, 102]] * len(ALL)).all()


def test_reference_is_hugging_face(tok):
    stage, _, hf = tok
    ref = stage.reference(np.array(ALL, dtype=object))
    assert not _mismatches(ref, _hf(hf, ALL))


def test_unicode_sample_matches_hugging_face(tok):
    """Every 11th assigned code point, inside a word, alone and after a capital.

    The graph's character tables come from Python's unicodedata; Hugging Face's (Rust) tables are of an older
    Unicode version, so characters added or re-categorized since differ. They must stay rare, and none may
    be below U+0800 (Latin, Greek, Cyrillic, Hebrew, Arabic... ).
    """
    stage, sess, hf = tok
    points = [cp for cp in range(1, 0x110000, 11)
              if not 0xD800 <= cp <= 0xDFFF and unicodedata.category(chr(cp)) != "Cn"]
    strings = [f"a{chr(cp)}b {chr(cp)} E{chr(cp)}" for cp in points]
    bad = []
    for i in range(0, len(strings), 4000):
        chunk = strings[i:i + 4000]
        got, want = _graph(sess, chunk)["input_ids"], _hf(hf, chunk)["input_ids"]
        width = min(got.shape[1], want.shape[1])
        rows = (got[:, :width] != want[:, :width]).any(axis=1)
        rows |= (got[:, width:] != 0).any(axis=1) | (want[:, width:] != 0).any(axis=1)
        bad += [points[i + j] for j in np.nonzero(rows)[0]]
    assert len(points) > 8000
    assert len(bad) <= 0.005 * len(points), f"{len(bad)}/{len(points)} code points differ: {[hex(c) for c in bad[:30]]}"
    assert all(cp >= 0x800 for cp in bad), [hex(c) for c in bad if c < 0x800]


@pytest.mark.parametrize("case", KNOWN_DIVERGENCES, ids=[k[0] for k in KNOWN_DIVERGENCES])
def test_known_divergences_still_differ(tok, case):
    _, text, why = case
    stage, sess, hf = tok
    if not _mismatches(_graph(sess, [text]), _hf(hf, [text])):
        pytest.fail(f"known divergence {case[0]!r} ({why}) no longer differs: remove it from the table")


def test_empty_batch_gives_empty_outputs(tok):
    stage, sess, _ = tok
    got = _graph(sess, [])
    ref = stage.reference(np.array([], dtype=object))
    for k in OUTPUTS:
        assert got[k].shape == (0, 0) and got[k].dtype == np.int64
        assert ref[k].shape == (0, 0)


def test_graph_is_valid_and_declares_its_interface():
    stage = BertTokenize(VOCAB)
    model = stage.build(18)
    model.ir_version = 8
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["text"]
    assert [o.name for o in model.graph.output] == list(OUTPUTS)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.STRING
    assert [d.dim_param for d in model.graph.output[0].type.tensor_type.shape.dim] == ["batch", "sequence"]
    assert {o.domain for o in model.opset_import} == {"", "ai.onnx.contrib"}
    assert stage.domains == ("ai.onnx.contrib",)
    assert stage.build(18).SerializeToString() == stage.build(18).SerializeToString()  # deterministic
    with pytest.raises(ValueError, match="opset"):
        stage.build(12)


def test_eager_call_returns_tensors():
    stage = BertTokenize(VOCAB, max_length=8)
    out = stage(np.array(["Hello there", "a"], dtype=object))
    assert list(out) == list(OUTPUTS)
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.int64 for v in out.values())
    assert out["input_ids"].tolist() == [[101, 7592, 2045, 102], [101, 1037, 102, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]


# -- construction and input errors ---------------------------------------------------------------------------
def _vocab(tmp_path: Path, lines: list[str]) -> Path:
    p = tmp_path / "vocab.txt"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"vocab_file": "/nonexistent/vocab.txt"}, "vocab_file"),
        ({"vocab_file": 42}, "vocab_file"),
        ({"max_length": 1}, "max_length"),
        ({"max_length": 0}, "max_length"),
        ({"max_length": -3}, "max_length"),
        ({"max_length": 2.5}, "max_length"),
        ({"max_length": True}, "max_length"),
        ({"lower_case": "yes"}, "lower_case"),
    ],
)
def test_bad_parameters_raise_value_error_naming_them(kwargs, param):
    args = {"vocab_file": VOCAB} | kwargs
    with pytest.raises(ValueError, match=rf"^{param}: .*(expected|does not exist)"):
        BertTokenize(**args)


def test_vocab_folder_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="vocab_file: .*not a file"):
        BertTokenize(tmp_path)


@pytest.mark.parametrize(
    "lines, message",
    [
        (["[PAD]", "[UNK]", "a", "##a"], "lacks the special tokens"),
        (SPECIALS + ["a", "", "##a"], "line 7"),
        (SPECIALS + ["a b", "a", "##a"], "line 6"),
        (SPECIALS + ["ab", "a", "##a"], "'ab'"),  # 'b' is not a token of its own
    ],
)
def test_bad_vocabularies_are_rejected(tmp_path, lines, message):
    with pytest.raises(ValueError, match=f"vocab_file: .*{message}"):
        BertTokenize(_vocab(tmp_path, lines))


@pytest.mark.parametrize("lower_case", [True, False])
def test_small_vocabulary_with_one_sided_characters(tmp_path, lower_case):
    """'b' may only start a word, 'd' only continue one: words break exactly where Hugging Face's do."""
    from transformers import BertTokenizerFast

    vocab = _vocab(tmp_path, SPECIALS + ["a", "##a", "b", "c", "##c", "##d", ".", "##."])
    texts = ["ab ba da ad cab b d", "Ba. AD, bd db", "", "a" * 120, "[MASK] b[SEP]d"]
    stage = BertTokenize(vocab, lower_case=lower_case, max_length=32)
    got = _graph(_session(stage.build(18)), texts)
    assert not _mismatches(got, _hf(BertTokenizerFast(str(vocab), do_lower_case=lower_case), texts, 32))


def test_reference_rejects_non_vector_input():
    stage = BertTokenize(VOCAB)
    with pytest.raises(ValueError, match=r"input 'text': expected a 1-D array of strings \[batch\], got shape \[1, 2\]"):
        stage.reference(np.array([["a", "b"]], dtype=object))
    with pytest.raises(ValueError, match="input 'text': expected strings, got dtype float"):
        stage.reference(np.array([1.0, 2.0]))


# -- export through export_pipeline --------------------------------------------------------------------------
def test_export_pipeline_with_the_tokenizer_as_pre(tmp_path):
    from transformers import BertTokenizerFast

    path = tmp_path / "tok.onnx"
    exported = onnxpipe.export_pipeline(
        BertTokenize(VOCAB, max_length=32), None, None,
        example_inputs={"text": np.array(["Hello world", "Café 😀"])},
        dynamic_axes={"text": {0: "batch"}},
        path=path,
        verify_inputs=[{"text": np.array(["", "北京 " * 40, "great😀!"], dtype=object)}],
    )
    m = exported.manifest.to_dict()
    assert m["domains"] == [{"domain": "ai.onnx.contrib", "library": "onnxruntime-extensions"}]
    assert m["stages"][0]["kind"] == "onnx"
    assert [o["name"] for o in m["outputs"]] == list(OUTPUTS)
    # the stage declares [batch, sequence]: names an ONNX-native stage gives are kept in the manifest
    shape = m["outputs"][0]["shape"]
    assert shape == ["batch", "sequence"] and m["outputs"][0]["dtype"] == "int64"
    assert m["verification"]["passed"]
    texts = ["One more sentence, unseen at export.", "Ünïcödé"]
    with Pipeline.load(path, threads=1) as pipe:
        got = pipe.run(text=np.array(texts, dtype=object))
    want = _hf(BertTokenizerFast(str(VOCAB)), texts, 32)
    assert not _mismatches(got, want)


# -- pooling ---------------------------------------------------------------------------------------------------
def test_mean_pooling_and_normalize_match_the_formula():
    rng = np.random.default_rng(0)
    h = rng.normal(size=(3, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=np.int64)
    pooled = MeanPooling()(torch.from_numpy(h), torch.from_numpy(mask)).numpy()
    want = np.stack([h[0, :3].mean(0), h[1].mean(0), np.zeros(4, np.float32)])
    np.testing.assert_allclose(pooled, want, rtol=1e-6, atol=1e-7)
    unit = L2Normalize()(torch.from_numpy(pooled)).numpy()
    np.testing.assert_allclose(unit[:2], want[:2] / np.linalg.norm(want[:2], axis=1, keepdims=True), rtol=1e-6)
    assert np.all(unit[2] == 0) and np.isfinite(unit).all()  # an all-padding row stays zero, no NaN
    with pytest.raises(ValueError, match="eps: expected a positive float"):
        L2Normalize(eps=0)


def test_pooling_exports_with_dynamic_batch_and_sequence(tmp_path):
    rng = np.random.default_rng(1)
    h = torch.from_numpy(rng.normal(size=(2, 6, 8)).astype(np.float32))
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    path = tmp_path / "pool.onnx"
    onnxpipe.export_pipeline(
        onnxpipe.Chain(MeanPooling(), L2Normalize()), None, None,
        example_inputs={"token_embeddings": h, "attention_mask": mask},
        dynamic_axes={"token_embeddings": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}},
        output_names=["embedding"], path=path,
    )
    h2 = rng.normal(size=(3, 11, 8)).astype(np.float32)
    m2 = (np.arange(11)[None, :] < np.array([[1], [11], [5]])).astype(np.int64)
    with Pipeline.load(path, threads=1) as pipe:
        got = pipe.run(token_embeddings=h2, attention_mask=m2)["embedding"]
    want = L2Normalize()(MeanPooling()(torch.from_numpy(h2), torch.from_numpy(m2))).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# -- the MiniLM example (one export shared by the tests below) --------------------------------------------------
@pytest.fixture(scope="module")
def minilm_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("minilm") / "minilm.generated.onnx"
    exported = onnxpipe.export_pipeline(**minilm.factory(), path=path)
    return exported


@pytest.mark.slow
def test_minilm_manifest(minilm_file):
    m = minilm_file.manifest.to_dict()
    assert [i["name"] for i in m["inputs"]] == ["text"] and m["inputs"][0]["dtype"] == "string"
    assert m["outputs"] == [{"name": "embedding", "dtype": "float32", "shape": ["batch", 384]}]
    assert {"domain": "ai.onnx.contrib", "library": "onnxruntime-extensions"} in m["domains"]
    kinds = {s["name"]: (s["kind"], s["exporter"]) for s in m["stages"]}
    assert kinds == {"pre": ("onnx", "onnx"), "model": ("torch", "dynamo"), "post": ("torch", "dynamo")}
    assert m["verification"]["passed"] and len(m["verification"]["cases"]) >= 4


@pytest.mark.slow
def test_minilm_matches_eager_hugging_face_on_300_sentences(minilm_file):
    texts = minilm.sentences(300, seed=1)
    want = minilm.eager_embeddings(texts)
    with Pipeline.load(minilm_file.path) as pipe:
        got = np.concatenate([pipe.run(text=np.array(texts[i:i + 32], dtype=object))["embedding"]
                              for i in range(0, len(texts), 32)])
        single = pipe.run(text=np.array(texts[:1], dtype=object))["embedding"]
    assert got.shape == (300, 384) and got.dtype == np.float32
    cos = np.sum(got * want, axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cos.min() >= 0.9999, f"cosine min {cos.min()} at {texts[int(cos.argmin())]!r}"
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(single[0], got[0], atol=1e-5)  # batch 1 == the same row in a batch of 32


@pytest.mark.slow
def test_minilm_vector_cases_and_demo(minilm_file, tmp_path, capsys):
    cases = minilm.vector_cases()
    assert [c[0] for c in cases][:1] == ["batch1"] and any(len(c[1]["text"]) >= 3 for c in cases)
    size = 0
    with Pipeline.load(minilm_file.path) as pipe:
        for k, (_, inputs) in enumerate(cases):
            out = pipe.run(inputs)
            assert out["embedding"].shape == (len(inputs["text"]), 384)
            np.testing.assert_allclose(out["embedding"], minilm.eager_embeddings(list(inputs["text"])), atol=1e-5)
            for name, value in (("inputs", inputs), ("expected", out)):
                tensor_json.dump(value, tmp_path / f"{name}_{k}.json")
                size += (tmp_path / f"{name}_{k}.json").stat().st_size
    assert size < 300_000
    minilm.demo(minilm_file.path)
    printed = capsys.readouterr().out
    assert "cosine min" in printed and "Someone is strumming an instrument." in printed
    assert json.loads(minilm_file.manifest.to_json())["name"] == "minilm"
