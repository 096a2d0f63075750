"""Write the golden vectors in tests/vectors/ (layout: docs/vectors.md).

    python tests/vectors/generate.py                      # (re)write every vector set
    python tests/vectors/generate.py --only basic digits
    python tests/vectors/generate.py --generated-models   # only build absent *.generated.onnx models

Example sets come from examples/<name>.py (factory() and vector_cases()); large models are not committed
(their file names end in .generated.onnx) and are rebuilt by `make generated-models` before the runtimes' tests.

Each set exports (or copies) its model, runs the cases with the Python runtime and writes
inputs_<k>.json / expected_<k>.json / vector.json. Deterministic: a second run leaves git status clean.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"
sys.path.insert(0, str(ROOT))

from onnxpipe_runtime import Pipeline, tensor_json  # noqa: E402

DEFAULT_TOLERANCE = {"float32": {"atol": 1e-5, "rtol": 1e-4}, "float64": {"atol": 1e-9, "rtol": 1e-7}}


def write_set(
    name: str,
    model: Path,
    cases: list[tuple[str, dict[str, np.ndarray]]],
    *,
    committed: bool = True,
    tolerance: dict | None = None,
) -> None:
    """Run ``cases`` through ``model`` with the Python runtime and write the set's files."""
    out = VECTORS / name
    out.mkdir(parents=True, exist_ok=True)
    model_name = "model.onnx" if committed else "model.generated.onnx"
    if model.resolve() != (out / model_name).resolve():
        shutil.copyfile(model, out / model_name)
    with Pipeline.load(out / model_name) as pipe:
        requires = [d.domain for d in pipe.manifest.domains] if pipe.manifest is not None else []
        entries = []
        for k, (case_name, inputs) in enumerate(cases):
            outputs = pipe.run(inputs)
            tensor_json.dump(inputs, out / f"inputs_{k}.json")
            tensor_json.dump(outputs, out / f"expected_{k}.json")
            entries.append({"name": case_name, "inputs": f"inputs_{k}.json", "expected": f"expected_{k}.json"})
    spec = {
        "name": name,
        "model": model_name,
        "generate": "make vectors",
        "requires": requires,
        "tolerance": tolerance or DEFAULT_TOLERANCE,
        "cases": entries,
    }
    (out / "vector.json").write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    print(f"vectors: {name}: {len(entries)} case(s) -> {out.relative_to(ROOT)}")


def basic() -> None:
    rng = np.random.default_rng(0)
    model = ROOT / "tests" / "fixtures" / "basic.onnx"
    cases = [
        ("batch2", {
            "features": rng.normal(size=(2, 3)).astype(np.float32),
            "pixels": rng.integers(0, 256, size=(2, 4, 5, 3), dtype=np.uint8),
        }),
        ("batch1-threshold", {
            "features": np.array([[0.1, 0.2, 0.3]], dtype=np.float32),
            "pixels": np.full((1, 1, 1, 3), 255, dtype=np.uint8),
            "score_threshold": np.array(0.2, dtype=np.float32),
        }),
    ]
    write_set("basic", model, cases)


#: example module -> committed model (small) or generated at test time (large)
EXAMPLES: dict[str, bool] = {"digits": True, "detector": True, "tagger": True, "minilm": False,
                             "tv_classifier": False, "tv_detector": False}


def export_example(name: str, path: Path) -> None:
    import importlib

    from onnxpipe import export_pipeline

    module = importlib.import_module(f"examples.{name}")
    kwargs = dict(module.factory())
    pre, model, post = kwargs.pop("pre", None), kwargs.pop("model", None), kwargs.pop("post", None)
    print(f"vectors: exporting examples.{name} -> {path.relative_to(ROOT)}", flush=True)
    export_pipeline(pre, model, post, path=path, **kwargs)


#: sets whose float outputs need a wider tolerance than DEFAULT_TOLERANCE, and why
TOLERANCES: dict[str, dict] = {
    # box coordinates after a deep SSD backbone and box decoding: another engine's f32 kernels (OpenVINO) move
    # them by up to 2e-4 relative (measured 1.7e-4); labels and the number of boxes stay exact
    "tv_detector": {"float32": {"atol": 1e-4, "rtol": 1e-3}, "float64": {"atol": 1e-9, "rtol": 1e-7}},
}


