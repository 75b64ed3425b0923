"""A training session on a run folder: a new run's first, or a stopped run's next.

It reads the run's config.json, builds the run's model and task through its kind (given by the
caller: charnn.tasks), restores the resume state and runs charnn.training.loop.Loop.
"""

from __future__ import annotations

__all__ = ["resume", "train_in", "unlinked"]

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from charnn.config import ModelConfig, TrainConfig
from charnn.device import resolve_device
from charnn.errors import CheckpointError, ConfigError, RunFolderError
from charnn.events import Event, Finished
from charnn.runs import checkpoint
from charnn.runs import folder as runfolder
from charnn.text.corpus import Corpus, corpus_stats
from charnn.tokenizers import load_tokenizer
from charnn.training.distributed import init_world, is_main_process
from charnn.training.loop import Loop


def resume(
    folder: Path,
    *,
    steps: int | None = None,
    time_budget: float | None = None,
    corpus: Corpus | None = None,
    on_event: Callable[[Event], None] = lambda event: None,
    stop: threading.Event | None = None,
    device: str | None = None,
    task_of: Callable[[dict[str, Any]], Any],
    start_hint: str,
) -> Finished:
    """Continue the run in ``folder`` exactly where its last checkpoint left it.

    ``steps`` / ``time_budget`` replace the run's budget; ``corpus``, when given,
    must be the text the run was trained on. ``task_of(config)`` is the run's kind (a
    charnn.tasks.base.Task), and refuses a run of another kind than the caller's (charnn.tasks.resume);
    ``start_hint`` says how to start a run where there is none yet. ``device``, when given and
    not 'auto', replaces the run's (a run started on a GPU goes on on the CPU: not bit for bit
    what the GPU would have done).
    """
    folder = unlinked(Path(folder))
    main = is_main_process()  # under torchrun, the first process alone recovers
    state = runfolder.folder_state(folder) if not main else _recovered_state(folder)
    if state == "trained":
        raise RunFolderError(runfolder.gone_resume_state(folder))
    if state in ("absent", "empty", "unfinished"):
        what = {
            "absent": "does not exist",
            "empty": "is empty: it holds no run to resume",
            "unfinished": "holds no run to resume yet (it stopped before its data was ready)",
        }[state]
        raise RunFolderError(f"run folder {folder} {what}; {start_hint} --out {folder} --resume {folder}")
    run_config = checkpoint.check_run_folder(folder, for_resume=True, recover=False)
    task_of(run_config)  # a run of another kind is refused before anything is touched
    if corpus is not None and corpus_stats(corpus).sha256 != run_config.get("data", {}).get("corpus_sha256"):
        raise ConfigError(
            f"the corpus differs from the one {folder} was trained on; "
            "pass --overwrite to start a new run there, or --out to choose another folder"
        )
    stored = _run_device(folder, run_config)
    device = None if device == "auto" else device  # what `--device` defaults to: the run's own
    try:
        chosen = resolve_device(device or stored)
    except ConfigError:
        if device is not None:
            raise
        raise ConfigError(
            f"{folder} was trained with --device {stored}, which this machine does not have; "
            f"pass --device cpu to go on here"
        ) from None
    world, chosen = init_world(chosen)
    lock = runfolder.hold(folder) if world.main else None
    try:
        budget = (steps, time_budget) if steps is not None or time_budget is not None else None
        return train_in(folder, world, chosen, budget, on_event, stop, resumed=True, task_of=task_of)
    finally:
        if lock is not None:
            lock.release()


def _recovered_state(folder: Path) -> str:
    runfolder.recover(folder)
    return runfolder.folder_state(folder)


def unlinked(folder: Path) -> Path:
    """The folder a symbolic link names: a new run is renamed into place, which would replace the link."""
    return folder.resolve() if folder.is_symlink() else folder


def _run_device(folder: Path, run_config: dict[str, Any]) -> str:
    try:
        return TrainConfig.from_dict(run_config["training"]).device
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{folder}/{checkpoint.CONFIG_FILE} cannot be resumed: {exc}") from None


def train_in(folder, world, device, budget, on_event, stop, *, resumed: bool, task_of) -> Finished:  # noqa: ANN001
    """Train the run in ``folder`` from its resume state: a new run's step 0, or where a stopped one stopped.

    ``budget`` (steps, seconds), when given, replaces the run's; ``task_of(config)`` is the run's kind.
    """
    run_config = checkpoint.check_run_folder(folder, for_resume=True, recover=False)
    try:
        config = TrainConfig.from_dict(run_config["training"])
        if budget is not None:
            config = dataclasses.replace(config, steps=budget[0], time_budget=budget[1])
        model_config = ModelConfig.from_dict(run_config["model"])
        tokens = load_tokenizer(folder, run_config["tokenizer"]).vocab_size + model_config.records
        if tokens != model_config.vocab_size:
            raise CheckpointError(f"{folder}: the tokenizer does not fit the model in config.json")
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{folder}/{checkpoint.CONFIG_FILE} cannot be resumed: {exc}") from None
    kind = task_of(run_config)
    try:
        model = kind.build_model(run_config, model_config).to(device)
    except (KeyError, TypeError, ValueError) as exc:  # a damaged task section
        raise CheckpointError(f"{folder}/{checkpoint.CONFIG_FILE} cannot be resumed: {exc!r}") from None
    task = kind.session(folder, run_config, model, config, world, device)
    fresh = lambda: kind.build_model(run_config, model_config)  # noqa: E731
    loop = Loop(model, task, config, folder, device, run_config, on_event, stop, world, fresh)
    loop.restore()
    if not resumed:
        loop.resumed_from = None
    p = loop.position
    finished = loop.already_complete() if p.finished and loop.fraction(p.elapsed) >= 1.0 else loop.run()
    world.close()
    return finished
