"""A new classifier or tagger run: what the two encoder kinds make alike.

A kind gives its data as the text of its two files (training and held-out), its config.json
sections, how to build its own tokenizer and its network; this makes the run whole (the
tokenizer of the warm start's language models where there are any) and trains it.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from charnn.config import TrainConfig
from charnn.errors import CorpusError
from charnn.events import Event, Finished, Notice, Started
from charnn.files import FolderLock, atomic_write_text
from charnn.runs import folder as runfolder
from charnn.tasks.base import kind_to_train
from charnn.tasks.encoders.warm import (
    lent_tokenizer,
    refuse_other_shape,
    warm_model_config,
    warm_start,
    warm_start_sources,
)
from charnn.training.start import complete_new_run, new_run_config, request_digest, start_run


@dataclass
class EncoderRun:
    """One new encoder run, as its kind lays it out."""

    kind: Any
    """The run's kind (a charnn.tasks.base.Task)."""
    files: dict[str, str]
    """The run's data files: name -> text (training and held-out)."""
    task: dict[str, Any]
    """config.json's task section."""
    data: dict[str, Any]
    """config.json's data section."""
    network: Callable[[Any], Any]
    """The untrained network of a model config."""
    tokenizer: Callable[[str, dict[str, Any] | None], Any]
    """The run's own tokenizer of a kind and options (when no language model lends one)."""
    check: Callable[[Any], None] = lambda tokenizer: None
    """Refuses data the tokenizer cannot feed the network, before anything is written."""
    note: str | None = None
    """A remark on how the run is set up (fit_batch's), said when training starts."""
    prepare: Callable[[Any, Callable[[str], None]], None] = lambda model, say: None
    """Fits what the network holds besides its trained weights (a classifier's n-grams), once, before training;
    ``say`` gives a remark for stderr (what it fits, which may take a while)."""

    @property
    def data_sha256(self) -> str:
        return self.data["corpus_sha256"]


def train_encoder(
    run: EncoderRun,
    folder: Path,
    model_options: dict[str, Any] | None,
    config: TrainConfig,
    settings: dict[str, Any],
    *,
    tokenizer_kind: str = "char",
    tokenizer_options: dict[str, Any] | None = None,
    init_from: Sequence[Path] = (),
    tokenizer_from: Path | None = None,
    chosen: dict[str, Any] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    budget_given: bool = True,
    on_event: Callable[[Event], None] = lambda event: None,
    stop: threading.Event | None = None,
) -> Finished:
    """Start (or resume) the run in ``folder`` and train it with the one loop.

    ``settings`` are the kind's own (a classifier's pool, a tagger's word layers), which the
    request digest counts. ``tokenizer_kind`` and ``tokenizer_options`` make the run's own
    tokenizer; ``init_from`` warm-starts it from language models (charnn.tasks.encoders.warm),
    whose tokenizer and shape it then takes: ``chosen``, the model and tokenizer settings the user
    gave (not defaults; keys of charnn.tasks.encoders.warm.CHOSEN), must then agree with the
    language model's. ``tokenizer_from`` takes another run's tokenizer instead of making one
    (a classifier from scratch that reads text as a language model does). The rest is as for
    charnn.tasks.lm.prepare.train: the same resume, budget and folder guarantees."""
    model_options = model_options or {}
    if run.note is not None:
        on_event = _noting(on_event, run.note)
    request = request_digest(
        task=run.kind.kind,
        data_sha256=run.data_sha256,
        model=model_options,
        **settings,
        tokenizer=[tokenizer_kind, tokenizer_options or {}],
        training=config,
        init_from=[str(p) for p in init_from],
        **({"tokenizer_from": str(tokenizer_from)} if tokenizer_from is not None else {}),
    )
    sources = warm_start_sources(init_from, model_options.get("bidirectional", True))
    refuse_other_shape(chosen or {}, sources)
    lent = lent_tokenizer(tokenizer_from, chosen or {}, sources)

    def make(folder: Path, overwrite: bool) -> FolderLock:
        runfolder.check_target(folder, overwrite)
        tokenizer = sources[0].tokenizer if sources else lent or run.tokenizer(tokenizer_kind, tokenizer_options)
        run.check(tokenizer)
        model_config = warm_model_config(tokenizer.vocab_size, model_options, sources)
        torch.manual_seed(config.seed)
        model = run.network(model_config)
        warm_start(model, sources)
        run.prepare(model, lambda message: on_event(Notice(message)))
        with runfolder.new_run(folder, overwrite) as (pending, lock):
            for name, text in run.files.items():
                atomic_write_text(pending / name, text)
            tokenizer.save(pending)
            started_from = [str(source.folder) for source in sources]
            run_config = new_run_config(request, run.task, model, tokenizer, config, run.data, started_from)
            complete_new_run(pending, model, config, [], run_config)
        return lock

    return start_run(
        folder, config, run.data_sha256, request, make, overwrite=overwrite, resume=resume,
        budget_given=budget_given, on_event=on_event, stop=stop, task_of=kind_to_train(folder, run.kind.kind),
    )  # fmt: skip


def fit_batch(config: TrainConfig, count: int, what: str) -> tuple[TrainConfig, str | None]:
    """``config`` with a batch no larger than the ``count`` training ``what`` (texts, sentences), and a note
    when it had to shrink: a handful of them trains with each step reading them all, as `charnn train`
    keeps a small corpus to a smaller batch. Under torchrun the batch stays a multiple of the processes."""
    if count >= config.batch_size:
        return config, None
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    fitted = count - count % processes
    if fitted < 1:
        raise CorpusError(f"{count} training {what} cannot be shared by {processes} processes; give more {what}")
    note = f"{count} training {what} are fewer than --batch-size {config.batch_size}: each step reads {fitted}"
    return dataclasses.replace(config, batch_size=fitted), note


def _noting(on_event: Callable[[Event], None], note: str) -> Callable[[Event], None]:
    """``on_event`` that says ``note`` just before training starts (a refused run says only its refusal)."""
    said = False

    def view(event: Event) -> None:
        nonlocal said
        if isinstance(event, Started) and not said:
            said = True
            on_event(Notice(note))
        on_event(event)

    return view
