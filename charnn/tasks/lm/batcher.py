"""Every completion a served language model writes, stepped together in one batch.

A new completion (a ``Row``) reads its prompt and joins the running batch at the next step;
one that is finished, stopped or cancelled leaves it at once. Each row keeps its own sampling
settings, random stream, stop strings and style, so no row ever sees another's: a seeded row
draws the same text in any company. Where ``charnn sample`` steps one sample with int8 weights
(CPUs with bf16 units), the server steps every batch with int8 weights and int8 inputs whose
sums are integers (the stepper's ``exact_rows``): a row's logits are then bit for bit those it
has alone. Elsewhere it steps in fp32, where a larger batch may round a row's last bits
differently (its text then changes only where a choice hangs on the last bit).

Drawing is vectorised over the rows: each row's temperature, top-k and top-p cut its own
distribution, and its own generator gives the uniform number that picks a token from it.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from charnn.model import State
from charnn.tasks.lm.healing import Healing, Utf8Guard
from charnn.tasks.lm.sample import MIN_TEMPERATURE, StopScanner, stepping_dtype


@dataclass
class Row:
    """One completion being written: its settings, and its text so far."""

    index: int
    """Its place among its request's choices."""
    context: torch.Tensor
    """The tokens read before its first drawn one (the healed prompt; a record's boundary first)."""
    length: int
    temperature: float
    top_k: int
    top_p: float
    rng: np.random.Generator
    stops: tuple[str, ...]
    top_logprobs: int | None
    """Alternatives to report at each generated token; None: no logprobs."""
    banned: torch.Tensor
    """(V,) bool: tokens this row never draws."""
    boundary: int | None
    """A record row's boundary, which ends it; None for a stream."""
    healing: Healing
    utf8: Utf8Guard
    style: torch.Tensor | None = None
    """A style run's weights over its styles (S,), which read the prompt."""
    biases: list[torch.Tensor] | None = None
    """The same style as the stepper's vectors, (1, width) a layer."""
    on_piece: Callable[[Row, str, list[dict[str, Any]], str | None], None] = lambda *_: None
    """Called with the text released since the last call, its tokens' logprob entries, and the
    finish reason once the row is done."""
    produced: int = 0
    drawn: int = 0
    cancelled: bool = False
    done: bool = False
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))
    scanner: StopScanner | None = None
    held: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    """Logprob entries of text the stop scanner still holds back, with the offset where each ends."""
    released: int = 0

    def __post_init__(self) -> None:
        self.scanner = StopScanner(self.stops)


def _same_prompts(rows: Any) -> list[list[Row]]:
    """``rows`` grouped by prompt and style, in first-seen order: rows that share both read the prompt once."""
    groups: dict[tuple[bytes, bytes], list[Row]] = {}
    for row in rows:
        key = (row.context.cpu().numpy().tobytes(), b"" if row.style is None else row.style.cpu().numpy().tobytes())
        groups.setdefault(key, []).append(row)
    return list(groups.values())


def serving_dtype(device: torch.device) -> torch.dtype | None:
    """The arithmetic a server steps every batch in: int8 where ``charnn sample`` steps one sample
    in int8 (the stepper's ``exact_rows`` then makes every row exact in any company), else fp32."""
    return torch.int8 if stepping_dtype(1, device) == torch.int8 else None


SHORT_PROMPT = 64
"""Prompts of at most this many tokens are read together, one step a token; longer ones by the fused model, a
chunk a turn (READ_CHUNK)."""
READ_CHUNK = 256
"""Tokens of a long prompt read in one turn (by the fused model, the state carried to the next turn): the
batch steps between two chunks, so a 20,000-character prompt does not stop every other row for seconds,
and a row whose client goes away stops being read at the next chunk."""


