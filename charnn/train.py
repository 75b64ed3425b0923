"""Training: truncated BPTT over a laid-out stream, with clipping, a schedule,
validation, the best model kept, exact resume, and a guard against NaN/Inf.

The trainer knows nothing of terminals: it reports through ``on_event`` with the
dataclasses of charnn.events, and the CLI decides how to show them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
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
from charnn.errors import CheckpointError, ConfigError, CorpusError, TrainingDiverged
from charnn.evaluate import LN2, total_nll
from charnn.events import Evaluated, Event, Finished, Progress, RolledBack, Started
from charnn.model import RecurrentLM, count_parameters, detach_state
from charnn.resume import Position, load_resume, save_resume
from charnn.tokenizers import build_tokenizer, load_tokenizer

PERIODIC_EVAL_TOKENS = 1 << 20
"""Periodic validation reads at most this many tokens; the final one reads all."""
EXACT_EVAL_TOKENS = 1 << 20
"""Up to this size the final validation is exact; beyond, segments of this size are scored side by side."""
MAX_BAD_STEPS = 8
"""Non-finite steps in a row before training rolls back to the last good state."""
MAX_ROLLBACKS = 3
"""Rollbacks (each halving the learning rate) before training gives up."""


@dataclass
class _Data:
    train: np.ndarray
    val: np.ndarray
    chars_per_token: float
    """Training characters per token, to report characters per second."""
    val_chars_per_token: float
    """Validation characters per token, to report bits per character."""


def train(
    corpus: Corpus,
    folder: Path,
    model_options: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    *,
    tokenizer_kind: str = "char",
    tokenizer_options: dict[str, Any] | None = None,
    val_text: str | None = None,
    overwrite: bool = False,
    init_from: Path | None = None,
    on_event: Callable[[Event], None] = lambda event: None,
    stop: threading.Event | None = None,
) -> Finished:
    """Train a new model on ``corpus``, keeping the best one in the run folder ``folder``.

    ``init_from`` fine-tunes: the new run starts from that run's best weights, with its
    model settings and tokenizer (which must cover the corpus), and a fresh optimizer.
    Everything that can be checked is checked before the folder is touched. Setting
    ``stop`` ends training after the current step with a resumable checkpoint.
    """
    config = config or TrainConfig()
    folder = Path(folder)
    train_text, val_text, val_source = _split(corpus, config, val_text)
    source = None
    if init_from is not None:
        source = checkpoint.load_run(init_from)
        tokenizer = source.tokenizer
    else:
        tokenizer = build_tokenizer(tokenizer_kind, train_text, held_out=val_text, **(tokenizer_options or {}))
    dtype = token_dtype(tokenizer.vocab_size)
    with warnings.catch_warnings(record=source is not None):
        train_tokens = tokenizer.encode(train_text).astype(dtype, copy=False)
        val_tokens = tokenizer.encode(val_text).astype(dtype, copy=False)
    if source is not None:
        _check_vocabulary_fits(init_from, tokenizer, train_text, train_tokens)
        _check_vocabulary_fits(init_from, tokenizer, val_text, val_tokens)
    if len(val_tokens) < 2:
        raise CorpusError(
            f"the validation split has {len(val_tokens)} token(s), too few to measure; "
            "raise --val-fraction, give a longer corpus, or pass --val FILE"
        )
    TBPTTStream(train_tokens, config.batch_size, config.seq_len)  # fails early if the text is too short
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    if source is not None:
        model_config, model = source.model.config, source.model.to(device)
    else:
        model_config = ModelConfig(vocab_size=tokenizer.vocab_size, **(model_options or {}))
        model = RecurrentLM(model_config).to(device)

    checkpoint.prepare_run_folder(folder, overwrite)
    tokenizer.save(folder)
    checkpoint.atomic_write_text(folder / checkpoint.VALIDATION_FILE, val_text)
    checkpoint.atomic_write(folder / checkpoint.TRAIN_TOKENS_FILE, train_tokens.tofile)
    checkpoint.atomic_write(folder / checkpoint.VAL_TOKENS_FILE, val_tokens.tofile)
    run_config = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model_config.to_dict(),
        "tokenizer": {"kind": tokenizer.kind, "file": tokenizer.file_name},
        "training": config.to_dict(),
        "data": {
            "sources": list(corpus.sources),
            "corpus_sha256": corpus_digest(corpus.text),
            "validation": val_source,
            "token_dtype": dtype.name,
            "train_chars": len(train_text),
            "val_chars": len(val_text),
            "train_tokens": int(len(train_tokens)),
            "val_tokens": int(len(val_tokens)),
        },
    }
    if init_from is not None:
        run_config["init_from"] = str(init_from)
    checkpoint.write_config(folder, run_config)
    data = _Data(train_tokens, val_tokens, len(train_text) / len(train_tokens), len(val_text) / len(val_tokens))
    loop = _Loop(model, data, config, folder, device, run_config, on_event, stop)
    loop.save_resume()
    return loop.run()


def resume(
    folder: Path,
    *,
    steps: int | None = None,
    time_budget: float | None = None,
    corpus: Corpus | None = None,
    on_event: Callable[[Event], None] = lambda event: None,
    stop: threading.Event | None = None,
) -> Finished:
    """Continue the run in ``folder`` exactly where its last checkpoint left it.

    ``steps`` / ``time_budget`` replace the run's budget; ``corpus``, when given,
    must be the text the run was trained on.
    """
    folder = Path(folder)
    run_config = checkpoint.check_run_folder(folder)
    info = run_config.get("data", {})
    if corpus is not None and corpus_digest(corpus.text) != info.get("corpus_sha256"):
        raise ConfigError(
            f"the corpus differs from the one {folder} was trained on; "
            "pass --overwrite to start a new run there, or --out to choose another folder"
        )
    try:
        config = TrainConfig.from_dict(run_config["training"])
        if steps is not None or time_budget is not None:
            config = dataclasses.replace(config, steps=steps, time_budget=time_budget)
        model_config = ModelConfig.from_dict(run_config["model"])
        if load_tokenizer(folder, run_config["tokenizer"]).vocab_size != model_config.vocab_size:
            raise CheckpointError(f"{folder}: the tokenizer does not fit the model in config.json")
        dtype = np.dtype(info["token_dtype"])
        train_tokens = _read_tokens(folder / checkpoint.TRAIN_TOKENS_FILE, dtype, info["train_tokens"])
        val_tokens = _read_tokens(folder / checkpoint.VAL_TOKENS_FILE, dtype, info["val_tokens"])
        data = _Data(
            train_tokens,
            val_tokens,
            info["train_chars"] / info["train_tokens"],
            info["val_chars"] / info["val_tokens"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{folder}/{checkpoint.CONFIG_FILE} cannot be resumed: {exc}") from None
    device = resolve_device(config.device)
    model = RecurrentLM(model_config).to(device)
    loop = _Loop(model, data, config, folder, device, run_config, on_event, stop)
    loop.restore()
    p = loop.position
    if p.finished and loop.fraction(p.elapsed) >= 1.0:
        loop.metrics.close()
        return Finished(
            folder, p.step, p.elapsed, "complete", p.best_loss, p.best_metrics.get("val_bits_per_char", math.nan)
        )
    return loop.run()


def _check_vocabulary_fits(source: Path, tokenizer: Any, text: str, tokens: np.ndarray) -> None:
    unknown = np.isin(tokens, tokenizer.never_sample())
    if unknown.any():
        missing = sorted({text[i] for i in np.flatnonzero(unknown)[:1000] if i < len(text)})
        raise CorpusError(
            f"the corpus has {int(unknown.sum())} character(s) that {source}'s vocabulary lacks "
            f"(e.g. {''.join(missing[:10])!r}); fine-tuning needs a vocabulary that covers the text: "
            "train a new run instead"
        )


def _split(corpus: Corpus, config: TrainConfig, val_text: str | None) -> tuple[str, str, str]:
    if val_text is None:
        train_text, val_text = split_text(corpus.text, config.val_fraction)
        source = f"last {config.val_fraction:g} of the corpus"
    else:
        train_text, source = corpus.text, "--val file"
    if not train_text.strip():
        raise CorpusError("the training split holds no text; lower --val-fraction or give a longer corpus")
    return train_text, val_text, source


def _read_tokens(path: Path, dtype: np.dtype, count: int) -> np.ndarray:
    if not path.is_file() or path.stat().st_size != count * dtype.itemsize:
        raise CheckpointError(f"{path} is missing or not the size config.json says; the run cannot be resumed")
    return np.memmap(path, dtype=dtype, mode="c", shape=(count,))


def corpus_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


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


class _Window:
    """Statistics of the steps since the last progress report."""

    def __init__(self, step: int, device: torch.device) -> None:
        self.start_step, self.start_time = step, time.perf_counter()
        self.loss_sum = torch.zeros((), device=device)
        self.norms: list[torch.Tensor] = []
        self.clipped = self.skipped = 0


class _Loop:
    """One training session's state and its step / evaluate / save cycle."""

    def __init__(self, model, data, config, folder, device, run_config, on_event, stop) -> None:  # noqa: ANN001
        self.model, self.data, self.config, self.folder = model, data, config, folder
        self.device, self.run_config, self.emit, self.stop = device, run_config, on_event, stop
        self.bf16 = resolve_bf16(config.precision, device)
        self.optimizer = make_optimizer(model, config)
        self.stream = TBPTTStream(data.train, config.batch_size, config.seq_len)
        # The rows stay in their compact dtype; each window is widened to int64 on use.
        self.rows = torch.from_numpy(np.ascontiguousarray(self.stream.rows)).to(device)  # (B, L)
        self.position = Position()
        self.carry = model.initial_state(config.batch_size, device)
        self.resumed_from: int | None = None
        self.session_start = time.perf_counter()
        self.elapsed_before = 0.0
        self.metrics = open(folder / checkpoint.METRICS_FILE, "a", encoding="utf-8")

    # -- time and budget -------------------------------------------------------------

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.session_start

    def fraction(self, elapsed: float) -> float:
        c = self.config
        parts = [self.position.step / c.steps if c.steps else 0.0, elapsed / c.time_budget if c.time_budget else 0.0]
        return min(1.0, max(parts))

    # -- the run ---------------------------------------------------------------------

    def restore(self) -> None:
        checkpoint.remove_stale_temporaries(self.folder)
        self.carry, self.position = load_resume(self.folder, self.model, self.optimizer, self.config.batch_size)
        self.metrics.close()
        with open(self.folder / checkpoint.METRICS_FILE, "a+b") as f:
            f.truncate(self.position.metrics_bytes)  # lines after the checkpoint will be written again
        self.metrics = open(self.folder / checkpoint.METRICS_FILE, "a", encoding="utf-8")
        self.resumed_from = self.position.step

    def run(self) -> Finished:
        c = self.config
        self.emit(
            Started(
                self.folder,
                count_parameters(self.model),
                str(self.device),
                self.bf16,
                len(self.data.train),
                len(self.data.val),
                c.steps,
                c.time_budget,
                self.resumed_from,
            )
        )
        self.elapsed_before, self.session_start = self.position.elapsed, time.perf_counter()
        reason = "budget"
        try:
            reason = self._train()
        except KeyboardInterrupt:
            reason = "interrupted"  # the state in memory may be half-updated: it is not saved for resuming
        try:
            elapsed = self.elapsed()
            if reason != "stopped" or not (self.folder / checkpoint.MODEL_FILE).exists():
                if self.position.evaluated_step != self.position.step:
                    self._evaluate()
            if reason == "budget":
                self._final_exact_eval()
            self.position.elapsed = elapsed
            self.position.finished = reason == "budget"
            if reason != "interrupted":
                self.save_resume()
            self._write_results(elapsed, reason)
        finally:
            self.metrics.close()
        p = self.position
        return Finished(
            self.folder, p.step, elapsed, reason, p.best_loss, p.best_metrics.get("val_bits_per_char", math.nan)
        )

    def _train(self) -> str:
        c, model = self.config, self.model
        model.train()
        window = _Window(self.position.step, self.device)
        bad_in_a_row = 0
        while True:
            fraction = self.fraction(self.elapsed())
            if fraction >= 1.0:
                return "budget"
            if self.stop is not None and self.stop.is_set():
                return "stopped"
            lr = lr_at(self.position.step, fraction, c) * self.position.lr_scale
            good = self._step(lr, window)
            bad_in_a_row = 0 if good else bad_in_a_row + 1
            if bad_in_a_row >= MAX_BAD_STEPS:
                self._roll_back()
                bad_in_a_row = 0
                window = _Window(self.position.step, self.device)
                continue
            step = self.position.step
            if step % c.log_every == 0:
                self._report(window, lr)
                window = _Window(step, self.device)
            if step % c.eval_every == 0:
                self._evaluate()
                self.position.elapsed = self.elapsed()
                self.save_resume()
                model.train()

    def _step(self, lr: float, window: _Window) -> bool:
        """One optimizer step on the next window; False when it was skipped as non-finite."""
        c, model = self.config, self.model
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        t = (self.position.step % self.stream.windows_per_epoch) * c.seq_len
        if t == 0:
            self.carry = model.initial_state(c.batch_size, self.device)  # a new pass over the text
        x = self.rows[:, t : t + c.seq_len].long()  # (B, T)
        y = self.rows[:, t + 1 : t + c.seq_len + 1].long()  # (B, T)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits, carry = model(x, self.carry)  # (B, T, V)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = clip_gradients(model.parameters(), c.clip)
        self.position.step += 1
        if not (torch.isfinite(norm) and torch.isfinite(loss)):
            # A non-finite step never reaches the weights; the carried state starts afresh.
            window.skipped += 1
            self.carry = model.initial_state(c.batch_size, self.device)
            return False
        self.optimizer.step()
        self.carry = detach_state(carry)
        window.loss_sum += loss.detach()
        window.norms.append(norm.detach())
        window.clipped += int(c.clip > 0 and norm > c.clip)
        return True

    def _roll_back(self) -> None:
        """Go back to the last saved good state with half the learning rate, or give up."""
        p = self.position
        if p.rollbacks >= MAX_ROLLBACKS:
            raise TrainingDiverged(
                f"training diverged: {MAX_BAD_STEPS} non-finite steps in a row at step {p.step}, even after "
                f"{p.rollbacks} rollbacks to a learning rate of {self.config.lr * p.lr_scale:.2e}; the last good "
                f"state is kept in {self.folder}; train again with a lower --lr"
            )
        failed_at, scale, rollbacks = p.step, p.lr_scale / 2, p.rollbacks + 1
        self.carry, restored = load_resume(self.folder, self.model, self.optimizer, self.config.batch_size)
        restored.lr_scale, restored.rollbacks = scale, rollbacks
        restored.elapsed = self.elapsed()
        restored.metrics_bytes = p.metrics_bytes
        self.position = restored
        event = RolledBack(failed_at, restored.step, scale, rollbacks)
        self._log({"event": "rollback", **asdict(event)})
        self.emit(event)

    def _report(self, window: _Window, lr: float) -> None:
        c = self.config
        steps = self.position.step - window.start_step
        norms = torch.stack(window.norms) if window.norms else torch.full((1,), math.nan)
        chars = steps * c.batch_size * c.seq_len * self.data.chars_per_token
        elapsed = self.elapsed()
        event = Progress(
            step=self.position.step,
            loss=float(window.loss_sum) / len(window.norms) if window.norms else math.nan,
            lr=lr,
            grad_norm=float(norms.mean()),
            grad_norm_max=float(norms.max()),
            clipped=window.clipped,
            skipped=window.skipped,
            chars_per_sec=chars / max(1e-9, time.perf_counter() - window.start_time),
            elapsed=elapsed,
            fraction=self.fraction(elapsed),
        )
        self._log({"event": "train", **asdict(event)})
        self.emit(event)

    def _evaluate(self) -> None:
        p = self.position
        p.evaluated_step = p.step
        val = self.data.val[:PERIODIC_EVAL_TOKENS]
        nll = total_nll(self.model, val, rows=8) / (len(val) - 1)
        is_best = nll < p.best_loss
        event = Evaluated(p.step, nll, nll / LN2 / self.data.val_chars_per_token, is_best)
        self._log({"event": "eval", "elapsed": self.elapsed(), **asdict(event)})
        if is_best:
            p.best_loss, p.best_step = nll, p.step
            p.best_metrics = {"val_loss": nll, "val_bits_per_char": event.val_bits_per_char}
            checkpoint.save_model(self.folder, self.model)
        self.emit(event)

    def _final_exact_eval(self) -> None:
        """Score the kept model on the whole validation split, state carried."""
        p = self.position
        model = self.model
        if p.best_step != p.step:
            from charnn.checkpoint import load_run

            model = load_run(self.folder, device=str(self.device)).model
        rows = max(1, math.ceil(len(self.data.val) / EXACT_EVAL_TOKENS))
        nll = total_nll(model, self.data.val, rows=rows) / (len(self.data.val) - 1)
        p.best_metrics.update(
            val_loss=nll, val_bits_per_char=nll / LN2 / self.data.val_chars_per_token, val_exact=rows == 1
        )
        p.best_loss = nll

    def save_resume(self) -> None:
        if not all(torch.isfinite(t).all() for t in self.model.state_dict().values()):
            return  # never keep a state that holds NaN or Inf as the one to go back to
        self.metrics.flush()
        self.position.metrics_bytes = (self.folder / checkpoint.METRICS_FILE).stat().st_size
        save_resume(self.folder, self.model, self.optimizer, self.carry, self.position)

    def _write_results(self, elapsed: float, reason: str) -> None:
        p = self.position
        self.run_config["results"] = {
            "steps": p.step,
            "elapsed_seconds": round(elapsed, 3),
            "stopped": reason,
            "best_step": p.best_step,
            "rollbacks": p.rollbacks,
            **p.best_metrics,
        }
        checkpoint.write_config(self.folder, self.run_config)
        self._log({"event": "end", **self.run_config["results"]})

    def _log(self, record: dict[str, Any]) -> None:
        self.metrics.write(json.dumps(record, default=str) + "\n")
        self.metrics.flush()
