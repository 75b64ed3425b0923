"""`charnn train`: options -> TrainConfig -> charnn.train.train -> progress on stderr."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from charnn.cli import options
from charnn.cli.console import say, stderr_console
from charnn.config import ModelConfig, TrainConfig, parse_duration
from charnn.errors import ConfigError

_DEFAULT_MODEL = ModelConfig(vocab_size=2)
_DEFAULT_TRAIN = TrainConfig()


def train_command(
    corpus: Annotated[
        Optional[list[str]],
        typer.Argument(help="Text file(s) to learn from; '-' reads standard input.", show_default=False),
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="Run folder to write \\[default: runs/<corpus-name>].")
    ] = None,
    overwrite: options.Overwrite = False,
    resume: Annotated[
        Optional[str],
        typer.Option(
            help="Continue a run exactly where it stopped or was killed: a run folder, or 'auto' (--out, or "
            "runs/<corpus-name>). With a corpus, a run that has nothing to resume yet is started afresh. The run "
            "keeps its settings; --steps/--time may extend its budget.",
            show_default=False,
        ),
    ] = None,
    init_from: Annotated[
        Optional[Path],
        typer.Option(
            help="Fine-tune: start from this run's best weights, model settings and vocabulary "
            "(model-size options are then ignored).",
            show_default=False,
        ),
    ] = None,
    reverse: Annotated[
        bool,
        typer.Option(
            help="Read the text right to left: a backward language model, to warm-start the backward "
            "direction of `charnn classify train --init-from FWD --init-from BWD` (use --tokenizer-from FWD).",
        ),
    ] = False,
    tokenizer_from: Annotated[
        Optional[Path],
        typer.Option(help="Use this run's tokenizer (it must cover the corpus).", show_default=False),
    ] = None,
    records: Annotated[
        Optional[list[str]],
        typer.Option(
            help="Train on whole records: 'line' (one a line), 'blank' (blocks between blank lines) or a separator "
            "regex ('\\n{3,}'); 'none' reads a record corpus as one stream \\[default: what a `charnn corpus get` "
            "text declares, else none]. With styles, NAME=SETTING sets one style's (repeatable); a setting without "
            "a name applies to every style whose text declares none.",
            show_default=False,
        ),
    ] = None,
    val: Annotated[
        Optional[list[str]],
        typer.Option(
            "--val",
            help="Validation text file (default: hold out the corpus's end); with styles, NAME=FILE per style "
            "(default: each style holds out its own --val-fraction).",
            show_default=False,
        ),
    ] = None,
    style: Annotated[
        Optional[list[str]],
        typer.Option(
            "--style",
            help="Train one model on several styles: NAME=FILE, repeated (several files may share a name). "
            "Sample one with `charnn sample --style NAME`.",
            show_default=False,
        ),
    ] = None,
    style_per_file: Annotated[
        bool,
        typer.Option(help="Make each corpus file a style, named after the file (fantasy.txt: fantasy)."),
    ] = False,
    val_fraction: Annotated[
        float,
        typer.Option(
            help="Fraction held out for validation: of the corpus, from its end; with --records, of the records."
        ),
    ] = _DEFAULT_TRAIN.val_fraction,
    tokenizer: Annotated[str, typer.Option(help="Tokenizer: char, or a subword kind (bpe, unigram).")] = "char",
    vocab_size: Annotated[
        Optional[int],
        typer.Option(help="Subword vocabulary size \\[default: the tokenizer's own].", show_default=False),
    ] = None,
    cell: options.Cell = _DEFAULT_MODEL.cell,
    layers: options.LayersByDevice = None,
    hidden: options.HiddenByDevice = None,
    embed: options.Embed = _DEFAULT_MODEL.embed,
    dropout: options.DropoutByDevice = None,
    weight_drop: options.WeightDropByDevice = None,
    residual: options.Residual = None,
    tie_weights: options.TieWeights = False,
    embed_init: Annotated[
        str,
        typer.Option(
            help="How a new model's embedding starts: random, or cooccurrence (from which tokens share a line "
            "of the training text: a language model made so warm-starts a classifier much better).",
            rich_help_panel=options.MODEL,
        ),
    ] = _DEFAULT_TRAIN.embed_init,
    bidirectional: Annotated[
        bool,
        typer.Option(help="Refused: a language model reads left to right (classifiers read both ways).", hidden=True),
    ] = False,
    steps: options.Steps = None,
    time_budget: options.TimeBudget = None,
    batch_size: options.BatchSizeByDevice = None,
    seq_len: options.SeqLenByDevice = None,
    lr: options.LrByDevice = None,
    warmup: options.Warmup = _DEFAULT_TRAIN.warmup_steps,
    weight_decay: options.WeightDecay = _DEFAULT_TRAIN.weight_decay,
    clip: options.Clip = _DEFAULT_TRAIN.clip,
    eval_every: options.EvalEvery = _DEFAULT_TRAIN.eval_every,
    seed: options.Seed = _DEFAULT_TRAIN.seed,
    device: options.Device = _DEFAULT_TRAIN.device,
    precision: options.Precision = _DEFAULT_TRAIN.precision,
) -> None:
    """Train a model on text and keep the best one (by validation loss) in a run folder.

    The run folder's path is printed on stdout when training ends; progress goes to stderr.

    [b]Examples[/b]

      charnn train corpus.txt --time 5m
      charnn train a.txt b.txt --cell gru --layers 3 --hidden 512 --out runs/big
      cat *.txt | charnn train - --steps 2000 --out runs/all
      charnn train --resume runs/corpus                # after Ctrl-C, a kill or a reboot
      charnn train my-letters.txt --init-from runs/big --time 2m --out runs/letters
      charnn train names.txt --records line            # a name a line: whole names sampled
      charnn train --style poems=poems.txt --style letters=a.txt --style letters=b.txt
      charnn train --style-per-file fantasy.txt recipes.txt   # styles named fantasy and recipes
    """
    from charnn.data import read_corpus, read_text

    if bidirectional:
        from charnn.model import check_language_model

        check_language_model(ModelConfig(vocab_size=2, bidirectional=True))
    budget = parse_duration(time_budget) if time_budget else None
    if resume not in (None, "auto") and out is not None and Path(resume).resolve() != out.resolve():
        raise ConfigError(f"--out {out} and --resume {resume} name different folders; give one of them")
    if style and corpus:
        raise ConfigError(
            "corpus files and --style do not mix: give every text as --style NAME=FILE, "
            "or pass --style-per-file to make each file a style"
        )
    if style and style_per_file:
        raise ConfigError("--style and --style-per-file do not mix: name the styles, or let the files name them")
    if style_per_file and not corpus:
        raise ConfigError("--style-per-file makes each corpus file a style: name the files")
    if (style or style_per_file) and reverse:
        raise ConfigError("--reverse does not read styles; drop --reverse, or train one style alone")
    if resume is not None and not corpus and not style:
        if records is not None or val is not None:
            raise ConfigError("--records and --val are fixed when a run starts; drop them to resume the run as it is")
        folder = out if resume == "auto" else Path(resume)
        if folder is None:
            raise ConfigError("--resume auto continues --out or runs/<corpus-name>: name the corpus or pass --out")
        run_training(lambda **kw: _resume(folder, steps, budget, device, **kw))
        return
    if not corpus and not style:
        raise ConfigError("name a corpus to train on (a text file, or '-' for standard input), or pass --resume RUN")
    given = dict(
        layers=layers, hidden=hidden, dropout=dropout, weight_drop=weight_drop, batch_size=batch_size,
        seq_len=seq_len, lr=lr,
    )  # fmt: skip
    notes: list[str] = []  # said when training starts: a bad corpus still gets its one line alone
    chosen = _device_defaults(device, given, notes)
    layers, hidden, dropout, weight_drop, batch_size, seq_len, lr = (chosen[key] for key in given)
    config = TrainConfig(
        seq_len=seq_len,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=warmup,
        weight_decay=weight_decay,
        clip=clip,
        steps=steps,
        time_budget=budget,
        eval_every=eval_every,
        val_fraction=val_fraction,
        seed=seed,
        device=device,
        precision=precision,
        embed_init=embed_init,
    )
    if embed_init != "random" and init_from is not None:
        raise ConfigError(
            f"--embed-init {embed_init} starts a new model's embedding, and --init-from keeps the one it "
            "fine-tunes; drop one of them"
        )
    model_options = dict(
        cell=cell,
        layers=layers,
        hidden=hidden,
        embed=embed,
        dropout=dropout,
        weight_drop=weight_drop,
        residual=residual,
        tie_weights=tie_weights,
    )
    ModelConfig(vocab_size=2, **model_options)  # reject bad sizes before reading the corpus
    if style or style_per_file:
        _train_styles(
            style, corpus if style_per_file else None, records, val, resume, out, overwrite, init_from, tokenizer,
            vocab_size, model_options, config, given, notes, steps, budget,
        )  # fmt: skip
        return
    if val is not None and len(val) > 1:
        raise ConfigError("--val is given more than once; give one validation file (per style only with --style)")
    if records is not None and len(records) > 1:
        raise ConfigError("--records is given more than once; give one setting (per style only with --style)")
    records = records[0] if records else None
    val = Path(val[0]) if val else None
    if records is not None and records != "none":
        from charnn.records import parse_format

        parse_format(records)  # a bad separator is refused before the corpus is read
    corpus_text = read_corpus(corpus)
    config = _fit_small_corpus(config, given, corpus_text.stats.chars, notes)
    val_text = read_text(val) if val is not None else None
    records = _records_setting(records, corpus_text, init_from)
    folder = Path(resume) if resume not in (None, "auto") else out or Path("runs") / corpus_text.name

    def new_run(**kw):  # noqa: ANN003, ANN202
        from charnn.train import train

        return train(
            corpus_text,
            folder,
            model_options,
            config,
            tokenizer_kind=tokenizer,
            tokenizer_options={} if vocab_size is None else {"vocab_size": vocab_size},
            val_text=val_text,
            overwrite=overwrite,
            resume=resume is not None,
            budget_given=steps is not None or budget is not None,
            init_from=init_from,
            reverse=reverse,
            tokenizer_from=tokenizer_from,
            records=records,
            **kw,
        )

    run_training(new_run, notes=notes)


def _train_styles(
    specs, files, records, val, resume, out, overwrite, init_from, tokenizer, vocab_size, model_options, config,
    given, notes, steps, budget,
) -> None:  # noqa: ANN001  # fmt: skip
    """`charnn train --style ...` / `--style-per-file FILES`: one conditional model (charnn.styles)."""
    from charnn.corpora import declared_records, prepared_entry
    from charnn.data import read_corpus, read_text
    from charnn.errors import CorpusError
    from charnn.records import parse_format, suggest
    from charnn.styles import parse_styles, per_style_option, styles_per_file
    from charnn.train import StyleData

    sources = parse_styles(specs) if specs else styles_per_file(files)
    names = [s.name for s in sources]
    given_records, bare_records = per_style_option(records or [], names, "--records")
    given_val, _ = per_style_option(val or [], names, "--val")
    for spec in [*given_records.values(), *([bare_records] if bare_records else [])]:
        if spec != "none":
            parse_format(spec)  # a bad separator is refused before any text is read
    styles = []
    for source in sources:
        try:
            corpus = read_corpus(list(source.files))
        except CorpusError as exc:
            raise ConfigError(f"style {source.name}: {exc}") from None
        if source.name in given_records:
            spec = given_records[source.name]
        else:
            spec = declared_records(corpus.sources, corpus.stats.sha256)
            if spec is not None:
                say(f"style {source.name}: {parse_format(spec).describe()}, as its catalogue entry says")
            elif bare_records is not None:
                spec = bare_records
            elif prepared_entry(corpus.sources, corpus.stats.sha256) is None:  # a catalogued stream: no hint
                hint = suggest(next(iter(corpus.chunks()), ""))
                if hint is not None:
                    say(
                        f"hint: style {source.name} looks like records ({parse_format(hint).describe()}); "
                        f"--records {source.name}={_quoted(hint)} trains on whole records"
                    )
        val_text = read_text(given_val[source.name]) if source.name in given_val else None
        styles.append(StyleData(source.name, corpus, None if spec == "none" else spec, val_text))
    config = _fit_small_corpus(config, given, sum(s.corpus.stats.chars for s in styles), notes)
    folder = Path(resume) if resume not in (None, "auto") else out or Path("runs") / "+".join(names)

    def new_run(**kw):  # noqa: ANN003, ANN202
        from charnn.train import train_styles

        return train_styles(
            styles,
            folder,
            model_options,
            config,
            tokenizer_kind=tokenizer,
            tokenizer_options={} if vocab_size is None else {"vocab_size": vocab_size},
            overwrite=overwrite,
            resume=resume is not None,
            budget_given=steps is not None or budget is not None,
            init_from=init_from,
            **kw,
        )

    run_training(new_run, notes=notes)


def _device_defaults(device: str, given: dict[str, Any], notes: list[str] | None = None) -> dict[str, Any]:
    """The settings as given, the device's defaults where not (a GPU's are larger: charnn.config.CUDA_DEFAULTS)."""
    from charnn.config import DEVICES, device_defaults
    from charnn.device import resolve_device

    kind = resolve_device(device).type if device in DEVICES else "cpu"  # TrainConfig names a bad --device
    defaults = device_defaults(kind)
    chosen = {key: defaults[key] if value is None else value for key, value in given.items()}
    if kind == "cuda" and any(value is None for value in given.values()):
        shown = ", ".join(
            f"--{key.replace('_', '-')} {defaults[key]:g}" for key, value in given.items() if value is None
        )
        if notes is not None:
            notes.append(f"on CUDA: {shown} (the GPU defaults; give any of them to change it)")
    return chosen


GPU_WINDOWS_PER_ROW = 32
"""CUDA's batch and window defaults apply where each row of the text holds this many windows."""


