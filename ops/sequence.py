"""Sequence operators: decoding per-step scores of variable-length sequences.

:class:`ViterbiDecode` finds the best tag path of a linear-chain CRF. Its loop over time must stay a loop in
the exported graph (an unrolled trace would only be right for the example's length), so the op carries one
implementation per capture path and picks it from the active exporter:

* eager: :func:`_viterbi_loop`, a plain Python loop (the reference);
* TorchScript exporter (``torch.jit.is_tracing()``): the same function compiled with ``torch.jit.script``,
  whose loops become ONNX ``Loop``. Holding the ScriptFunction also makes ``export_pipeline(exporter="auto")``
  choose TorchScript for the stage;
* dynamo exporter (``torch.compiler.is_compiling()``, true under ``torch.export``): :func:`_viterbi_scan`, two
  ``torch._higher_order_ops.scan`` calls that torch.onnx lowers to ONNX ``Scan``.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, List

import torch

__all__ = ["PAD_TAG", "ViterbiDecode"]

#: value of ``tags`` beyond each sequence's length
PAD_TAG = -1


class ViterbiDecode(torch.nn.Module):
    """Best tag path of a linear-chain CRF for each sequence of a padded batch.

    Parameters (float, finite, stored as float32 buffers):

    * ``transitions`` ``[K, K]``: score of moving from tag ``i`` (row) to tag ``j`` (column);
    * ``start`` ``[K]`` (default zeros): score of starting in each tag;
    * ``end`` ``[K]`` (default zeros): score of ending in each tag (added at each sequence's last step).

    ``forward(emissions, lengths) -> tags``:

    * ``emissions`` float ``[B, T, K]`` with ``T >= 1``: per-step tag scores;
    * ``lengths`` int64 ``[B]``, each in ``0..T``: valid steps of each sequence (the rest is padding);
    * ``tags`` int64 ``[B, T]``: the path maximising ``start[y0] + sum emissions[t, yt] +
      sum transitions[y(t-1), yt] + end[y(L-1)]``, and ``-1`` from each sequence's length on.

    Ties between equal-scoring predecessors go to the lowest tag index, as in ``torch.max`` and ONNX ``ArgMax``.
    """

    transitions: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor

    def __init__(self, transitions: Any, start: Any = None, end: Any = None) -> None:
        super().__init__()
        trans = _float_param("transitions", transitions)
        if trans.dim() != 2 or trans.shape[0] != trans.shape[1] or trans.shape[0] == 0:
            raise ValueError(
                f"ViterbiDecode transitions: expected a square [K, K] matrix with K >= 1, got shape "
                f"{list(trans.shape)}"
            )
        k = trans.shape[0]
        self.register_buffer("transitions", trans)
        for name, value in (("start", start), ("end", end)):
            vec = torch.zeros(k) if value is None else _float_param(name, value)
            if vec.shape != (k,):
                raise ValueError(
                    f"ViterbiDecode {name}: expected shape [{k}] (K from transitions), got {list(vec.shape)}"
                )
            self.register_buffer(name, vec)
        # Found by export_pipeline(exporter="auto"): a stage holding script code is exported with TorchScript.
        self.scripted = _scripted_loop()

    def __getstate__(self) -> dict[str, Any]:
        # A ScriptFunction cannot be pickled: copy.deepcopy / torch.save carry the op without it ...
        state = self.__dict__.copy()
        state.pop("scripted", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.scripted = _scripted_loop()  # ... and the copy gets the shared compiled function back

    @property
    def num_tags(self) -> int:
        return int(self.transitions.shape[0])

    def forward(self, emissions: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        tracing, compiling = torch.jit.is_tracing(), torch.compiler.is_compiling()
        if not (tracing or compiling):
            self._check_inputs(emissions, lengths)
        trans = self.transitions.to(emissions.dtype)
        start = self.start.to(emissions.dtype)
        end = self.end.to(emissions.dtype)
        if tracing:
            return self.scripted(emissions, lengths, trans, start, end)
        if compiling:
            # The scan HOP cannot be captured with autograd state: Viterbi has no gradient anyway.
            with torch.no_grad():
                return _viterbi_scan(
                    emissions.detach(), lengths.detach(), trans.detach(), start.detach(), end.detach()
                )
        return _viterbi_loop(emissions, lengths, trans, start, end)

    def _check_inputs(self, emissions: torch.Tensor, lengths: torch.Tensor) -> None:
        k = self.num_tags
        if not isinstance(emissions, torch.Tensor) or emissions.dim() != 3 or not emissions.is_floating_point():
            raise ValueError(
                f"ViterbiDecode emissions: expected a float tensor [batch, time, {k}], got "
                f"{_describe(emissions)}"
            )
        b, t, kk = emissions.shape
        if kk != k or t < 1:
            raise ValueError(
                f"ViterbiDecode emissions: expected shape [batch, time >= 1, {k}], got {list(emissions.shape)}"
            )
        if not isinstance(lengths, torch.Tensor) or lengths.dtype != torch.int64 or lengths.shape != (b,):
            raise ValueError(
                f"ViterbiDecode lengths: expected an int64 tensor [{b}] (batch of emissions), got "
                f"{_describe(lengths)}"
            )
        if b and (int(lengths.min()) < 0 or int(lengths.max()) > t):
            raise ValueError(
                f"ViterbiDecode lengths: expected values in 0..{t} (time of emissions), got "
                f"{lengths.tolist()}"
            )

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}"


def _float_param(name: str, value: Any) -> torch.Tensor:
    try:
        t = torch.as_tensor(value.detach() if isinstance(value, torch.Tensor) else value)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"ViterbiDecode {name}: expected a float array, got {type(value).__name__}") from e
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"ViterbiDecode {name}: expected a float array, got dtype {t.dtype}")
    t = t.to(torch.float32).clone()
    if not bool(torch.isfinite(t).all()):
        bad = (~torch.isfinite(t)).nonzero()[0].tolist()
        raise ValueError(f"ViterbiDecode {name}: expected finite values, got {t[tuple(bad)].item()} at {bad}")
    return t


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"{x.dtype} tensor of shape {list(x.shape)}"
    return type(x).__name__


def _viterbi_loop(
    emissions: torch.Tensor,
    lengths: torch.Tensor,
    transitions: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
) -> torch.Tensor:
    """Viterbi as plain loops over time: the eager reference, and (scripted) the TorchScript lowering.

    Steps at or past a sequence's length keep its score and point each tag back to itself, so the backtrack
    carries the tag chosen at the last valid step through the padding unchanged.
    """
    b = emissions.size(0)
    t_len = emissions.size(1)
    k = emissions.size(2)
    identity = torch.arange(k, dtype=torch.int64).unsqueeze(0).expand(b, k)
    score = start.unsqueeze(0) + emissions[:, 0]
    backpointers: List[torch.Tensor] = [identity]
    for t in range(1, t_len):
        best, best_prev = (score.unsqueeze(2) + transitions.unsqueeze(0)).max(dim=1)
        live = (lengths > t).unsqueeze(1)
        score = torch.where(live, best + emissions[:, t], score)
        backpointers.append(torch.where(live, best_prev, identity))
    tag = (score + end.unsqueeze(0)).argmax(dim=1)
    # Built back to front and flipped once: TorchScript's ONNX export drops list.reverse() silently.
    reversed_tags: List[torch.Tensor] = [tag]
    for i in range(t_len - 1):
        tag = torch.gather(backpointers[t_len - 1 - i], 1, tag.unsqueeze(1))[:, 0]
        reversed_tags.append(tag)
    tags = torch.flip(torch.stack(reversed_tags, dim=1), [1])
    valid = torch.arange(t_len, dtype=torch.int64).unsqueeze(0) < lengths.unsqueeze(1)
    # -1 is PAD_TAG: TorchScript cannot read module globals
    return torch.where(valid, tags, torch.full_like(tags, -1, dtype=torch.int64))


@functools.cache
def _scripted_loop() -> Callable[..., torch.Tensor]:
    with warnings.catch_warnings():
        # torch.jit.script is deprecated, but the TorchScript exporter only keeps loops that were scripted
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.script(_viterbi_loop)


def _viterbi_scan(
    emissions: torch.Tensor,
    lengths: torch.Tensor,
    transitions: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
) -> torch.Tensor:
    """Viterbi as two ``scan``\\ s over all T steps (a scan over T - 1 would be empty for T = 1).

    Step 0 uses ``start`` instead of a transition; the same masking as :func:`_viterbi_loop` handles padding.
    """
    from torch._higher_order_ops.scan import scan

    b, t_len, k = emissions.shape
    identity = torch.arange(k, dtype=torch.int64).unsqueeze(0).expand(b, k)
    steps = torch.arange(t_len, dtype=torch.int64)
    first_step = steps.eq(0)
    live = steps.unsqueeze(1) < lengths.unsqueeze(0)  # [T, B]

    def forward_step(
        score: torch.Tensor, x: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        emission, is_first, is_live = x
        best, best_prev = (score.unsqueeze(2) + transitions.unsqueeze(0)).max(dim=1)
        new_score = torch.where(is_first, start.unsqueeze(0), best) + emission
        backpointer = torch.where(is_first, identity, best_prev)
        keep = is_live.unsqueeze(1)
        return torch.where(keep, new_score, score), torch.where(keep, backpointer, identity)

    init = torch.zeros(b, k, dtype=emissions.dtype)
    score, backpointers = scan(forward_step, init, (emissions.transpose(0, 1), first_step, live))

    def backward_step(tag: torch.Tensor, backpointer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # gather, not indexing, inside the body; the clone keeps the carry and the output distinct
        previous = torch.gather(backpointer, 1, tag.unsqueeze(1)).squeeze(1)
        return previous, tag.clone()

    last = (score + end.unsqueeze(0)).argmax(dim=1)
    _, tags = scan(backward_step, last, backpointers, reverse=True)
    tags = tags.transpose(0, 1)
    valid = live.transpose(0, 1)
    return torch.where(valid, tags, torch.full_like(tags, PAD_TAG))
