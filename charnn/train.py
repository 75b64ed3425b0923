"""Training: truncated BPTT over a laid-out stream, with clipping, a schedule,
validation, and the best model kept in the run folder.

The trainer knows nothing of terminals: it reports through ``on_event`` with the
event dataclasses below, and the CLI decides how to show them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from charnn import checkpoint
from charnn.config import ModelConfig, TrainConfig
from charnn.data import Corpus, TBPTTStream, split_text, token_dtype
from charnn.device import resolve_bf16, resolve_device
from charnn.errors import CorpusError
from charnn.evaluate import LN2, total_nll
from charnn.model import RecurrentLM, count_parameters, detach_state
from charnn.tokenizers import Tokenizer, build_tokenizer

PERIODIC_EVAL_TOKENS = 1 << 20
"""Periodic validation reads at most this many tokens; the final one reads all."""
EXACT_EVAL_TOKENS = 1 << 20
"""Up to this size the final validation is exact; beyond, segments of this size are scored side by side."""


@dataclass(frozen=True)
class Started:
    folder: Path
    parameters: int
    device: str
    bf16: bool
    train_tokens: int
    val_tokens: int
    steps: int | None
    time_budget: float | None


@dataclass(frozen=True)
class Progress:
    step: int
    loss: float
    """Mean training loss (nats per token) since the previous report."""
    lr: float
    grad_norm: float
    """Mean gradient norm before clipping since the previous report."""
    grad_norm_max: float
    clipped: int
    """Steps since the previous report whose gradient was clipped."""
    skipped: int
    """Steps since the previous report skipped for a non-finite loss or gradient."""
    chars_per_sec: float
    elapsed: float
    fraction: float
    """Fraction of the budget used, 0..1."""


@dataclass(frozen=True)
class Evaluated:
    step: int
    val_loss: float
    val_bits_per_char: float
    best: bool


@dataclass(frozen=True)
class Finished:
    folder: Path
    steps: int
    elapsed: float
    reason: str
    """'budget' or 'interrupted'."""
    best_val_loss: float
    best_val_bits_per_char: float


Event = Started | Progress | Evaluated | Finished


@dataclass
class _Data:
    tokenizer: Tokenizer
    train: np.ndarray
    val: np.ndarray
    chars_per_token: float
    """Training characters per token, to report characters per second."""
    val_chars_per_token: float
    """Validation characters per token, to report bits per character."""
    info: dict[str, Any]


@dataclass
class _Best:
    loss: float = math.inf
    step: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)


def train(
    corpus: Corpus,
    folder: Path,
    model_options: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    *,
    tokenizer_kind: str = "char",
    val_text: str | None = None,
    overwrite: bool = False,
    on_event: Callable[[Event], None] = lambda event: None,
) -> Finished:
    """Train a model on ``corpus`` and keep the best one in the run folder ``folder``.

    Everything that can be checked is checked before the folder is touched.
    """
    config = config or TrainConfig()
    folder = Path(folder)
    data = _prepare_data(corpus, config, tokenizer_kind, val_text)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model_config = ModelConfig(vocab_size=data.tokenizer.vocab_size, **(model_options or {}))
    model = RecurrentLM(model_config).to(device)
    TBPTTStream(data.train, config.batch_size, config.seq_len)  # fails early if the text is too short

    checkpoint.prepare_run_folder(folder, overwrite)
    data.tokenizer.save(folder)
    checkpoint.atomic_write_text(folder / checkpoint.VALIDATION_FILE, data.info.pop("val_text"))
    run_config = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model_config.to_dict(),
        "tokenizer": {"kind": data.tokenizer.kind, "file": data.tokenizer.file_name},
        "training": config.to_dict(),
        "data": data.info,
    }
    checkpoint.write_config(folder, run_config)
    loop = _Loop(model, data, config, folder, device, run_config, on_event)
    return loop.run()


def _prepare_data(corpus: Corpus, config: TrainConfig, tokenizer_kind: str, val_text: str | None) -> _Data:
    if val_text is None:
        train_text, val_text = split_text(corpus.text, config.val_fraction)
        val_source = f"last {config.val_fraction:g} of the corpus"
    else:
        train_text, val_source = corpus.text, "--val file"
    if not train_text.strip():
        raise CorpusError("the training split holds no text; lower --val-fraction or give a longer corpus")
    tokenizer = build_tokenizer(tokenizer_kind, train_text)
    dtype = token_dtype(tokenizer.vocab_size)
    train_tokens = tokenizer.encode(train_text).astype(dtype, copy=False)
    val_tokens = tokenizer.encode(val_text).astype(dtype, copy=False)
    if len(val_tokens) < 2:
        raise CorpusError(
            f"the validation split has {len(val_tokens)} token(s), too few to measure; "
            "raise --val-fraction, give a longer corpus, or pass --val FILE"
        )
    info = {
        "sources": list(corpus.sources),
        "validation": val_source,
        "train_chars": len(train_text),
        "val_chars": len(val_text),
        "train_tokens": int(len(train_tokens)),
        "val_tokens": int(len(val_tokens)),
        "val_text": val_text,
    }
    return _Data(
        tokenizer,
        train_tokens,
        val_tokens,
        chars_per_token=len(train_text) / max(1, len(train_tokens)),
        val_chars_per_token=len(val_text) / len(val_tokens),
        info=info,
    )


def lr_at(step: int, fraction: float, config: TrainConfig) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay over the budget fraction."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    floor = config.lr * config.min_lr_ratio
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, fraction)))


def clip_gradients(parameters: Iterable[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale gradients so their global L2 norm is at most ``max_norm`` (0: no clipping).

    Returns the norm before clipping, which training logs.
    """
    return torch.nn.utils.clip_grad_norm_(parameters, max_norm if max_norm > 0 else math.inf)


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": other, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.99))


