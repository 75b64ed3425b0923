"""A new classifier or tagger run: what the two encoder kinds make alike.

A kind gives its data as the text of its two files (training and held-out), its config.json
sections, how to build its own tokenizer and its network; this makes the run whole (the
tokenizer of the warm start's language models where there are any) and trains it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from charnn.config import TrainConfig
from charnn.events import Event, Finished
from charnn.files import FolderLock, atomic_write_text
from charnn.runs import folder as runfolder
from charnn.tasks.encoders.warm import warm_model_config, warm_start, warm_start_sources
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
    whose tokenizer it then takes. The rest is as for charnn.tasks.lm.prepare.train: the same
    resume, budget and folder guarantees."""
    model_options = model_options or {}
    request = request_digest(
        task=run.kind.kind,
        data_sha256=run.data_sha256,
        model=model_options,
        **settings,
        tokenizer=[tokenizer_kind, tokenizer_options or {}],
        training=config,
        init_from=[str(p) for p in init_from],
    )
    sources = warm_start_sources(init_from)

    def make(folder: Path, overwrite: bool) -> FolderLock:
        runfolder.check_target(folder, overwrite)
        tokenizer = sources[0].tokenizer if sources else run.tokenizer(tokenizer_kind, tokenizer_options)
        run.check(tokenizer)
        model_config = warm_model_config(tokenizer.vocab_size, model_options, sources)
        torch.manual_seed(config.seed)
        model = run.network(model_config)
        warm_start(model, sources)
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
        budget_given=budget_given, on_event=on_event, stop=stop, task=run.kind,
    )  # fmt: skip
