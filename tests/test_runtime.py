"""onnxpipe_runtime: validation, threads, torch-free import, tensor JSON, CLI, golden vectors."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from onnxpipe_runtime import ClosedError, InputError, ModelLoadError, Pipeline, tensor_json
from onnxpipe_runtime.threads import cgroup_cpu_limit, default_threads
from onnxpipe_runtime.vectors import load_set, mismatches

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
VECTORS = ROOT / "tests" / "vectors"


@pytest.fixture
def basic():
    with Pipeline.load(FIXTURES / "basic.onnx", threads=1) as pipe:
        yield pipe


def good_inputs(batch: int = 2) -> dict[str, np.ndarray]:
    return {"features": np.zeros((batch, 3), np.float32), "pixels": np.zeros((batch, 2, 2, 3), np.uint8)}


# --- validation: every error names the input, what was given and what is expected -----------------------------

@pytest.mark.parametrize("change, pattern", [
    (lambda d: d.pop("pixels"), r"missing input 'pixels' \(uint8 \[batch, height, width, 3\]\)"),
    (lambda d: d.update(extra=np.zeros(1)), r"unknown input 'extra'; expected one of \['features', 'pixels', 'score_threshold'\]"),
    (lambda d: d.update(features=np.zeros((2, 3), np.float64)), r"input 'features': dtype float64 given, expected float32"),
    (lambda d: d.update(pixels=np.zeros((2, 2, 2, 3), np.int64)), r"input 'pixels': dtype int64 given, expected uint8"),
    (lambda d: d.update(features=np.zeros((2, 3, 1), np.float32)), r"input 'features': rank 3 \(shape \[2, 3, 1\]\) given, expected rank 2 \[batch, 3\]"),
    (lambda d: d.update(features=np.zeros((2, 4), np.float32)), r"input 'features': dimension 1 is 4 \(shape \[2, 4\]\), expected 3"),
    (lambda d: d.update(features=np.zeros((3, 3), np.float32)), r"dimension 0 \('batch'\) is [23], but input '(pixels|features)' has 'batch' = [23]; inputs sharing"),
    (lambda d: d.update(features=[["a", "b", "c"]] * 2), r"input 'features': <U1 values given, expected float32"),
    (lambda d: d.update(pixels=[[[[256, 0, 0]]]] * 2), r"input 'pixels': values in \[0, 256\] given, expected uint8 in \[0, 255\]"),
    (lambda d: d.update(score_threshold="high"), r"input 'score_threshold': str 'high' given, expected one number"),
])
def test_input_errors(basic, change, pattern):
    inputs = good_inputs()
    change(inputs)
    with pytest.raises(InputError, match=pattern):
        basic.run(inputs)


def test_lossless_casts_and_lists_are_accepted(basic):
    out = basic.run(features=np.zeros((1, 3), np.float16), pixels=[[[[1, 2, 3]]]], score_threshold=0.2)
    assert out["pixel_sum"].tolist() == [6]
    assert out["confident"].tolist() == [True]  # 1/3 >= 0.2: the threshold input overrides the default 0.5
    assert basic.run(good_inputs(1))["confident"].tolist() == [False]


def test_empty_batch_is_valid(basic):
    out = basic.run(good_inputs(0))
    # (onnxruntime 1.31 returns [0, 3] instead of [0] for ArgMax/ReduceMax(keepdims=0) of a [0, 3] tensor, so
    # only outputs whose ops handle empty inputs correctly are checked here)
    assert out["score"].shape == (0, 3) and out["pixel_sum"].shape == (0,)


def test_input_error_is_a_value_error_with_a_code():
    assert issubclass(InputError, ValueError) and InputError.code == "INVALID_INPUT"


def test_bad_files(tmp_path):
    with pytest.raises(ModelLoadError, match="not a valid ONNX model"):
        Pipeline.load(FIXTURES / "corrupt.onnx")
    with pytest.raises(ModelLoadError, match="cannot read it"):
        Pipeline.load(tmp_path / "missing.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelLoadError):
        Pipeline.load(tmp_path / "empty.onnx")


def test_plain_onnx_falls_back_to_onnxruntime_info():
    with Pipeline.load(FIXTURES / "plain.onnx") as pipe:
        assert pipe.signature.source == "onnxruntime"
        spec = pipe.signature.input("pixels")
        assert spec is not None and spec.dtype == "uint8" and spec.shape == ("batch", "height", "width", 3)
        assert pipe.signature.input("score_threshold").optional
        assert pipe.run(good_inputs())["label"].tolist() == ["cat", "cat"]


def test_use_after_close_raises():
    pipe = Pipeline.load(FIXTURES / "basic.onnx")
    pipe.close()
    with pytest.raises(ClosedError, match="closed"):
        pipe.run(good_inputs())


def test_concurrent_runs_are_correct(basic):
    rng = np.random.default_rng(0)
    cases = [good_inputs(b) | {"features": rng.normal(size=(b, 3)).astype(np.float32)} for b in range(1, 9)]
    expected = [basic.run(c) for c in cases]
    errors: list[str] = []

    def worker(k: int) -> None:
        for i in range(40):
            j = (i + k) % len(cases)
            got = basic.run(cases[j])
            if mismatches(got, expected[j], {"float32": (0.0, 0.0)}):
                errors.append(f"thread {k} run {i}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors


# --- threads: container-aware default -----------------------------------------------------------------------

def _fake_v2(tmp_path: Path, cpu_max: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    (root / "cgroup.controllers").parent.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory\n")
    for rel, value in cpu_max.items():
        d = root / rel.strip("/") if rel.strip("/") else root
        d.mkdir(parents=True, exist_ok=True)
        (d / "cpu.max").write_text(value + "\n")
    proc = tmp_path / "proc_cgroup"
    proc.write_text("0::/kubepods/pod1/ctr\n")
    return root, proc


def test_threads_from_cgroup_v2_quota(tmp_path):
    root, proc = _fake_v2(tmp_path, {"/kubepods/pod1/ctr": "150000 100000", "/kubepods": "max 100000"})
    assert cgroup_cpu_limit(root, proc) == 1.5
    assert default_threads(root, proc, affinity=64, env={}) == 2  # ceil(1.5)
    assert default_threads(root, proc, affinity=1, env={}) == 1  # affinity is smaller


def test_threads_take_the_tightest_ancestor_quota(tmp_path):
    root, proc = _fake_v2(tmp_path, {"/kubepods/pod1/ctr": "max 100000", "/kubepods/pod1": "300000 100000"})
    assert default_threads(root, proc, affinity=64, env={}) == 3


def test_threads_unlimited_v2_uses_affinity(tmp_path):
    root, proc = _fake_v2(tmp_path, {"/kubepods/pod1/ctr": "max 100000"})
    assert cgroup_cpu_limit(root, proc) is None
    assert default_threads(root, proc, affinity=6, env={}) == 6


def test_threads_from_cgroup_v1_quota(tmp_path):
    root = tmp_path / "cgroup"
    d = root / "cpu,cpuacct" / "docker" / "abc"
    d.mkdir(parents=True)
    (d / "cpu.cfs_quota_us").write_text("250000\n")
    (d / "cpu.cfs_period_us").write_text("100000\n")
    proc = tmp_path / "proc_cgroup"
    proc.write_text("12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n")
    assert cgroup_cpu_limit(root, proc) == 2.5
    assert default_threads(root, proc, affinity=32, env={}) == 3
    (d / "cpu.cfs_quota_us").write_text("-1\n")
    assert default_threads(root, proc, affinity=32, env={}) == 32


def test_threads_env_override_and_errors(tmp_path):
    root, proc = _fake_v2(tmp_path, {"/kubepods/pod1/ctr": "100000 100000"})
    assert default_threads(root, proc, affinity=8, env={"ONNXPIPE_THREADS": "5"}) == 5
    with pytest.raises(InputError, match="ONNXPIPE_THREADS: expected a whole number of threads >= 1, got '0'"):
        default_threads(root, proc, affinity=8, env={"ONNXPIPE_THREADS": "0"})
    with pytest.raises(InputError, match="threads"):
        Pipeline.load(FIXTURES / "basic.onnx", threads=0)


def test_pipeline_uses_the_thread_count(monkeypatch):
    monkeypatch.setenv("ONNXPIPE_THREADS", "3")
    with Pipeline.load(FIXTURES / "basic.onnx") as pipe:
        assert pipe.threads == 3


# --- no torch ----------------------------------------------------------------------------------------------

def test_runtime_runs_with_torch_blocked(tmp_path):
    out = tmp_path / "out.json"
    code = f"""
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
import numpy as np
from onnxpipe_runtime import Pipeline, tensor_json
with Pipeline.load({str(FIXTURES / 'basic.onnx')!r}) as p:
    res = p.run(features=np.ones((1, 3), np.float32), pixels=np.ones((1, 1, 1, 3), np.uint8))
