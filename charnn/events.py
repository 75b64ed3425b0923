"""What the trainer reports while it runs. The CLI decides how to show each event."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
    resumed_from: int | None = None
    """The step a resumed run continues from (None for a new run)."""


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
    best: bool
    """Whether this model is the best so far (and so the one kept)."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """The task's validation figures, ``val_loss`` among them (charnn.tasks: each kind names its own)."""
    headline: str = ""
    """The task's one line on them, e.g. 'validation accuracy 0.8123, loss 0.4012'."""
    brief: str = ""
    """A few characters of it for a progress bar, e.g. 'acc 0.812'."""


@dataclass(frozen=True)
class RolledBack:
    """Too many non-finite steps in a row: training went back to ``to_step`` with a lower rate."""

    step: int
    to_step: int
    lr_scale: float
    rollbacks: int


@dataclass(frozen=True)
class Notice:
    """A one-line remark on how the run is set up (for stderr)."""

    message: str


@dataclass(frozen=True)
class Finished:
    folder: Path
    steps: int
    elapsed: float
    reason: str
    """'budget', 'stopped' (a stop request, resumable), 'interrupted' (KeyboardInterrupt),
    or 'complete' (a resumed run that had already used its budget: nothing was done)."""
    best_val_loss: float
    best: dict[str, Any] = field(default_factory=dict)
    """The kept model's validation figures, as its task names them."""
    headline: str = ""
    """The task's line on the kept model, e.g. 'best validation accuracy 0.8123 (loss 0.4012)'."""


Event = Started | Progress | Evaluated | RolledBack | Notice | Finished
