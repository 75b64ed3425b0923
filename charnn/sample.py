"""Sampling: one function that picks the next token, and a streaming generator.

The generator reads the prime once with the fused model, then produces one token
per step with ``RecurrentLM.stepper``, carrying the state: O(1) work per token, the
prefix is never read again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from charnn.config import SampleConfig
from charnn.tokenizers import StreamDecoder


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token id per row from logits (B, V); temperature 0 is argmax."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature  # (B, V)
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # Drop a token when the tokens before it already reach top_p; the first always stays.
        drop_sorted = (cumulative - sorted_logits.softmax(dim=-1)) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class StopScanner:
    """Finds the first stop string in text that arrives piece by piece.

    Text that could still be the start of a stop string is held back, so what has
    been released is never taken back.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.pending = ""
        self.stopped = False

    def push(self, piece: str) -> str:
        """Add generated text; return what can be released now."""
        if self.stopped:
            return ""
        self.pending += piece
        cut = min((i for i in (self.pending.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            out, self.pending = self.pending[:cut], ""
            return out
        keep = self.hold
        out, self.pending = (self.pending[:-keep], self.pending[-keep:]) if keep else (self.pending, "")
        return out

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return "" if self.stopped else out


@dataclass(frozen=True)
class Piece:
    """Generated text for one sample; ``done`` marks the sample's last piece."""

    sample: int
    text: str
    done: bool = False


def stream(run: Any, config: SampleConfig) -> Iterator[Piece]:
    """Yield pieces of text as they are generated, for every sample of the batch.

    ``length`` counts generated characters; a sample also ends at its first stop
    string. Each sample ends with exactly one piece whose ``done`` is True.
    """
    model, tokenizer = run.model, run.tokenizer
    device = model.embed.weight.device
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed if config.seed is not None else int(torch.seed() % (2**63)))
    n = config.num_samples

    prime = tokenizer.encode(config.prime) if config.prime else tokenizer.start_ids()
    prime_ids = torch.from_numpy(np.asarray(prime, dtype=np.int64)).to(device)
    with torch.inference_mode():
        state = model.initial_state(n, device)
        if len(prime_ids) > 1:
            _, state = model(prime_ids[:-1].expand(n, -1), state)  # (n, P-1): read the prime once
        token = prime_ids[-1:].expand(n)  # (n,)
        step = model.stepper()
        banned = torch.tensor(tokenizer.never_sample(), dtype=torch.long, device=device)

        decoders = [StreamDecoder(tokenizer) for _ in range(n)]
        scanners = [StopScanner(config.stop) for _ in range(n)]
        produced = [0] * n
        active = set(range(n))
        while active:
            logits, state = step(token, state)  # (n, V)
            if len(banned):
                logits.index_fill_(1, banned, float("-inf"))
            token = sample_next(logits, config.temperature, config.top_k, config.top_p, generator)
            ids = token.tolist()
            for i in sorted(active):
                text = decoders[i].push(ids[i])
                if produced[i] + len(text) >= config.length:
                    text = text[: config.length - produced[i]]
                produced[i] += len(text)
                out = scanners[i].push(text)
                finished = scanners[i].stopped or produced[i] >= config.length
                if finished:
                    out += scanners[i].flush()
                    active.discard(i)
                if out or finished:
                    yield Piece(i, out, finished)


def generate_text(run: Any, prime: str = "", **options: Any) -> list[str]:
    """Generate whole samples (without the prime); options are SampleConfig fields."""
    config = SampleConfig(prime=prime, **options)
    texts = [""] * config.num_samples
    for piece in stream(run, config):
        texts[piece.sample] += piece.text
    return texts
