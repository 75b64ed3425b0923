"""What the trainer reports while it runs. The CLI decides how to show each event."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
    val_bits_per_char: float
    """NaN where it has no meaning (a classifier)."""
    best: bool
    val_accuracy: float | None = None
    """A classifier's share of validation texts labelled right (a tagger's: of words)."""
    val_f1: float | None = None
    """A BIO tagger's entity F1 (the measure that picks its model)."""
    val_styles: dict[str, float] | None = None
    """A style run's held-out bits per character, style by style (its val_loss is their mean)."""


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
    best_val_bits_per_char: float
    best_val_accuracy: float | None = None
    best_val_f1: float | None = None


Event = Started | Progress | Evaluated | RolledBack | Notice | Finished
