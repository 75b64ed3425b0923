"""Sentence classifiers: a new run from labelled texts; predicting; evaluating.

A classifier run folder holds what a language-model run holds (config.json, the best
weights, the tokenizer, the resume state, metrics.jsonl), with its labelled texts as
train.tsv and validation.tsv instead of token files, and a "task" section in
config.json naming the labels. ``--init-from`` warm-starts the embedding and recurrent
layers from language-model runs of the same tokenizer (charnn.tasks.encoders.warm).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from charnn.config import ModelConfig, TrainConfig
from charnn.errors import ConfigError, CorpusError
from charnn.events import Finished
from charnn.model import POOLS, SentenceClassifier
from charnn.runs.names import TRAIN_TEXTS_FILE, VAL_NGRAMS_FILE, VAL_TEXTS_FILE
from charnn.tasks.base import load_run
from charnn.tasks.classify import Classifier
from charnn.tasks.classify.ngrams import CHAR_GRAMS, EXTRAS, WORD_GRAMS, buckets_for, format_logits
from charnn.tasks.classify.ngrams import fit as ngram_fit
from charnn.tasks.classify.task import encode_texts, predict_ids, scores, text_ngrams
from charnn.tasks.encoders import runs
from charnn.tasks.encoders.batches import arriving_batches
from charnn.text.labelled import Labelled, check_labels, stratified_split
from charnn.tokenizers import tokenizer_for

# The n-gram part is on unless asked off (`--no-ngrams`): in a sentiment-mr run it lifted the held-out
# accuracy from the encoder's 0.763 to 0.825 (docs/classifying.md). Chosen on held-out rows of train, not dev.
DEFAULT_NGRAMS = True

KIND = "classify"


def train_classifier(
    data: Labelled,
    folder: Path,
    model_options: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    *,
    val: Labelled | None = None,
    pool: str = "attention",
    ngrams: bool = DEFAULT_NGRAMS,
    **options: Any,
) -> Finished:
    """Train a classifier of ``data``'s labels, keeping the best (by validation accuracy) in ``folder``.

    Validation is ``val``, or a stratified ``config.val_fraction`` of ``data``; fewer training texts
    than ``config.batch_size`` make the batch (charnn.tasks.encoders.runs.fit_batch). With ``ngrams``,
    the network keeps an n-gram model beside the encoder (charnn.tasks.classify.ngrams), fitted on the
    training texts before the encoder trains. ``options`` are
    those of charnn.tasks.encoders.runs.train_encoder (tokenizer, warm start, resume, events).
    """

    config = config or TrainConfig()
    check_labels(data, "the labelled data")
    train_part, val_part = (data, val) if val is not None else stratified_split(data, config.val_fraction, config.seed)
    check_labels(train_part, minimum=1)
    unseen = sorted(set(val_part.labels) - set(train_part.labels))
    if unseen:
        raise CorpusError(f"the validation texts have label {unseen[0]!r}, which no training text has")
    config, note = runs.fit_batch(config, len(train_part), "texts")
    _check_options(model_options or {}, pool)
    labels = train_part.label_set()
    buckets = buckets_for(len(labels)) if ngrams else 0
    task: dict[str, Any] = {"kind": KIND, "labels": labels, "pool": pool}
    if ngrams:
        task["ngrams"] = {
            "buckets": buckets, "words": list(WORD_GRAMS), "chars": list(CHAR_GRAMS), "extras": list(EXTRAS),
        }  # fmt: skip
    files = {TRAIN_TEXTS_FILE: train_part.to_tsv(), VAL_TEXTS_FILE: val_part.to_tsv()}
    data_sha256 = hashlib.sha256((data.to_tsv() + "\0" + (val.to_tsv() if val else "")).encode()).hexdigest()
    run = runs.EncoderRun(
        kind=Classifier,
        files=files,
        task=task,
        data={
            "sources": list(data.sources),
            "corpus_sha256": data_sha256,
            "validation": "--val file" if val is not None else f"stratified {config.val_fraction:g}",
            "train_texts": len(train_part),
            "val_texts": len(val_part),
        },
        network=lambda model_config: SentenceClassifier(
            model_config, len(labels), pool, buckets, EXTRAS if ngrams else (), CHAR_GRAMS
        ),
        tokenizer=lambda kind, options: _tokenizer(kind, options, train_part, val_part),
        note=note,
        prepare=lambda model, say: (
            _fit_ngrams(model, train_part, val_part, labels, task, files, refit=val is None, say=say)
            if ngrams
            else None
        ),
    )
    settings = dict(pool=pool, **({"ngrams": True} if ngrams else {}))
    return runs.train_encoder(run, folder, model_options, config, settings, **options)


def _fit_ngrams(
    model: Any, train: Labelled, val: Labelled, labels: list[str], task: dict[str, Any], files: dict[str, str],
    refit: bool, say: Callable[[str], None],
) -> None:  # fmt: skip
    """Fit the n-gram part into ``model``'s buffers; say in ``task`` (config.json) what the held-out texts chose.

    The held-out texts choose C for a model of the training texts, whose logits of them go into
    ``files`` (validation reads those, charnn.tasks.classify.task). With ``refit`` (the held-out texts
    are a part of the user's training data, not a ``--val`` file, which must stay unseen), the table
    the run keeps is then refitted with that C on the training and held-out texts together.
    """
    say(
        f"fitting the n-gram part: {len(train) + len(val):,} texts, {len(labels)} labels, "
        f"{model.ngram_buckets:,} buckets (--no-ngrams leaves it out)"
    )
    index = {label: i for i, label in enumerate(labels)}
    train_ids, val_ids = text_ngrams(model, train.texts), text_ngrams(model, val.texts)  # as the run will read them
    train_y, val_y = np.asarray([index[x] for x in train.labels]), np.asarray([index[x] for x in val.labels])
    buckets, apart = model.ngram_buckets, "apart" in model.ngram_extras
    fitted = ngram_fit(train_ids, train_y, len(labels), val_ids, val_y, buckets, apart=apart)
    files[VAL_NGRAMS_FILE] = format_logits(fitted.heldout_logits)
    kept = fitted
    if refit:
        every_y = np.concatenate([train_y, val_y])
        kept = ngram_fit(
            train_ids + val_ids, every_y, len(labels), [], val_y[:0], buckets, apart=apart, chosen=fitted.penalties
        )
    with torch.no_grad():
        model.ngram_weight.copy_(kept.weight)
        model.ngram_bias.copy_(kept.bias)
    task["ngrams"].update(
        C=list(fitted.penalties) if apart else fitted.penalties[0], ngrams_seen=kept.seen,
        heldout_accuracy=fitted.heldout_accuracy, fitted_on="train+validation" if refit else "train",
    )  # fmt: skip


def _check_options(model_options: dict[str, Any], pool: str) -> None:
    if pool not in POOLS:
        raise ConfigError(f"unknown --pool {pool!r}; choose one of: {', '.join(POOLS)}")
    ModelConfig(vocab_size=2, **model_options)


def _tokenizer(kind: str, options: dict[str, Any] | None, train: Labelled, val: Labelled) -> Any:
    return tokenizer_for(
        kind, options, alphabet=lambda: "".join(train.texts + val.texts), sample=lambda: "\n".join(train.texts) + "\n"
    )


def load_classifier(folder: Path, device: str = "cpu") -> Any:
    return load_run(folder, device=device, kind=KIND)


def predict_lines(
    run: Any, texts: Iterable[str], batch: int = 1024, more_ready: Callable[[], bool] | None = None
) -> Iterator[tuple[str, dict[str, float]]]:
    """(label, {label: probability}) for each text, in order, a batch of up to ``batch`` at a time.

    A batch is sorted by length into the encoder's smaller ones (charnn.tasks.classify.task.EVAL_BATCH):
    the more texts it holds, the less padding they read (1,024 lines of sentiment-mr pad 9% against
    256's 32%). ``more_ready()`` says whether another text can be had without waiting: when it cannot,
    the texts so far are answered at once, so that slow input streams line by line.
    """
    labels = run.config["task"]["labels"]
    device = next(run.model.parameters()).device
    for pending in arriving_batches(texts, batch, more_ready):
        texts = [t if t else " " for t in pending]
        probs = _probabilities(run, texts, device)
        for row in probs.tolist():
            best = max(range(len(labels)), key=row.__getitem__)
            yield labels[best], dict(zip(labels, row, strict=True))


def _probabilities(run: Any, texts: list[str] | tuple[str, ...], device: Any) -> Any:
    """Label probabilities (N, C) of ``texts``: the encoder's, mixed with the n-grams' when the run has them."""
    return predict_ids(run.model, encode_texts(run.tokenizer, texts), device, text_ngrams(run.model, texts))


def evaluate_labelled(run: Any, data: Labelled) -> dict[str, Any]:
    """Accuracy, macro-F1, per-label figures and the confusion matrix; labels the run never saw count as errors."""
    labels = list(run.config["task"]["labels"])
    unknown = sorted(set(data.labels) - set(labels))
    if len(unknown) == len(set(data.labels)):  # not one label it knows: another task's data, or not labelled
        raise CorpusError(
            f"none of the labels in {', '.join(data.sources)} ({', '.join(unknown[:3])}, ...) is one this run "
            f"knows ({', '.join(labels[:3])}); give texts labelled as its training data was"
        )
    names = labels + unknown
    index = {label: i for i, label in enumerate(names)}
    device = next(run.model.parameters()).device
    probs = _probabilities(run, data.texts, device)
    target = np.asarray([index[label] for label in data.labels])
    figures = scores(target, probs.argmax(1).numpy(), len(names))
    figures["labels"] = names
    figures["unknown_labels"] = unknown
    figures["texts"] = len(data)
    return figures
