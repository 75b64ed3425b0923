"""Tasks: one package for each kind of run, and the registry that maps a kind's name to it.

    lm/         language models: streams, records and styles; sampling and evaluation
    classify/   sentence classifiers
    tag/        word taggers
    encoders/   what classify and tag share (warm starts, whole-text batches, figures)

A kind (charnn.tasks.base.Task) says how its runs are built, trained and told. What lies
below the tasks (training, the run folder, loading) is handed the kind it needs from here,
and the command line asks here which kind a run folder holds; nothing else names a kind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from charnn.errors import CheckpointError
from charnn.runs import checkpoint
from charnn.runs.names import MODEL_ENV, MODEL_FILE, RUNS_DIR
from charnn.tasks.base import (  # noqa: F401  (the registry's functions, re-exported)
    DEFAULT_KIND,
    INFO_FIELDS,
    TASKS,
    Summary,
    build_model,
    check_kind,
    check_resumed_kind,
    load_run,
    make_task,
    task_kind,
    task_of,
)
from charnn.tasks.classify import Classifier
from charnn.tasks.lm import LanguageModel
from charnn.tasks.tag import Tagger

assert set(TASKS.values()) == {LanguageModel, Classifier, Tagger}, "each kind registers itself once"
TASK_KINDS = tuple(TASKS)
TASK_NAMES = {kind: task.noun for kind, task in TASKS.items()}
"""How messages name a run of each kind."""


def resume(folder: Path, *, kind: str | None = None, **options: Any) -> Any:
    """Continue the run in ``folder`` where it stopped (charnn.training.session.resume takes ``options``);
    ``kind``, when given, refuses a run of another kind."""
    from charnn.training.session import resume as resume_session

    hint = TASKS[kind or DEFAULT_KIND].start_hint
    return resume_session(
        folder, task_of=lambda config: check_resumed_kind(folder, config, kind), start_hint=hint, **options
    )


def find_default_run(cwd: Path | None = None, kind: str | None = DEFAULT_KIND, give: str = "pass --model RUN") -> Path:
    """$CHARNN_MODEL, else the most recently trained run of ``kind`` (None: any) under ./runs; ``give``: how the
    command is given a run, for the message when there is none."""
    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env)
    runs = Path(cwd) / RUNS_DIR if cwd is not None else Path(RUNS_DIR)
    candidates = [
        p.parent for p in runs.glob(f"*/{MODEL_FILE}") if _run_kind(p.parent) in ((kind,) if kind else TASK_KINDS)
    ]
    if not candidates:
        train = TASKS[kind or DEFAULT_KIND].train_command
        what = f"trained run of {TASKS[kind].noun}" if kind else "trained run"
        raise CheckpointError(f"no {what} found under {runs}; {give}, set {MODEL_ENV}, or train one with `{train}`")
    return max(candidates, key=lambda p: (p / MODEL_FILE).stat().st_mtime_ns)


def run_noun(kind: str | None) -> str:
    """'classifier run', or 'run' for any kind."""
    return TASKS[kind].run_noun if kind else "run"


def summary(run_config: dict[str, Any], results: dict[str, Any]) -> tuple[str, Summary, dict[str, Any]]:
    """A run's kind, what `charnn info` shows of it, and its values of INFO_FIELDS."""
    task = task_of(run_config)
    told = task.summary(run_config, results)
    return task.kind, told, {**INFO_FIELDS, **told.fields}


def _run_kind(folder: Path) -> str | None:
    config = checkpoint.read_config(folder)
    try:
        return task_kind(config) if config is not None else None
    except (AttributeError, CheckpointError):
        return None