tensor_json.dump(res, {str(out)!r})
assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
"""
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
    assert tensor_json.load(out)["label"].tolist() == ["cat"]


def test_runtime_package_declares_no_torch():
    text = (ROOT / "runtimes" / "python" / "pyproject.toml").read_text()
    deps = text.split("dependencies", 1)[1].split("]", 1)[0]
    assert "torch" not in deps and "onnxruntime" in deps and "numpy" in deps


# --- tensor JSON ----------------------------------------------------------------------------------------------

def test_tensor_json_round_trip_all_dtypes():
    tensors = {
        "f32": np.array([0.1, np.nan, np.inf, -np.inf, -0.0], np.float32),
        "f64": np.array([[1e-300, 2.5]], np.float64),
        "i64": np.array([2**62, -(2**63)], np.int64),
        "i32": np.array([7], np.int32),
        "u8": np.array([[0, 255]], np.uint8),
        "i8": np.array([-128], np.int8),
        "b": np.array([True, False]),
        "s": np.array(["héllo", "", "日本"], dtype=object),
        "scalar": np.array(3.5, np.float32),
        "empty": np.zeros((0, 4), np.float32),
    }
    text = tensor_json.dumps(tensors)
    assert '"data": [0.1, "NaN", "Infinity", "-Infinity", -0.0]' in text  # shortest float32 repr
    back = tensor_json.loads(text)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape, k
        if v.dtype.kind == "f":
            np.testing.assert_array_equal(back[k], v)
        else:
            assert back[k].tolist() == v.tolist(), k


@pytest.mark.parametrize("doc, pattern", [
    ('{"x": {"dtype": "float16", "shape": [1], "data": [1]}}', r"tensor 'x': dtype 'float16' is not one of"),
    ('{"x": {"dtype": "int64", "shape": [2], "data": [1]}}', r"tensor 'x': shape \[2\] needs 2 values but data has 1"),
    ('{"x": {"dtype": "uint8", "shape": [1], "data": [300]}}', r"tensor 'x': data\[0\] is 300; out of range for uint8"),
    ('{"x": {"dtype": "int64", "shape": [1], "data": [1.5]}}', r"tensor 'x': data\[0\] is 1.5; expected an integer"),
    ('{"x": {"dtype": "float32", "shape": [1], "data": ["nan"]}}', r"expected a number, 'NaN'"),
    ('{"x": {"dtype": "int64", "shape": [1]}}', r"tensor 'x': missing field\(s\) \['data'\]"),
    ('[1, 2]', r"expected an object of named tensors"),
    ('{"x": ', r"not valid JSON"),
])
def test_tensor_json_errors(doc, pattern):
    with pytest.raises(InputError, match=pattern):
        tensor_json.loads(doc)


# --- CLI ------------------------------------------------------------------------------------------------------

def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "onnxpipe"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300, env=env)


def test_cli_run_round_trip_through_tensor_json(tmp_path):
    inputs = good_inputs(2) | {"features": np.array([[1, 2, 3], [3, 2, 1]], np.float32)}
    tensor_json.dump(inputs, tmp_path / "in.json")
    res = cli("run", str(FIXTURES / "basic.onnx"), "--inputs", str(tmp_path / "in.json"))
    assert res.returncode == 0, res.stderr
    got = tensor_json.loads(res.stdout)
    with Pipeline.load(FIXTURES / "basic.onnx") as pipe:
        want = pipe.run(inputs)
    assert list(got) == list(want) and not mismatches(got, want, {"float32": (0.0, 0.0)})
    np.save(tmp_path / "px.npy", inputs["pixels"])
    tensor_json.dump({"features": inputs["features"]}, tmp_path / "f.json")
    res = cli("run", str(FIXTURES / "basic.onnx"), "--inputs", str(tmp_path / "f.json"),
              "--input", f"pixels={tmp_path / 'px.npy'}")
    assert res.returncode == 0 and tensor_json.loads(res.stdout)["label"].tolist() == ["bird", "cat"]


def test_cli_errors_are_one_line_with_the_codes_exit_status(tmp_path):
    tensor_json.dump({"features": np.zeros((1, 3), np.float64)}, tmp_path / "bad.json")
    res = cli("run", str(FIXTURES / "basic.onnx"), "--inputs", str(tmp_path / "bad.json"))
    assert res.returncode == 3 and res.stdout == ""  # INVALID_INPUT (spec/errors.json)
    assert res.stderr.count("\n") == 1 and "INVALID_INPUT" in res.stderr and "'features'" in res.stderr
    res = cli("inspect", str(FIXTURES / "corrupt.onnx"))
    assert res.returncode == 4 and "MODEL_LOAD" in res.stderr and "Traceback" not in res.stderr  # MODEL_LOAD
    res = cli("run", str(FIXTURES / "basic.onnx"))
    assert res.returncode == 2 and "USAGE" in res.stderr  # no inputs given: a usage error


def test_cli_inspect_json_prints_the_signature():
    res = cli("inspect", str(FIXTURES / "basic.onnx"), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["signature"]["inputs"][1] == {"name": "pixels", "dtype": "uint8", "shape": ["batch", "height", "width", 3]}
    assert doc["manifest"]["name"] == "basic"
    assert doc["op_counts"]["post"]["Softmax"] == 1


def test_cli_verify_against_vectors(tmp_path):
    res = cli("verify", str(VECTORS / "basic" / "model.onnx"), "--vectors", str(VECTORS / "basic"))
    assert res.returncode == 0 and "2 passed, 0 failed" in res.stdout
    doc = json.loads((VECTORS / "basic" / "expected_0.json").read_text())
    doc["label_id"]["data"][0] += 1
    (tmp_path / "wrong.json").write_text(json.dumps(doc))
    res = cli("verify", str(VECTORS / "basic" / "model.onnx"), "--inputs", str(VECTORS / "basic" / "inputs_0.json"),
              "--expected", str(tmp_path / "wrong.json"))
    assert res.returncode == 1 and "label_id: 1 of 2 values differ" in res.stdout


# --- golden vectors: the Python runtime reproduces every set ---------------------------------------------

def vector_sets() -> list[Path]:
    return sorted(p.parent for p in VECTORS.glob("*/vector.json"))


def test_vector_sets_exist():
    names = {p.name for p in vector_sets()}
    assert "basic" in names and len(names) >= 1


@pytest.mark.parametrize("folder", vector_sets(), ids=lambda p: p.name)
def test_golden_vectors(folder):
    vs = load_set(folder)
    if vs.generated and not vs.model.exists():
        pytest.skip(f"{vs.model.name} is generated by `make vectors` and is absent")
    with Pipeline.load(vs.model) as pipe:
        for case in vs.cases:
            problems = mismatches(pipe.run(case.inputs), case.expected, vs.tolerance)
            assert not problems, f"{vs.name}/{case.name}: {problems}"


# --- custom-op domains: onnxruntime-extensions is loaded when the model imports ai.onnx.contrib ----------------

def test_extensions_library_is_found_without_importing_the_package(tmp_path):
    code = f"""
