"""`charnn sample`: stream generated text to stdout."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from charnn.cli.console import read_stdin_prime, resolve_run, unescape
from charnn.config import SampleConfig

_DEFAULT = SampleConfig()


def sample_command(
    model: Annotated[
        Optional[Path],
        typer.Option(
            "--model",
            "-m",
            help="Run folder \\[default: $CHARNN_MODEL, else the newest in ./runs].",
            show_default=False,
        ),
    ] = None,
    prime: Annotated[
        Optional[str],
        typer.Option(
            help="Text to continue \\[default: standard input when it is not a terminal].", show_default=False
        ),
    ] = None,
    length: Annotated[int, typer.Option("--length", "-l", help="Characters to generate per sample.")] = _DEFAULT.length,
    temp: Annotated[float, typer.Option("--temp", "-t", help="Temperature; 0 is greedy.")] = _DEFAULT.temperature,
    top_k: Annotated[int, typer.Option(help="Sample from the k most likely tokens only (0: off).")] = _DEFAULT.top_k,
    top_p: Annotated[
        float, typer.Option(help="Sample from the smallest set reaching probability p (1: off).")
    ] = _DEFAULT.top_p,
    num_samples: Annotated[
        int, typer.Option("--num-samples", "-n", help="Samples, generated as one batch.")
    ] = _DEFAULT.num_samples,
    seed: Annotated[Optional[int], typer.Option(help="Same seed, same output.", show_default=False)] = None,
    stop: Annotated[
        Optional[list[str]],
        typer.Option(
            help="End a sample where this string appears (repeatable; \\n, \\t understood).", show_default=False
        ),
    ] = None,
    echo: Annotated[bool, typer.Option(help="Print the prime before the generated text.")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "cpu",
) -> None:
    """Generate text in the style of the training corpus, streamed to stdout.

    Each sample ends with a newline. With several samples, each is printed when it
    is complete; samples are separated by a blank line unless a --stop string
    holds a newline (one record per line).

    [b]Examples[/b]

      charnn sample --temp 0.8 --length 1000
      echo "ROMEO:" | charnn sample -m runs/tinyshakespeare --seed 1
      charnn sample -n 20 --stop '\\n' --prime $'\\n'     # twenty lines
      charnn sample | head -3
    """
    from charnn.checkpoint import load_run
    from charnn.device import resolve_device

    prime_text = unescape(prime) if prime is not None else read_stdin_prime()
    config = SampleConfig(
        length=length,
        temperature=temp,
        top_k=top_k,
        top_p=top_p,
        num_samples=num_samples,
        seed=seed,
        prime=prime_text,
        stop=tuple(unescape(s) for s in stop or ()),
    )
    run = load_run(resolve_run(model), device=str(resolve_device(device)))
    out = sys.stdout
    if config.num_samples == 1:
        _stream_one(run, config, out, echo)
    else:
        _print_batch(run, config, out, echo)


def _stream_one(run, config: SampleConfig, out, echo: bool) -> None:  # noqa: ANN001
    from charnn.sample import stream

    last = config.prime[-1:] if echo else ""
    if echo and config.prime:
        out.write(config.prime)
        out.flush()
    for piece in stream(run, config):
        if piece.text:
            out.write(piece.text)
            out.flush()
            last = piece.text[-1]
    if last != "\n":
        out.write("\n")


def _print_batch(run, config: SampleConfig, out, echo: bool) -> None:  # noqa: ANN001
    from charnn.sample import stream

    separator = "" if any("\n" in s for s in config.stop) else "\n"
    texts = [config.prime if echo else "" for _ in range(config.num_samples)]
    printed = 0
    for piece in stream(run, config):
        texts[piece.sample] += piece.text
        if piece.done:
            text = texts[piece.sample]
            out.write(("" if printed == 0 else separator) + text + ("" if text.endswith("\n") else "\n"))
            out.flush()
            printed += 1
