"""Linear probes: what the unlabelled text teaches about the labels, before any fine-tuning.

A warm start can only carry what its language models learnt. Each probe freezes a way of
turning a text into a vector, fits an L2 logistic regression on the few labelled rows (C
chosen on 2,000 other training rows) and scores dev once:

  random encoder          the classifier's encoder, bidirectional, randomly initialised: mean of its states
  language models         the same encoder warm-started from the forward and reverse language models
  co-occurrence vectors   word vectors of the same unlabelled text from which words share a sentence
                          (positive PMI, rank-300 SVD), averaged over the text's words
  bag of words            the bigram logistic regression of the baseline part

If the language models' states probe barely above a random encoder's while co-occurrence
vectors of the same text probe well above both, the text holds the knowledge and the
language models did not learn it.
"""

from __future__ import annotations

import random
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from bench.bow import choose_c, logistic_regression
from charnn.tasks import load_run
from charnn.tasks.lm.cooccurrence import ppmi_vectors

GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
SELECT_ROWS = 2_000


def _encoder_means(lms: list[Path], warm: bool, texts: list[str]) -> torch.Tensor:
    from charnn.model import SentenceClassifier
    from charnn.tasks.classify.task import encode_texts, pad
    from charnn.tasks.encoders.warm import warm_start

    runs = [load_run(path) for path in lms]
    config = runs[0].model.config
    config = config.__class__(**{**config.__dict__, "bidirectional": True, "dropout": 0.0, "token_dropout": 0.0})
    torch.manual_seed(0)
    model = SentenceClassifier(config, 2, "mean").eval()
    if warm:
        warm_start(model, runs)
    means = []
    with torch.no_grad():
        for start in range(0, len(texts), 256):
            tokens, lengths = pad(encode_texts(runs[0].tokenizer, texts[start : start + 256]), torch.device("cpu"))
            states = model.states(tokens, lengths)  # (B, T, 2H)
            inside = (torch.arange(tokens.shape[1])[None] < lengths[:, None]).unsqueeze(2)  # (B, T, 1)
            means.append((states * inside).sum(1) / lengths[:, None])
    return torch.cat(means)


def _occurrences(texts: list[str], index: dict[str, int]) -> torch.Tensor:
    """(texts, words) sparse counts of the indexed words."""
    rows, cols = [], []
    for row, text in enumerate(texts):
        for word in text.split():
            if word in index:
                rows.append(row)
                cols.append(index[word])
    shape = (len(texts), len(index))
    at = torch.tensor([rows, cols])
    return torch.sparse_coo_tensor(at, torch.ones(len(rows)), shape, check_invariants=True).coalesce()


def _cooccurrence_vectors(texts: list[str], rank: int = 300, min_count: int = 2) -> tuple[dict[str, int], torch.Tensor]:
    """Word vectors from which words share a text: positive PMI, then a rank-`rank` SVD."""
    counts = Counter(word for text in texts for word in text.split())
    index = {word: i for i, word in enumerate(w for w, n in counts.items() if n >= min_count)}
    occurs = _occurrences(texts, index)  # (N, V)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": a product is all it takes
        warnings.simplefilter("ignore", UserWarning)
        pairs = torch.sparse.mm(occurs.t(), occurs).to_dense()  # (V, V): pairs of positions sharing a text
    pairs -= torch.diag(torch.sparse.sum(occurs, 0).to_dense())  # a position is not its own context
    torch.manual_seed(0)
    return index, ppmi_vectors(pairs, rank)  # (V, rank)


def _mean_vectors(texts: list[str], index: dict[str, int], vectors: torch.Tensor) -> torch.Tensor:
    occurs = _occurrences(texts, index)
    return torch.sparse.mm(occurs, vectors) / torch.sparse.sum(occurs, 1).to_dense().clamp(min=1)[:, None]


def probes(train_tsv: Path, dev_tsv: Path, lms: list[Path], rows: int, draws: int) -> dict[str, Any]:
    from charnn.text.labelled import Labelled, read_labelled

    train, dev = read_labelled([train_tsv]), read_labelled([dev_tsv])
    texts = list(train.texts) + list(dev.texts)  # features of every text; fitted on the chosen rows only
    features = {
        "random encoder": _encoder_means(lms, False, texts),
        "language models": _encoder_means(lms, True, texts),
        # from the training texts alone, as the language models were
        "co-occurrence vectors": _mean_vectors(texts, *_cooccurrence_vectors(list(train.texts))),
    }
    labels = sorted(set(train.labels))
    y_all = torch.tensor([labels.index(label) for label in list(train.labels) + list(dev.labels)])
    dev_ids = list(range(len(train), len(texts)))
    result: dict[str, Any] = {"rows": rows, "draws": draws, "select_rows": SELECT_ROWS, "dev": {}}
    for draw in range(draws):
        chosen = random.Random(draw).sample(range(len(train)), rows)  # the warm part's draws
        taken = set(chosen)
        select = random.Random(99).sample([i for i in range(len(train)) if i not in taken], SELECT_ROWS)
        parts = {"train": chosen, "held": select, "dev": dev_ids}
        scores = {}
        for name, x in features.items():
            mean, std = x[chosen].mean(0), x[chosen].std(0) + 1e-6  # standardised on the chosen rows
            xs = {part: (x[ids] - mean) / std for part, ids in parts.items()}
            ys = {part: y_all[ids] for part, ids in parts.items()}
            scores[name] = choose_c(xs, ys, len(labels), GRID)
        subset = {part: Labelled(tuple(texts[i] for i in ids), tuple(labels[y_all[i]] for i in ids), train.sources)
                  for part, ids in parts.items()}  # fmt: skip
        scores["bag of words"] = logistic_regression(subset["train"], subset["held"], subset["dev"], GRID[3:])
        for name, score in scores.items():
            result["dev"].setdefault(name, []).append(score["dev_accuracy"])
        print(f"  draw {draw}: " + ", ".join(f"{n} {s['dev_accuracy']:.4f}" for n, s in scores.items()), flush=True)
    for name, accuracies in result["dev"].items():
        print(f"{name:>22}: dev {sum(accuracies) / len(accuracies):.4f} (mean of {draws} draws)", flush=True)
    return result
