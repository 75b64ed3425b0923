"""The tagging task: padded batches of whole sentences, a tag for every word.

A sentence is read as one text: with a char tokenizer its words joined by single spaces,
with a subword tokenizer each word's pieces one after another; each word keeps the span
of tokens it became (charnn.model.WordTagger reads its vector there). Batches are made as
for classification (charnn.tasks.encoders.batches), so step s reads the same sentences whether or
not the run was resumed.

The kept model is the one with the best validation token accuracy, or, for BIO tags,
the best entity F1 (ties go to the lower validation loss).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from charnn.errors import CharnnError, CheckpointError, CorpusError
from charnn.model import State
from charnn.runs.checkpoint import TRAIN_TAGS_FILE as TRAIN_FILE
from charnn.runs.checkpoint import VAL_TAGS_FILE as VALIDATION_FILE
from charnn.tasks.encoders.batches import WholeTextBatches
from charnn.tasks.encoders.scores import scores as label_scores
from charnn.text.tagged import Tagged, entities, is_bio, loose_inside_tags, read_tagged

MAX_TOKENS = 4096
"""The most tokens a tagger reads at once (characters, with a char tokenizer): a longer sentence
is refused in training data and tagged in pieces of whole words by `charnn tag predict`."""
EVAL_BATCH = 64
IGNORE = -100


class Encoded:
    """A sentence as the model reads it: token ids and each word's (start, end) among them."""

    __slots__ = ("ids", "starts", "ends")

    def __init__(self, ids: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> None:
        self.ids, self.starts, self.ends = ids, starts, ends


def encode_sentence(tokenizer: Any, words: tuple[str, ...] | list[str]) -> Encoded:
    """The token ids of a sentence and the span of each word in them."""
    if tokenizer.kind == "char":
        ids = np.asarray(tokenizer.encode(" ".join(words)), dtype=np.int64)
        lengths = np.asarray([len(w) for w in words], dtype=np.int64)
        ends = np.cumsum(lengths + 1) - 1  # each word is followed by one space
        return Encoded(ids, ends - lengths, ends)
    # Each word's pieces, the space's between them (as the tokenizer reads running text), so the
    # encoder sees where words start; a word's span is its own pieces.
    space, *pieces = (np.asarray(x, dtype=np.int64) for x in tokenizer.encode_many([" ", *words]))
    pieces = [p if len(p) else np.zeros(1, dtype=np.int64) for p in pieces]
    ids, starts, ends, at = [], [], [], 0
    for i, p in enumerate(pieces):
        if i:
            ids.append(space)
            at += len(space)
        starts.append(at)
        ids.append(p)
        at += len(p)
        ends.append(at)
    as_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    return Encoded(as_ids, np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64))


def encode_sentences(tokenizer: Any, sentences: Any, where: str = "the data", first: int = 1) -> list[Encoded]:
    """Every sentence encoded; one longer than MAX_TOKENS is refused, naming it (counting from ``first``)."""
    out = []
    for number, words in enumerate(sentences, first):
        encoded = encode_sentence(tokenizer, words)
        if len(encoded.ids) > MAX_TOKENS:
            raise CorpusError(
                f"sentence {number} of {where} is {len(encoded.ids):,} tokens long ({len(words):,} words); "
                f"a tagger reads at most {MAX_TOKENS:,} at once: split it into sentences"
            )
        out.append(encoded)
    return out


def pad(batch: list[Encoded], device: torch.device) -> tuple[torch.Tensor, ...]:
    """(tokens (B, T), lengths (B,), starts (B, W), ends (B, W), words (B,)), right-padded with 0.

    ``words`` stays on the CPU, where the word-level LSTM's packing reads it.
    """
    lengths = torch.tensor([max(1, len(x.ids)) for x in batch], dtype=torch.long)
    words = torch.tensor([len(x.starts) for x in batch], dtype=torch.long)
    tokens = torch.zeros(len(batch), int(lengths.max()), dtype=torch.long)
    starts = torch.zeros(len(batch), max(1, int(words.max())), dtype=torch.long)
    ends = torch.ones_like(starts)
    for row, x in enumerate(batch):
        tokens[row, : len(x.ids)] = torch.from_numpy(x.ids)
        starts[row, : len(x.starts)] = torch.from_numpy(x.starts)
        ends[row, : len(x.ends)] = torch.from_numpy(x.ends)
    return (*(t.to(device) for t in (tokens, lengths, starts, ends)), words)


