"""A bigram bag-of-words logistic regression: the classic baseline a sentence classifier must beat.

Features are binary indicators of the whitespace-separated words and word pairs of a
text (the MR texts come tokenised and lower-cased), seen in the training texts. The
weights are fitted by full-batch L-BFGS with an L2 penalty 1/C; C is chosen from a
small grid by accuracy on the held-out texts, and dev is scored once with that C.
"""

from __future__ import annotations

from typing import Any

import torch


def _grams(text: str) -> list[str]:
    words = text.split()
    return words + [f"{a} {b}" for a, b in zip(words, words[1:])]


def _matrix(texts, index: dict[str, int]) -> torch.Tensor:  # noqa: ANN001
    rows, cols = [], []
    for row, text in enumerate(texts):
        for col in {index[g] for g in _grams(text) if g in index}:
            rows.append(row)
            cols.append(col)
    values = torch.ones(len(rows))
    shape = (len(texts), len(index))
    return torch.sparse_coo_tensor(torch.tensor([rows, cols]), values, shape, check_invariants=True).coalesce()


def _fit(x: torch.Tensor, y: torch.Tensor, classes: int, c: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights minimising cross-entropy + |w|^2 / 2C (full batch, L-BFGS)."""
    weights = torch.zeros(x.shape[1], classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], lr=1, max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = x @ weights + bias  # x sparse or dense
        loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum") + weights.pow(2).sum() / (2 * c)
        loss.backward()
        return loss

    optimizer.step(closure)
    return weights.detach(), bias.detach()


def choose_c(x: dict[str, torch.Tensor], y: dict[str, torch.Tensor], classes: int, grid) -> dict[str, Any]:  # noqa: ANN001
    """Fit on x["train"] for each C of grid; keep the C best on x["held"]; score x["dev"] with it."""

    def accuracy(weights: torch.Tensor, bias: torch.Tensor, part: str) -> float:
        return ((x[part] @ weights + bias).argmax(1) == y[part]).float().mean().item()

    best = None
    for c in grid:
        weights, bias = _fit(x["train"], y["train"], classes, c)
        held_accuracy = accuracy(weights, bias, "held")
        if best is None or held_accuracy > best["heldout_accuracy"]:
            best = {"C": c, "heldout_accuracy": held_accuracy, "dev_accuracy": accuracy(weights, bias, "dev")}
    return best


def logistic_regression(train: Any, held: Any, dev: Any, grid=(0.3, 1.0, 3.0, 10.0, 30.0, 100.0)) -> dict[str, Any]:  # noqa: ANN001
    labels = sorted(set(train.labels))
    to_id = {label: i for i, label in enumerate(labels)}
    index: dict[str, int] = {}
    for text in train.texts:
        for gram in _grams(text):
            index.setdefault(gram, len(index))
    parts = {"train": train, "held": held, "dev": dev}
    x = {name: _matrix(d.texts, index) for name, d in parts.items()}
    # a label the training rows lack is -1, never predicted
    y = {name: torch.tensor([to_id.get(label, -1) for label in d.labels]) for name, d in parts.items()}
    return {**choose_c(x, y, len(labels), grid), "features": len(index)}
