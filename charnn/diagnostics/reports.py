"""What training did: a run's logged curves and a summary of its folder.

Both read the run folder (metrics.jsonl, config.json) and nothing else; the
checkpoint module, and with it torch, is imported only inside the functions.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
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
    val_score: tuple[float, ...] = ()
    """The figure that picks the model besides the loss, at each of ``val_steps``, where the run's
    kind has one (a classifier's accuracy; a language model has none): charnn.tasks.base.Task.plotted."""
    score_name: str = ""
    """What ``val_score`` is, in a word: 'accuracy'."""
    score_key: str = ""
    """Its key in a validation's record (the first of charnn.tasks.base.Task.plotted)."""
    train_loss: tuple[float, ...] = ()
    """Nats per ``loss_per``."""
    loss_per: str = "token"
    """A token (a language model), a text (a classifier) or a word (a tagger): charnn.tasks.base.Task.loss_per."""
    val_loss: tuple[float, ...] = ()
    evaluations: tuple[dict[str, Any], ...] = ()
    """Each logged validation's record, as metrics.jsonl has it."""

    def kept(self) -> int | None:
        """The index in ``evaluations`` of the validation whose model the run keeps: the last one logged as
        best (each kind chooses by its own figure, ties by the loss), else the best by ``val_score`` or the
        loss (a log made before the flags); None with no validation."""
        flagged = [i for i, e in enumerate(self.evaluations) if e.get("best") is True]
        if flagged:
            return flagged[-1]
        if not self.val_steps:
            return None
        if self.val_score and len(self.val_score) == len(self.val_steps):
            return max(range(len(self.val_steps)), key=lambda i: self.val_score[i])
        return min(range(len(self.val_steps)), key=lambda i: self.val_loss[i])


def read_history(folder: str | Path) -> TrainingHistory:
    """Read a run's metrics.jsonl (a torn last line, from a kill mid-write, is ignored)."""
    from charnn.runs.checkpoint import CONFIG_FILE, METRICS_FILE

    folder = Path(folder)
    if folder.is_file():
        raise CheckpointError(f"{folder} is a file; charnn plot reads run folders (their {METRICS_FILE})")
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
    train, val, end = _logged(folder, lines)
    if not train and not val:
        from charnn.config import TrainConfig

        every = (config.get("training") or {}).get("log_every", TrainConfig.log_every)
        raise CheckpointError(
            f"{folder}/{METRICS_FILE} holds no logged steps yet: training logs a line every {every} steps and at "
            "each validation; plot it once it has trained that long"
        )
    plotted, loss_per = _plotted(config)
    elapsed = end.get("elapsed_seconds", (train or val)[-1].get("elapsed"))
    try:
        return TrainingHistory(
            folder=folder,
            train_steps=tuple(int(r["step"]) for r in train),
            train_bits_per_char=tuple(r["loss"] / math.log(2) / chars_per_token for r in train),
            grad_norm=tuple(float(r["grad_norm"]) for r in train),
            grad_norm_max=tuple(float(r.get("grad_norm_max", r["grad_norm"])) for r in train),
            val_steps=tuple(int(r["step"]) for r in val),
            val_bits_per_char=tuple(_number(r.get("val_bits_per_char")) for r in val),
            clipped=sum(int(r.get("clipped", 0)) for r in train),
            skipped=sum(int(r.get("skipped", 0)) for r in train),
            clip=config.get("training", {}).get("clip"),
            elapsed=elapsed if isinstance(elapsed, int | float) else None,
            val_score=tuple(float(r[plotted[0]]) for r in val if plotted and r.get(plotted[0]) is not None),
            score_name=plotted[1] if plotted else "",
            score_key=plotted[0] if plotted else "",
            loss_per=loss_per,
            train_loss=tuple(float(r["loss"]) for r in train),
            val_loss=tuple(float(r["val_loss"]) for r in val),
            evaluations=tuple(val),
        )
    except (KeyError, TypeError, ValueError) as exc:  # an optional field of the wrong kind
        raise CheckpointError(
            f"{folder}/{METRICS_FILE} holds a value of the wrong kind ({exc}); the log is damaged"
        ) from None


def _logged(folder: Path, lines: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """The training lines, the validation lines and the end line of a run's metrics.jsonl; CheckpointError where
    a line is not JSON (but the last, torn by a kill mid-write) or lacks a number the chart needs."""
    from charnn.runs.checkpoint import METRICS_FILE

    train, val, end = [], [], {}
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):
                break
            raise CheckpointError(f"{folder}/{METRICS_FILE} line {number} is not JSON; the log is damaged") from None
        kind = record.get("event") if isinstance(record, dict) else None
        needs = {"train": ("step", "loss", "grad_norm"), "eval": ("step", "val_loss")}.get(kind, ())
        for key in needs:  # a line of the right event with a field gone or of the wrong type: hand-edited, or torn
            if isinstance(record.get(key), bool) or not isinstance(record.get(key), int | float):
                raise CheckpointError(
                    f"{folder}/{METRICS_FILE} line {number} has no number for {key!r}; the log is damaged"
                )
        if kind == "train":
            train.append(record)
        elif kind == "eval":
            val.append(record)
        elif kind == "end":
            end = record
    return train, val, end


def _number(value: Any) -> float:
    """A logged figure that a kind may not have (None, or NaN in logs written before): NaN then."""
    return math.nan if value is None else float(value)


def _plotted(config: dict[str, Any]) -> tuple[tuple[str, str] | None, str]:
    """The run's kind's plotted figure (charnn.tasks.base.Task.plotted) and what its loss is per."""
    from charnn.tasks import task_of

    try:
        task = task_of(config)
    except CheckpointError:
        return None, "token"
    return task.plotted, task.loss_per


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
    """Nats per token (per text or word for a classifier or a tagger)."""
    stopped: str | None
    """'budget', 'stopped', 'interrupted', or None when training has not finished, or goes on now (figures then come
    from metrics.jsonl)."""
    live: bool
    """Whether a process trains the run now."""
    task: str
    """The kind of run (charnn.tasks)."""
    summary: Any = None
    """What its kind shows of it (charnn.tasks.base.Summary)."""
    fields: dict[str, Any] = field(default_factory=dict)
    """Its kind's figures (charnn.tasks.base.INFO_FIELDS)."""
    note: str | None = None
    """What a run with no model yet (still training, or killed before its first validation) is told, else None."""

    def to_dict(self) -> dict[str, Any]:
        """`charnn info --json`: the common figures, the kind's among them where they always stood."""
        shown = {k: v for k, v in asdict(self).items() if k not in ("summary", "fields", "note")}
        fields = dict(self.fields)
        common = list(shown.items())
        at = [k for k, _ in common].index("stopped")
        bits = [(k, fields.pop(k)) for k in list(fields) if k.endswith("bits_per_char")]
        return dict(common[:at] + bits + common[at:]) | fields


def run_info(folder: str | Path) -> RunInfo:
    """Summarise a run folder (loaded and validated as `charnn sample` would)."""
    from charnn.model import count_parameters
    from charnn.runs.checkpoint import UnfinishedRun
    from charnn.tasks import load_run, summary

    try:
        run, note = load_run(folder), None
    except UnfinishedRun as exc:  # still training, or killed before its first validation: what there is
        run, note = _untrained(exc), str(exc)
    config = run.config
    results = config.get("results") or {}
    if not isinstance(results, dict):
        results = {"results": results}
    for key, value in results.items():  # figures, how it stopped, a style run's figures by style: else edited
        if not isinstance(value, int | float | dict | None) and not (key == "stopped" and isinstance(value, str)):
            raise CheckpointError(
                f"{run.folder}/config.json's results hold {key} {value!r} where a number belongs; the run is damaged"
            )
    from charnn.runs.folder import being_written

    # A reader (sample, eval, another info) holds the lock an instant as it tidies the folder; a trainer holds it.
    live = being_written(run.folder) and (time.sleep(0.2) or being_written(run.folder))
    if live:  # a session trains it now: the results are an earlier session's (resumed with a larger budget)
        results = {}
    unfinished = {} if results else _best_logged(run.folder)
    kind, told, fields = summary(config, results or unfinished)
    history = unfinished.pop("history", None)
    return RunInfo(
        run=str(run.folder),
        created=config.get("created"),
        model=run.model.config.to_dict(),
        tokenizer=config["tokenizer"]["kind"],
        vocab_size=run.tokenizer.vocab_size,
        parameters=count_parameters(run.model),
        training=config.get("training", {}),
        data={k: v for k, v in config.get("data", {}).items() if k != "val_text"},
        steps=results.get("steps", unfinished.get("steps")),
        elapsed_seconds=results.get("elapsed_seconds", history.elapsed if history else None),
        best_step=(results or unfinished).get("best_step"),
        best_val_loss=(results or unfinished).get("val_loss"),
        stopped=results.get("stopped"),
        live=live,
        task=kind,
        summary=told,
        fields=fields,
        note=note,
    )


def _untrained(unfinished: Any) -> Any:
    """The run of an UnfinishedRun with an untrained network (its shape and size are what `charnn info`
    shows); the UnfinishedRun itself where config.json or the tokenizer cannot give one."""
    from charnn.config import ModelConfig
    from charnn.errors import CharnnError
    from charnn.runs.checkpoint import Run
    from charnn.tasks import build_model
    from charnn.tokenizers import load_tokenizer

    folder, config = unfinished.folder, unfinished.config
    try:
        model = build_model(config, ModelConfig.from_dict(config["model"]))
        tokenizer = load_tokenizer(folder, config["tokenizer"])
    except (KeyError, TypeError, ValueError, CharnnError):
        raise unfinished from None
    return Run(folder=folder, config=config, model=model, tokenizer=tokenizer)


def _best_logged(folder: Path) -> dict[str, Any]:
    """A run with no results yet (still training, or killed): its best logged validation
    (the lowest loss), as results would hold it, and its ``steps`` and ``history``."""
    try:
        history = read_history(folder)
    except CheckpointError:
        return {}
    best = {"steps": max(history.train_steps + history.val_steps), "history": history}
    evals = [e for e in history.evaluations if math.isfinite(e.get("val_loss", math.nan))]
    if evals:  # the last validation that kept its model (each kind chooses by its own figure), else the lowest loss
        kept = [e for e in evals if e.get("best") is True]
        chosen = kept[-1] if kept else min(evals, key=lambda e: e["val_loss"])
        figures = {k: v for k, v in chosen.items() if k.startswith("val_") and isinstance(v, (int, float))}
        best.update(figures, best_step=chosen["step"])
    return best
