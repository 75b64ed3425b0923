"""Sampling: one function that picks the next token, and a streaming generator.

The generator reads the prime once with the fused model, then produces one token
per step with ``RecurrentLM.stepper``, carrying the state: O(1) work per token, the
prefix is never read again.

Sampling works on text, not token boundaries. Stop strings and ``length`` are
applied to the decoded text, so they cut at the exact character even inside a
subword token. A prime that ends inside what would be one token is *healed*: its
last tokens are taken back and the first tokens generated must spell them again,
so the sample continues the prime's characters exactly (see ``heal_prime``).
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from charnn.config import SampleConfig
from charnn.device import fast_bf16
from charnn.model import int8_available
from charnn.tasks.lm.healing import Healing, Utf8Guard, heal_prime  # noqa: F401  (heal_prime: part of sampling's API)
from charnn.text.records import record_format

BF16_MIN_BATCH = 16
"""Batches of at least this many samples step in bfloat16 where the hardware is fast at it."""
MIN_TEMPERATURE = 1e-6
"""A positive temperature below this draws as this does (the most likely token, ties shared):
logits divided by 1e-40 overflow float32 to inf, whose softmax is NaN."""
COMPACT_AT = 0.75
"""When no more than this fraction of a batch's rows are still generating, the batch shrinks to them."""


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
    logits = logits.float() / max(temperature, MIN_TEMPERATURE)  # (B, V)
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
    string, and a record run's at the end of its record (the prime, if any, is the
    record's start). Each sample ends with exactly one piece whose ``done`` is True.
    The text continues the prime exactly and never repeats it, even when the prime
    was healed.
    """
    model, tokenizer = run.model, run.tokenizer
    device = model.embed.weight.device
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed if config.seed is not None else int(torch.seed() % (2**63)))
    n = config.num_samples
    fmt = record_format(run)
    # A record run (or record style): a sample is one record, from its start to its end.
    boundary = model.boundary if fmt is not None else None
    token_bytes = [tokenizer.token_bytes(i) for i in range(tokenizer.vocab_size)]
    token_bytes += [b""] * (model.config.vocab_size - len(token_bytes))  # the boundary spells nothing
    context_ids, owed = _context(config, tokenizer, token_bytes, boundary, device)
    healing = Healing(token_bytes, owed, n, device)
    utf8 = Utf8Guard(token_bytes, n, device)
    with torch.inference_mode():
        state = model.initial_state(n, device)
        if len(context_ids) > 1:
            _, state = model(context_ids[:-1].expand(n, -1), state)  # (n, P-1): read the prime once
        token = context_ids[-1:].expand(n)  # (n,)
        step = model.stepper(stepping_dtype(n, torch.device(device)))
        banned = _banned(tokenizer, model, boundary, fmt, token_bytes, device)
        samples = _Samples(config, boundary, utf8, healing)
        rows = list(range(n))  # the sample each row of the batch generates
        chunk = 1
        while samples.active:
            # A GPU runs a chunk of steps before the host reads their tokens back (one wait a chunk,
            # not one a token); a CPU reads every token at once. The guards below choose the next
            # token from what the host knows of the last, so they step one token at a time.
            ahead = _steps_ahead(device) if not (utf8.enabled or healing.active()) else 1
            # Ramp up, and draw no more than the longest unfinished sample can take.
            chunk = min(ahead, 2 * chunk, samples.most_left()) if ahead > 1 else 1
            drawn = []
            for _ in range(chunk):
                logits, state = step(token, state)  # (b, V)
                if len(banned):
                    logits.index_fill_(1, banned, float("-inf"))
                utf8.restrict(logits, rows)
                if healing.active():
                    healing.restrict(logits, rows)
                token = sample_next(logits, config.temperature, config.top_k, config.top_p, generator)
                drawn.append(token)
            chunk_ids = (torch.stack(drawn, dim=1) if chunk > 1 else drawn[0][:, None]).tolist()  # (b, chunk)
            yield from samples.take(chunk_ids, rows)
            if samples.active and len(samples.active) <= COMPACT_AT * len(rows):  # finished rows stop costing
                keep = [j for j, i in enumerate(rows) if i in samples.active]
                index = torch.tensor(keep, dtype=torch.long, device=token.device)
                token, rows = token[index], [rows[j] for j in keep]
                state = [tuple(s[:, index] for s in layer) for layer in state]


def _context(config: SampleConfig, tokenizer: Any, token_bytes: list[bytes], boundary: int | None, device: Any):  # noqa: ANN202
    """The tokens read before the first drawn one (the healed prime, after a record's boundary), and
    the prime's bytes that healing still owes."""
    context, owed = heal_prime(tokenizer.encode(config.prime), token_bytes) if config.prime else ([], b"")
    if boundary is not None:
        context = [boundary, *context]
    elif not context:
        context = tokenizer.start_ids()
    return torch.from_numpy(np.asarray(context, dtype=np.int64)).to(device), owed


def _banned(tokenizer: Any, model: Any, boundary: int | None, fmt: Any, token_bytes: list[bytes], device: Any):  # noqa: ANN202
    """Tokens never drawn: the tokenizer's own, a boundary where a sample is not a record, and line
    breaks in a line record."""
    never = list(tokenizer.never_sample())
    if boundary is None and model.boundary is not None:
        never.append(model.boundary)  # a stream style of a model that has record styles too
    if fmt is not None and fmt.spec == "line":  # a line record never holds a line break
        never += [i for i, data in enumerate(token_bytes) if b"\n" in data or b"\r" in data]
    return torch.tensor(sorted(set(never)), dtype=torch.long, device=device)


class _Samples:
    """The samples' text so far: tokens decoded as UTF-8, cut at a stop string, a record's end or the length."""

    def __init__(self, config: SampleConfig, boundary: int | None, utf8: Utf8Guard, healing: Healing) -> None:
        n = config.num_samples
        self.config, self.boundary, self.utf8, self.healing = config, boundary, utf8, healing
        self.decoders = [codecs.getincrementaldecoder("utf-8")(errors="replace") for _ in range(n)]
        self.scanners = [StopScanner(config.stop) for _ in range(n)]
        self.produced = [0] * n
        self.active = set(range(n))

    def most_left(self) -> int:
        return max(self.config.length - self.produced[i] for i in self.active)

    def take(self, chunk_ids: list[list[int]], rows: list[int]) -> Iterator[Piece]:
        """The pieces a chunk of drawn tokens (a list a row of the batch) adds to each unfinished sample."""
        length, boundary = self.config.length, self.boundary
        for j, i in enumerate(rows):
            if i not in self.active:
                continue
            ids = chunk_ids[j]
            ends = boundary is not None and boundary in ids
            if ends:  # the record ends at its boundary; what was drawn after it is dropped
                ids = ids[: ids.index(boundary)]
            data = b""
            for token_id in ids:
                self.utf8.update(i, token_id)
                data += self.healing.new_bytes(i, token_id)
            text = self.decoders[i].decode(data)
            if self.produced[i] + len(text) >= length:
                text = text[: length - self.produced[i]]
            self.produced[i] += len(text)
            out = self.scanners[i].push(text)
            finished = ends or self.scanners[i].stopped or self.produced[i] >= length
            if finished:
                out += self.scanners[i].flush()
                self.active.discard(i)
            if out or finished:
                yield Piece(i, out, finished)


STEPS_AHEAD = 32
"""On a GPU, tokens drawn before the host reads them back (the steps of a chunk)."""


def _steps_ahead(device: torch.device) -> int:
    return 1 if device.type == "cpu" else STEPS_AHEAD


def stepping_dtype(n: int, device: torch.device) -> torch.dtype | None:
    """The arithmetic the stepper uses for a batch of ``n`` samples; None: the model's (fp32).

    Where the hardware has bf16 matrix units, large batches step in bfloat16 (several times
    faster) and small ones, on a CPU, with int8 weights and bf16 products (one row reads
    every weight once a token: a quarter of the bytes, about twice as fast). Both keep the
    held-out loss within 0.5% of fp32's (tests/test_sample.py, bench/sampling.py).
    """
    if not fast_bf16(device):
        return None
    if n >= BF16_MIN_BATCH:
        return torch.bfloat16
    return torch.int8 if device.type == "cpu" and int8_available() else None


def stepped_nll(
    model: Any, tokens: np.ndarray, dtype: torch.dtype | None = None, rows: int = 64, exact_rows: bool = False
) -> float:
    """Mean -log p per predicted token of ``tokens`` in nats, with the sampler's arithmetic.

    The text is cut into ``rows`` contiguous pieces, each read from the zero state by the
    stepper in ``dtype``, side by side, as a batch of samples is generated. Comparing
    dtypes on the same cut says what bf16 stepping costs in precision; ``exact_rows``: as a
    server steps (charnn.model.lm.Stepper).
    """
    ids = torch.from_numpy(np.asarray(tokens, dtype=np.int64)).to(model.embed.weight.device)
    length = (len(ids) - 1) // rows
    if length < 1:
        raise ValueError(f"{len(ids)} tokens are too few for {rows} rows")
    inputs = ids[: rows * length].view(rows, length)  # (R, L)
    targets = ids[1 : rows * length + 1].view(rows, length)  # (R, L)
    step, state, total = model.stepper(dtype, exact_rows), model.initial_state(rows), 0.0
    for t in range(length):
        logits, state = step(inputs[:, t], state)  # (R, V)
        total += float(torch.nn.functional.cross_entropy(logits, targets[:, t], reduction="sum"))
    return total / (rows * length)


def generate_text(run: Any, prime: str = "", **options: Any) -> list[str]:
    """Generate whole samples (without the prime); options are SampleConfig fields."""
    config = SampleConfig(prime=prime, **options)
    texts = [""] * config.num_samples
    for piece in stream(run, config):
        texts[piece.sample] += piece.text
    return texts
