"""The training loop: step, report, evaluate, save, roll back; one instance per session.

charnn.tasks.lm.prepare sets a run up (new, resumed or fine-tuned) and hands it to ``Loop`` with
its task (charnn.tasks): the task says what a step's loss is and how validation scores
the model; the loop owns everything else, for every kind of run alike.
Under torchrun each process runs a Loop on its own rows of the stream; decisions
that must agree (stop, budget, schedule) are taken from the maximum over ranks, and
only rank 0 evaluates, writes files and emits events.
"""

from __future__ import annotations

import copy
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from charnn.config import TrainConfig
from charnn.device import resolve_bf16
from charnn.errors import TrainingDiverged
from charnn.events import Evaluated, Event, Finished, Progress, RolledBack, Started
from charnn.files import remove_stale_temporaries
from charnn.model import State, count_parameters
from charnn.runs import checkpoint
from charnn.runs.folder import RUN_FOLDER_FILES
from charnn.runs.resume_file import Position, load_resume, save_resume
from charnn.training.distributed import World
from charnn.training.optim import clip_gradients, lr_at, make_optimizer

MAX_BAD_STEPS = 8
"""Non-finite steps in a row before training rolls back to the last good state."""
MAX_ROLLBACKS = 3
"""Rollbacks (each halving the learning rate) before training gives up."""


class _Window:
    """Statistics of the steps since the last progress report, kept on the device.

    They are added up without reading anything back to the host, so a CUDA step never
    waits for the GPU; ``_report`` reads them all at once.
    """

    def __init__(self, step: int, device: torch.device) -> None:
        self.start_step, self.start_time = step, time.perf_counter()
        zero = torch.zeros((), device=device)
        self.loss_sum, self.good, self.norm_sum, self.norm_max, self.clipped = (zero.clone() for _ in range(5))

    def add(self, loss: torch.Tensor, norm: torch.Tensor, finite: torch.Tensor, clip: float) -> None:
        """One step: its loss and gradient norm count when they are finite (the update was applied)."""
        self.loss_sum += torch.where(finite, loss, 0.0)
        kept = torch.where(finite, norm, 0.0)
        self.norm_sum += kept
        torch.maximum(self.norm_max, kept, out=self.norm_max)
        self.good += finite
        if clip > 0:
            self.clipped += kept > clip