import sys
from onnxpipe_runtime import Pipeline
with Pipeline.load({str(FIXTURES / 'contrib.onnx')!r}) as p:
    assert p.run(text=["A"])["lower"].tolist() == ["a"]
print(sorted(m for m in ("onnxruntime_extensions", "torch", "transformers") if m in sys.modules))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.strip() == "[]", res.stdout + res.stderr


def test_extensions_are_loaded_for_contrib_models():
    with Pipeline.load(FIXTURES / "contrib.onnx") as pipe:
        assert pipe.signature.domains == ("ai.onnx.contrib",)
        assert pipe.run(text=["HeLLo", "ÉCOLE"])["lower"].tolist() == ["hello", "école"]


def test_nul_in_strings_is_refused_for_contrib_models():
    with Pipeline.load(FIXTURES / "contrib.onnx") as pipe:
        with pytest.raises(InputError, match=r"input 'text': element 1 contains a NUL character at position 2"):
            pipe.run(text=["ok", "ab\x00cd"])


def test_missing_extensions_package_is_named(tmp_path):
    code = f"""
import importlib.util
_find = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name == "onnxruntime_extensions" else _find(name, *a)
from onnxpipe_runtime import MissingExtensionError, Pipeline
try:
    Pipeline.load({str(FIXTURES / 'contrib.onnx')!r})
except MissingExtensionError as e:
    print(e.code, e)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.startswith("MISSING_EXTENSION"), res.stdout + res.stderr
    assert "'onnxruntime-extensions'" in res.stdout and "ai.onnx.contrib" in res.stdout
