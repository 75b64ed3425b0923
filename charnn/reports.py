"""What training did: a run's logged curves and a summary of its folder.

Both read the run folder (metrics.jsonl, config.json) and nothing else; the
checkpoint module, and with it torch, is imported only inside the functions.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from charnn.errors import CheckpointError


@dataclass(frozen=True)
class TrainingHistory:
    """The curves in a run's metrics.jsonl, losses in bits per character."""

    folder: Path
    train_steps: tuple[int, ...] = ()
    train_bits_per_char: tuple[float, ...] = ()
    grad_norm: tuple[float, ...] = ()
    """Mean gradient norm before clipping over each logged interval."""
    grad_norm_max: tuple[float, ...] = ()
    val_steps: tuple[int, ...] = ()
    val_bits_per_char: tuple[float, ...] = ()
    clipped: int = 0
    """Logged steps whose gradient was clipped."""
    skipped: int = 0
    clip: float | None = None
    """The clipping threshold (0: off), when config.json records it."""
    elapsed: float | None = None
    val_accuracy: tuple[float, ...] = ()
    """A classifier's validation accuracy at each of ``val_steps`` (a language model has none)."""
    train_loss: tuple[float, ...] = ()
    """Nats per token (a language model) or per text (a classifier)."""
    val_loss: tuple[float, ...] = ()


def read_history(folder: str | Path) -> TrainingHistory:
    """Read a run's metrics.jsonl (a torn last line, from a kill mid-write, is ignored)."""
    from charnn.checkpoint import CONFIG_FILE, METRICS_FILE

    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"run folder {folder} does not exist; train one with `charnn train CORPUS`")
    try:
        lines = (folder / METRICS_FILE).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CheckpointError(
            f"{folder} has no {METRICS_FILE}; only runs made by `charnn train` can be plotted"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{folder}/{METRICS_FILE} cannot be read: {exc}") from None
    config = _read_json(folder / CONFIG_FILE) or {}
    data = config.get("data", {})
    chars_per_token = data.get("train_chars", 1) / max(1, data.get("train_tokens", 1))
    train, val, end = [], [], {}
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):
                break
            raise CheckpointError(f"{folder}/{METRICS_FILE} line {number} is not JSON; the log is damaged") from None
        kind = record.get("event") if isinstance(record, dict) else None
        if kind == "train":
            train.append(record)
        elif kind == "eval":
            val.append(record)
        elif kind == "end":
            end = record
    if not train and not val:
        raise CheckpointError(f"{folder}/{METRICS_FILE} holds no logged steps yet; train longer than --log-every steps")
    return TrainingHistory(
        folder=folder,
        train_steps=tuple(int(r["step"]) for r in train),
        train_bits_per_char=tuple(r["loss"] / math.log(2) / chars_per_token for r in train),
        grad_norm=tuple(float(r["grad_norm"]) for r in train),
        grad_norm_max=tuple(float(r.get("grad_norm_max", r["grad_norm"])) for r in train),
        val_steps=tuple(int(r["step"]) for r in val),
        val_bits_per_char=tuple(float(r["val_bits_per_char"]) for r in val),
        clipped=sum(int(r.get("clipped", 0)) for r in train),
        skipped=sum(int(r.get("skipped", 0)) for r in train),
        clip=config.get("training", {}).get("clip"),
        elapsed=end.get("elapsed_seconds", (train or val)[-1].get("elapsed")),
        val_accuracy=tuple(float(r["val_accuracy"]) for r in val if r.get("val_accuracy") is not None),
        train_loss=tuple(float(r["loss"]) for r in train),
        val_loss=tuple(float(r["val_loss"]) for r in val),
    )


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class RunInfo:
    """What a run folder holds: its configuration, size and results."""

    run: str
    created: str | None
    model: dict[str, Any]
    tokenizer: str
    vocab_size: int
    parameters: int
    training: dict[str, Any]
    data: dict[str, Any]
    steps: int | None
    elapsed_seconds: float | None
    best_step: int | None
    best_val_loss: float | None
    """Nats per token."""
    best_val_bits_per_char: float | None
    stopped: str | None
    """'budget', 'interrupted', or None when training has not finished (figures then come from metrics.jsonl)."""
    task: str = "lm"
    """'lm' (a language model), 'classify' or 'tag'."""
    labels: list[str] | None = None
    """A classifier's labels, or a tagger's tags."""
    reverse: bool = False
    """A language model that reads right to left (charnn train --reverse)."""
    best_val_accuracy: float | None = None
    best_val_macro_f1: float | None = None
    best_val_f1: float | None = None
    """A BIO tagger's entity F1."""
    records: dict[str, Any] | None = None
    """A record run's format (charnn.records: spec, pattern, joiner)."""
    styles: list[dict[str, Any]] | None = None
    """A style run's styles: name, sources, rows, records, sizes, and the best model's
    held-out bits per character (``val_bits_per_char``) when training has reported it."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_info(folder: str | Path) -> RunInfo:
    """Summarise a run folder (loaded and validated as `charnn sample` would)."""
    from charnn.checkpoint import load_run
    from charnn.model import count_parameters
    from charnn.tasks import task_kind

    run = load_run(folder)
    config = run.config
    results = config.get("results") or {}
    task = config.get("task") or {}
    info = RunInfo(
        run=str(run.folder),
        created=config.get("created"),
        model=run.model.config.to_dict(),
        tokenizer=config["tokenizer"]["kind"],
        vocab_size=run.tokenizer.vocab_size,
        parameters=count_parameters(run.model),
        training=config.get("training", {}),
        data={k: v for k, v in config.get("data", {}).items() if k != "val_text"},
        steps=results.get("steps"),
        elapsed_seconds=results.get("elapsed_seconds"),
        best_step=results.get("best_step"),
        best_val_loss=results.get("val_loss"),
        best_val_bits_per_char=results.get("val_bits_per_char"),
        stopped=results.get("stopped"),
        task=task_kind(config),
        labels=task.get("labels") or task.get("tags"),
        reverse=bool(task.get("reverse")),
        best_val_accuracy=results.get("val_accuracy"),
        best_val_macro_f1=results.get("val_macro_f1"),
        best_val_f1=results.get("val_f1"),
        records=task.get("records"),
        styles=_styles(task, results),
    )
    return info if results else _unfinished_info(info)


def _styles(task: dict[str, Any], results: dict[str, Any]) -> list[dict[str, Any]] | None:
    if not task.get("styles"):
        return None
    figures = results.get("val_styles") or {}
    keep = ("name", "sources", "rows", "records", "validation", "train_chars", "val_chars")
    keep += ("train_records", "val_records")
    return [
        {**{k: s[k] for k in keep if k in s}, "val_bits_per_char": figures.get(s["name"], {}).get("val_bits_per_char")}
        for s in task["styles"]
    ]


def _unfinished_info(info: RunInfo) -> RunInfo:
    """A run with no results yet (still training, or killed): take what metrics.jsonl has."""
    try:
        history = read_history(info.run)
    except CheckpointError:
        return info
    steps = max(history.train_steps + history.val_steps)
    best = None
    if history.val_bits_per_char:
        best = min(range(len(history.val_steps)), key=lambda i: history.val_bits_per_char[i])
    return replace(
        info,
        steps=steps,
        elapsed_seconds=history.elapsed,
        best_step=history.val_steps[best] if best is not None else None,
        best_val_bits_per_char=history.val_bits_per_char[best] if best is not None else None,
    )