class Loop:
    """One training session's state and its step / evaluate / save cycle."""

    def __init__(
        self,
        model: torch.nn.Module,
        task: Any,
        config: TrainConfig,
        folder: Path,
        device: torch.device,
        run_config: dict[str, Any],
        on_event: Callable[[Event], None],
        stop: threading.Event | None,
        world: World | None = None,
        fresh_model: Callable[[], torch.nn.Module] | None = None,
    ) -> None:
        self.model, self.task, self.config, self.folder = model, task, config, folder
        self.device, self.run_config, self.stop = device, run_config, stop
        self.world = world or World()
        self.fresh_model = fresh_model or (lambda: copy.deepcopy(model))
        self.emit = on_event if self.world.main else (lambda event: None)
        self.bf16 = resolve_bf16(config.precision, device)
        self.optimizer = make_optimizer(model, config)
        self.net = model
        if self.world.active:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        self.position = Position()
        self.carry = task.initial_carry()
        self.resumed_from: int | None = None
        self.session_start = time.perf_counter()
        self.elapsed_before = 0.0
        self.metrics = open(folder / checkpoint.METRICS_FILE, "a", encoding="utf-8") if self.world.main else None

    def _autocast(self) -> torch.autocast:
        """The precision context of a forward pass (bf16 autocast where it pays, else a no-op)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _seed_rank(self, step: int) -> None:
        """Give each rank after the first its own dropout masks (rank 0 keeps the run's RNG stream).

        Seeded afresh at every step from (seed, rank, step), so the masks of a step do not
        depend on where the run was resumed: the saved RNG state is rank 0's alone.
        """
        if self.world.active and not self.world.main:
            torch.manual_seed(hash((self.config.seed, self.world.rank, step)) % 2**63)

    # -- time and budget -------------------------------------------------------------

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.session_start

    def fraction(self, elapsed: float) -> float:
        c = self.config
        parts = [self.position.step / c.steps if c.steps else 0.0, elapsed / c.time_budget if c.time_budget else 0.0]
        return min(1.0, max(parts))

    # -- the run ---------------------------------------------------------------------

    def restore(self) -> None:
        """Continue from the run folder's resume state (truncating the log to match it)."""
        if self.world.main:
            remove_stale_temporaries(self.folder, RUN_FOLDER_FILES)  # the run's lock is ours: no live writer's
        self.world.barrier()
        self.carry, self.position = self._load_resume()
        if self.world.main:
            self.metrics.close()
            with open(self.folder / checkpoint.METRICS_FILE, "a+b") as f:
                f.truncate(self.position.metrics_bytes)  # lines after the checkpoint will be written again
            self.metrics = open(self.folder / checkpoint.METRICS_FILE, "a", encoding="utf-8")
        self.resumed_from = self.position.step

    def _load_resume(self) -> tuple[State, Position]:
        carry, position = load_resume(self.folder, self.model, self.optimizer, self.task.carry_template())
        return self.task.own_rows(carry), position

    def run(self) -> Finished:
        c = self.config
        self.emit(
            Started(
                self.folder,
                count_parameters(self.model),
                str(self.device),
                self.bf16,
                self.task.train_tokens,
                self.task.val_tokens,
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
            # Stopped, or interrupted (asked twice: at once), it keeps the best model so far, evaluating only
            # where there is none yet.
            if reason == "budget" or not (self.folder / checkpoint.MODEL_FILE).exists():
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
            if self.metrics is not None:
                self.metrics.close()
        return self._finished(elapsed, reason)

    def already_complete(self) -> Finished:
        """End a session on a run whose budget was already spent: nothing to train.

        The results are written again: a kill after the last checkpoint may have kept them
        from config.json, and restoring cut the log back to that checkpoint.
        """
        p = self.position
        try:
            self._write_results(p.elapsed, "budget")
        finally:
            if self.metrics is not None:
                self.metrics.close()
        return self._finished(p.elapsed, "complete")

    def _finished(self, elapsed: float, reason: str) -> Finished:
        p = self.position
        return Finished(
            self.folder, p.step, elapsed, reason, p.best_loss, p.best_metrics, self.task.best_line(p.best_metrics)
        )

    def _train(self) -> str:
        c = self.config
        self.net.train()
        window = _Window(self.position.step, self.device)
        self._clear_bad_run()
        while True:
            stop = self.stop is not None and self.stop.is_set()
            fraction, stop = self.world.max(self.fraction(self.elapsed()), float(stop))
            if fraction >= 1.0:
                return "budget"
            if stop:
                return "stopped"
            lr = lr_at(self.position.step, fraction, c) * self.position.lr_scale
            self._step(lr, window)
            step = self.position.step
            if step % c.log_every == 0:
                # The host reads the device's statistics here only: a CUDA step never waits for the GPU.
                if int(self.worst_bad_run) >= MAX_BAD_STEPS:
                    self._roll_back()
                    window = _Window(self.position.step, self.device)
                    self._clear_bad_run()
                    continue
                self._report(window, lr)
                window = _Window(step, self.device)
            if step % c.eval_every == 0:
                self._evaluate()
                self.position.elapsed = self.elapsed()
                self.save_resume()
                self.net.train()

    def _clear_bad_run(self) -> None:
        """Non-finite steps in a row (now, and the most since the last report), counted on the device."""
        self.bad_run = torch.zeros((), device=self.device)
        self.worst_bad_run = torch.zeros((), device=self.device)

    def _step(self, lr: float, window: _Window) -> None:
        """One optimizer step on the next window; a non-finite one changes no weight.

        Whether the step was finite is decided on the device: the fused optimizer skips
        its whole update (moments and step count included) where ``found_inf`` is 1, as
        for a gradient scaler. The loop reads the verdicts at the report interval.
        """
        c = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        self._seed_rank(self.position.step)
        loss, carry = self.task.loss(self.net, self.position.step, self.carry, self._autocast)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # The norm is of the gradients averaged over all ranks, so every rank decides alike.
        norm = clip_gradients(self.model.parameters(), c.clip).detach()
        self.position.step += 1
        finite = torch.isfinite(norm)
        if self.optimizer.defaults.get("fused"):
            self.optimizer.found_inf = (~finite).float()
            self.optimizer.step()
        elif finite:  # an optimizer without the fused kernel (MPS): decided on the host
            self.optimizer.step()
        # A non-finite step's carried state starts afresh (zeros, as a new pass's).
        self.carry = [tuple(torch.where(finite, s.detach(), 0.0) for s in layer) for layer in carry]
        window.add(loss.detach(), norm, finite, c.clip)
        self.bad_run = (self.bad_run + 1) * ~finite
        torch.maximum(self.worst_bad_run, self.bad_run, out=self.worst_bad_run)

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
        self.carry, restored = self._load_resume()
        restored.lr_scale, restored.rollbacks = scale, rollbacks
        restored.elapsed = self.elapsed()
        restored.metrics_bytes = p.metrics_bytes
        self.position = restored
        event = RolledBack(failed_at, restored.step, scale, rollbacks)
        self._log({"event": "rollback", **asdict(event)})
        self.emit(event)

    def _report(self, window: _Window, lr: float) -> None:
        steps = self.position.step - window.start_step
        loss_sum = float(self.world.mean(window.loss_sum))
        if not self.world.main:
            return
        good, norm_sum, norm_max, clipped = torch.stack(
            [window.good, window.norm_sum, window.norm_max, window.clipped]
        ).tolist()
        chars = steps * self.task.chars_per_step
        elapsed = self.elapsed()
        event = Progress(
            step=self.position.step,
            loss=loss_sum / good if good else math.nan,
            lr=lr,
            grad_norm=norm_sum / good if good else math.nan,
            grad_norm_max=norm_max if good else math.nan,
            clipped=int(clipped),
            skipped=steps - int(good),
            chars_per_sec=chars / max(1e-9, time.perf_counter() - window.start_time),
            elapsed=elapsed,
            fraction=self.fraction(elapsed),
        )
        self._log({"event": "train", **asdict(event)})
        self.emit(event)

    def _evaluate(self) -> None:
        p = self.position
        p.evaluated_step = p.step
        if self.world.main:
            score, metrics = self.task.evaluate(self.model, final=False)
            is_best = score < p.best_score
            event = Evaluated(
                p.step, metrics["val_loss"], is_best, metrics, self.task.headline(metrics), self.task.brief(metrics)
            )
            self._log(
                {"event": "eval", "elapsed": self.elapsed(), "step": p.step, **self.task.logged(metrics, is_best)}
            )
            if is_best:
                p.best_score, p.best_loss, p.best_step = score, metrics["val_loss"], p.step
                p.best_metrics = metrics
                checkpoint.save_model(self.folder, self.model)
            self.emit(event)
        self.world.barrier()

    def _final_exact_eval(self) -> None:
        """Score the kept model on the whole validation split."""
        p = self.position
        if not self.world.main:
            return
        model = self.model
        if p.best_step != p.step:
            model = self.fresh_model()  # a new network, as loading the run folder would make it (and draw)
            checkpoint.load_weights(self.folder, model)
            model.to(self.device).eval()
        _, metrics = self.task.evaluate(model, final=True)
        p.best_metrics.update(metrics)
        p.best_loss = metrics["val_loss"]

    def save_resume(self) -> None:
        if not all(torch.isfinite(t).all() for t in self.model.state_dict().values()):
            return  # never keep a state that holds NaN or Inf as the one to go back to
        carry = [tuple(self.world.gather_rows(s, dim=1) for s in layer) for layer in self.carry]
        if self.world.main:
            self.metrics.flush()
            self.position.metrics_bytes = (self.folder / checkpoint.METRICS_FILE).stat().st_size
            save_resume(self.folder, self.model, self.optimizer, carry, self.position)
        self.world.barrier()

    def _write_results(self, elapsed: float, reason: str) -> None:
        if not self.world.main:
            return
        p = self.position
        self.run_config["results"] = {
            "steps": p.step,
            "elapsed_seconds": round(elapsed, 3),
            "stopped": reason,
            "best_step": p.best_step,
            "rollbacks": p.rollbacks,
            "processes": self.world.size,
            **p.best_metrics,
        }
        checkpoint.write_config(self.folder, self.run_config)
        self._log({"event": "end", **self.run_config["results"]})

    def _log(self, record: dict[str, Any]) -> None:
        if self.metrics is not None:
            self.metrics.write(json.dumps(record, default=str) + "\n")
            self.metrics.flush()
