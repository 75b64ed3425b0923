"""`charnn eval`: exact perplexity and bits per character / byte of a text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from charnn.cli.console import resolve_run, say, stdin_piped
from charnn.tasks.lm import LanguageModel


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
    style: Annotated[
        Optional[str],
        typer.Option(
            "--style",
            help="On a run trained with --style: score the text under this style \\[default: without FILE, "
            "each style's own held-out text; with FILE, --all-styles].",
            show_default=False,
        ),
    ] = None,
    all_styles: Annotated[
        bool,
        typer.Option(
            "--all-styles",
            help="On a run trained with --style: score the text under each style and name the most likely "
            "(lowest bits per character).",
        ),
    ] = False,
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
      charnn eval poem.txt --all-styles --json | jq .most_likely   # a run trained with --style
    """
    from charnn.device import resolve_device
    from charnn.tasks import load_run
    from charnn.tasks.lm.evaluate import evaluate_text
    from charnn.text.corpus import read_text

    run = load_run(resolve_run(model), device=str(resolve_device(device)), kind=LanguageModel.kind)
    if text is None and not all_styles and stdin_piped():
        say("note: scoring the run's held-out text; standard input is read only when named: charnn eval -")
    from charnn.tasks.lm.styles import style_names

    if style is not None or all_styles or style_names(run.config):
        _eval_styles(run, text, style, all_styles, as_json)
        return
    source = text if text is not None else str(run.validation_path)
    if text is None and not run.validation_path.is_file():
        from charnn.errors import CheckpointError

        raise CheckpointError(f"{run.folder} keeps no validation text; name a FILE to evaluate")
    metrics = evaluate_text(run, read_text(source))
    result = {"run": str(run.folder), "text": "standard input" if source == "-" else source, **metrics.to_dict()}
    if as_json:
        print(json.dumps(result))
        return
    _print_table(result, metrics)


def _print_table(result: dict, metrics) -> None:  # noqa: ANN001
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
        plural = "s" * (metrics.records != 1)
        scored = f"{metrics.records:,} record{plural}, each from its start as a sample is, its end included"
        rows.insert(2, ("scored as", scored))
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))


def _eval_styles(run, text: str | None, style: str | None, all_styles: bool, as_json: bool) -> None:  # noqa: ANN001
    """A style run: one style's score, each style's (--all-styles) and the likeliest, or, with no
    text, each style's held-out text under its own style."""
    from charnn.errors import ConfigError
    from charnn.tasks.lm.styles import one_style, parse_choice, require_styles, score_under, style_validation
    from charnn.text.corpus import read_text

    names = require_styles(run, "--style" if style is not None else "--all-styles")
    if style is not None and all_styles:
        raise ConfigError("--style and --all-styles do not mix: score under one style, or under each")
    label = "standard input" if text == "-" else text
    if style is not None:
        choice = parse_choice(style, names)
        source = read_text(text) if text is not None else style_validation(run, choice.main)
        metrics = score_under(run, choice, source)
        shown = label if text is not None else f"the held-out text of style {names[choice.main]}"
        result = {"run": str(run.folder), "text": shown, "style": choice.label, **metrics.to_dict()}
        if as_json:
            print(json.dumps(result))
        else:
            _print_table({**result, "text": f"{shown}, under style {choice.label}"}, metrics)
        return
    if text is None and not all_styles:
        per = {n: score_under(run, one_style(names, i), style_validation(run, i)) for i, n in enumerate(names)}
        what = "each style's held-out text, under its own style"
    else:
        if text is None:
            raise ConfigError("--all-styles scores one text under each style: name a FILE (or '-')")
        source = read_text(text)
        per = {n: score_under(run, one_style(names, i), source) for i, n in enumerate(names)}
        what = label
    result = {"run": str(run.folder), "text": what, "styles": {n: m.to_dict() for n, m in per.items()}}
    if text is not None:
        result["most_likely"] = min(per, key=lambda n: per[n].bits_per_char)
    if as_json:
        print(json.dumps(result))
        return
    width = max(len(n) for n in names)
    print(f"run   {result['run']}\ntext  {what}")
    print(f"{'style':<{width}}  {'bits/char':>9}  {'bits/byte':>9}  {'perplexity':>10}  scored as")
    for n, m in per.items():
        scored = f"{m.records:,} record{'s' * (m.records != 1)}" if m.records is not None else f"{m.chars:,} characters"
        mark = "  (most likely)" if result.get("most_likely") == n else ""
        print(f"{n:<{width}}  {m.bits_per_char:>9.4f}  {m.bits_per_byte:>9.4f}  {m.perplexity:>10.4f}  {scored}{mark}")