class Batcher:
    """The rows a model is writing, stepped together: one step a ``turn`` on the server's worker
    thread (charnn.tasks.worker), which also adds the rows."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.device = model.embed.weight.device
        self.step = model.stepper(serving_dtype(self.device), exact_rows=True)
        self.pending: list[Row] = []
        self.reading: list[tuple[list[Row], State | None, int]] = []
        """Long prompts being read, a chunk a turn: the rows that share each (a request's n choices of one
        prompt read it once), its state and the tokens read."""
        self.rows: list[Row] = []
        self.closing = False
        self.tokens: torch.Tensor | None = None
        self.state: State = []

    @property
    def active(self) -> int:
        """Rows in the batch or waiting to join it."""
        return len(self.rows) + len(self.pending) + len(self._reading_rows())

    def add(self, rows: list[Row]) -> None:
        self.pending.extend(rows)

    def _reading_rows(self) -> list[Row]:
        return [row for rows, _, _ in self.reading for row in rows]

    def busy(self) -> bool:
        return bool(self.pending or self.rows or self.reading)

    def close(self) -> None:
        """End every row at the next turn (finish reason 'stop'), and every row added after."""
        self.closing = True

    def turn(self) -> None:
        """Rows that wait join the batch, then the batch takes one step."""
        joining, self.pending = self.pending, []
        if self.closing:
            for row in self.rows + joining + self._reading_rows():
                self._finish(row, "stop")
            self.rows, self.tokens, self.state, self.reading = [], None, [], []
            return
        read: list[tuple[Row, State]] = []
        try:
            self.reading += [
                (rows, None, 0) for rows in _same_prompts(r for r in joining if len(r.context) > SHORT_PROMPT)
            ]
            joining = [row for row in joining if len(row.context) <= SHORT_PROMPT]
            read = self._read_chunk()
            if joining or read:
                self.tokens, self.state = self._join(joining, self.tokens, self.state, read)
            if self.rows:
                self.tokens, self.state = self._step(self.tokens, self.state)
        except Exception as error:  # noqa: BLE001  (a failed step ends its rows, never the server)
            for row in self.rows + joining + self._reading_rows() + [row for row, _ in read]:
                if not row.done:
                    self._finish(row, f"error: {type(error).__name__}: {error}")
            self.rows, self.tokens, self.state, self.reading = [], None, [], []

    @torch.inference_mode()
    def _read_chunk(self) -> list[tuple[Row, State]]:
        """Read the next chunk of the first long prompt waiting (then it waits behind the others);
        returns the row and its state once its whole prompt (all but the last token) is read."""
        self.reading = [(live, s, d) for rows, s, d in self.reading if (live := [r for r in rows if not r.cancelled])]
        if not self.reading:
            return []
        rows, state, done = self.reading.pop(0)
        prompt = rows[0].context[:-1]
        end = min(done + READ_CHUNK, len(prompt))
        style = None if rows[0].style is None else rows[0].style[None]
        state = state if state is not None else self.model.initial_state(1, self.device)
        _, state = self.model(prompt[None, done:end], state, style=style)
        if end < len(prompt):
            self.reading.append((rows, state, end))
            return []
        return [(row, state) for row in rows]

    @torch.inference_mode()
    def _join(
        self, joining: list[Row], tokens: torch.Tensor | None, state: State, read: list[tuple[Row, State]]
    ) -> tuple[torch.Tensor, State]:
        """Read each new row's short prompt and add the rows to the batch, with those whose long prompt is ``read``."""
        joining = [row for row in joining if not row.cancelled]
        read = [(row, after) for row, after in read if not row.cancelled]
        if not joining and not read:
            return tokens, state
        states = self._prompt_states(joining) + [after for _, after in read]
        joining = joining + [row for row, _ in read]
        new_tokens = torch.cat([row.context[-1:] for row in joining])
        new_state = [tuple(torch.cat(parts, dim=1) for parts in zip(*layers)) for layers in zip(*states)]
        if self.rows:
            new_tokens = torch.cat([tokens, new_tokens])
            new_state = [tuple(torch.cat(pair, dim=1) for pair in zip(a, b)) for a, b in zip(state, new_state)]
        self.rows = self.rows + joining
        self._settings()
        return new_tokens, new_state

    def _prompt_states(self, joining: list[Row]) -> list[State]:
        """Each short-prompted row's state after its prompt (all but the prompt's last token, which the
        first step reads), stepped together as one batch; a long prompt is read by the fused model alone,
        a chunk a turn (_read_chunk): which way a prompt is read depends on its length only, never on the
        rows it joins with."""
        if not joining:
            return []
        together = self._step_prompts(joining)
        return [[tuple(s[:, i : i + 1] for s in layer) for layer in together] for i in range(len(joining))]

    def _step_prompts(self, rows: list[Row]) -> State:
        state = self.model.initial_state(len(rows), self.device)
        steps = max(len(row.context) for row in rows) - 1
        if steps < 1:
            return state
        ids = torch.zeros(len(rows), steps, dtype=torch.long, device=self.device)
        reading = torch.zeros(len(rows), steps, dtype=torch.bool, device=self.device)
        for i, row in enumerate(rows):
            ids[i, : len(row.context) - 1] = row.context[:-1]
            reading[i, : len(row.context) - 1] = True
        biases = None if rows[0].biases is None else [torch.cat(parts) for parts in zip(*(r.biases for r in rows))]
        for t in range(steps):
            _, new = self.step(ids[:, t], state, biases)
            keep = reading[:, t][None, :, None]  # (1, B, 1): a row whose prompt has ended keeps its state
            state = [tuple(torch.where(keep, n, o) for n, o in zip(a, b)) for a, b in zip(new, state)]
        return state

    def _settings(self) -> None:
        """The batch's per-row settings as tensors, made again when the rows change."""
        rows, device = self.rows, self.device
        divisors = [max(r.temperature, MIN_TEMPERATURE) if r.temperature else 1.0 for r in rows]  # greedy rows: any
        self.temperature = torch.tensor(divisors, device=device)[:, None]
        self.greedy = torch.tensor([r.temperature == 0 for r in rows], device=device)
        vocab = self.model.config.vocab_size
        # A top_k of the vocabulary or more cuts nothing (and may not fit a tensor's int64).
        self.top_k = torch.tensor([r.top_k if 0 < r.top_k < vocab else 0 for r in rows], device=device)
        self.top_p = torch.tensor([r.top_p for r in rows], device=device)
        cutting = [0 < r.top_k < vocab or r.top_p < 1 for r in rows]
        self.cuts = any(cutting)
        """Whether some row cuts (top-k, top-p): those rows draw over their sorted probabilities, the others
        over their own order, as they would alone (one uniform number picks another token in another order)."""
        self.cut_rows = np.flatnonzero(cutting) if self.cuts and not all(cutting) else None
        """The rows that cut where only some do (None where all or none do)."""
        self.cutting = None if self.cut_rows is None else torch.tensor(cutting, device=device)[:, None]
        self.host_temperature = np.array(divisors)
        self.host_greedy = np.array([r.temperature == 0 for r in rows])
        self.all_greedy = bool(self.host_greedy.all())
        self.host_top_k = np.array([r.top_k if 0 < r.top_k < vocab else vocab for r in rows])
        self.host_top_p = np.array([r.top_p if r.top_p < 1 else np.inf for r in rows])
        self.banned = torch.stack([r.banned for r in rows])  # (B, V)
        self.guarded = [j for j, r in enumerate(rows) if r.utf8.enabled or r.healing.active()]
        self.logprobs = [j for j, r in enumerate(rows) if r.top_logprobs is not None]
        self.logprob_rows = torch.tensor(self.logprobs, dtype=torch.long, device=device)
        self.biases = None
        if rows[0].biases is not None:
            self.biases = [torch.cat(parts) for parts in zip(*(r.biases for r in rows))]

    @torch.inference_mode()
    def _step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        logits, state = self.step(tokens, state, self.biases)  # (B, V)
        own = logits[self.logprob_rows] if self.logprobs else None  # the model's own, before anything is banned
        logits.masked_fill_(self.banned, float("-inf"))
        for j in self.guarded:
            row = self.rows[j]
            row.utf8.restrict(logits[j : j + 1], [0])
            if row.healing.active():
                row.healing.restrict(logits[j : j + 1], [0])
        tokens = self._draw(logits)
        drawn = tokens.tolist()
        entries = self._entries(own, drawn) if own is not None else {}
        for j, row in enumerate(self.rows):
            if not row.cancelled:
                self._take(row, drawn[j], entries.get(j))
        keep = [j for j, r in enumerate(self.rows) if not (r.done or r.cancelled)]
        if len(keep) < len(self.rows):
            index = torch.tensor(keep, dtype=torch.long, device=self.device)
            tokens, state = tokens[index], [tuple(s[:, index] for s in layer) for layer in state]
            self.rows = [self.rows[j] for j in keep]
            if self.rows:
                self._settings()
        return tokens, state

    def _draw(self, logits: torch.Tensor) -> torch.Tensor:
        """One token a row, each by its own temperature, top-k, top-p and random stream."""
        if self.device.type == "cpu":
            return torch.from_numpy(self._draw_on_host(logits.numpy()))
        return self._draw_on_device(logits)

    def _draw_on_device(self, logits: torch.Tensor) -> torch.Tensor:
        """_draw with torch on the logits' device (a GPU's: no copy to the host before the draw)."""
        greedy = logits.argmax(dim=-1)
        if bool(self.greedy.all()):
            return greedy
        scaled = logits / self.temperature  # (B, V)
        uniform = torch.tensor([r.rng.random() for r in self.rows], device=self.device, dtype=torch.float64)
        if not self.cuts:
            return torch.where(self.greedy, greedy, _pick(scaled.softmax(dim=-1), uniform)[:, 0])
        ordered, order = torch.sort(scaled, dim=-1, descending=True)  # the rows that cut draw in sorted order
        probs = ordered.softmax(dim=-1)
        rank = torch.arange(probs.shape[1], device=self.device)[None, :]  # (1, V)
        k = torch.where(self.top_k > 0, self.top_k, probs.shape[1])[:, None]  # (B, 1)
        before = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked above each
        drop = (rank >= k) | ((before >= self.top_p[:, None]) & (self.top_p[:, None] < 1))
        picked = order.gather(1, _pick(probs.masked_fill(drop, 0.0), uniform))
        if self.cutting is not None:  # the others keep their own order, as they would alone
            picked = torch.where(self.cutting, picked, _pick(scaled.softmax(dim=-1), uniform))
        return torch.where(self.greedy, greedy, picked[:, 0])

    def _draw_on_host(self, logits: np.ndarray) -> np.ndarray:
        """_draw with numpy, row by row the same arithmetic at any batch size: on a CPU a dozen small
        torch calls a step cost more than the draw itself."""
        greedy = logits.argmax(axis=1)
        if self.all_greedy:
            return greedy
        scaled = logits.astype(np.float64) / self.host_temperature[:, None]  # (B, V)
        scaled -= scaled.max(axis=1, keepdims=True)
        uniform = np.array([r.rng.random() for r in self.rows])
        if not self.cuts:
            pick = _pick_on_host(np.exp(scaled), uniform)
        elif self.cut_rows is None:
            pick = self._cut_on_host(scaled, uniform, slice(None))
        else:  # the rows that cut draw in sorted order; the others keep theirs, as they would alone
            pick = _pick_on_host(np.exp(scaled), uniform)
            rows = self.cut_rows
            pick[rows] = self._cut_on_host(scaled[rows], uniform[rows], rows)
        return np.where(self.host_greedy, greedy, pick)

    def _cut_on_host(self, scaled: np.ndarray, uniform: np.ndarray, rows: Any) -> np.ndarray:
        """The draw of ``rows`` (their ``scaled`` logits) over their probabilities sorted, top-k and top-p cut."""
        order = np.argsort(-scaled, axis=1, kind="stable")
        probs = np.exp(np.take_along_axis(scaled, order, axis=1))
        before = (np.cumsum(probs, axis=1) - probs) / probs.sum(axis=1, keepdims=True)
        rank = np.arange(probs.shape[1])[None, :]
        probs[(rank >= self.host_top_k[rows, None]) | (before >= self.host_top_p[rows, None])] = 0.0
        return np.take_along_axis(order, _pick_on_host(probs, uniform)[:, None], axis=1)[:, 0]

    def _entries(self, logits: torch.Tensor, drawn: list[int]) -> dict[int, dict[str, Any]]:
        """Each logprob row's figures for its drawn token (``logits``: those rows' own, (b, V)): its
        log-probability under the model (at temperature 1, nothing cut) and the most likely alternatives."""
        logprobs = torch.log_softmax(logits.float(), dim=-1)  # (b, V)
        most = max(self.rows[j].top_logprobs for j in self.logprobs) or 1
        top = torch.topk(logprobs, min(most, logprobs.shape[1]), dim=-1)
        chosen = logprobs.gather(1, torch.tensor([[drawn[j]] for j in self.logprobs], device=self.device))
        out = {}
        for i, (j, values, ids) in enumerate(zip(self.logprobs, top.values.tolist(), top.indices.tolist())):
            k = self.rows[j].top_logprobs
            out[j] = {"logprob": float(chosen[i, 0]), "top": list(zip(ids[:k], values[:k]))}
        return out

    def _take(self, row: Row, token_id: int, entry: dict[str, Any] | None) -> None:
        """Add a drawn token to its row's text; release what the stop strings allow."""
        row.drawn += 1
        ends = row.boundary is not None and token_id == row.boundary
        text = ""
        if not ends:
            row.utf8.update(0, token_id)
            text = row.decoder.decode(row.healing.new_bytes(0, token_id))
            text = text[: row.length - row.produced]
            row.produced += len(text)
        if entry is not None:
            entry = {**entry, "token": token_id, "text": text}
            row.held.append((row.produced, entry))
        out = row.scanner.push(text)
        finished = ends or row.scanner.stopped or row.produced >= row.length
        if finished:
            out += row.scanner.flush()
            reason = "length" if row.produced >= row.length and not (ends or row.scanner.stopped) else "stop"
        row.released += len(out)
        ready = [e for end, e in row.held if end <= row.released or (finished and not row.scanner.stopped)]
        if finished and row.scanner.stopped:
            ready += _straddling(row.held, row.released)
        row.held = [(end, e) for end, e in row.held if not (end <= row.released)]
        if finished:
            row.held = []
            self._finish(row, reason, out, ready)
        elif out or ready:
            row.on_piece(row, out, ready, None)

    def _finish(self, row: Row, reason: str, text: str = "", entries: list[dict[str, Any]] | None = None) -> None:
        row.done = True
        row.on_piece(row, text, entries or [], reason)


def _pick(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """(B, 1): the index each row's uniform number falls at in its cumulative ``probs`` (B, V), unnormalised."""
    cdf = probs.double().cumsum(dim=-1)
    return torch.searchsorted(cdf, (uniform * cdf[:, -1])[:, None], right=True).clamp_(max=cdf.shape[1] - 1)


def _pick_on_host(probs: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """(B,): ``_pick`` with numpy."""
    cdf = np.cumsum(probs, axis=1)
    return np.minimum((cdf <= (uniform * cdf[:, -1])[:, None]).sum(axis=1), cdf.shape[1] - 1)


def _straddling(held: list[tuple[int, dict[str, Any]]], released: int) -> list[dict[str, Any]]:
    """The entry of the token a stop string begins inside (a subword's), cut to the part of its text kept, so
    that the entries spell the text released; none when the stop begins at a token's start."""
    for end, entry in held:
        if end > released:
            kept = len(entry["text"]) - (end - released)
            return [{**entry, "text": entry["text"][:kept]}] if kept > 0 else []
    return []
