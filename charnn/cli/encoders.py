"""What `charnn classify` and `charnn tag` share: training or resuming a run, reading input as it
arrives, and tables of precision, recall and F1."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charnn.cli import options
from charnn.cli.progress import refuse_fixed, resume_run, run_training
from charnn.config import ModelConfig, TrainConfig, parse_duration
from charnn.errors import ConfigError


def train_or_resume(
    kind: Any,
    data: list[str],
    resume: str | None,
    out: Path | None,
    training: dict[str, Any],
    model_options: dict[str, Any],
    start: Callable[..., Any],
    *,
    has_data: bool,
    missing: str,
    typed: list[str],
) -> None:
    """`charnn classify train` / `charnn tag train` once its options are read: resume the run when
    only --resume is given, else check the settings and run ``start(folder, config, **options)``, which
    reads the data and trains. ``missing`` says what to give when there is no data; ``typed`` the options
    typed on the command line but those a resumed run reads (charnn.cli.progress.typed_options), which
    a resume refuses: the run keeps the settings it started with."""
    command = kind.train_command
    budget = parse_duration(training["time_budget"]) if training["time_budget"] else None
    folder = Path(resume) if resume not in (None, "auto") else out
    if resume is not None and not has_data:
        refuse_fixed(typed)
        if folder is None:
            raise ConfigError("--resume auto continues --out: pass --out, or the data")
        resume_run(folder, kind.kind, training["steps"], budget, training["device"], command)
        return
    if not has_data:
        raise ConfigError(missing)
    if "--val" in typed and "--val-fraction" in typed:
        raise ConfigError("--val-fraction holds out part of the data when no --val file is given; drop one of them")
    config = TrainConfig(**{**training, "time_budget": budget})
    ModelConfig(vocab_size=2, **model_options)  # reject bad sizes before reading the data
    if folder is None:
        folder = Path("runs") / (Path(data[0]).stem if data and data[0] != "-" else kind.run_noun.split()[0])
    given = {"resume": resume is not None, "budget_given": config.steps is not None or budget is not None}
    run_training(lambda **kw: start(folder, config, **given, **kw), command)


def with_defaults(given: dict[str, Any], defaults: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the settings, each not given at its default; those the user gave) of options that are None
    when not given (charnn.cli.options.later): a warm start refuses those given that differ from it."""
    chosen = {key: value for key, value in given.items() if value is not None}
    return {**defaults, **chosen}, chosen


TRAINING = {
    "batch_size": "batch_size", "lr": "lr", "warmup": "warmup_steps", "weight_decay": "weight_decay", "clip": "clip",
    "steps": "steps", "time_budget": "time_budget", "eval_every": "eval_every", "val_fraction": "val_fraction",
    "seed": "seed", "device": "device", "precision": "precision",
}  # fmt: skip
"""A train command's option -> its TrainConfig setting."""
SHAPE = ("cell", "layers", "hidden", "embed", "residual", "tokenizer", "vocab_size")
"""Options a warm start takes from its language model (None when not given)."""


@dataclass(frozen=True)
class ShapeOptions:
    """The options a warm start takes from its language model, declared for one command: None until
    given (charnn.cli.options.later), so that what the user gave can be told; ``defaults`` applies the rest."""

    defaults: dict[str, Any]
    cell: Any
    layers: Any
    hidden: Any
    embed: Any
    tokenizer: Any
    vocab_size: Any


def shape_options(model: ModelConfig, tokenizer: str, vocab_size: int) -> ShapeOptions:
    """The shape options of an encoder command whose defaults are ``model``'s, ``tokenizer`` and ``vocab_size``."""
    defaults = dict(
        cell=model.cell, layers=model.layers, hidden=model.hidden, embed=model.embed, residual=None,
        tokenizer=tokenizer, vocab_size=vocab_size,
    )  # fmt: skip
    return ShapeOptions(
        defaults,
        cell=options.later(str, options.CELL, model.cell),
        layers=options.later(int, options.LAYERS, model.layers),
        hidden=options.later(int, options.HIDDEN, model.hidden),
        embed=options.later(int, options.EMBED, model.embed),
        tokenizer=options.later(str, options.ENCODER_TOKENIZER, tokenizer, panel=None),
        vocab_size=options.later(int, options.VOCAB_SIZE, vocab_size, panel=None),
    )


def encoder_settings(given: dict[str, Any], shape_defaults: dict[str, Any]) -> dict[str, Any]:
    """An encoder train command's options (its ``locals()``) as the library takes them: ``training``
    (TrainConfig's settings), ``model_options``, ``tokenizer_kind`` and ``tokenizer_options``, and
    ``chosen`` (the shape options the user gave, which a warm start checks)."""
    shape, chosen = with_defaults({key: given[key] for key in SHAPE}, shape_defaults)
    tokenizer, vocab_size = shape.pop("tokenizer"), shape.pop("vocab_size")
    if chosen.get("tokenizer") == "char" and chosen.get("vocab_size") is not None:
        from charnn.tokenizers.char import NO_VOCAB_SIZE

        raise ConfigError(NO_VOCAB_SIZE)  # tokenizer_options drops the size a char tokenizer would refuse
    extra = ("dropout", "bidirectional", "token_dropout")
    return {
        "training": {setting: given[option] for option, setting in TRAINING.items()},
        "model_options": {**shape, **{key: given[key] for key in extra}},
        "tokenizer_kind": tokenizer,
        "tokenizer_options": tokenizer_options(tokenizer, vocab_size),
        "chosen": chosen,
    }


