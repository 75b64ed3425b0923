"""Exact perplexity, bits per character and bits per byte over a whole text.

Every token but the first is predicted from all the tokens before it, the state
carried from the start of the text to its end. Bits per character and per byte
divide the same total by the characters and UTF-8 bytes those predicted tokens
cover (``covered_by_predictions``), so models with different tokenizers compare on
one scale.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from charnn.errors import CorpusError
from charnn.model import RecurrentLM, State
from charnn.tasks.lm.encoding import covered_by_predictions
from charnn.text.records import record_chars, record_format, split

LN2 = math.log(2)


@dataclass(frozen=True)
class Metrics:
    tokenizer: str
    tokens: int
    """Tokens predicted (all but the first, which is only context)."""
    chars: int
    bytes: int
    nll_per_token: float
    """Mean negative log-likelihood in nats."""
    perplexity: float
    bits_per_char: float
    bits_per_byte: float
    records: int | None = None
    """On a record run, the records scored: each from its start, its end included."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.inference_mode()
def total_nll(
    model: RecurrentLM,
    tokens: np.ndarray,
    *,
    rows: int = 1,
    burn_in: int = 256,
    chunk: int = 4096,
) -> float:
    """Sum of -log p(token_i | tokens_<i) in nats over i = 1 .. N-1.

    ``rows=1`` is exact. ``rows=R`` splits the targets into R contiguous segments
    scored side by side (much faster on a CPU); each segment but the first starts
    from the state left by reading the ``burn_in`` tokens before it, so the result
    differs from the exact one only by how much context beyond ``burn_in`` matters::

        tokens:  t0 t1 ...                                               t(N-1)
        row 0:   [ scored ............ ]
        row 1:            [ burn-in ][ scored ............ ]
        ...                                                [ tail, continues the last row ]
    """
    was_training = model.training
    model.eval()
    device = model.embed.weight.device
    ids = torch.from_numpy(np.asarray(tokens, dtype=np.int64)).to(device)
    n_targets = len(ids) - 1
    rows = max(1, min(rows, n_targets // max(1, 4 * burn_in)))
    length = n_targets // rows
    try:
        state = _burn_in_state(model, ids, rows, length, burn_in)
        inputs = ids[: rows * length].view(rows, length)  # (R, L): row r reads t[rL .. rL+L-1]
        targets = ids[1 : rows * length + 1].view(rows, length)  # (R, L)
        total, state = _score(model, inputs, targets, state, chunk)
        tail_inputs, tail_targets = ids[rows * length : -1], ids[rows * length + 1 :]
        if len(tail_targets):
            last = [tuple(s[:, -1:] for s in layer) for layer in state]
            tail, _ = _score(model, tail_inputs[None], tail_targets[None], last, chunk)
            total += tail
    finally:
        model.train(was_training)
    return total


def _burn_in_state(model: RecurrentLM, ids: torch.Tensor, rows: int, length: int, burn_in: int) -> State:
    state = model.initial_state(rows, ids.device)
    if rows == 1 or burn_in == 0:
        return state
    starts = [r * length - burn_in for r in range(1, rows)]
    context = torch.stack([ids[s : s + burn_in] for s in starts])  # (R-1, burn_in)
    _, warm = model(context)
    return [tuple(torch.cat([z[:, :1], w], dim=1) for z, w in zip(zero, hot)) for zero, hot in zip(state, warm)]


def _score(model: RecurrentLM, inputs: torch.Tensor, targets: torch.Tensor, state: State, chunk: int):
    total = 0.0
    for t in range(0, inputs.shape[1], chunk):
        logits, state = model(inputs[:, t : t + chunk], state)  # (R, C, V)
        nll = F.cross_entropy(logits.float().flatten(0, 1), targets[:, t : t + chunk].flatten(), reduction="sum")
        total += float(nll.double())
    return total, state


def metrics_from_nll(nll: float, tokens: int, chars: int, n_bytes: int, tokenizer: str) -> Metrics:
    return Metrics(
        tokenizer=tokenizer,
        tokens=tokens,
        chars=chars,
        bytes=n_bytes,
        nll_per_token=nll / tokens,
        perplexity=math.exp(min(nll / tokens, 700.0)),
        bits_per_char=nll / LN2 / max(chars, 1),
        bits_per_byte=nll / LN2 / max(n_bytes, 1),
    )


def evaluate_text(run: Any, text: str, *, rows: int = 1) -> Metrics:
    """Score ``text`` with a loaded run (see charnn.runs.checkpoint.load_run).

    A record run scores the records of ``text`` as samples are made: each from the zero
    state and its boundary, and the boundary that ends it; a record's end counts as one
    character (the separator it stands for) and one byte.
    """
    fmt = record_format(run)
    reverse = bool((run.config.get("task") or {}).get("reverse"))
    if fmt is not None:
        records = split(text, fmt, "the text", minimum=1, corpus=False)
        return evaluate_records(run.model, run.tokenizer, records, rows=rows, reverse=reverse)
    return evaluate_tokens(run.model, run.tokenizer, text, rows=rows, reverse=reverse)


def evaluate_records(
    model: RecurrentLM, tokenizer: Any, records: list[str], *, rows: int = 1, reverse: bool = False
) -> Metrics:
    """Score ``records`` each from its boundary; a ``reverse`` model reads each one last token first."""
    boundary = np.asarray([model.boundary], dtype=np.int64)
    tokens = np.concatenate([*(part for ids in tokenizer.encode_many(records) for part in (boundary, ids)), boundary])
    nll = total_nll(model, tokens[::-1].copy() if reverse else tokens, rows=rows)
    n_bytes = sum(len(r.encode("utf-8", "surrogatepass")) for r in records) + len(records)
    metrics = metrics_from_nll(nll, len(tokens) - 1, record_chars(records), n_bytes, tokenizer.kind)
    return dataclasses.replace(metrics, records=len(records))


def evaluate_tokens(model: RecurrentLM, tokenizer: Any, text: str, *, rows: int = 1, reverse: bool = False) -> Metrics:
    """Score ``text``; a ``reverse`` model reads its tokens last to first."""
    tokens = tokenizer.encode(text)
    if len(tokens) < 2:
        raise CorpusError("the text is too short to evaluate: it needs at least two tokens")
    chars, n_bytes = covered_by_predictions(tokenizer, tokens, text)
    nll = total_nll(model, tokens[::-1].copy() if reverse else tokens, rows=rows)
    return metrics_from_nll(nll, len(tokens) - 1, chars, n_bytes, tokenizer.kind)