class TagTask(WholeTextBatches):
    def __init__(self, model, train: Tagged, val: Tagged, tags: list[str], tokenizer, config, world, device):  # noqa: ANN001
        self.model, self.config, self.device, self.world = model, config, device, world
        index = {tag: i for i, tag in enumerate(tags)}
        self.train_x = encode_sentences(tokenizer, train.sentences, "the training data")
        self.val_x = encode_sentences(tokenizer, val.sentences, "the validation data")
        self.train_y = [np.asarray([index[t] for t in s], dtype=np.int64) for s in train.tags]
        self.val_y = [np.asarray([index[t] for t in s], dtype=np.int64) for s in val.tags]
        self.tags, self.bio = tags, is_bio(tags)
        self.strict = strict_bio(train)
        self.my_rows = world.rows(config.batch_size)
        self.batches_per_epoch = len(self.train_x) // config.batch_size
        self.lengths = np.asarray([len(x.ids) for x in self.train_x])
        chars = sum(len(" ".join(s)) for s in train.sentences)
        self.chars_per_step = config.batch_size * chars / len(train)
        self.train_tokens = int(self.lengths.sum())
        self.val_tokens = sum(len(x.ids) for x in self.val_x)

    @classmethod
    def from_folder(cls, folder: Path, run_config: dict[str, Any], model, config, world, device):  # noqa: ANN001, ANN206
        from charnn.tokenizers import load_tokenizer

        try:
            tags = list(run_config["task"]["tags"])
            train = read_tagged([folder / TRAIN_FILE], "columns", spaced=True)  # CoNLL-U forms may hold spaces
            val = read_tagged([folder / VALIDATION_FILE], "columns", spaced=True)
        except (KeyError, TypeError, ValueError, OSError, CharnnError) as exc:  # CharnnError: a damaged file
            raise CheckpointError(f"{folder} is not a whole tagger run: {exc}") from None
        if set(train.tag_set()) - set(tags) or set(val.tag_set()) - set(tags):
            raise CheckpointError(f"{folder}: its sentences carry tags config.json does not list")
        tokenizer = load_tokenizer(folder, run_config["tokenizer"])
        return cls(model, train, val, tags, tokenizer, config, world, device)

    def loss(self, net, step: int, carry: State, autocast) -> tuple[torch.Tensor, State]:  # noqa: ANN001
        rows = self.batch(step)[self.my_rows]
        inputs = pad([self.train_x[i] for i in rows], self.device)
        target = _targets([self.train_y[i] for i in rows], inputs[2].shape[1]).to(self.device)  # (b, W)
        with autocast():
            logits = net(*inputs)  # (b, W, tags)
        return self.world.loss_per_target(logits.float().flatten(0, 1), target.flatten(), IGNORE), carry

    @torch.inference_mode()
    def evaluate(self, model, final: bool) -> tuple[float, dict[str, Any]]:  # noqa: ANN001
        probs = predict_encoded(model, self.val_x, self.device)  # [(W, tags)]
        target = np.concatenate(self.val_y)
        flat = torch.cat(probs)  # (N, tags)
        loss = float(F.nll_loss(torch.log(flat.clamp_min(1e-12)), torch.from_numpy(target)))
        predicted = [decode(p, self.tags, self.strict) for p in probs]
        figures = scores(self.val_y, predicted, self.tags)
        metrics = {"val_loss": loss, "val_accuracy": figures["accuracy"]}
        measure = figures["accuracy"]
        if self.bio:
            metrics["val_f1"] = figures["entity_f1"]
            measure = figures["entity_f1"]
        return (1.0 - measure) + min(loss, 1e3) * 1e-9, metrics


def strict_bio(data: Tagged) -> bool:
    """Whether BIO tags always start an entity with B- (IOB2), so predictions may be held to it."""
    return not any(loose_inside_tags(tags) for tags in data.tags)


def _targets(tags: list[np.ndarray], width: int) -> torch.Tensor:
    out = torch.full((len(tags), width), IGNORE, dtype=torch.long)
    for row, y in enumerate(tags):
        out[row, : len(y)] = torch.from_numpy(y)
    return out


