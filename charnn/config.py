"""Settings as frozen, validated dataclasses: one place for every default.

Each ``__post_init__`` names the command-line flag in its error, because that is
where a user meets these values.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from charnn.errors import ConfigError

CELLS = ("rnn", "lstm", "gru")
DEFAULT_TIME_BUDGET = 300.0
"""Seconds of training when neither --steps nor --time is given."""
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")
EMBED_INITS = ("random", "cooccurrence")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass(frozen=True)
class ModelConfig:
    """The shape of a RecurrentLM."""

    vocab_size: int
    """Number of token ids the embedding and the output head cover."""
    cell: str = "lstm"
    """Recurrent cell: 'rnn' (Elman, tanh), 'lstm' or 'gru'."""
    layers: int = 2
    """Stacked recurrent layers."""
    hidden: int = 384
    """Width of each recurrent layer's state."""
    embed: int = 64
    """Width of the token embedding."""
    dropout: float = 0.1
    """Dropout on the embedding, between layers and before the head (training only)."""
    weight_drop: float = 0.0
    """DropConnect on each layer's hidden-to-hidden weights, one mask a window (training only)."""
    residual: bool | None = None
    """Add each layer's input to its output for layers 2.. (None: on when layers >= 2)."""
    tie_weights: bool = False
    """Share the embedding matrix with the output head (a projection bridges hidden != embed)."""
    bidirectional: bool = False
    """Encoders only: a second stack reads each text right to left; heads see both directions."""
    token_dropout: float = 0.0
    """Encoders only: drop each input token's embedding whole with this probability (training only)."""
    records: bool = False
    """Record runs: the last id is the record boundary; the state restarts from zeros where it is read."""
    styles: int = 0
    """Conditional language models: how many styles; a learned vector per style and layer joins every input."""

    def __post_init__(self) -> None:
        _check_types(self)
        _check(self.vocab_size >= 2, f"vocabulary size must be at least 2, got {self.vocab_size}")
        _check(
            self.cell in CELLS,
            f"unknown --cell {self.cell!r}; choose one of: {', '.join(CELLS)}",
        )
        _check(1 <= self.layers <= 16, f"--layers must be between 1 and 16, got {self.layers}")
        _check(1 <= self.hidden <= 16384, f"--hidden must be between 1 and 16384, got {self.hidden}")
        _check(1 <= self.embed <= 16384, f"--embed must be between 1 and 16384, got {self.embed}")
        _check(0.0 <= self.dropout < 1.0, f"--dropout must be in [0, 1), got {self.dropout}")
        _check(0.0 <= self.weight_drop < 1.0, f"--weight-drop must be in [0, 1), got {self.weight_drop}")
        _check(0.0 <= self.token_dropout < 1.0, f"--token-dropout must be in [0, 1), got {self.token_dropout}")
        _check(0 <= self.styles <= 4096, f"a model has 0 to 4096 styles, got {self.styles}")
        if self.residual is None:
            object.__setattr__(self, "residual", self.layers >= 2)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained. Budgets: ``steps``, ``time_budget`` (seconds), or both."""

    seq_len: int = 64
    """Tokens per window of truncated backpropagation through time."""
    batch_size: int = 32
    """Parallel rows of the training stream; each row continues across windows."""
    lr: float = 5e-3
    """Peak learning rate of AdamW."""
    min_lr_ratio: float = 0.05
    """The cosine decay ends at lr * min_lr_ratio when the budget runs out."""
    warmup_steps: int = 50
    """Linear warm-up from 0 to lr over this many steps."""
    weight_decay: float = 0.01
    """AdamW weight decay, applied to matrices only (not biases or norms)."""
    clip: float = 1.0
    """Clip the global gradient norm to this value (0 turns clipping off)."""
    steps: int | None = None
    """Stop after this many optimizer steps."""
    time_budget: float | None = None
    """Stop after this many seconds of training (validation included)."""
    eval_every: int = 250
    """Evaluate on the validation split every this many steps (and at the end)."""
    log_every: int = 10
    """Report progress every this many steps."""
    val_fraction: float = 0.1
    """Fraction of the corpus, taken from its end, held out for validation."""
    seed: int = 1337
    """Seeds initialisation, dropout and everything random in training."""
    device: str = "auto"
    """'auto' (CUDA or MPS when present, else CPU), 'cpu', 'cuda' or 'mps'."""
    precision: str = "auto"
    """'auto' (bf16 autocast where the hardware has fast bf16), 'fp32' or 'bf16'."""
    embed_init: str = "random"
    """A new language model's embedding: 'random', or 'cooccurrence' (charnn.tasks.lm.cooccurrence)."""
    encoder_lr_scale: float = 1.0
    """The embedding and recurrent layers learn at this fraction of the rate (the head at the full
    rate): a warm-started classifier's default is 0.1, so that its few labels adjust what the
    language models learnt rather than overwrite it."""

    def __post_init__(self) -> None:
        if self.steps is None and self.time_budget is None:
            object.__setattr__(self, "time_budget", DEFAULT_TIME_BUDGET)
        _check_types(self)
        _check(1 <= self.seq_len <= 100_000, f"--seq-len must be between 1 and 100000, got {self.seq_len}")
        _check(1 <= self.batch_size <= 65_536, f"--batch-size must be between 1 and 65536, got {self.batch_size}")
        _check(0 < self.lr <= 1.0 and math.isfinite(self.lr), f"--lr must be in (0, 1], got {self.lr}")
        _check(0 <= self.min_lr_ratio <= 1, f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        _check(self.warmup_steps >= 0, f"--warmup must be 0 or more, got {self.warmup_steps}")
        _check(self.weight_decay >= 0, f"--weight-decay must be 0 or more, got {self.weight_decay}")
        _check(self.clip >= 0 and math.isfinite(self.clip), f"--clip must be 0 (off) or more, got {self.clip}")
        _check(self.steps is None or self.steps >= 1, f"--steps must be at least 1, got {self.steps}")
        _check(
            self.time_budget is None or self.time_budget > 0,
            f"--time must be positive, got {self.time_budget}",
        )
        _check(0 <= self.seed < 2**63, f"--seed must be from 0 to 2**63-1, got {self.seed}")
        _check(self.eval_every >= 1, f"--eval-every must be at least 1, got {self.eval_every}")
        _check(self.log_every >= 1, f"--log-every must be at least 1, got {self.log_every}")
        _check(0 < self.val_fraction < 1, f"--val-fraction must be between 0 and 1, got {self.val_fraction}")
        _check(self.device in DEVICES, f"unknown --device {self.device!r}; choose one of: {', '.join(DEVICES)}")
        _check(
            self.precision in PRECISIONS,
            f"unknown --precision {self.precision!r}; choose one of: {', '.join(PRECISIONS)}",
        )
        _check(
            0 <= self.encoder_lr_scale <= 1,
            f"--encoder-lr-scale must be between 0 (frozen) and 1, got {self.encoder_lr_scale}",
        )
        _check(
            self.embed_init in EMBED_INITS,
            f"unknown --embed-init {self.embed_init!r}; choose one of: {', '.join(EMBED_INITS)}",
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class SampleConfig:
    """How text is generated from a trained model."""

    length: int = 500
    """Characters to generate per sample (fewer when a stop string ends it)."""
    temperature: float = 0.8
    """Softmax temperature; 0 means greedy (always the most likely token)."""
    top_k: int = 0
    """Keep only the k most likely tokens (0: no limit)."""
    top_p: float = 1.0
    """Keep the smallest set of tokens whose probability reaches p (1: no limit)."""
    num_samples: int = 1
    """Samples generated together as one batch."""
    seed: int | None = None
    """Same seed, same output; None draws a fresh seed."""
    prime: str = ""
    """Text the samples continue; the model reads it before generating."""
    stop: tuple[str, ...] = field(default_factory=tuple)
    """A sample ends where any of these strings first appears (the string is not printed)."""

    def __post_init__(self) -> None:
        _check_types(self)
        _check(1 <= self.length <= 10_000_000, f"--length must be between 1 and 10000000, got {self.length}")
        _check(
            0 <= self.temperature <= 100 and math.isfinite(self.temperature),
            f"--temp must be between 0 (greedy) and 100, got {self.temperature}",
        )
        _check(self.top_k >= 0, f"--top-k must be 0 (off) or more, got {self.top_k}")
        _check(0 < self.top_p <= 1, f"--top-p must be in (0, 1], got {self.top_p}")
        _check(1 <= self.num_samples <= 4096, f"--num-samples must be between 1 and 4096, got {self.num_samples}")
        _check(all(self.stop), "--stop strings must not be empty")
        _check(
            self.seed is None or -(2**63) <= self.seed < 2**64,
            f"--seed must fit 64 bits (from -2**63 to 2**64-1), got {self.seed}",
        )


CUDA_DEFAULTS: dict[str, Any] = {
    "layers": 2,
    "hidden": 1024,
    "dropout": 0.5,
    "weight_drop": 0.5,
    "batch_size": 128,
    "seq_len": 128,
    "lr": 3e-3,
}
"""What `charnn train` uses on CUDA for these settings when they are not given.

A GPU trains a 2x1024 LSTM faster than a CPU trains a 2x384 one, and a few minutes of it
read a small corpus hundreds of times: the model is wider, and dropout with DropConnect on
the recurrent weights holds it back (without weight drop it overfits tinyshakespeare within
1,300 steps). The
values come from the sweep kept in bench/results/quality.jsonl (device "NVIDIA H100").
"""


def device_defaults(device_type: str) -> dict[str, Any]:
    """The defaults of the settings in CUDA_DEFAULTS on a device type ('cpu', 'cuda', 'mps')."""
    if device_type == "cuda":
        return dict(CUDA_DEFAULTS)
    model, train = ModelConfig(vocab_size=2), TrainConfig()
    return {key: getattr(model, key) if hasattr(model, key) else getattr(train, key) for key in CUDA_DEFAULTS}


def _check_types(config: Any) -> None:
    """Fields hold the types their annotations name (values may come from a JSON file)."""
    for f in fields(config):
        value = getattr(config, f.name)
        kinds = str(f.type)
        if value is None and "None" in kinds:
            continue
        if kinds.startswith("tuple"):
            ok = isinstance(value, tuple)
        elif "bool" in kinds:
            ok = isinstance(value, bool)
        elif "int" in kinds:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif "float" in kinds:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif "str" in kinds:
            ok = isinstance(value, str)
        else:
            ok = True
        _check(ok, f"{f.name} must be {kinds}, got {value!r}")


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__} settings must be a JSON object")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{cls.__name__} has no setting(s) {', '.join(map(repr, unknown))}")
    return cls(**data)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s)?", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds in '90', '90s', '5m', '1.5h' or '1h30m'."""
    cleaned = text.strip().replace(" ", "")
    pos, total = 0, 0.0
    for match in _DURATION.finditer(cleaned):
        if match.start() != pos or not match.group(0):
            break
        unit = (match.group(2) or "s").lower()
        total += float(match.group(1)) * {"h": 3600, "m": 60, "s": 1}[unit]
        pos = match.end()
    if not cleaned or pos != len(cleaned):
        raise ConfigError(f"--time {text!r} is not a duration; write e.g. 90s, 5m, 1h30m")
    if total <= 0:
        raise ConfigError(f"--time {text!r} is no time at all; give a positive duration, e.g. 90s, 5m, 1h30m")
    return total
