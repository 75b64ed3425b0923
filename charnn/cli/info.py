"""`charnn info`: what a run folder holds: configuration, size, results."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from charnn.cli.console import resolve_run, say

if TYPE_CHECKING:
    pass


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
    from charnn.diagnostics.reports import run_info

    info = run_info(resolve_run(run, kind=None, argument_of="info"))
    if info.note:
        say(f"note: {info.note}")
    if as_json:
        print(json.dumps(info.to_dict()))
        return
    model, training = info.model, info.training
    layout = f"{model['layers']} x {model['cell']}, hidden {model['hidden']}, embed {model['embed']}"
    extras = [name for name in ("residual", "tie_weights", "bidirectional") if model.get(name)]
    for key in ("dropout", "token_dropout"):
        if model.get(key):
            extras.append(f"{key.replace('_', ' ')} {model[key]:g}")
    told = info.summary
    rows = [
        ("run", info.run),
        ("task", told.task),
        ("created", info.created or "-"),
        ("model", layout + (f" ({', '.join(extras)})" if extras else "")),
        ("tokenizer", f"{info.tokenizer}, {info.vocab_size} tokens{told.tokenizer_note}"),
        ("parameters", f"{info.parameters:,}"),
        ("trained on", told.trained_on or ", ".join(info.data.get("sources", [])) or "-"),
        *told.rows,
        (
            "training",
            ", ".join(
                f"{name} {training[key]}"
                for name, key in (("seq-len", "seq_len"), ("batch", "batch_size"), ("lr", "lr"), ("clip", "clip"))
                if key in training and (key != "seq_len" or told.reads_windows)  # classifiers read whole texts
            )
            or "-",
        ),
        ("steps", f"{info.steps:,}" if info.steps is not None else "-"),
        ("training time", _duration(info.elapsed_seconds)),
        ("best validation", told.best or "-"),
        ("finished", _finished(info)),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))


def _finished(info: Any) -> str:
    """How the run's training ended, as its results say (none: it is training, or was killed before any)."""
    if info.live:
        return "no: training now (these figures are its log's so far)"
    if info.stopped in ("budget", "complete"):
        return "yes"
    at = f" at step {info.steps:,}" if isinstance(info.steps, int) else ""
    if info.stopped == "interrupted":  # a KeyboardInterrupt in a program that trains (the CLI stops cleanly)
        return f"no: interrupted{at}; the best model so far is kept"
    if info.stopped == "stopped":  # Ctrl-C, SIGTERM: the resume file was saved as it stopped
        from charnn.tasks import TASKS

        command = TASKS[info.task].train_command if info.task in TASKS else "charnn train"
        return f"no: stopped{at}; continue with: {command} --resume {info.run}"
    return "no (no results yet)"


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if round(seconds * 10) >= 36000:  # rounded before it is split, so that 7199.7 s is 2h00m00s, not 1h59m60s
        hours, rest = divmod(round(seconds), 3600)
        return f"{hours}h{rest // 60:02d}m{rest % 60:02d}s"
    minutes, tenths = divmod(round(seconds * 10), 600)
    return f"{minutes}m{tenths / 10:04.1f}s" if minutes else f"{tenths / 10:.1f}s"
