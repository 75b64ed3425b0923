"""The language-model task: B parallel streams of the text, read in TBPTT windows.

The state is carried from each window to the next in every row (see
charnn.text.corpus.TBPTTStream) and restarts with each pass over the text. Validation is
the loss per token over the held-out text, state carried; bits per character make
char and subword runs compare. A reverse run (``charnn train --reverse``) reads
every token sequence right to left. A record run (charnn.text.records) reads its training
records in a fresh seeded order each pass, and its model restarts at each record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from charnn.errors import CheckpointError
from charnn.model import State
from charnn.runs import checkpoint
from charnn.tasks.base import logged_evaluation
from charnn.tasks.lm.evaluate import LN2, total_nll
from charnn.text import records
from charnn.text.corpus import TBPTTStream

PERIODIC_EVAL_TOKENS = 1 << 20
"""Periodic validation reads at most this many tokens; the final one reads all."""
EXACT_EVAL_TOKENS = 1 << 20
"""Up to this size the final validation is exact; beyond, segments of this size are scored side by side."""


@dataclass
class Lane:
    """Rows of the batch that read one text: the whole batch for a plain run, a style's share
    for a style run (charnn.tasks.lm.styles)."""

    tokens: np.ndarray
    """The training tokens (a record text: a boundary before each record and one at the end)."""
    starts: np.ndarray | None
    """A record text's record offsets (charnn.text.records.layout); None for a stream."""
    rows: int
    first_row: int
    """The lane's first row in the whole batch."""
    chars_per_token: float
    style: int | None = None
    columns: bool = False
    """Records may be laid out in columns (charnn.text.records.columns), as in runs made since
    2026-11-24; older record runs keep the layout (charnn.text.records.layout) they were trained with."""


@dataclass
class Held:
    """One held-out text: the run's, or a style's."""

    tokens: np.ndarray
    chars_per_token: float
    name: str | None = None
    style: int | None = None


