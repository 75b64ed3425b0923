"""`charnn eval`: exact perplexity and bits per character / byte of a text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from charnn.cli.console import resolve_run


def eval_command(
    text: Annotated[
        Optional[str],
        typer.Argument(
            help="Text file to score, '-' for standard input \\[default: the run's validation split].",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        Optional[Path],
        typer.Option(
            "--model",
            "-m",
            help="Run folder \\[default: $CHARNN_MODEL, else the newest in ./runs].",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "cpu",
) -> None:
    """Score text exactly, the state carried from its first token to its last.

    Reports the tokens predicted (all but the first), characters and bytes they
    cover, mean negative log-likelihood, perplexity per token, and bits per
    character and per byte (comparable across tokenizers). A run trained with
    --records scores the text's records the way samples are made: each from its
    start, its end included (counted as one character).

    [b]Examples[/b]

      charnn eval                              # the newest run's validation split
      charnn eval held-out.txt -m runs/mine --json
      cat notes.txt | charnn eval - --json | jq .bits_per_char
    """
    from charnn.checkpoint import load_run
    from charnn.data import read_text
    from charnn.device import resolve_device
    from charnn.evaluate import evaluate_text

    run = load_run(resolve_run(model), device=str(resolve_device(device)), kind="lm")
    source = text if text is not None else str(run.validation_path)
    if text is None and not run.validation_path.is_file():
        from charnn.errors import CheckpointError

        raise CheckpointError(f"{run.folder} keeps no validation text; name a FILE to evaluate")
    metrics = evaluate_text(run, read_text(source))
    result = {"run": str(run.folder), "text": "standard input" if source == "-" else source, **metrics.to_dict()}
    if as_json:
        print(json.dumps(result))
        return
    rows = [
        ("run", result["run"]),
        ("text", result["text"]),
        ("tokenizer", metrics.tokenizer),
        ("tokens", f"{metrics.tokens:,}"),
        ("characters", f"{metrics.chars:,}"),
        ("bytes", f"{metrics.bytes:,}"),
        ("nll per token", f"{metrics.nll_per_token:.4f} nats"),
        ("perplexity", f"{metrics.perplexity:.4f}"),
        ("bits per char", f"{metrics.bits_per_char:.4f}"),
        ("bits per byte", f"{metrics.bits_per_byte:.4f}"),
    ]
    if metrics.records is not None:
        scored = f"{metrics.records:,} records, each from its start as a sample is, its end included"
        rows.insert(2, ("scored as", scored))
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
