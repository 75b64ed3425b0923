"""`charnn info`: what a run folder holds: configuration, size, results."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from charnn.cli.console import resolve_run

if TYPE_CHECKING:
    from charnn.reports import RunInfo


def info_command(
    run: Annotated[
        Optional[Path],
        typer.Argument(help="Run folder \\[default: $CHARNN_MODEL, else the newest in ./runs].", show_default=False),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Print a run's configuration, parameter count, best validation loss and training time.

    For a run that is still training (or was killed), the figures come from its metrics.jsonl.

    [b]Examples[/b]

      charnn info runs/fantasy
      charnn info --json | jq .best_val_bits_per_char
    """
    from charnn.reports import run_info

    info = run_info(resolve_run(run, kind=None))
    if as_json:
        print(json.dumps(info.to_dict()))
        return
    model, training = info.model, info.training
    layout = f"{model['layers']} x {model['cell']}, hidden {model['hidden']}, embed {model['embed']}"
    extras = [name for name in ("residual", "tie_weights", "bidirectional") if model.get(name)]
    for key in ("dropout", "token_dropout"):
        if model.get(key):
            extras.append(f"{key.replace('_', ' ')} {model[key]:g}")
    kind = {
        "lm": "language model" + (" (right to left)" if info.reverse else ""),
        "classify": "classifier",
        "tag": "tagger",
    }
    rows = [
        ("run", info.run),
        ("task", kind[info.task] + (f": {', '.join(info.labels)}" if info.labels else "")),
        ("created", info.created or "-"),
        ("model", layout + (f" ({', '.join(extras)})" if extras else "")),
        (
            "tokenizer",
            f"{info.tokenizer}, {info.vocab_size} tokens" + (" and a record boundary" if info.records else ""),
        ),
        ("parameters", f"{info.parameters:,}"),
        (
            "trained on",
            f"{len(info.styles)} styles: {', '.join(s['name'] for s in info.styles)}"
            if info.styles
            else ", ".join(info.data.get("sources", [])) or "-",
        ),
        *([("records", _records(info))] if info.records else []),
        *[(f"style {s['name']}", _style(s)) for s in info.styles or []],
        (
            "training",
            ", ".join(
                f"{name} {training[key]}"
                for name, key in (("seq-len", "seq_len"), ("batch", "batch_size"), ("lr", "lr"), ("clip", "clip"))
                if key in training and (key != "seq_len" or info.task == "lm")  # classifiers read whole texts
            )
            or "-",
        ),
        ("steps", f"{info.steps:,}" if info.steps is not None else "-"),
        ("training time", _duration(info.elapsed_seconds)),
        ("best validation", _best(info)),
        ("finished", {"budget": "yes", "interrupted": "interrupted"}.get(info.stopped or "", "no (no results yet)")),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))


def _records(info: RunInfo) -> str:
    from charnn.records import RecordFormat

    described = RecordFormat.from_dict(info.records).describe()
    counts = info.data.get("train_records"), info.data.get("val_records")
    return f"{described}: {counts[0]:,} for training, {counts[1]:,} held out" if None not in counts else described


def _style(style: dict) -> str:
    from charnn.records import RecordFormat

    kind = RecordFormat.from_dict(style["records"]).describe() if style.get("records") else "a stream"
    bits = style.get("val_bits_per_char")
    shown = f"; held out {bits:.4f} bits/char" if bits is not None else ""
    return f"{', '.join(style['sources'])} ({kind}, {style['rows']} rows of the batch{shown})"


def _best(info: RunInfo) -> str:
    step = f" (step {info.best_step})" if info.best_step is not None else ""
    if info.best_val_accuracy is not None:
        f1 = f", macro-F1 {info.best_val_macro_f1:.4f}" if info.best_val_macro_f1 is not None else ""
        if info.best_val_f1 is not None:
            f1 = f", entity F1 {info.best_val_f1:.4f}"
        return f"accuracy {info.best_val_accuracy:.4f}{f1}, loss {info.best_val_loss:.4f}{step}"
    if info.best_val_bits_per_char is None:
        return "-"
    nats = f"{info.best_val_loss:.4f} nats/token, " if info.best_val_loss is not None else ""
    step = f" (step {info.best_step})" if info.best_step is not None else ""
    return f"{nats}{info.best_val_bits_per_char:.4f} bits/char{step}"


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02.0f}s"
    return f"{minutes}m{secs:04.1f}s" if minutes else f"{secs:.1f}s"
