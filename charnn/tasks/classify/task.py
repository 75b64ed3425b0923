"""The classification task: padded batches of whole texts, one label each.

Each step reads ``batch_size`` texts, in the seeded, length-sorted batches of
charnn.tasks.encoders.batches, so step s reads the same texts whether or not the run was resumed. Validation reads
every held-out text; the kept model is the one with the best validation accuracy
(ties go to the lower validation loss).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from charnn.errors import CharnnError, CheckpointError
from charnn.model import State, mix
from charnn.runs.checkpoint import TRAIN_TEXTS_FILE as TRAIN_FILE
from charnn.runs.checkpoint import VAL_NGRAMS_FILE
from charnn.runs.checkpoint import VAL_TEXTS_FILE as VALIDATION_FILE
from charnn.tasks.base import logged_evaluation
from charnn.tasks.classify.ngrams import SHARES, bag, ngram_ids_many, parse_logits
from charnn.tasks.encoders.batches import WholeTextBatches
from charnn.tasks.encoders.scores import scores
from charnn.text.labelled import Labelled, read_labelled

MAX_TOKENS = 1024
"""Texts are cut to their first MAX_TOKENS tokens."""
EVAL_BATCH = 64


def encode_texts(tokenizer: Any, texts: tuple[str, ...] | list[str]) -> list[np.ndarray]:
    """Each text's ids, cut to MAX_TOKENS; a text that encodes to nothing reads as one id 0."""
    ids = [np.asarray(x[:MAX_TOKENS], dtype=np.int64) for x in tokenizer.encode_many(texts)]
    return [x if len(x) else np.zeros(1, dtype=np.int64) for x in ids]