def example_set(name: str) -> None:
    import importlib

    committed = EXAMPLES[name]
    out = VECTORS / name
    out.mkdir(parents=True, exist_ok=True)
    model = out / ("model.onnx" if committed else "model.generated.onnx")
    export_example(name, model)
    cases = importlib.import_module(f"examples.{name}").vector_cases()
    write_set(name, model, cases, committed=committed, tolerance=TOLERANCES.get(name))


#: optimized sets: name -> (the set whose model is optimized, onnxpipe.optimize arguments, vector tolerance).
#: The tolerance follows the gate: int8 outputs are compared with what this file computed, loosely enough for
#: another CPU's int8 kernels; labels and ids stay exact.
OPTIMIZED: dict[str, tuple[str, dict, dict]] = {
    "digits-int8": ("digits", {"portable": True, "candidates": ["int8-static"], "gate": "cosine>=0.99"},
                    {"float32": {"atol": 2e-2, "rtol": 0.0}}),
    "minilm-int8": ("minilm", {"candidates": ["int8-dynamic-pc"], "gate": "cosine>=0.95"},
                    {"float32": {"atol": 2e-2, "rtol": 0.0}}),
}


def optimize_example(name: str, path: Path) -> None:
    """Optimize the source set's model on its own cases (validation) into ``path``."""
    import onnxpipe

    source, kwargs, _ = OPTIMIZED[name]
    spec = json.loads((VECTORS / source / "vector.json").read_text(encoding="utf-8"))
    src_model = VECTORS / source / spec["model"]
    if not src_model.exists():
        export_example(source, src_model)
    cases = [tensor_json.load(VECTORS / source / c["inputs"]) for c in spec["cases"]]
    print(f"vectors: optimizing {src_model.relative_to(ROOT)} -> {path.relative_to(ROOT)}", flush=True)
    onnxpipe.optimize(src_model, validation=cases, path_out=path, include_fp32=False, runs=3, **kwargs)


#: optimized sets whose rows depend on the other rows of their batch (dynamic int8: activation scales per
#: tensor), with the gate their rows keep whatever they are batched with (a server's dynamic batching)
BATCH_DEPENDENT: dict[str, dict] = {"minilm-int8": {"cosine": 0.95}}


def optimized_set(name: str) -> None:
    source, _, tolerance = OPTIMIZED[name]
    committed = EXAMPLES[source]
    out = VECTORS / name
    out.mkdir(parents=True, exist_ok=True)
    model = out / ("model.onnx" if committed else "model.generated.onnx")
    optimize_example(name, model)
    spec = json.loads((VECTORS / source / "vector.json").read_text(encoding="utf-8"))
    cases = [(c["name"], tensor_json.load(VECTORS / source / c["inputs"])) for c in spec["cases"]]
    write_set(name, model, cases, committed=committed, tolerance=tolerance)
    if name in BATCH_DEPENDENT:
        spec_path = out / "vector.json"
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        spec["batch_dependent"] = BATCH_DEPENDENT[name]
        spec_path.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")


def generated_models() -> None:
    """Build each absent *.generated.onnx named by a committed vector.json."""
    for spec_path in sorted(VECTORS.glob("*/vector.json")):
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        model = spec_path.parent / spec["model"]
        if model.name.endswith(".generated.onnx") and not model.exists() and spec["name"] in OPTIMIZED:
            optimize_example(spec["name"], model)
        elif model.name.endswith(".generated.onnx") and not model.exists():
            export_example(spec["name"], model)
        elif model.name.endswith(".generated.onnx"):
            print(f"vectors: {model.relative_to(ROOT)} is present")


SETS: dict[str, Callable[[], None]] = {"basic": basic} | {
    n: (lambda n=n: example_set(n)) for n in EXAMPLES  # type: ignore[misc]
} | {n: (lambda n=n: optimized_set(n)) for n in OPTIMIZED}  # type: ignore[misc]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=sorted(SETS), help="sets to write (default: all)")
    parser.add_argument("--generated-models", action="store_true", help="only build absent *.generated.onnx")
    args = parser.parse_args(argv)
    if args.generated_models:
        generated_models()
        return 0
    for name in args.only or SETS:
        SETS[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