def _fit_small_corpus(config: TrainConfig, given: dict[str, Any], chars: int, notes: list[str]) -> TrainConfig:
    """A corpus too small for CUDA's batch and window defaults keeps the CPU's (as it would train on one)."""
    import dataclasses

    from charnn.config import CUDA_DEFAULTS, device_defaults

    if given["batch_size"] is not None or given["seq_len"] is not None:
        return config
    if (config.batch_size, config.seq_len) != (CUDA_DEFAULTS["batch_size"], CUDA_DEFAULTS["seq_len"]):
        return config
    needed = config.batch_size * (config.seq_len + 1) * GPU_WINDOWS_PER_ROW
    if chars * (1 - config.val_fraction) >= needed:
        return config
    cpu = device_defaults("cpu")
    notes.append(
        f"the corpus is small for CUDA's batch and window: --batch-size {cpu['batch_size']} --seq-len {cpu['seq_len']}"
    )
    return dataclasses.replace(config, batch_size=cpu["batch_size"], seq_len=cpu["seq_len"])


def _records_setting(given: str | None, corpus, init_from: Path | None) -> str | None:  # noqa: ANN001
    """--records as given; else what a prepared corpus or the fine-tuned run declares; else a hint."""
    from charnn.corpora import declared_records, prepared_entry
    from charnn.records import parse_format, suggest

    if given is not None:
        return None if given == "none" else given
    speak = say if os.environ.get("RANK", "0") == "0" else _quiet  # under torchrun the first process speaks
    declared = declared_records(corpus.sources, corpus.stats.sha256)
    if declared is not None:
        speak(
            f"{corpus.sources[0]}: {parse_format(declared).describe()}, as its catalogue entry says; "
            "training on whole records (--records none reads it as one stream)"
        )
        return declared
    if init_from is not None:
        from charnn.checkpoint import check_run_folder

        declared = ((check_run_folder(init_from).get("task") or {}).get("records") or {}).get("spec")
        if declared is not None:
            speak(f"{init_from} was trained on records ({parse_format(declared).describe()}); fine-tuning on records")
            return declared
    hint = None if prepared_entry(corpus.sources, corpus.stats.sha256) else suggest(next(iter(corpus.chunks()), ""))
    if hint is not None:  # a catalogued corpus that declares no records is a stream
        speak(
            f"hint: {corpus.sources[0]} looks like a record corpus ({parse_format(hint).describe()}); "
            f"--records {_quoted(hint)} trains on whole records (random held-out records, whole records sampled)"
        )
    return None


