"""`charnn sample`: stream generated text to stdout."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from charnn.cli.console import read_stdin_prime, resolve_run, say, unescape
from charnn.config import SampleConfig
from charnn.tasks.lm import LanguageModel

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
    length: Annotated[
        Optional[int],
        typer.Option(
            "--length",
            "-l",
            help=f"Characters to generate per sample \\[default: {_DEFAULT.length}; on a record run, a cap: "
            "twice its longest training record].",
            show_default=False,
        ),
    ] = None,
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
    novel: Annotated[
        bool, typer.Option("--novel", help="Resample any sample that copies a training record verbatim.")
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON object: the samples, whether each is novel, and its longest span shared "
            "with the training text.",
        ),
    ] = False,
    style: Annotated[
        Optional[str],
        typer.Option(
            "--style",
            help="On a run trained with --style: the style to write in, or a blend of styles with weights "
            "(fantasy=0.5,shakespeare=0.5: their learned style vectors are mixed) \\[default: one drawn by the "
            "training mixture, named on stderr].",
            show_default=False,
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "cpu",
) -> None:
    """Generate text in the style of the training corpus, streamed to stdout.

    Each sample ends with a newline. With several samples, each is printed when it
    is complete; samples are separated by a blank line unless --stop '\\n' ends each at its line's end (one
    sample a line). On a run trained with --records, each
    sample is one whole record, from its start (or --prime) to its end, and records
    are separated as in the corpus.

    [b]Examples[/b]

      charnn sample --temp 0.8 --length 1000
      echo "ROMEO:" | charnn sample -m runs/tinyshakespeare --seed 1
      charnn sample -n 20                    # twenty records, on a --records run
      charnn sample | head -3
      charnn sample -n 20 --stop '\\n' --prime '\\n' --no-echo --novel --json
      charnn sample --style recipes          # on a run trained with --style
      charnn sample --style fantasy=0.5,shakespeare=0.5
    """
    from charnn.device import resolve_device
    from charnn.tasks import load_run
    from charnn.text.records import record_cap, record_format, trim_separators

    prime_text = unescape(prime) if prime is not None else read_stdin_prime()
    SampleConfig(length=length or _DEFAULT.length)  # a bad --length is refused before the run is read
    run = load_run(resolve_run(model), device=str(resolve_device(device)), kind=LanguageModel.kind)
    run, chosen = _with_style(run, style, seed)
    fmt = record_format(run)
    if length is None:
        length = _DEFAULT.length if fmt is None else record_cap(run)
    if fmt is not None and prime_text and not prime_text.strip("\r\n"):
        say("a record run starts every sample at a record's start: the line-break prime is not needed")
        prime_text = ""
    if fmt is not None:
        prime_text = trim_separators(prime_text, fmt)  # `echo Red |` ends the prime with a line's end
    if fmt is not None and re.search(fmt.pattern, prime_text):
        from charnn.errors import ConfigError

        raise ConfigError(
            f"--prime holds a record separator, but on this run ({fmt.describe()}) a prime begins one record; "
            "give the start of a single record"
        )
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
    if (run.config.get("task") or {}).get("reverse"):
        from charnn.errors import WrongRunKind

        raise WrongRunKind(
            f"{run.folder} reads right to left (trained with --reverse): it warm-starts classifiers and "
            "`charnn eval` scores it, but it cannot sample text; sample a left-to-right run"
        )
    out = sys.stdout
    if novel or as_json:
        _checked_samples(run, config, out, echo, novel, as_json, chosen)
    elif config.num_samples == 1:
        _stream_one(run, config, out, echo)
    else:
        _print_batch(run, config, out, echo)


def _with_style(run, spec: str | None, seed: int | None):  # noqa: ANN001, ANN202
    """The run set to the style asked for (or drawn by the training mixture, and named); (run, label)."""
    from charnn.tasks.lm.styles import drawn_choice, parse_choice, require_styles, style_names, styled_run

    if spec is not None:
        choice = parse_choice(spec, require_styles(run, "--style"))
    elif style_names(run.config):
        choice = drawn_choice(run.config, seed)
        say(f"style: {choice.label} (drawn by the training mixture; choose one with --style)")
    else:
        return run, None
    return styled_run(run, choice), choice.label


def _stream_one(run, config: SampleConfig, out, echo: bool) -> None:  # noqa: ANN001
    from charnn.tasks.lm.sample import stream

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
    from charnn.tasks.lm.sample import stream

    printer = _Printer(config, out, _joiner(run))
    texts = [config.prime if echo else "" for _ in range(config.num_samples)]
    for piece in stream(run, config):
        texts[piece.sample] += piece.text
        if piece.done:
            printer.print(texts[piece.sample])


class _Printer:
    """Prints whole samples: a newline after each, a blank line between two (not when a --stop string is a
    line's end: one sample a line), and a colour swatch
    beside `Name R G B` lines when stdout is a terminal."""

    def __init__(self, config: SampleConfig, out, joiner: str | None = None) -> None:  # noqa: ANN001
        # A sample that stops at a line's end is one line: one a line. One that stops at "\n\n" may hold lines
        # of its own, so a blank line sets it apart, as blocks are in a text.
        self.separator = "" if {"\n", "\r\n"} & set(config.stop) else "\n"
        if joiner is not None:  # records, separated as in the corpus: the joiner stands for the text's newline
            self.separator = joiner[1:] if joiner.startswith("\n") else joiner
        self.out = out
        self.printed = 0
        self.console = None
        if _swatches_wanted(out):
            from rich.console import Console

            self.console = Console(file=out, highlight=False, soft_wrap=True)

    def print(self, text: str) -> None:
        text = text if text.endswith("\n") else text + "\n"
        if self.printed:
            self.out.write(self.separator)
        if self.console is None:
            self.out.write(text)
        else:
            for line in text[:-1].split("\n"):
                if _RGB.match(line):
                    self.console.print(_with_swatch(line), markup=False)
                else:
                    self.out.write(line + "\n")
        self.out.flush()
        self.printed += 1


def _joiner(run) -> str | None:  # noqa: ANN001
    from charnn.text.records import record_format

    fmt = record_format(run)
    return fmt.joiner if fmt is not None else None


_RGB = re.compile(r"^(.*\S)\s+(\d{1,3})\s+(\d{1,3})\s+(\d{1,3})\s*$")


def _swatches_wanted(out) -> bool:  # noqa: ANN001
    return out.isatty() and "NO_COLOR" not in os.environ


def _with_swatch(line: str):  # noqa: ANN202
    from rich.text import Text

    name, *rgb = _RGB.match(line).groups()
    r, g, b = (min(255, int(v)) for v in rgb)
    return Text.assemble(("    ", f"on rgb({r},{g},{b})"), " ", line)


def _checked_samples(run, config: SampleConfig, out, echo: bool, novel: bool, as_json: bool, style=None) -> None:  # noqa: ANN001
    """Whole samples checked against the training text; with --novel, copies are drawn again."""
    import dataclasses

    from charnn.tasks.lm.novelty import NoveltyChecker, training_records, training_text
    from charnn.tasks.lm.sample import generate_text

    checker = NoveltyChecker(training_text(run), config.stop, training_records(run))
    kept: list[tuple[str, object]] = []
    rejected = 0
    for round_ in range(_MAX_ROUNDS):
        wanted = config.num_samples - len(kept)
        seed = None if config.seed is None else config.seed + round_
        options = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
        options.update(num_samples=wanted, seed=seed)
        prime = options.pop("prime")
        for text in generate_text(run, prime=prime, **options):
            record = config.prime + text
            overlap = checker.check(record)
            if novel and not overlap.novel:
                rejected += 1
                continue
            kept.append(((config.prime if echo else "") + text, overlap))
        if len(kept) >= config.num_samples:
            break
    if novel and not kept:
        from charnn.errors import CharnnError

        hint = (
            "--temp 0 draws the same text every round: give a --temp above 0"
            if config.temperature == 0
            else ("raise --temp, or prime it differently")
        )
        raise CharnnError(f"no sample was novel after {_MAX_ROUNDS} rounds: each copied a training record; {hint}")
    if novel and len(kept) < config.num_samples:
        say(f"warning: only {len(kept)} of {config.num_samples} samples were novel after {_MAX_ROUNDS} rounds")
    if novel and rejected:
        say(f"{rejected} sample(s) copied a training record and were drawn again")
    if as_json:
        samples = [
            {
                "text": text,
                "novel": o.novel,
                "longest_shared_span": o.longest_shared_span,
                "longest_shared_text": o.longest_shared_text,
            }
            for text, o in kept
        ]
        result = {"run": str(run.folder), **({"style": style} if style is not None else {})}
        out.write(json.dumps({**result, "rejected_copies": rejected, "samples": samples}) + "\n")
        return
    printer = _Printer(config, out, _joiner(run))
    for text, _ in kept:
        printer.print(text)


_MAX_ROUNDS = 20
