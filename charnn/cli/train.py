"""`charnn train`: options -> TrainConfig -> charnn.tasks.lm.prepare.train -> progress on stderr."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from charnn.cli import options
from charnn.cli.console import SIGPIPE_EXIT, say, silence
from charnn.cli.progress import refuse_fixed, resume_run, run_training, typed_options
from charnn.config import ModelConfig, TrainConfig, parse_duration
from charnn.errors import ConfigError
from charnn.tasks.lm import LanguageModel

_DEFAULT_MODEL = ModelConfig(vocab_size=2)
_DEFAULT_TRAIN = TrainConfig()


def train_command(
    ctx: typer.Context,
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
            "keeps its settings; --steps/--time set a new total budget.",
            show_default=False,
        ),
    ] = None,
    init_from: Annotated[
        Optional[Path],
        typer.Option(
            help="Fine-tune: start from this run's best weights, model settings and vocabulary "
            "(model and tokenizer options may then only agree with it).",
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
        typer.Option(
            "--style-per-file",  # a flag: no --no- form, which took the help table's columns at 80
            help="Make each corpus file a style, named after the file (fantasy.txt: fantasy).",
        ),
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

    if bidirectional:
        from charnn.model import check_language_model

        check_language_model(ModelConfig(vocab_size=2, bidirectional=True))
    budget = parse_duration(time_budget) if time_budget is not None else None  # --time '' is refused, not 5m
    _check_combination(corpus, style, style_per_file, reverse, resume, out, embed_init, init_from)
    _refuse_ignored(ctx, corpus, style, style_per_file, val, init_from)
    if init_from is not None:
        _refuse_unkept(ctx, init_from)
    if resume is not None and not corpus and not style:
        _refuse_fixed(ctx)
        folder = out if resume == "auto" else Path(resume)
        if folder is None:
            raise ConfigError("--resume auto continues --out or runs/<corpus-name>: name the corpus or pass --out")
        resume_run(folder, LanguageModel.kind, steps, budget, device, "charnn train")
        return
    if not corpus and not style:
        raise ConfigError("name a corpus to train on (a text file, or '-' for standard input), or pass --resume RUN")
    given = dict(
        layers=layers, hidden=hidden, dropout=dropout, weight_drop=weight_drop, batch_size=batch_size,
        seq_len=seq_len, lr=lr,
    )  # fmt: skip
    from charnn.device import device_settings

    chosen, note = device_settings(device, given)
    notes = [note] if note else []  # said when training starts: a bad corpus still gets its one line alone
    layers, hidden, dropout, weight_drop, batch_size, seq_len, lr = (chosen[key] for key in given)
    config = TrainConfig(
        seq_len=seq_len, batch_size=batch_size, lr=lr, warmup_steps=warmup, weight_decay=weight_decay, clip=clip,
        steps=steps, time_budget=budget, eval_every=eval_every, val_fraction=val_fraction, seed=seed, device=device,
        precision=precision, embed_init=embed_init,
    )  # fmt: skip
    model_options = dict(
        cell=cell, layers=layers, hidden=hidden, embed=embed, dropout=dropout, weight_drop=weight_drop,
        residual=residual, tie_weights=tie_weights,
    )  # fmt: skip
    ModelConfig(vocab_size=2, **model_options)  # reject bad sizes before reading the corpus
    options = dict(
        model_options=model_options,
        tokenizer_kind=tokenizer,
        tokenizer_options={} if vocab_size is None else {"vocab_size": vocab_size},
        overwrite=overwrite,
        resume=resume is not None,
        budget_given=steps is not None or budget is not None,
        init_from=init_from,
    )
    if style or style_per_file:
        _train_styles(
            style, corpus if style_per_file else None, records, val, resume, out, config, given, notes, options
        )
        return
    if val is not None and len(val) > 1:
        raise ConfigError("--val is given more than once; give one validation file (per style only with --style)")
    if records is not None and len(records) > 1:
        raise ConfigError("--records is given more than once; give one setting (per style only with --style)")
    _train_corpus(corpus, records[0] if records else None, Path(val[0]) if val else None, resume, out, config, given,
                  notes, options, reverse=reverse, tokenizer_from=tokenizer_from)  # fmt: skip


KEPT_BY_FINE_TUNING = (
    "cell", "layers", "hidden", "embed", "dropout", "weight_drop", "residual", "tie_weights", "tokenizer", "vocab_size",
)  # fmt: skip
"""The options of a new model that --init-from takes from the run it fine-tunes."""


def _typed(ctx: typer.Context, key: str) -> bool:
    """Whether the option ``key`` was typed on the command line (not left at its default)."""
    return getattr(ctx.get_parameter_source(key), "name", None) == "COMMANDLINE"


def _refuse_ignored(ctx: typer.Context, corpus, style, style_per_file, val, init_from) -> None:  # noqa: ANN001
    """Refuse an option that another given beside it would silently override, before anything is read."""
    lender, val, styled = ctx.params["tokenizer_from"], val or [], bool(style or style_per_file)
    if lender is not None and init_from is not None:
        raise ConfigError(
            "--tokenizer-from and --init-from do not go together: fine-tuning reads text with the tokenizer of "
            "the run it fine-tunes; drop --tokenizer-from"
        )
    if lender is not None and styled:
        raise ConfigError("--tokenizer-from does not lend to styles: a styles run makes its own tokenizer from every "
                          "style's text; drop --tokenizer-from")  # fmt: skip
    for flag in ("--tokenizer", "--vocab-size") if lender is not None else ():
        if _typed(ctx, flag[2:].replace("-", "_")):
            raise ConfigError(f"{flag} is a tokenizer's, and --tokenizer-from {lender} lends one; drop {flag}")
    names = {s.partition("=")[0].strip() for s in style or []} | {Path(f).stem for f in corpus or [] if style_per_file}
    if val and _typed(ctx, "val_fraction") and (not styled or names <= {v.partition("=")[0] for v in val}):
        held = "a style's text when it has no --val file" if styled else "the corpus when no --val file is given"
        raise ConfigError(f"--val-fraction splits {held}, and --val gives every validation text; drop one of them")
    files = [*(corpus or []), *(spec.partition("=")[2] for spec in style or [])]
    files += [v.partition("=")[2] for v in val] if styled else val
    if files.count("-") > 1:
        raise ConfigError("standard input can be read only once; name '-' once (a corpus, a style's file or --val)")


def _refuse_fixed(ctx: typer.Context) -> None:
    """`--resume RUN` with no corpus: refuse the options the run was started with (they cannot change)."""
    named = typed_options(ctx)
    if "--overwrite" in named:  # not a setting of the run: it is for the corpus's new run (docs/training.md)
        raise ConfigError(
            "--overwrite --resume replaces a run with a new one trained on the corpus given; with no corpus, "
            "--resume continues the run as it is: drop --overwrite, or name the corpus"
        )
    refuse_fixed(named)


def _refuse_unkept(ctx: typer.Context, init_from: Path) -> None:
    """Refuse a model or tokenizer option typed beside --init-from that differs from the run fine-tuned, rather
    than ignore it (the run's model and tokenizer go on as they are)."""
    from charnn.runs.checkpoint import check_run_folder

    typed = {key: ctx.params[key] for key in KEPT_BY_FINE_TUNING if _typed(ctx, key)}
    if not typed:
        return
    config = check_run_folder(init_from)
    theirs = {**config["model"], "tokenizer": config["tokenizer"].get("kind")}
    theirs["vocab_size"] = None if theirs["tokenizer"] == "char" else theirs.get("vocab_size")
    for key, value in typed.items():
        if value == theirs.get(key):
            continue
        flag = "--" + key.replace("_", "-")
        given, was = f"{flag} {value}", f"{flag} {theirs.get(key)}"
        if isinstance(value, bool):
            given, was = (flag if b else flag.replace("--", "--no-", 1) for b in (value, bool(theirs.get(key))))
            flag = given
        if key == "vocab_size" and theirs["vocab_size"] is None:
            was = "a character tokenizer (no vocabulary size)"
        raise ConfigError(
            f"{given} does not fit --init-from {init_from}, which has {was}: fine-tuning goes on with its model and "
            f"tokenizer; drop {flag}"
        )


def _check_combination(corpus, style, style_per_file, reverse, resume, out, embed_init, init_from) -> None:  # noqa: ANN001
    """Refuse options that do not go together, before anything is read."""
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
    if embed_init != "random" and init_from is not None:
        raise ConfigError(
            f"--embed-init {embed_init} starts a new model's embedding, and --init-from keeps the one it "
            "fine-tunes; drop one of them"
        )


def _named_corpus_hint(sources) -> None:  # noqa: ANN001
    """A missing file named like a corpus of the catalogue (`charnn train shakespeare`) says how to get it."""
    from charnn.corpora.catalogue import load_catalogue
    from charnn.errors import CorpusError

    for source in sources:
        if source != "-" and not Path(source).exists() and source in load_catalogue():
            raise CorpusError(
                f"{source}: no such file; {source} is a named corpus: "
                f'charnn train "$(charnn corpus get {source})" fetches and trains on it'
            )


def _train_corpus(corpus, records, val, resume, out, config, given, notes, options, **more) -> None:  # noqa: ANN001, ANN003
    """`charnn train CORPUS...`: a stream or record run (charnn.tasks.lm.prepare)."""
    from charnn.device import fit_small_corpus
    from charnn.tasks.lm.setup import check_distinct, records_setting
    from charnn.tasks.lm.styles import NAME
    from charnn.text.corpus import read_corpus, read_validation
    from charnn.text.records import parse_format

    if records is not None and records != "none":
        name, sep, setting = records.partition("=")
        if sep and setting in ("line", "blank", "none") and NAME.match(name):
            raise ConfigError(
                f"--records {records!r} sets style {name}'s records, and this run has no --style; "
                f"give --records {setting}, or name the styles with --style NAME=FILE"
            )
        parse_format(records)  # a bad separator is refused before the corpus is read
    _named_corpus_hint(corpus)
    check_distinct(corpus, val)
    corpus_text = read_corpus(corpus)
    config, note = fit_small_corpus(config, given, corpus_text.stats.chars)
    notes += [note] if note else []
    records, messages = records_setting(records, corpus_text, options["init_from"])
    val_text = read_validation(val, minimum=1 if records else 2) if val is not None else None  # a stream's needs 2
    _say_first(messages)
    folder = Path(resume) if resume not in (None, "auto") else out or Path("runs") / corpus_text.name

    def new_run(**kw):  # noqa: ANN003, ANN202
        from charnn.tasks.lm.prepare import train

        model_options = options["model_options"]
        rest = {k: v for k, v in options.items() if k != "model_options"}
        return train(corpus_text, folder, model_options, config, val_text=val_text, records=records, **rest, **more,
                     **kw)  # fmt: skip

    run_training(new_run, notes=notes)


def _train_styles(specs, files, records, val, resume, out, config, given, notes, options) -> None:  # noqa: ANN001
    """`charnn train --style ...` / `--style-per-file FILES`: one conditional model (charnn.tasks.lm.styles)."""
    from charnn.device import fit_small_corpus
    from charnn.tasks.lm.setup import style_data
    from charnn.tasks.lm.styles import styles_folder_name

    styles, messages = style_data(specs, files, records or [], val or [])
    _say_first(messages)
    config, note = fit_small_corpus(config, given, sum(s.corpus.stats.chars for s in styles))
    notes += [note] if note else []
    default = Path("runs") / styles_folder_name([s.name for s in styles])
    folder = Path(resume) if resume not in (None, "auto") else out or default

    def new_run(**kw):  # noqa: ANN003, ANN202
        from charnn.tasks.lm.style_runs import train_styles

        model_options = options["model_options"]
        rest = {k: v for k, v in options.items() if k != "model_options"}
        return train_styles(styles, folder, model_options, config, **rest, **kw)

    run_training(new_run, notes=notes)


def _say_first(messages: list[str]) -> None:
    """Say ``messages`` now, from the first process alone under torchrun."""
    from charnn.training.distributed import is_main_process

    try:
        for message in messages if is_main_process() else []:
            say(message)
    except BrokenPipeError:  # nobody reads stderr: nothing is trained for nobody
        silence(sys.stderr)
        raise typer.Exit(SIGPIPE_EXIT) from None