class LanguageModelTask:
    def __init__(self, model: Any, lanes: list[Lane], held: list[Held], config: Any, world: Any, device) -> None:  # noqa: ANN001
        self.model, self.config, self.device, self.world = model, config, device, world
        self.lanes, self.held = lanes, held
        self.my_rows = world.rows(config.batch_size)
        self.local_batch = self.my_rows.stop - self.my_rows.start
        for lane in lanes:
            lane.stream = TBPTTStream(lane.tokens, lane.rows, config.seq_len)
            lo = min(max(self.my_rows.start, lane.first_row), lane.first_row + lane.rows)
            hi = max(min(self.my_rows.stop, lane.first_row + lane.rows), lo)
            lane.mine = slice(lo - lane.first_row, hi - lane.first_row)  # the lane's rows this process reads
            lane.pass_laid_out = -1
            # Columns where they pay: short records of many alike lengths (a name a line), not a
            # thousand recipes of a thousand lengths, whose windows are seldom cut anyway.
            lane.columns = (
                lane.columns
                and lane.starts is not None
                and records.column_padding(lane.starts, lane.rows) <= records.MAX_COLUMN_PADDING
            )
            self._lay_out(lane, 0)
        self.styles = None
        if any(lane.style is not None for lane in lanes):
            ids = [lane.style for lane in lanes for _ in range(lane.mine.stop - lane.mine.start)]
            self.styles = torch.tensor(ids, dtype=torch.long, device=device)  # (b,)
        self.chars_per_step = sum(lane.rows * config.seq_len * lane.chars_per_token for lane in lanes)
        self.train_tokens = sum(len(lane.tokens) for lane in lanes)
        self.val_tokens = sum(len(h.tokens) for h in held)

    @classmethod
    def from_folder(cls, folder: Path, run_config: dict[str, Any], model, config, world, device):  # noqa: ANN001, ANN206
        info = run_config.get("data", {})
        task = run_config.get("task") or {}
        try:
            dtype = np.dtype(info["token_dtype"])
            train = read_tokens(folder / checkpoint.TRAIN_TOKENS_FILE, dtype, info["train_tokens"])
            val = read_tokens(folder / checkpoint.VAL_TOKENS_FILE, dtype, info["val_tokens"])
            if task.get("styles"):
                lanes, held = _style_lanes(folder, task["styles"], train, val, _columns(task))
                return cls(model, lanes, held, config, world, device)
            per_token = info["train_chars"] / info["train_tokens"], _held_per_token(info, bool(task.get("records")))
            starts = None
            if task.get("records"):
                starts = read_tokens(
                    folder / checkpoint.TRAIN_RECORDS_FILE, np.dtype(np.int64), info["train_records"] + 1
                )
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            raise CheckpointError(f"{folder}/{checkpoint.CONFIG_FILE} cannot be resumed: {exc}") from None
        if task.get("reverse"):
            # Reversed, a record text still has a boundary before each record and one at the end.
            train, val = np.ascontiguousarray(train[::-1]), np.ascontiguousarray(val[::-1])
            starts = None if starts is None else np.ascontiguousarray(len(train) - 1 - starts[::-1])
        lanes = [Lane(train, starts, config.batch_size, 0, per_token[0], columns=_columns(task))]
        return cls(model, lanes, [Held(val, per_token[1])], config, world, device)

    def _lay_out(self, lane: Lane, epoch: int) -> None:
        """The rows of pass ``epoch`` of a lane: its text as it is, or its records in that pass's order."""
        if epoch == lane.pass_laid_out:
            return
        lane.targets = None
        if lane.starts is None:
            if lane.pass_laid_out >= 0:
                return  # a stream is the same every pass
            rows = lane.stream.rows
        elif lane.columns:
            length = lane.stream.windows_per_epoch * self.config.seq_len
            rows, targets = records.columns(lane.tokens, lane.starts, lane.rows, length, self.config.seed, epoch)
            lane.targets = torch.from_numpy(np.ascontiguousarray(targets[lane.mine])).to(self.device)  # (b, L)
        else:
            order = records.epoch_order(len(lane.starts) - 1, self.config.seed, epoch)
            tokens = records.layout(lane.tokens, lane.starts, order)
            rows = TBPTTStream(tokens, lane.rows, self.config.seq_len).rows
        # The rows stay in their compact dtype; each window is widened to int64 on use.
        lane.local = torch.from_numpy(np.ascontiguousarray(rows[lane.mine])).to(self.device)  # (b, L)
        lane.pass_laid_out = epoch
        if lane.starts is not None and not lane.columns:
            # A row but the first begins inside a record, from the zero state: what it predicts
            # before its first boundary is not learnt (a record is learnt from its start only).
            at = lane.local == self.model.boundary  # (b, L)
            lane.first_boundary = torch.where(at.any(dim=1), at.int().argmax(dim=1), at.shape[1])  # (b,)

    def initial_carry(self) -> State:
        return self.model.initial_state(self.local_batch, self.device)

    def carry_template(self) -> State:
        return self.model.initial_state(self.config.batch_size, self.device)

    def own_rows(self, carry: State) -> State:
        return [tuple(s[:, self.my_rows].contiguous() for s in layer) for layer in carry]

    def loss(self, net, step: int, carry: State, autocast) -> tuple[torch.Tensor, State]:  # noqa: ANN001
        c = self.config
        xs, ys, fresh = [], [], []
        for lane in self.lanes:
            b = lane.mine.stop - lane.mine.start
            if not b:
                continue
            epoch, window = divmod(step, lane.stream.windows_per_epoch)
            t = window * c.seq_len
            self._lay_out(lane, epoch)
            x = lane.local[:, t : t + c.seq_len].long()  # (b, T)
            if lane.targets is not None:
                y = lane.targets[:, t : t + c.seq_len].long()  # (b, T), -100 on padding
            else:
                y = lane.local[:, t + 1 : t + c.seq_len + 1].long()  # (b, T)
                if lane.starts is not None:  # records end to end (runs made before columns)
                    before = t + torch.arange(c.seq_len, device=y.device)[None, :] < lane.first_boundary[:, None]
                    y = y.masked_fill(before, -100)  # cross_entropy's ignore_index
            xs.append(x)
            ys.append(y)
            fresh += [t == 0] * b  # a new pass over the lane's text: its rows start from zeros
        if all(fresh):
            carry = self.initial_carry()
        elif any(fresh):
            keep = torch.tensor([not f for f in fresh], dtype=carry[0][0].dtype, device=self.device)[None, :, None]
            carry = [tuple(s * keep for s in layer) for layer in carry]
        x, y = (xs[0], ys[0]) if len(xs) == 1 else (torch.cat(xs), torch.cat(ys))
        with autocast():
            logits, carry = net(x, carry) if self.styles is None else net(x, carry, style=self.styles)  # (b, T, V)
        return self.world.loss_per_target(logits.float().flatten(0, 1), y.flatten()), carry

    def evaluate(self, model, final: bool) -> tuple[float, dict[str, Any]]:  # noqa: ANN001
        """Loss per token over the held-out text: its start when periodic, all of it when final.

        A style run scores each style's held-out text under that style; its figures are their
        means (each style counts the same), and ``val_styles`` has each style's.
        """
        losses, bits, exact = [], [], True
        for held in self.held:
            if final:
                rows = max(1, math.ceil(len(held.tokens) / EXACT_EVAL_TOKENS))
                val = held.tokens
            else:
                rows, val = 8, held.tokens[: max(PERIODIC_EVAL_TOKENS // len(self.held), 1024)]
            if held.style is not None:
                model.use_style(F.one_hot(torch.tensor(held.style), model.config.styles).float())
            try:
                nll = total_nll(model, val, rows=rows) / (len(val) - 1)
            finally:
                if held.style is not None:
                    model.use_style(None)
            losses.append(nll)
            bits.append(nll / LN2 / held.chars_per_token)
            exact = exact and rows == 1
        metrics: dict[str, Any] = {"val_loss": float(np.mean(losses)), "val_bits_per_char": float(np.mean(bits))}
        if self.held[0].name is not None:
            metrics["val_styles"] = {
                h.name: {"val_loss": loss, "val_bits_per_char": b} for h, loss, b in zip(self.held, losses, bits)
            }
        if final:
            metrics["val_exact"] = exact
        return metrics["val_loss"], metrics

    @staticmethod
    def headline(metrics: dict[str, Any]) -> str:
        if "val_styles" in metrics:
            shown = ", ".join(f"{name} {m['val_bits_per_char']:.3f}" for name, m in metrics["val_styles"].items())
            return f"validation {metrics['val_loss']:.4f} nats/token (mean of styles); bits/char: {shown}"
        return f"validation {metrics['val_loss']:.4f} nats/token"

    @staticmethod
    def brief(metrics: dict[str, Any]) -> str:
        return f"{metrics['val_loss']:.3f}"

    @staticmethod
    def logged(metrics: dict[str, Any], best: bool) -> dict[str, Any]:
        styles = metrics.get("val_styles")
        return logged_evaluation(
            metrics, best, {n: m["val_bits_per_char"] for n, m in styles.items()} if styles else None
        )

    @staticmethod
    def best_line(metrics: dict[str, Any]) -> str:
        loss, bits = metrics.get("val_loss", math.inf), metrics.get("val_bits_per_char", math.nan)
        return f"best validation loss {loss:.4f} nats/token ({bits:.4f} bits/char)"


def _columns(task: dict[str, Any]) -> bool:
    return task.get("record_layout") == "columns"


def _style_lanes(folder: Path, styles: list[dict[str, Any]], train: np.ndarray, val: np.ndarray, columns: bool):  # noqa: ANN202
    """A style run's lanes and held-out texts: each style's tokens, cut from the shared files."""
    starts_all = None
    if any(s.get("records") for s in styles):
        count = sum(s["train_records"] + 1 for s in styles if s.get("records"))
        starts_all = read_tokens(folder / checkpoint.TRAIN_RECORDS_FILE, np.dtype(np.int64), count)
    lanes, held = [], []
    at = val_at = starts_at = first_row = 0
    for index, s in enumerate(styles):
        tokens = train[at : at + s["train_tokens"]]
        val_tokens = val[val_at : val_at + s["val_tokens"]]
        at, val_at = at + s["train_tokens"], val_at + s["val_tokens"]
        starts = None
        if s.get("records"):
            starts = starts_all[starts_at : starts_at + s["train_records"] + 1]
            starts_at += s["train_records"] + 1
        per_token = s["train_chars"] / s["train_tokens"]
        lanes.append(Lane(tokens, starts, s["rows"], first_row, per_token, index, columns=columns))
        held.append(Held(val_tokens, _held_per_token(s, bool(s.get("records"))), s["name"], index))
        first_row += s["rows"]
    return lanes, held


def _held_per_token(info: dict[str, Any], records: bool) -> float:
    """Held-out characters a predicted token stands for, as `charnn eval` counts them: the predictions are all
    the tokens but the first, and cover the characters but those of the first token (a record run's first
    token is its boundary, which stands for none). Runs made before ``val_first_chars`` divide by every token."""
    first = info.get("val_first_chars")
    if records:
        return info["val_chars"] / (info["val_tokens"] - 1)
    if first is None:
        return info["val_chars"] / info["val_tokens"]
    return (info["val_chars"] - first) / (info["val_tokens"] - 1)


def read_tokens(path: Path, dtype: np.dtype, count: int | None = None) -> np.ndarray:
    """The token file as a copy-on-write memory map: pages are read as training reaches them."""
    size = path.stat().st_size if path.is_file() else -1
    if size < 0 or (count is not None and size != count * dtype.itemsize) or size % dtype.itemsize:
        raise CheckpointError(f"{path} is missing or not the size config.json says; the run cannot be resumed")
    return np.memmap(path, dtype=dtype, mode="c", shape=(size // dtype.itemsize,))