def tokenizer_options(tokenizer: str, vocab_size: int) -> dict[str, Any]:
    return {} if tokenizer == "char" else {"vocab_size": vocab_size}


def read_ahead(items):  # noqa: ANN001, ANN202
    """Read ``items`` in a thread; returns them and a test of whether the next one is already here.

    Input that arrives faster than it is classified fills whole batches; input that pauses
    (a person typing, a slow pipe) is answered as far as it has come.
    """
    import queue
    import threading

    ahead: queue.Queue = queue.Queue(maxsize=4096)
    end = object()

    def produce() -> None:
        try:
            for item in items:
                ahead.put(item)
            ahead.put(end)
        except BaseException as exc:  # noqa: BLE001 (raised again in the reading thread)
            ahead.put(exc)

    threading.Thread(target=produce, daemon=True).start()

    def consume():  # noqa: ANN202
        while (item := ahead.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item

    return consume(), lambda: not ahead.empty()


def input_lines(source: str):  # noqa: ANN202
    """Lines of a file or of standard input, decoded as UTF-8 with the same errors as corpora."""
    from charnn.text.corpus import decode_utf8, read_text

    if source == "-" and sys.stdin is None:
        raise ConfigError("standard input is closed; pipe texts in, one a line, or name a file")
    if source == "-" and not sys.stdin.isatty():
        for number, raw in enumerate(_stdin_lines(), 1):
            yield decode_utf8(raw, f"standard input, line {number},").rstrip("\r\n")
        return
    if source == "-":
        raise ConfigError("no input: pipe texts in, one a line, or name a file")
    text = read_text(source)
    if not text:
        return
    for line in text.split("\n")[: -1 if text.endswith("\n") else None]:
        yield line.rstrip("\r")  # blank lines too: one label per input line


def _stdin_lines():  # noqa: ANN202
    """Standard input's lines as bytes, read from its file descriptor without Python's buffered reader:
    read_ahead's thread may still be waiting on a slow pipe when the command ends, and a daemon thread
    inside the buffered reader's lock at exit aborts the interpreter ("Fatal Python error")."""
    import os

    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):  # a stand-in for standard input (tests): no descriptor
        yield from sys.stdin.buffer
        return
    pending: list[bytes] = []  # the start of a line still coming, in pieces (a long line is not copied over and over)
    while chunk := os.read(fd, 1 << 16):
        *lines, rest = chunk.split(b"\n")
        for line in lines:
            yield b"".join([*pending, line, b"\n"])
            pending = []
        if rest:
            pending.append(rest)
    if pending:
        yield b"".join(pending)


def print_scores(title: str, names: list[str], figures: dict[str, list[Any]]) -> None:
    """A table of each name's precision, recall, F1 and support: rich on a terminal, tab-separated elsewhere."""
    rows = [
        [name, *(f"{figures[k][i]:.4f}" for k in ("precision", "recall", "f1")), str(figures["support"][i])]
        for i, name in enumerate(names)
    ]
    if not sys.stdout.isatty():
        print(f"{title}\tprecision\trecall\tf1\tsupport")
        print("\n".join("\t".join(row) for row in rows))
        return
    from rich.table import Table

    table = Table(title, "precision", "recall", "F1", "support")
    for row in rows:
        table.add_row(*row)
    _console().print(table)


def _console() -> Any:
    from rich.console import Console

    return Console(file=sys.stdout, highlight=False, soft_wrap=True)


def load(kind: Any, model: Path | None, device: str) -> Any:
    """The run a predict or eval command reads: --model, else the newest of ``kind``; on ``device``."""
    from charnn.cli.console import resolve_run
    from charnn.device import resolve_device
    from charnn.tasks import load_run

    return load_run(resolve_run(model, kind=kind.kind), device=str(resolve_device(device)), kind=kind.kind)


def report(run: Any, figures: dict[str, Any], unknown: str, as_json: bool, table: Callable[[dict], None]) -> None:
    """An eval command's figures: one JSON object, or ``table``; names the run never saw (``figures[unknown]``)
    are said on stderr."""
    import json

    from charnn.cli.console import say

    if figures[unknown]:
        noun = unknown.split("_")[1]
        say(f"{noun} the run never saw, counted as errors: {', '.join(figures[unknown])}")
    if as_json:
        print(json.dumps({"run": str(run.folder), **figures}))
        return
    table(figures)
