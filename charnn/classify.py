"""Sentence classifiers: set a classifier run up and train it with the one loop; predict; evaluate.

A classifier run folder holds what a language-model run holds (config.json, the best
weights, the tokenizer, the resume state, metrics.jsonl), with its labelled texts as
train.tsv and validation.tsv instead of token files, and a "task" section in
config.json naming the labels. ``--init-from`` warm-starts the embedding and recurrent
layers from language-model runs of the same tokenizer: a left-to-right one for the
forward stack and, for the backward stack, a right-to-left one (``charnn train --reverse``).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from charnn import checkpoint, runfolder
from charnn.config import ModelConfig, TrainConfig
from charnn.errors import ConfigError, CorpusError
from charnn.events import Event, Finished
from charnn.files import FolderLock, atomic_write_text
from charnn.labelled import Labelled, check_labels, stratified_split
from charnn.loop import make_optimizer
from charnn.model import Encoder, SentenceClassifier
from charnn.resume import Position, save_resume
from charnn.tasks.classify import TRAIN_FILE, VALIDATION_FILE, encode_texts, predict_ids, scores
from charnn.train import request_digest, start_run


def train_classifier(
    data: Labelled,
    folder: Path,
    model_options: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    *,
    val: Labelled | None = None,
    pool: str = "attention",
    tokenizer_kind: str = "char",
    tokenizer_options: dict[str, Any] | None = None,
    init_from: Sequence[Path] = (),
    overwrite: bool = False,
    resume: bool = False,
    budget_given: bool = True,
    on_event: Callable[[Event], None] = lambda event: None,
    stop: threading.Event | None = None,
) -> Finished:
    """Train a classifier of ``data``'s labels, keeping the best (by validation accuracy) in ``folder``.

    Validation is ``val``, or a stratified ``config.val_fraction`` of ``data``. Everything
    else is as for charnn.train.train: the same resume, budget and folder guarantees.
    """
    config = config or TrainConfig()
    check_labels(data, "the labelled data")
    train_part, val_part = (data, val) if val is not None else stratified_split(data, config.val_fraction, config.seed)
    check_labels(train_part, minimum=1)
    unseen = sorted(set(val_part.labels) - set(train_part.labels))
    if unseen:
        raise CorpusError(f"the validation texts have label {unseen[0]!r}, which no training text has")
    if len(train_part) < config.batch_size:
        raise CorpusError(
            f"{len(train_part)} training texts are fewer than --batch-size {config.batch_size}; "
            "lower --batch-size or give more texts"
        )
    data_sha256 = hashlib.sha256((data.to_tsv() + "\0" + (val.to_tsv() if val else "")).encode()).hexdigest()
    request = request_digest(
        task="classify",
        data_sha256=data_sha256,
        model=model_options or {},
        pool=pool,
        tokenizer=[tokenizer_kind, tokenizer_options or {}],
        training=config,
        init_from=[str(p) for p in init_from],
    )
    sources = warm_start_sources(init_from)
    _check_options(model_options or {}, pool)

    def make(folder: Path, overwrite: bool) -> FolderLock:
        runfolder.check_target(folder, overwrite)
        tokenizer = (
            sources[0].tokenizer
            if sources
            else _build_tokenizer(tokenizer_kind, tokenizer_options, train_part, val_part)
        )
        model_config = warm_model_config(tokenizer.vocab_size, model_options or {}, sources)
        labels = train_part.label_set()
        torch.manual_seed(config.seed)
        model = SentenceClassifier(model_config, len(labels), pool)
        warm_start(model, sources)
        with runfolder.new_run(folder, overwrite) as (pending, lock):
            atomic_write_text(pending / TRAIN_FILE, train_part.to_tsv())
            atomic_write_text(pending / VALIDATION_FILE, val_part.to_tsv())
            tokenizer.save(pending)
            run_config = {
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "request": request,
                "task": {"kind": "classify", "labels": labels, "pool": pool},
                "model": model_config.to_dict(),
                "tokenizer": {"kind": tokenizer.kind, "file": tokenizer.file_name},
                "training": config.to_dict(),
                "data": {
                    "sources": list(data.sources),
                    "corpus_sha256": data_sha256,
                    "validation": "--val file" if val is not None else f"stratified {config.val_fraction:g}",
                    "train_texts": len(train_part),
                    "val_texts": len(val_part),
                },
            }
            if sources:
                run_config["init_from"] = [str(run.folder) for run in sources]
            save_resume(pending, model, make_optimizer(model, config), [], Position())
            checkpoint.write_config(pending, run_config)
        return lock

    return start_run(
        folder, config, data_sha256, request, make, overwrite=overwrite, resume=resume,
        budget_given=budget_given, on_event=on_event, stop=stop,
    )  # fmt: skip


def _check_options(model_options: dict[str, Any], pool: str) -> None:
    from charnn.model import POOLS

    if pool not in POOLS:
        raise ConfigError(f"unknown --pool {pool!r}; choose one of: {', '.join(POOLS)}")
    ModelConfig(vocab_size=2, **model_options)


def _build_tokenizer(kind: str, options: dict[str, Any] | None, train: Labelled, val: Labelled) -> Any:
    from charnn.tokenizers import build_tokenizer

    if kind == "char":
        return build_tokenizer(kind, "".join(sorted(set("".join(train.texts + val.texts)))), **(options or {}))
    return build_tokenizer(kind, "\n".join(train.texts) + "\n", **(options or {}))


def warm_model_config(vocab_size: int, options: dict[str, Any], sources: list[Any]) -> ModelConfig:
    if not sources:
        return ModelConfig(vocab_size=vocab_size, **options)
    lm = sources[0].model.config
    shape = {k: getattr(lm, k) for k in ("cell", "layers", "hidden", "embed", "residual")}
    keep = {k: v for k, v in options.items() if k in ("dropout", "bidirectional", "token_dropout")}
    return ModelConfig(vocab_size=vocab_size, **shape, **keep)


def warm_start_sources(init_from: Sequence[Path]) -> list[Any]:
    """The language-model runs to start from: [forward] or [forward, backward]."""
    if not init_from:
        return []
    if len(init_from) > 2:
        raise ConfigError("--init-from takes a left-to-right language model and, optionally, a right-to-left one")
    from charnn.tasks import task_kind

    runs = [checkpoint.load_run(path) for path in init_from]
    for run in runs:
        if task_kind(run.config) != "lm":
            raise ConfigError(
                f"--init-from {run.folder} is not a language model; warm starts come from `charnn train` runs"
            )
    reverse = [bool((run.config.get("task") or {}).get("reverse")) for run in runs]
    if reverse[0] and len(runs) == 1:
        raise ConfigError(f"--init-from {runs[0].folder} reads right to left; give a left-to-right run first")
    runs = sorted(runs, key=lambda run: bool((run.config.get("task") or {}).get("reverse")))
    if len(runs) == 2:
        if reverse[0] == reverse[1]:
            raise ConfigError("the two --init-from runs must be one left-to-right and one right-to-left (--reverse)")
        files = [(run.folder / run.config["tokenizer"]["file"]).read_bytes() for run in runs]
        if files[0] != files[1]:
            raise ConfigError(
                "the two --init-from runs have different tokenizers; train the reverse one with "
                f"--tokenizer-from {runs[0].folder}"
            )
        if runs[0].model.config != runs[1].model.config:
            raise ConfigError("the two --init-from runs have different model shapes; train them with the same options")
    return runs


def warm_start(model: Encoder, sources: list[Any]) -> None:
    """Copy the embedding and the recurrent layers of each source into its direction."""
    with torch.no_grad():
        directions = [(model.embed, model.rnns), (model.embed_reverse, model.rnns_reverse)]
        for run, (embed, stack) in zip(sources, directions, strict=False):
            if stack is None:
                break
            embed.weight.copy_(
                run.model.embed.weight[: embed.num_embeddings]
            )  # a record run has one more: its boundary
            stack.load_state_dict(run.model.rnns.state_dict())


# -- prediction and evaluation ----------------------------------------------------------


def load_classifier(folder: Path, device: str = "cpu") -> Any:
    return checkpoint.load_run(folder, device=device, kind="classify")


def arriving_batches(
    items: Iterable[Any], size: int, more_ready: Callable[[], bool] | None = None
) -> Iterator[list[Any]]:
    """``items`` in lists of up to ``size``, in order; a list is cut short when ``more_ready()``
    says the next item is not here yet, so that slow input is answered as it comes."""
    pending: list[Any] = []
    for item in items:
        pending.append(item)
        if len(pending) >= size or (more_ready is not None and not more_ready()):
            yield pending
            pending = []
    if pending:
        yield pending


def predict_lines(
    run: Any, texts: Iterable[str], batch: int = 256, more_ready: Callable[[], bool] | None = None
) -> Iterator[tuple[str, dict[str, float]]]:
    """(label, {label: probability}) for each text, in order, a batch at a time.

    ``more_ready()`` says whether another text can be had without waiting: when it cannot,
    the texts so far are answered at once, so that slow input streams line by line.
    """
    labels = run.config["task"]["labels"]
    device = next(run.model.parameters()).device
    for pending in arriving_batches(texts, batch, more_ready):
        probs = predict_ids(run.model, encode_texts(run.tokenizer, [t if t else " " for t in pending]), device)
        for row in probs.tolist():
            best = max(range(len(labels)), key=row.__getitem__)
            yield labels[best], dict(zip(labels, row, strict=True))


def evaluate_labelled(run: Any, data: Labelled) -> dict[str, Any]:
    """Accuracy, macro-F1, per-label figures and the confusion matrix; labels the run never saw count as errors."""
    labels = list(run.config["task"]["labels"])
    unknown = sorted(set(data.labels) - set(labels))
    names = labels + unknown
    index = {label: i for i, label in enumerate(names)}
    device = next(run.model.parameters()).device
    probs = predict_ids(run.model, encode_texts(run.tokenizer, data.texts), device)
    target = np.asarray([index[label] for label in data.labels])
    figures = scores(target, probs.argmax(1).numpy(), len(names))
    figures["labels"] = names
    figures["unknown_labels"] = unknown
    figures["texts"] = len(data)
    return figures
