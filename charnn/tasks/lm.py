"""The language-model task: B parallel streams of the text, read in TBPTT windows.

The state is carried from each window to the next in every row (see
charnn.data.TBPTTStream) and restarts with each pass over the text. Validation is
the loss per token over the held-out text, state carried; bits per character make
char and subword runs compare. A reverse run (``charnn train --reverse``) reads
every token sequence right to left. A record run (charnn.records) reads its training
records in a fresh seeded order each pass, and its model restarts at each record.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from charnn import checkpoint, records
from charnn.data import TBPTTStream
from charnn.errors import CheckpointError
from charnn.evaluate import LN2, total_nll
from charnn.model import State

PERIODIC_EVAL_TOKENS = 1 << 20
"""Periodic validation reads at most this many tokens; the final one reads all."""
EXACT_EVAL_TOKENS = 1 << 20
"""Up to this size the final validation is exact; beyond, segments of this size are scored side by side."""


class LanguageModelTask:
    kind = "lm"

    def __init__(
        self,
        model: Any,
        train: np.ndarray,
        val: np.ndarray,
        chars_per_token: float,
        val_chars_per_token: float,
        config: Any,
        world: Any,
        device: torch.device,
        record_starts: np.ndarray | None = None,
    ) -> None:
        self.model, self.val, self.config, self.device = model, val, config, device
        self.val_chars_per_token = val_chars_per_token
        self.train, self.record_starts = train, record_starts
        self.stream = TBPTTStream(train, config.batch_size, config.seq_len)
        self.my_rows = world.rows(config.batch_size)
        self.local_batch = self.my_rows.stop - self.my_rows.start
        self.pass_laid_out = -1
        self._lay_out(0)
        self.chars_per_step = config.batch_size * config.seq_len * chars_per_token
        self.train_tokens, self.val_tokens = len(train), len(val)

    @classmethod
    def from_folder(cls, folder: Path, run_config: dict[str, Any], model, config, world, device):  # noqa: ANN001, ANN206
        info = run_config.get("data", {})
        try:
            dtype = np.dtype(info["token_dtype"])
            train = read_tokens(folder / checkpoint.TRAIN_TOKENS_FILE, dtype, info["train_tokens"])
            val = read_tokens(folder / checkpoint.VAL_TOKENS_FILE, dtype, info["val_tokens"])
            # A record run's held-out characters are those its predicted tokens stand for (all but the first).
            val_tokens = info["val_tokens"] - 1 if (run_config.get("task") or {}).get("records") else info["val_tokens"]
            per_token = info["train_chars"] / info["train_tokens"], info["val_chars"] / val_tokens
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            raise CheckpointError(f"{folder}/{checkpoint.CONFIG_FILE} cannot be resumed: {exc}") from None
        task = run_config.get("task") or {}
        if task.get("reverse"):
            train, val = np.ascontiguousarray(train[::-1]), np.ascontiguousarray(val[::-1])
        starts = None
        if task.get("records"):
            try:
                starts = read_tokens(
                    folder / checkpoint.TRAIN_RECORDS_FILE, np.dtype(np.int64), info["train_records"] + 1
                )
            except (KeyError, TypeError) as exc:
                raise CheckpointError(f"{folder}/{checkpoint.CONFIG_FILE} cannot be resumed: {exc}") from None
        return cls(model, train, val, *per_token, config, world, device, starts)

    def _lay_out(self, epoch: int) -> None:
        """The rows of pass ``epoch``: the text as it is, or the records in that pass's order."""
        if epoch == self.pass_laid_out:
            return
        if self.record_starts is None:
            if self.pass_laid_out >= 0:
                return  # a stream is the same every pass
            rows = self.stream.rows
        else:
            order = records.epoch_order(len(self.record_starts) - 1, self.config.seed, epoch)
            tokens = records.layout(self.train, self.record_starts, order)
            rows = TBPTTStream(tokens, self.config.batch_size, self.config.seq_len).rows
        # The rows stay in their compact dtype; each window is widened to int64 on use.
        self.rows = torch.from_numpy(np.ascontiguousarray(rows[self.my_rows])).to(self.device)  # (B / ranks, L)
        self.pass_laid_out = epoch
        if self.record_starts is not None:
            # A row but the first begins inside a record, from the zero state: what it predicts
            # before its first boundary is not learnt (a record is learnt from its start only).
            at = self.rows == self.model.boundary  # (b, L)
            self.first_boundary = torch.where(at.any(dim=1), at.int().argmax(dim=1), at.shape[1])  # (b,)

    def initial_carry(self) -> State:
        return self.model.initial_state(self.local_batch, self.device)

    def carry_template(self) -> State:
        return self.model.initial_state(self.config.batch_size, self.device)

    def own_rows(self, carry: State) -> State:
        return [tuple(s[:, self.my_rows].contiguous() for s in layer) for layer in carry]

    def loss(self, net, step: int, carry: State, autocast) -> tuple[torch.Tensor, State]:  # noqa: ANN001
        c = self.config
        epoch, window = divmod(step, self.stream.windows_per_epoch)
        t = window * c.seq_len
        if t == 0:
            carry = self.initial_carry()  # a new pass over the text
        self._lay_out(epoch)
        x = self.rows[:, t : t + c.seq_len].long()  # (b, T)
        y = self.rows[:, t + 1 : t + c.seq_len + 1].long()  # (b, T)
        if self.record_starts is not None:
            before = t + torch.arange(c.seq_len, device=y.device)[None, :] < self.first_boundary[:, None]  # (b, T)
            y = y.masked_fill(before, -100)  # cross_entropy's ignore_index
        with autocast():
            logits, carry = net(x, carry)  # (b, T, V)
        return F.cross_entropy(logits.float().flatten(0, 1), y.flatten()), carry

    def evaluate(self, model, final: bool) -> tuple[float, dict[str, Any]]:  # noqa: ANN001
        """Loss per token over the held-out text: its start when periodic, all of it when final."""
        if final:
            rows = max(1, math.ceil(len(self.val) / EXACT_EVAL_TOKENS))
            val = self.val
        else:
            rows, val = 8, self.val[:PERIODIC_EVAL_TOKENS]
        nll = total_nll(model, val, rows=rows) / (len(val) - 1)
        metrics: dict[str, Any] = {"val_loss": nll, "val_bits_per_char": nll / LN2 / self.val_chars_per_token}
        if final:
            metrics["val_exact"] = rows == 1
        return nll, metrics


def read_tokens(path: Path, dtype: np.dtype, count: int | None = None) -> np.ndarray:
    """The token file as a copy-on-write memory map: pages are read as training reaches them."""
    size = path.stat().st_size if path.is_file() else -1
    if size < 0 or (count is not None and size != count * dtype.itemsize) or size % dtype.itemsize:
        raise CheckpointError(f"{path} is missing or not the size config.json says; the run cannot be resumed")
    return np.memmap(path, dtype=dtype, mode="c", shape=(size // dtype.itemsize,))
