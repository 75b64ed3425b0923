"""Figures of labels predicted against the true ones: a classifier's texts, a tagger's words."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def scores(target: np.ndarray, predicted: np.ndarray, classes: int) -> dict[str, Any]:
    """Accuracy, macro-F1, per-label precision/recall/F1 and the confusion matrix (rows: true labels)."""
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (target, predicted), 1)
    tp = np.diag(confusion).astype(float)
    precision = np.divide(tp, confusion.sum(0), out=np.zeros(classes), where=confusion.sum(0) > 0)
    recall = np.divide(tp, confusion.sum(1), out=np.zeros(classes), where=confusion.sum(1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(classes), where=precision + recall > 0)
    present = confusion.sum(1) > 0
    return {
        "accuracy": float(tp.sum() / max(1, len(target))),
        "macro_f1": float(f1[present].mean()) if present.any() else math.nan,
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "support": confusion.sum(1).tolist(),
        "confusion": confusion.tolist(),
    }