def _quiet(message: str) -> None:
    pass


def _quoted(spec: str) -> str:
    import shlex

    return shlex.quote(spec)


def _resume(folder: Path, steps, budget, device, **kw):  # noqa: ANN001, ANN003, ANN202
    from charnn.train import resume

    return resume(folder, steps=steps, time_budget=budget, kind="lm", device=device, **kw)


def run_training(start: Callable[..., Any], command: str = "charnn train", notes: list[str] | None = None) -> None:
    """Run training with SIGINT/SIGTERM turned into a clean, resumable stop; ``command`` resumes it.

    ``notes`` are said when training starts, before its first line."""
    stop = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # asked twice: stop at once
        stop.set()
        say("stopping after this step with a resumable checkpoint (press Ctrl-C again to stop at once)")

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    view = _TrainView(notes or [])
    try:
        finished = start(on_event=view, stop=stop)
    finally:
        view.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if os.environ.get("RANK", "0") != "0":
        # Under torchrun rank 0 speaks for all. The others leave at once: torch's teardown of
        # its distributed threads at interpreter exit sometimes aborts ("terminate called
        # without an active exception"), which torchrun reports as a failed run.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    if finished.reason == "complete":
        say(
            f"{finished.folder} already finished its budget at step {finished.steps}; nothing to do "
            "(pass a larger --steps or --time with --resume to train it further)"
        )
    if finished.best_val_f1 is not None:
        best = (
            f"best validation entity F1 {finished.best_val_f1:.4f} "
            f"(accuracy {finished.best_val_accuracy:.4f}, loss {finished.best_val_loss:.4f})"
        )
    elif finished.best_val_accuracy is not None:
        best = f"best validation accuracy {finished.best_val_accuracy:.4f} (loss {finished.best_val_loss:.4f})"
    else:
        best = (
            f"best validation loss {finished.best_val_loss:.4f} nats/token "
            f"({finished.best_val_bits_per_char:.4f} bits/char)"
        )
    say(f"{best}; model saved in {finished.folder}")
    print(finished.folder, flush=True)
    if finished.reason == "stopped":
        say(f"stopped at step {finished.steps}; continue with: {command} --resume {finished.folder}")
        raise typer.Exit(130)
    if finished.reason == "interrupted":
        say(f"stopped early at step {finished.steps}; the best model so far is kept")
        raise typer.Exit(130)


