"""Starting a run of any kind: a new one made whole, or, asked to resume, the one already there.

A task package (charnn.tasks) says what a new run's folder holds (``make``) and what the run
is asked to be (``request``); this module decides whether the folder's run goes on or a new one
is made, then trains it (charnn.training.session).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from charnn.config import TrainConfig
from charnn.device import resolve_device
from charnn.errors import ConfigError, RunFolderError
from charnn.events import Event, Finished, Notice
from charnn.files import FolderLock
from charnn.runs import checkpoint
from charnn.runs import folder as runfolder
from charnn.runs.resume_file import Position, save_resume
from charnn.training.distributed import init_world
from charnn.training.optim import make_optimizer
from charnn.training.session import train_in, unlinked


def start_run(
    folder: Path,
    config: TrainConfig,
    data_sha256: str,
    request: str,
    make: Callable[[Path, bool], FolderLock],
    *,
    overwrite: bool,
    resume: bool,
    budget_given: bool,
    on_event: Callable[[Event], None],
    stop: threading.Event | None,
    task_of: Callable[[dict[str, Any]], Any],
) -> Finished:
    """Start (or, asked to ``resume``, continue) a run of any kind, then train it.

    ``make(folder, overwrite)`` makes a new run's folder whole (charnn.runs.folder.new_run)
    and returns its held lock; ``request`` is the digest of what the run is asked to be
    and ``data_sha256`` that of its data (charnn.tasks.lm.prepare.train says how each is made);
    ``task_of(config)`` is the kind (a charnn.tasks.base.Task) of the run a config.json describes, and
    refuses a run of another kind than the caller's: asked to resume a folder that holds one, the
    refusal says what continues it (charnn.tasks.base.kind_to_train).
    """
    folder = unlinked(Path(folder))
    world, device = init_world(resolve_device(config.device))
    world.rows(config.batch_size)  # fails early if the batch does not split over the processes
    going_on = replace = False
    if world.main:
        going_on, replace = _continue_or_start(
            folder, data_sha256, request, config, overwrite, resume, on_event, task_of
        )
    going_on = bool(world.max(float(going_on))[0])  # rank 0 decides for all
    lock = None
    try:
        if world.main:
            lock = runfolder.hold(folder) if going_on else make(folder, overwrite or replace)
        world.barrier()
        budget = (config.steps, config.time_budget) if budget_given or not going_on else None
        return train_in(folder, world, device, budget, on_event, stop, resumed=going_on, task_of=task_of)
    finally:
        if lock is not None:
            lock.release()


_LATER_SETTINGS = {"embed_init": "random", "encoder_lr_scale": 1.0}
"""Settings added after runs were first made: at these defaults they stay out of a request's
digest, so that a run which leaves them alone keeps the digest an older version gave it."""


def request_digest(*, training: TrainConfig, **request: Any) -> str:
    """A digest of what a new run is asked to be (its budget and device aside): it tells a run from an older one."""
    request["training"] = {
        k: v
        for k, v in training.to_dict().items()
        if k not in ("steps", "time_budget", "device") and _LATER_SETTINGS.get(k, object()) != v
    }
    return hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _continue_or_start(folder, corpus_sha256, request, config, overwrite, resume, on_event, task_of):  # noqa: ANN001, ANN202
    """(continue the run in ``folder``, replace what it holds) for a train call asked to ``resume``;
    ``task_of`` refuses a run of another kind that --overwrite does not replace."""
    runfolder.recover(folder)
    state = runfolder.folder_state(folder)
    if not resume:
        runfolder.check_target(folder, overwrite)
        return False, False
    if state == "trained" and not overwrite:
        raise RunFolderError(runfolder.gone_resume_state(folder))
    if state != "run":
        runfolder.check_target(folder, overwrite=True)  # debris of a killed run may go; a user's files may not
        on_event(Notice(f"{folder} holds no run to resume yet; starting it afresh"))
        return False, state == "unfinished"
    existing = checkpoint.check_run_folder(folder, for_resume=True, recover=False)
    same_corpus = existing.get("data", {}).get("corpus_sha256") == corpus_sha256
    started = existing.get("training", {})
    same_budget = (started.get("steps"), started.get("time_budget")) == (config.steps, config.time_budget)
    if existing.get("request") == request and (same_budget or not overwrite):
        return True, False
    if overwrite:
        return False, True  # an older run (its settings or budget differ): --overwrite replaces it
    task_of(existing)  # a run of another kind is told as such, not as one of other data
    if not same_corpus:
        raise ConfigError(
            f"the corpus differs from the one {folder} was trained on; "
            "pass --overwrite to start a new run there, or --out to choose another folder"
        )
    if "request" in existing:  # runs made before requests were recorded have none to compare
        on_event(
            Notice(
                f"{folder} goes on with the settings it was started with, not those given here "
                "(pass --overwrite to start it over with them)"
            )
        )
    return True, False


def new_run_config(
    request: str,
    task: dict[str, Any],
    model: Any,
    tokenizer: Any,
    config: TrainConfig,
    data: dict[str, Any],
    init_from: Any = None,
) -> dict[str, Any]:
    """A new run's config.json, whatever its kind: ``task`` is the kind's own section (its
    "kind" first), ``data`` what the run holds of its data, ``init_from`` the run(s) it starts from."""
    run_config = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "request": request,
        "task": task,
        "model": model.config.to_dict(),
        "tokenizer": {"kind": tokenizer.kind, "file": tokenizer.file_name},
        "training": config.to_dict(),
        "data": data,
    }
    if init_from:
        run_config["init_from"] = init_from
    return run_config


def complete_new_run(pending: Path, model: Any, config: TrainConfig, carry: Any, run_config: dict[str, Any]) -> None:
    """Write a new run's step-0 resume state, then its config.json, which marks the pending run complete.

    The step-0 state holds the RNG as initialisation left it: the run starts by resuming it."""
    save_resume(pending, model, make_optimizer(model, config), carry, Position())
    checkpoint.write_config(pending, run_config)  # last: it marks the pending run complete