@torch.inference_mode()
def predict_encoded(
    model, sentences: list[Encoded], device: torch.device, batch: int = EVAL_BATCH
) -> list[torch.Tensor]:  # noqa: ANN001
    """Tag probabilities (W, tags) of each sentence's words, read in batches of similar length."""
    was_training = model.training
    model.eval()
    order = np.argsort([len(x.ids) for x in sentences], kind="stable")
    out: list[torch.Tensor] = [torch.empty(0)] * len(sentences)
    try:
        for start in range(0, len(sentences), batch):
            rows = order[start : start + batch]
            inputs = pad([sentences[i] for i in rows], device)
            probs = model(*inputs).float().softmax(2).cpu()  # (b, W, tags)
            for k, i in enumerate(rows):
                out[i] = probs[k, : len(sentences[i].starts)]
    finally:
        model.train(was_training)
    return out


def decode(probs: torch.Tensor, tags: list[str], strict: bool = True) -> np.ndarray:
    """Each word's tag: the most probable, or for BIO tags the most probable sequence that is well formed.

    In a well-formed BIO sequence an I- tag continues an entity of its type; the best such
    sequence is found by Viterbi over the words' log-probabilities (the constraints are the
    only transitions), so the tagger never reports a fragment that no entity starts. A run
    whose training tags start entities with I- (IOB1, as the original CoNLL-2003 files do)
    is not ``strict``: each word then gets its most probable tag.
    """
    if not strict or not is_bio(tags) or len(probs) == 0:
        return probs.argmax(1).numpy()
    logp = torch.log(probs.clamp_min(1e-12)).numpy()  # (W, K)
    allowed = _bio_transitions(tuple(tags))  # (K, K): from, to
    start_ok = np.array([not t.startswith("I-") for t in tags])
    score = np.where(start_ok, logp[0], -np.inf)
    back = np.zeros((len(logp), len(tags)), dtype=np.int64)
    for i in range(1, len(logp)):
        candidates = score[:, None] + np.where(allowed, 0.0, -np.inf)  # (K, K)
        back[i] = candidates.argmax(0)
        score = candidates.max(0) + logp[i]
    path = [int(score.argmax())]
    for i in range(len(logp) - 1, 0, -1):
        path.append(int(back[i, path[-1]]))
    return np.asarray(path[::-1])


_TRANSITIONS: dict[tuple[str, ...], np.ndarray] = {}


def _bio_transitions(tags: tuple[str, ...]) -> np.ndarray:
    if tags not in _TRANSITIONS:
        _TRANSITIONS[tags] = np.array(
            [[not b.startswith("I-") or a[2:] == b[2:] and a != "O" for b in tags] for a in tags]
        )
    return _TRANSITIONS[tags]


def scores(target: list[np.ndarray], predicted: list[np.ndarray], tags: list[str]) -> dict[str, Any]:
    """Token accuracy and per-tag precision/recall/F1; for BIO tags, entity-level precision/recall/F1."""
    words = label_scores(np.concatenate(target), np.concatenate(predicted), len(tags))  # each word a "text"
    figures: dict[str, Any] = {key: words[key] for key in ("accuracy", "precision", "recall", "f1", "support")}
    if is_bio(tags):
        figures.update(entity_scores(target, predicted, tags))
    return figures


def entity_scores(target: list[np.ndarray], predicted: list[np.ndarray], tags: list[str]) -> dict[str, Any]:
    """Entity-level precision, recall and F1, overall and per type: an entity counts when span and type match."""
    found: dict[str, list[int]] = {}  # type -> [true positives, predicted, gold]
    for gold, guess in zip(target, predicted, strict=True):
        g = set(entities([tags[i] for i in gold]))
        p = set(entities([tags[i] for i in guess]))
        for span in g | p:
            counts = found.setdefault(span[2], [0, 0, 0])
            counts[0] += span in g and span in p
            counts[1] += span in p
            counts[2] += span in g
    total = [sum(c[i] for c in found.values()) for i in range(3)]

    def prf(tp: int, predicted: int, gold: int) -> dict[str, float]:
        p = tp / predicted if predicted else 0.0
        r = tp / gold if gold else 0.0
        return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "support": gold}

    overall = prf(*total)
    return {
        "entity_precision": overall["precision"],
        "entity_recall": overall["recall"],
        "entity_f1": overall["f1"],
        "entities": total[2],
        "entity_types": {name: prf(*found[name]) for name in sorted(found)},
    }
