"""`make demo`: export each example pipeline (verified against eager PyTorch on unseen shapes) and run it
with the torch-free runtime, printing what it produces; then `onnxpipe optimize` the MiniLM file (status table,
build/demo/minilm.opt.onnx).

    python -m examples.demo                 # all of them
    python -m examples.demo digits tagger   # some
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "demo"
EXAMPLES = {
    "digits": "image classifier: any-size RGB digit -> resize -> normalize -> CNN -> softmax -> top-3 labels",
    "detector": "detector: letterbox -> tiny CNN -> box decoding -> batched NMS -> boxes in image coordinates",
    "tagger": "CRF tagger: tokens -> conv emissions -> CRF Viterbi decoding (ONNX Loop)",
    "minilm": "sentence embeddings: strings -> in-graph BERT tokenizer -> all-MiniLM-L6-v2 -> mean pool -> L2",
    "tv_classifier": "torchvision as shipped: ResNet18_Weights preset (exact ONNX) -> resnet18 -> top-5 labels",
    "tv_detector": "torchvision as shipped: SSDLite320 preset -> ssdlite320_mobilenet_v3_large -> [K, 7] detections",
}


def main(argv: list[str]) -> int:
    from onnxpipe import export_pipeline

    names = argv or list(EXAMPLES)
    unknown = [n for n in names if n not in EXAMPLES]
    if unknown:
        print(f"demo: unknown example(s) {unknown}; expected some of {list(EXAMPLES)}", file=sys.stderr)
        return 2
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("    %(message)s"))
    logging.getLogger("onnxpipe").addHandler(handler)
    logging.getLogger("onnxpipe").setLevel(logging.INFO)
    OUT.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names, 1):
        print(f"\n=== [{i}/{len(names)}] {name}: {EXAMPLES[name]}", flush=True)
        module = importlib.import_module(f"examples.{name}")
        kwargs = dict(module.factory())
        pre, model, post = kwargs.pop("pre", None), kwargs.pop("model", None), kwargs.pop("post", None)
        path = OUT / f"{name}.onnx"
        start = time.perf_counter()
        result = export_pipeline(pre, model, post, path=path, **kwargs)
        cases = len(result.report["verification"]["cases"])
        print(f"  exported {path.relative_to(ROOT)} ({result.report['file_size'] / 1e6:.1f} MB) in "
              f"{time.perf_counter() - start:.0f} s; verified against eager PyTorch on {cases} input shapes", flush=True)
        module.demo(path)
    if "minilm" in names:
        _optimize_minilm(OUT / "minilm.onnx")
    print(f"\nEvery pipeline above is one .onnx file in {OUT.relative_to(ROOT)}/: run it from Python "
          "(.venv/bin/onnxpipe run FILE --inputs in.json), Java or Go (`make build`, then build/bin/onnxpipe-java "
          "or build/bin/onnxpipe-go run FILE --inputs in.json) with the same results, or serve it "
          "(.venv/bin/onnxpipe serve FILE).")
    return 0


def _optimize_minilm(path: Path) -> None:
    """``onnxpipe optimize`` on the MiniLM file: candidates gated on held-out sentences, the fastest written."""
    import numpy as np

    import onnxpipe
    from examples import minilm
    from onnxpipe_runtime import Pipeline

    print("\n=== optimize: the MiniLM file's model stage, fused and quantized under the gate cosine>=0.99 "
          "(held-out sentences; pre/post unchanged)", flush=True)
    validation = [{"text": np.array(minilm.sentences(16, seed=100 + i), dtype=object)} for i in range(6)]
    calibration = [{"text": np.array(minilm.sentences(16, seed=200 + i), dtype=object)} for i in range(4)]
    out = OUT / "minilm.opt.onnx"
    report = onnxpipe.optimize(path, validation=validation, calibration=calibration, path_out=out)
    print(report.table())
    if report.path_out is None:
        return
    texts = np.array(minilm.sentences(8, seed=999), dtype=object)
    with Pipeline.load(path) as fp32, Pipeline.load(out) as opt:
        want, got = fp32.run(text=texts)["embedding"], opt.run(text=texts)["embedding"]
        t0 = time.perf_counter()
        for _ in range(5):
            fp32.run(text=texts)
        t1 = time.perf_counter()
        for _ in range(5):
            opt.run(text=texts)
        t2 = time.perf_counter()
    print(f"  wrote {out.relative_to(ROOT)} ({out.stat().st_size / 1e6:.1f} MB, {report.chosen}); on 8 new "
          f"sentences: min cosine to the fp32 file {float(np.min(np.sum(got * want, axis=1))):.4f}, "
          f"{(t1 - t0) / 5 * 1000:.1f} ms -> {(t2 - t1) / 5 * 1000:.1f} ms per batch", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