class _Loop:
    """One training run's state and its step / evaluate / save cycle."""

    def __init__(self, model, data, config, folder, device, run_config, on_event) -> None:
        self.model, self.data, self.config, self.folder = model, data, config, folder
        self.device, self.run_config, self.emit = device, run_config, on_event
        self.bf16 = resolve_bf16(config.precision, device)
        self.optimizer = make_optimizer(model, config)
        self.stream = TBPTTStream(data.train, config.batch_size, config.seq_len)
        # The rows stay in their compact dtype; each window is widened to int64 on use.
        self.rows = torch.from_numpy(self.stream.rows).to(device)  # (B, L)
        self.best = _Best()
        self.step = 0
        self.evaluated_step = -1
        self.metrics = open(folder / checkpoint.METRICS_FILE, "a", encoding="utf-8")

    def fraction(self, elapsed: float) -> float:
        c = self.config
        parts = [self.step / c.steps if c.steps else 0.0, elapsed / c.time_budget if c.time_budget else 0.0]
        return min(1.0, max(parts))

    def run(self) -> Finished:
        self.emit(
            Started(
                self.folder,
                count_parameters(self.model),
                str(self.device),
                self.bf16,
                len(self.data.train),
                len(self.data.val),
                self.config.steps,
                self.config.time_budget,
            )
        )
        start = time.perf_counter()
        reason = "budget"
        try:
            self._train(start)
        except KeyboardInterrupt:
            reason = "interrupted"
        elapsed = time.perf_counter() - start
        try:
            if self.evaluated_step != self.step:
                self._evaluate(elapsed)
            if reason == "budget":
                self._final_exact_eval()
            self._write_results(elapsed, reason)
        finally:
            self.metrics.close()
        return Finished(
            self.folder,
            self.step,
            elapsed,
            reason,
            self.best.loss,
            self.best.metrics.get("val_bits_per_char", math.nan),
        )

    def _train(self, start: float) -> None:
        c, model = self.config, self.model
        model.train()
        state = model.initial_state(c.batch_size, self.device)
        loss_sum = torch.zeros((), device=self.device)
        norms: list[torch.Tensor] = []
        clip_fired = skipped = 0
        window_start = time.perf_counter()
        window_step = self.step
        while True:
            elapsed = time.perf_counter() - start
            fraction = self.fraction(elapsed)
            if fraction >= 1.0:
                break
            lr = lr_at(self.step, fraction, c)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            t = (self.step % self.stream.windows_per_epoch) * c.seq_len
            if t == 0:
                state = model.initial_state(c.batch_size, self.device)
            x = self.rows[:, t : t + c.seq_len].long()  # (B, T)
            y = self.rows[:, t + 1 : t + c.seq_len + 1].long()  # (B, T)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                logits, state = model(x, state)  # (B, T, V)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            norm = clip_gradients(model.parameters(), c.clip)
            state = detach_state(state)
            if torch.isfinite(norm) and torch.isfinite(loss):
                self.optimizer.step()
                loss_sum += loss.detach()
                norms.append(norm.detach())
                clip_fired += int(c.clip > 0 and norm > c.clip)
            else:
                # A non-finite step never reaches the weights; the state is reset too.
                skipped += 1
                state = model.initial_state(c.batch_size, self.device)
            self.step += 1
            if self.step % c.log_every == 0:
                now = time.perf_counter()
                self._report(window_step, window_start, now - start, lr, loss_sum, norms, clip_fired, skipped)
                loss_sum.zero_()
                norms, clip_fired, skipped = [], 0, 0
                window_start, window_step = now, self.step
            if self.step % c.eval_every == 0:
                self._evaluate(time.perf_counter() - start)
                model.train()

    def _report(self, window_step, window_start, elapsed, lr, loss_sum, norms, clip_fired, skipped) -> None:
        steps = self.step - window_step
        good = len(norms)
        norm_values = torch.stack(norms) if norms else torch.zeros(1)
        chars = steps * self.config.batch_size * self.config.seq_len * self.data.chars_per_token
        event = Progress(
            step=self.step,
            loss=float(loss_sum) / good if good else math.nan,
            lr=lr,
            grad_norm=float(norm_values.mean()),
            grad_norm_max=float(norm_values.max()),
            clipped=clip_fired,
            skipped=skipped,
            chars_per_sec=chars / max(1e-9, time.perf_counter() - window_start),
            elapsed=elapsed,
            fraction=self.fraction(elapsed),
        )
        self._log({"event": "train", **asdict(event)})
        self.emit(event)

    def _evaluate(self, elapsed: float) -> None:
        self.evaluated_step = self.step
        val = self.data.val[:PERIODIC_EVAL_TOKENS]
        nll = total_nll(self.model, val, rows=8) / (len(val) - 1)
        is_best = nll < self.best.loss
        event = Evaluated(self.step, nll, nll / LN2 / self.data.val_chars_per_token, is_best)
        self._log({"event": "eval", "elapsed": elapsed, **asdict(event)})
        if is_best:
            self.best = _Best(nll, self.step, {"val_loss": nll, "val_bits_per_char": event.val_bits_per_char})
            checkpoint.save_model(self.folder, self.model)
        self.emit(event)

    def _final_exact_eval(self) -> None:
        """Score the kept model on the whole validation split, state carried."""
        if self.best.step != self.step:
            from safetensors.torch import load_file

            self.model.load_state_dict(load_file(self.folder / checkpoint.MODEL_FILE, device=str(self.device)))
        val = self.data.val
        rows = max(1, math.ceil(len(val) / EXACT_EVAL_TOKENS))
        nll = total_nll(self.model, val, rows=rows) / (len(val) - 1)
        self.best.metrics.update(
            val_loss=nll, val_bits_per_char=nll / LN2 / self.data.val_chars_per_token, val_exact=rows == 1
        )
        self.best.loss = nll

    def _write_results(self, elapsed: float, reason: str) -> None:
        self.run_config["results"] = {
            "steps": self.step,
            "elapsed_seconds": round(elapsed, 3),
            "stopped": reason,
            "best_step": self.best.step,
            **self.best.metrics,
        }
        checkpoint.write_config(self.folder, self.run_config)
        self._log({"event": "end", **self.run_config["results"]})

    def _log(self, record: dict[str, Any]) -> None:
        self.metrics.write(json.dumps(record, default=str) + "\n")
        self.metrics.flush()