class _TrainView:
    """Renders trainer events: a rich progress bar on a terminal, plain lines otherwise."""

    def __init__(self, notes: list[str]) -> None:
        self.notes = notes
        self.console = stderr_console()
        self.live = sys.stderr.isatty()
        self.progress = None
        self.task = None
        self.last_line = 0.0
        self.val = "–"
        self.fields = ""

    def __call__(self, event) -> None:  # noqa: ANN001
        from charnn.events import Evaluated, Notice, Progress, RolledBack, Started

        if isinstance(event, Notice):
            self._print(event.message)
        elif isinstance(event, RolledBack):
            self._print(
                f"warning: non-finite loss or gradient in every recent step up to {event.step}: rolled back to step "
                f"{event.to_step} and halved the learning rate (now x{event.lr_scale:g})"
            )
        elif isinstance(event, Started):
            self._started(event)
        elif isinstance(event, Progress):
            self.fields = (
                f"loss {event.loss:.3f}  val {self.val}  {event.chars_per_sec / 1000:.1f}k chars/s  "
                f"|g| {event.grad_norm:.2f}  lr {event.lr:.1e}"
            )
            self._update(event.step, event.fraction, force=False)
        elif isinstance(event, Evaluated):
            marker = " (best)" if event.best else ""
            if event.val_f1 is not None:
                self.val = f"F1 {event.val_f1:.3f}"
                line = (
                    f"validation entity F1 {event.val_f1:.4f}, accuracy {event.val_accuracy:.4f}, "
                    f"loss {event.val_loss:.4f}"
                )
            elif event.val_accuracy is not None:
                self.val = f"acc {event.val_accuracy:.3f}"
                line = f"validation accuracy {event.val_accuracy:.4f}, loss {event.val_loss:.4f}"
            else:
                self.val = f"{event.val_loss:.3f}"
                line = f"validation {event.val_loss:.4f} nats/token"
                if event.val_styles:
                    shown = ", ".join(f"{name} {bits:.3f}" for name, bits in event.val_styles.items())
                    line = f"validation {event.val_loss:.4f} nats/token (mean of styles); bits/char: {shown}"
            self._print(f"step {event.step}: {line}{marker}")

    def _started(self, event) -> None:  # noqa: ANN001
        budget = " and ".join(
            part
            for part in (
                f"{event.steps} steps" if event.steps else "",
                f"{event.time_budget:g}s" if event.time_budget else "",
            )
            if part
        )
        precision = "bf16 autocast" if event.bf16 else "fp32"
        for note in self.notes:
            say(note)
        if event.resumed_from is not None:
            say(f"resuming {event.folder} at step {event.resumed_from}")
        say(
            f"training {event.parameters:,} parameters on {event.device} ({precision}); "
            f"{event.train_tokens:,} training / {event.val_tokens:,} validation tokens; budget {budget}; "
            f"run folder {event.folder}"
        )
        if self.live:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("step {task.fields[step]}"),
                BarColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=1.0, step=0, info="")

    def _update(self, step: int, fraction: float, force: bool) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=fraction, step=step, info=self.fields)
            return
        now = time.monotonic()
        if force or now - self.last_line >= 10:
            self.last_line = now
            say(f"step {step} ({fraction:.0%}): {self.fields}")

    def _print(self, line: str) -> None:
        if self.progress is not None:
            self.progress.console.print(line)
        else:
            say(line)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=1.0)
            self.progress.stop()
            self.progress = None
