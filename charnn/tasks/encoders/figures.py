"""How the encoder tasks tell their validation figures: accuracy, and a BIO tagger's entity F1."""

from __future__ import annotations

import math
from typing import Any


def headline(metrics: dict[str, Any]) -> str:
    accuracy, loss = metrics.get("val_accuracy", math.nan), metrics.get("val_loss", math.nan)
    if "val_f1" in metrics:
        return f"validation entity F1 {metrics['val_f1']:.4f}, accuracy {accuracy:.4f}, loss {loss:.4f}"
    return f"validation accuracy {accuracy:.4f}, loss {loss:.4f}"


def brief(metrics: dict[str, Any]) -> str:
    if "val_f1" in metrics:
        return f"F1 {metrics['val_f1']:.3f}"
    return f"acc {metrics.get('val_accuracy', math.nan):.3f}"


def best_line(metrics: dict[str, Any]) -> str:
    accuracy, loss = metrics.get("val_accuracy", math.nan), metrics.get("val_loss", math.nan)
    if "val_f1" in metrics:
        return f"best validation entity F1 {metrics['val_f1']:.4f} (accuracy {accuracy:.4f}, loss {loss:.4f})"
    return f"best validation accuracy {accuracy:.4f} (loss {loss:.4f})"


def info_best(results: dict[str, Any]) -> str | None:
    """`charnn info`'s line on the kept model, from config.json's results (None before any)."""
    if results.get("val_accuracy") is None:
        return None
    step = f" (step {results['best_step']})" if results.get("best_step") is not None else ""
    f1 = f", macro-F1 {results['val_macro_f1']:.4f}" if results.get("val_macro_f1") is not None else ""
    if results.get("val_f1") is not None:
        f1 = f", entity F1 {results['val_f1']:.4f}"
    return f"accuracy {results['val_accuracy']:.4f}{f1}, loss {results['val_loss']:.4f}{step}"