def pad(ids: list[np.ndarray], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (B, T) tokens (padding id 0, never read) and the lengths (B,)."""
    lengths = torch.tensor([len(x) for x in ids], dtype=torch.long)
    tokens = torch.zeros(len(ids), int(lengths.max()), dtype=torch.long)
    for row, x in enumerate(ids):
        tokens[row, : len(x)] = torch.from_numpy(x)
    return tokens.to(device), lengths.to(device)


NGRAM_FIGURES = ("val_encoder_accuracy", "val_ngram_accuracy", "ngram_share")
"""What a run with an n-gram part logs at each validation beside the common keys: each part alone, and the share."""


class ClassifyTask(WholeTextBatches):
    def __init__(self, model, train: Labelled, val: Labelled, labels: list[str], tokenizer, config, world, device,
                 val_ngram_logits: torch.Tensor | None = None):  # noqa: ANN001 # fmt: skip
        self.model, self.config, self.device = model, config, device
        index = {label: i for i, label in enumerate(labels)}
        self.train_ids, self.val_ids = encode_texts(tokenizer, train.texts), encode_texts(tokenizer, val.texts)
        # The n-grams' logits of the held-out texts: from the model fitted without them (VAL_NGRAMS_FILE), or
        # (a run made before the refit) from the run's own table, which did not see them either.
        self.val_ngram_logits = val_ngram_logits
        if val_ngram_logits is None and getattr(model, "ngram_buckets", 0):
            self.val_ngram_logits = _ngram_part(model, text_ngrams(model, val.texts), device)
        self.train_labels = np.asarray([index[x] for x in train.labels])
        self.val_labels = np.asarray([index[x] for x in val.labels])
        self.labels = labels
        self.my_rows = world.rows(config.batch_size)
        self.batches_per_epoch = len(self.train_ids) // config.batch_size
        self.lengths = np.asarray([len(x) for x in self.train_ids])
        chars = sum(len(t) for t in train.texts)
        self.chars_per_step = config.batch_size * chars / len(train.texts)
        self.train_tokens, self.val_tokens = int(self.lengths.sum()), sum(len(x) for x in self.val_ids)

    @classmethod
    def from_folder(cls, folder: Path, run_config: dict[str, Any], model, config, world, device):  # noqa: ANN001, ANN206
        from charnn.tokenizers import load_tokenizer

        try:
            labels = list(run_config["task"]["labels"])
            train, val = read_labelled([folder / TRAIN_FILE]), read_labelled([folder / VALIDATION_FILE])
        except (KeyError, TypeError, ValueError, OSError, CharnnError) as exc:  # CharnnError: a damaged .tsv
            raise CheckpointError(f"{folder} is not a whole classifier run: {exc}") from None
        if set(train.labels) - set(labels) or set(val.labels) - set(labels):
            raise CheckpointError(f"{folder}: its texts carry labels config.json does not list")
        logits = None
        if (folder / VAL_NGRAMS_FILE).exists():
            try:
                logits = parse_logits((folder / VAL_NGRAMS_FILE).read_text(encoding="utf-8"), len(labels))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                raise CheckpointError(f"{folder / VAL_NGRAMS_FILE} is damaged ({exc}); train the run again") from None
            if len(logits) != len(val):
                raise CheckpointError(f"{folder / VAL_NGRAMS_FILE} does not match {VALIDATION_FILE}; train it again")
        tokenizer = load_tokenizer(folder, run_config["tokenizer"])
        return cls(model, train, val, labels, tokenizer, config, world, device, logits)

    def loss(self, net, step: int, carry: State, autocast) -> tuple[torch.Tensor, State]:  # noqa: ANN001
        rows = self.batch(step)[self.my_rows]
        tokens, lengths = pad([self.train_ids[i] for i in rows], self.device)  # (b, T), (b,)
        target = torch.from_numpy(self.train_labels[rows]).to(self.device)  # (b,)
        with autocast():
            logits = net(tokens, lengths)  # (b, C)
        return F.cross_entropy(logits.float(), target), carry

    @staticmethod
    def logged(metrics: dict[str, Any], best: bool) -> dict[str, Any]:
        return {**logged_evaluation(metrics, best), **{key: metrics[key] for key in NGRAM_FIGURES if key in metrics}}

    @torch.inference_mode()
    def evaluate(self, model, final: bool) -> tuple[float, dict[str, Any]]:  # noqa: ANN001
        target = torch.from_numpy(self.val_labels)
        extra: dict[str, Any] = {}
        if self.val_ngram_logits is not None:
            encoder = _batched(model, self.val_ids, self.device, EVAL_BATCH)  # (N, C)
            ngrams = self.val_ngram_logits  # (N, C)
            model.ngram_share.fill_(choose_share(encoder, ngrams, target))
            extra = {
                "val_encoder_accuracy": float((encoder.argmax(1) == target).float().mean()),
                "val_ngram_accuracy": float((ngrams.argmax(1) == target).float().mean()),
                "ngram_share": float(model.ngram_share),
            }
            probs = mix(encoder, ngrams, float(model.ngram_share)).softmax(1)
        else:
            probs = predict_ids(model, self.val_ids, self.device)  # (N, C)
        loss = float(F.nll_loss(torch.log(probs.clamp_min(1e-12)), target))
        predicted = probs.argmax(1).numpy()
        figures = scores(self.val_labels, predicted, len(self.labels))
        metrics = {"val_loss": loss, "val_accuracy": figures["accuracy"], "val_macro_f1": figures["macro_f1"], **extra}
        # Accuracy first; the loss only breaks ties (it moves the score by less than one text does).
        return (1.0 - figures["accuracy"]) + min(loss, 1e3) * 1e-9, metrics


def choose_share(encoder: torch.Tensor, ngrams: torch.Tensor, target: torch.Tensor) -> float:
    """The n-grams' weight (of charnn.tasks.classify.ngrams.SHARES) under which the mixed prediction scores
    best on the held-out texts; ties go to the lower loss."""
    best = None
    for weight in SHARES:
        logits = mix(encoder, ngrams, weight)
        accuracy = float((logits.argmax(1) == target).float().mean())
        loss = float(F.cross_entropy(logits, target))
        if best is None or (accuracy, -loss) > (best[0], -best[1]):
            best = (accuracy, loss, weight)
    return best[2]


def text_ngrams(model, texts: tuple[str, ...] | list[str]) -> list[np.ndarray] | None:  # noqa: ANN001
    """Each text's n-gram ids when ``model`` has an n-gram part, else None."""
    buckets, extras = getattr(model, "ngram_buckets", 0), getattr(model, "ngram_extras", ())
    return ngram_ids_many(texts, buckets, extras, model.ngram_chars) if buckets else None


@torch.inference_mode()
def predict_ids(
    model, ids: list[np.ndarray], device: torch.device, ngrams: list[np.ndarray] | None = None, batch: int = EVAL_BATCH,
) -> torch.Tensor:  # noqa: ANN001 # fmt: skip
    """Label probabilities (N, C) of each text, read in batches of similar length (with its n-grams, when given)."""
    if ngrams is not None:
        encoder, bags = predict_parts(model, ids, ngrams, device, batch)
        return mix(encoder, bags, float(model.ngram_share)).softmax(1)
    return _batched(model, ids, device, batch).softmax(1)


@torch.inference_mode()
def predict_parts(
    model, ids: list[np.ndarray], ngrams: list[np.ndarray], device: torch.device, batch: int = EVAL_BATCH,
) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001 # fmt: skip
    """The encoder's logits and the n-grams' logits (N, C) each, apart."""
    return _batched(model, ids, device, batch), _ngram_part(model, ngrams, device)


@torch.inference_mode()
def _ngram_part(model, ngrams: list[np.ndarray], device: torch.device) -> torch.Tensor:  # noqa: ANN001
    """The n-gram part's logits (N, C) of texts given by their n-gram ids, on the CPU."""
    if not ngrams:
        return torch.empty(0, model.head.out_features)
    return torch.cat([
        model.ngram_logits(*bag(ngrams[start : start + 1024], device)).float().cpu()
        for start in range(0, len(ngrams), 1024)
    ])  # fmt: skip


def _batched(model, ids: list[np.ndarray], device: torch.device, batch: int) -> torch.Tensor:  # noqa: ANN001
    """The encoder's logits (N, C), read in batches of texts of similar length, back in order."""
    was_training = model.training
    model.eval()
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = torch.empty(len(ids), model.head.out_features)
    try:
        for start in range(0, len(ids), batch):
            rows = order[start : start + batch]
            tokens, lengths = pad([ids[i] for i in rows], device)
            out[torch.from_numpy(rows)] = model(tokens, lengths).float().cpu()
    finally:
        model.train(was_training)
    return out
