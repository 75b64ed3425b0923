"""Word taggers: set a tagger run up and train it with the one loop; tag; evaluate.

A tagger run folder holds what a classifier run holds, with its sentences as train.tags
and validation.tags (token<TAB>tag) and a "task" section in config.json naming the tags.
``--init-from`` warm-starts the embedding and the token-level stacks from language-model
runs of the same tokenizer, as for classifiers (charnn.tasks.encoders.warm).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from charnn.config import ModelConfig, TrainConfig
from charnn.errors import ConfigError, CorpusError
from charnn.events import Finished
from charnn.model import WordTagger
from charnn.runs.names import TRAIN_TAGS_FILE, VAL_TAGS_FILE
from charnn.tasks.base import load_run
from charnn.tasks.encoders import runs
from charnn.tasks.encoders.batches import arriving_batches
from charnn.tasks.tag import MAX_WORD_LAYERS, Tagger
from charnn.tasks.tag import task as tag_task
from charnn.tasks.tag.task import decode, encode_sentence, encode_sentences, predict_encoded, scores, strict_bio
from charnn.text.tagged import Tagged, is_bio, split_sentences
from charnn.tokenizers import tokenizer_for

KIND = "tag"


def train_tagger(
    data: Tagged,
    folder: Path,
    model_options: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
    *,
    val: Tagged | None = None,
    word_layers: int = 1,
    **options: Any,
) -> Finished:
    """Train a tagger of ``data``'s tags, keeping the best (by validation accuracy, or entity F1) in ``folder``.

    Validation is ``val``, or a seeded random ``config.val_fraction`` of ``data``'s sentences; fewer
    training sentences than ``config.batch_size`` make the batch (charnn.tasks.encoders.runs.fit_batch).
    ``options`` are those of charnn.tasks.encoders.runs.train_encoder (tokenizer, warm start,
    resume, events).
    """
    config = config or TrainConfig()
    train_part, val_part = (data, val) if val is not None else split_sentences(data, config.val_fraction, config.seed)
    if val is None:  # a tag held out whole would be unknown to training: its sentences stay in training
        train_part, val_part = _keep_every_tag(train_part, val_part)
    unseen = sorted(set(val_part.tag_set()) - set(train_part.tag_set()))
    if unseen:
        raise CorpusError(f"the validation sentences have tag {unseen[0]!r}, which no training sentence has")
    config, note = runs.fit_batch(config, len(train_part), "sentences")
    if not 0 <= word_layers <= MAX_WORD_LAYERS:
        raise ConfigError(f"--word-layers must be >= 0 and <= {MAX_WORD_LAYERS}, got {word_layers}")
    ModelConfig(vocab_size=2, **(model_options or {}))
    if len(data.tag_set()) < 2:
        only = next(iter(data.tag_set()), None)
        raise CorpusError(
            f"{', '.join(data.sources)} has one tag, {only!r}, on every word; a tagger needs words of at least two "
            "tags (a CoNLL-U file's --column may name a column it leaves empty: '_')"
        )
    tags = train_part.tag_set()
    data_sha256 = hashlib.sha256((data.to_text() + "\0" + (val.to_text() if val else "")).encode()).hexdigest()

    def check(tokenizer: Any) -> None:  # a sentence too long to read is refused before anything is written
        encode_sentences(tokenizer, data.sentences, ", ".join(data.sources))
        if val is not None:
            encode_sentences(tokenizer, val.sentences, ", ".join(val.sources))

    run = runs.EncoderRun(
        kind=Tagger,
        files={TRAIN_TAGS_FILE: train_part.to_text(), VAL_TAGS_FILE: val_part.to_text()},
        task={
            "kind": KIND,
            "tags": tags,
            "bio": is_bio(tags),
            "strict_bio": strict_bio(train_part),
            "word_layers": word_layers,
        },
        data={
            "sources": list(data.sources),
            "corpus_sha256": data_sha256,
            "validation": "--val file" if val is not None else f"random {config.val_fraction:g} of sentences",
            "train_sentences": len(train_part),
            "val_sentences": len(val_part),
            "train_words": train_part.words,
            "val_words": val_part.words,
        },
        network=lambda model_config: WordTagger(model_config, len(tags), word_layers),
        tokenizer=lambda kind, options: _tokenizer(kind, options, train_part, val_part),
        check=check,
        note=note,
    )
    return runs.train_encoder(run, folder, model_options, config, dict(word_layers=word_layers), **options)


def _keep_every_tag(train: Tagged, val: Tagged) -> tuple[Tagged, Tagged]:
    known = set(train.tag_set())
    moved = [i for i, tags in enumerate(val.tags) if not set(tags) <= known]
    if not moved or len(moved) == len(val):
        return train, val
    keep = sorted(set(range(len(val))) - set(moved))
    back = val.subset(moved)
    joined = Tagged(train.sentences + back.sentences, train.tags + back.tags, train.sources)
    return joined, val.subset(keep)


def _tokenizer(kind: str, options: dict[str, Any] | None, train: Tagged, val: Tagged) -> Any:
    """The sentences' alphabet (validation's too, as for classifiers) and the space between
    words; or a subword vocabulary learnt from the training sentences, a line each."""
    lines = "\n".join(" ".join(words) for words in train.sentences) + "\n"
    held = "".join(" ".join(words) for words in val.sentences)
    return tokenizer_for(kind, options, alphabet=lambda: lines + held + " ", sample=lambda: lines)


# -- tagging and evaluation -------------------------------------------------------------


def load_tagger(folder: Path, device: str = "cpu") -> Any:
    return load_run(folder, device=device, kind=KIND)


class LongSentenceWarning(UserWarning):
    """A sentence to tag was longer than a tagger reads at once, and was tagged in pieces."""


def tag_sentences(
    run: Any, sentences: Iterable[list[str]], batch: int = 256, more_ready: Callable[[], bool] | None = None
) -> Iterator[tuple[list[str], list[str], list[float]]]:
    """(words, tags, each tag's probability) for each sentence, in order, a batch at a time.

    ``more_ready()`` says whether another sentence can be had without waiting: when it
    cannot, the sentences so far are answered at once, so that slow input streams. A
    sentence longer than a tagger reads at once (a paragraph on one line) is tagged in
    pieces of whole words, each read as a sentence of its own, and said once; the stream
    goes on.
    """
    tags = run.config["task"]["tags"]
    strict = run.config["task"].get("strict_bio", True)
    device = next(run.model.parameters()).device
    done, told, cut = 0, False, False
    for pending in arriving_batches(sentences, batch, more_ready):
        pieces, owners = [], []
        for number, words in enumerate(pending, done + 1):
            read = words
            encoded = encode_sentence(run.tokenizer, words)
            long = [i for i in range(len(words)) if encoded.ends[i] - encoded.starts[i] > tag_task.MAX_TOKENS]
            if long:  # a URL or a blob of base64: read from its first characters, rather than stop the stream
                if not cut:
                    _say_cut(words, long[0], number)
                cut = True
                read = [w[: longest_word()] if i in long else w for i, w in enumerate(words)]
                encoded = encode_sentence(run.tokenizer, read)
            too_long = len(encoded.ids) > tag_task.MAX_TOKENS
            parts = _in_pieces(run.tokenizer, read, encoded) if too_long else [encoded]
            if len(parts) > 1 and not told:
                warnings.warn(
                    f"sentence {number} of the input is {len(encoded.ids):,} tokens long, more than a tagger "
                    f"reads at once ({tag_task.MAX_TOKENS:,}): tagged in pieces of whole words (so is any other)",
                    LongSentenceWarning,
                    stacklevel=2,
                )
                told = True
            pieces += parts
            owners += [number] * len(parts)
        chosen_tags: dict[int, tuple[list[str], list[float]]] = {}
        for owner, probs in zip(owners, predict_encoded(run.model, pieces, device), strict=True):
            best = decode(probs, tags, strict)
            picked = probs[torch.arange(len(best)), torch.from_numpy(best)].tolist() if len(best) else []
            got = chosen_tags.setdefault(owner, ([], []))
            got[0].extend(tags[i] for i in best)
            got[1].extend(picked)
        for number, words in enumerate(pending, done + 1):
            yield words, *chosen_tags[number]
        done += len(pending)


def longest_word() -> int:
    """Characters a word longer than a tagger reads at once is read from (a character is at most four byte tokens)."""
    return tag_task.MAX_TOKENS // 4


def _say_cut(words: list[str], long: int, number: int) -> None:
    warnings.warn(
        f"word {long + 1} of sentence {number} of the input is {len(words[long]):,} characters long, more than a "
        f"tagger reads at once: tagged from its first {longest_word():,} (so is any other)",
        LongSentenceWarning,
        stacklevel=3,
    )


def _in_pieces(tokenizer: Any, words: list[str], encoded: Any) -> list[Any]:
    """A long sentence (``encoded``) as pieces of whole words that each fit what a tagger reads at once, encoded."""
    pieces, first = [], 0
    for i in range(len(words)):  # every word fits: a longer one was cut (longest_word)
        if encoded.ends[i] - encoded.starts[first] > tag_task.MAX_TOKENS:
            pieces.append(words[first:i])
            first = i
    pieces.append(words[first:])
    return [encode_sentence(tokenizer, piece) for piece in pieces]  # each as long as its span above


def evaluate_tagged(run: Any, data: Tagged) -> dict[str, Any]:
    """Token accuracy, per-tag figures and, for BIO tags, entity figures; tags the run never saw count as errors."""
    tags = list(run.config["task"]["tags"])
    unknown = sorted(set(data.tag_set()) - set(tags))
    if len(unknown) == len(set(data.tag_set())):  # not one tag it knows: not data tagged as it was
        raise CorpusError(
            f"none of the tags in {', '.join(data.sources)} ({', '.join(unknown[:3])}, ...) is one this run knows "
            f"({', '.join(tags[:3])}, ...); give text tagged as its training data was (`charnn tag eval --help`)"
        )
    names = tags + unknown
    index = {tag: i for i, tag in enumerate(names)}
    device = next(run.model.parameters()).device
    encoded = encode_sentences(run.tokenizer, data.sentences, ", ".join(data.sources))
    probs = predict_encoded(run.model, encoded, device)
    predicted = [decode(p, tags, run.config["task"].get("strict_bio", True)) for p in probs]
    target = [np.asarray([index[t] for t in sentence]) for sentence in data.tags]
    figures = scores(target, predicted, names)
    figures["tags"] = names
    figures["unknown_tags"] = unknown
    figures["sentences"] = len(data)
    figures["words"] = data.words
    return figures
