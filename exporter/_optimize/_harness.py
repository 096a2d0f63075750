"""Run a candidate model stage through the rest of the pipeline on the validation cases, cheaply.

The fp32 file runs once with its boundary values as extra outputs (what the model stage reads, what the post
stage reads). A candidate is then judged by running only its model stage and the unchanged post stage on those
values: no pre-processing (tokenizer, resize) is repeated and no whole file is written per probe. The
finalists are re-checked as whole files (``optimize``), which is what the gate finally trusts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxpipe.errors import OptimizeError
from onnxpipe._optimize._stage import ModelStage, is_model_node

Feeds = dict[str, np.ndarray]


def _session(model: onnx.ModelProto, threads: int) -> object:
    import onnxruntime as ort
    from onnxpipe_runtime.pipeline import CONTRIB_DOMAIN, _extensions_library, session_options

    so = session_options(threads)
    if any(imp.domain == CONTRIB_DOMAIN for imp in model.opset_import):
        so.register_custom_ops_library(_extensions_library())
    try:
        return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises several unrelated types
        raise OptimizeError(f"ONNX Runtime cannot load a candidate model stage: {e}") from e


class Harness:
    """Boundary values of every validation case, and a runner for candidate model stages."""

    def __init__(self, full: onnx.ModelProto, stage: ModelStage, cases: Sequence[Feeds], threads: int) -> None:
        self.stage = stage
        self.threads = threads
        g = full.graph
        post_nodes = []
        seen_model = False
        for n in g.node:
            if is_model_node(n):
                seen_model = True
            elif seen_model and not n.name.startswith("pre/"):
                post_nodes.append(n)
        produced_post = {o for n in post_nodes for o in n.output}
        inits = {i.name for i in g.initializer}
        graph_inputs = {vi.name for vi in g.input}
        post_reads: list[str] = []
        for n in post_nodes:
            for x in n.input:
                if x and x not in produced_post and (x not in inits or x in graph_inputs) and x not in post_reads:
                    post_reads.append(x)
        self.final_outputs = [vi.name for vi in g.output]
        infos = stage.infos
        self._passthrough = [o for o in self.final_outputs if o not in produced_post]  # outputs post doesn't make
        boundary = list(dict.fromkeys([*stage.inputs, *post_reads, *self._passthrough]))
        boundary = [b for b in boundary if b not in graph_inputs or b in stage.inputs or b in post_reads]
        probe = onnx.ModelProto()
        probe.CopyFrom(full)
        existing = {vi.name for vi in probe.graph.output}
        for name in boundary:
            if name not in existing:
                if name in graph_inputs:
                    continue
                probe.graph.output.append(infos[name])
        session = _session(probe, threads)
        out_names = [o.name for o in session.get_outputs()]  # type: ignore[attr-defined]
        defaults = {i.name: numpy_helper.to_array(i) for i in g.initializer if i.name in graph_inputs}
        self.boundary: list[Feeds] = []
        self.reference: list[Feeds] = []
        for case in cases:
            values = dict(zip(out_names, session.run(out_names, case)))  # type: ignore[attr-defined]
            values.update(defaults)
            values.update(case)
            self.boundary.append(values)
            self.reference.append({k: values[k] for k in self.final_outputs})
        self.model_feeds = [{k: b[k] for k in stage.inputs} for b in self.boundary]
        self._post = None
        self._post_inputs: list[str] = []
        if post_nodes:
            post_in = [n for n in post_reads if n not in inits or n in graph_inputs]
            post_inits = [i for i in g.initializer if any(i.name in n.input for n in post_nodes)]
            post_graph_inputs = [infos[n] for n in post_in if n not in inits]
            outputs = [vi for vi in g.output if vi.name in produced_post]
            pg = helper.make_graph(post_nodes, "post", post_graph_inputs, outputs, initializer=post_inits)
            pm = helper.make_model(pg, opset_imports=list(full.opset_import), functions=list(full.functions))
            pm.ir_version = full.ir_version
            self._post = _session(pm, threads)
            self._post_inputs = [vi.name for vi in post_graph_inputs]

    def run(self, stage_model: onnx.ModelProto) -> list[Feeds]:
        """The pipeline's final outputs for every case, with ``stage_model`` as the model stage."""
        session = _session(stage_model, self.threads)
        names = [o.name for o in session.get_outputs()]  # type: ignore[attr-defined]
        wanted = [vi.name for vi in stage_model.graph.input]
        results = []
        for boundary in self.boundary:
            values = dict(boundary)
            values.update(zip(names, session.run(names, {k: boundary[k] for k in wanted})))  # type: ignore[attr-defined]
            if self._post is not None:
                post_out = self._post.run(None, {k: values[k] for k in self._post_inputs})  # type: ignore[attr-defined]
                post_names = [o.name for o in self._post.get_outputs()]  # type: ignore[attr-defined]
                values.update(zip(post_names, post_out))
            results.append({k: values[k] for k in self.final_outputs})
        return results


def max_difference(a: Sequence[Mapping[str, np.ndarray]], b: Sequence[Mapping[str, np.ndarray]]) -> float:
    """Largest absolute difference between two runs' float outputs (inf when shapes or non-floats differ)."""
    worst = 0.0
    for x, y in zip(a, b):
        for k, v in x.items():
            w = np.asarray(y[k])
            v = np.asarray(v)
            if v.shape != w.shape:
                return float("inf")
            if v.dtype.kind == "f":
                if v.size:
                    d = np.abs(v.astype(np.float64) - w.astype(np.float64))
                    d = np.where(np.isnan(v) & np.isnan(w), 0.0, d)
                    worst = max(worst, float(np.nanmax(np.where(np.isnan(d), np.inf, d))))
            elif not np.array_equal(v, w):
                return float("inf")
    return worst
