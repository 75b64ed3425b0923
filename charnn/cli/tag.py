"""`charnn tag train | predict | eval`: word taggers (part of speech, named entities)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from charnn.cli import console, options
from charnn.cli.console import say
from charnn.cli.encoders import (
    encoder_settings,
    input_lines,
    load,
    print_scores,
    read_ahead,
    report,
    shape_options,
    train_or_resume,
)
from charnn.cli.progress import typed_options
from charnn.config import ModelConfig, TrainConfig
from charnn.tasks.tag import Tagger

tag_app = typer.Typer(
    help="Tag words (part of speech, named entities) with a bidirectional recurrent encoder: train, predict, eval.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

# The tagger's defaults, chosen by measurement on pos-ewt and ner-wnut17 (docs/benchmarks.md).
DEFAULT_MODEL = ModelConfig(vocab_size=2, layers=1, hidden=256, embed=64, dropout=0.3, bidirectional=True)
DEFAULT_TRAIN = TrainConfig(batch_size=32, lr=3e-3, warmup_steps=100, eval_every=200)
DEFAULT_TOKENIZER, DEFAULT_VOCAB, DEFAULT_WORD_LAYERS = "char", 4000, 1
SHAPE = shape_options(DEFAULT_MODEL, DEFAULT_TOKENIZER, DEFAULT_VOCAB)
"""The options a warm start takes from its language model (charnn.cli.encoders.shape_options)."""

_Model = Annotated[
    Optional[Path],
    typer.Option("--model", "-m", help="Tagger run \\[default: $CHARNN_MODEL, else the newest tagger in ./runs]."),
]
_Format = Annotated[
    str,
    typer.Option(
        "--format",
        help="conllu, columns (token<TAB>tag), spaces (space-separated columns, the tag last: CoNLL-2003) "
        "or auto (detected from the file).",
    ),
]
_Column = Annotated[str, typer.Option(help="CoNLL-U column holding the tags: upos, xpos, deprel, ... or its number.")]


@tag_app.command("train")
@console.pipe_safe
def tag_train(
    ctx: typer.Context,
    data: Annotated[
        Optional[list[str]],
        typer.Argument(help="CoNLL-U or token<TAB>tag files; '-' reads standard input.", show_default=False),
    ] = None,
    fmt: _Format = "auto",
    column: _Column = "upos",
    out: options.Out = None,
    overwrite: options.Overwrite = False,
    resume: options.Resume = None,
    init_from: options.InitFrom = None,
    tokenizer_from: options.TokenizerFrom = None,
    val: Annotated[Optional[Path], typer.Option("--val", help="Validation file, in the same format.")] = None,
    val_fraction: Annotated[
        float, typer.Option(help="Fraction of the training sentences held out for validation.")
    ] = DEFAULT_TRAIN.val_fraction,
    tokenizer: SHAPE.tokenizer = None,
    vocab_size: SHAPE.vocab_size = None,
    word_layers: Annotated[
        int,
        typer.Option(
            help="Two-way word-level LSTM layers over the word vectors (0: none).", rich_help_panel=options.MODEL
        ),
    ] = DEFAULT_WORD_LAYERS,
    bidirectional: Annotated[
        bool, typer.Option(help="Read each sentence both ways.", rich_help_panel=options.MODEL)
    ] = DEFAULT_MODEL.bidirectional,
    cell: SHAPE.cell = None,
    layers: SHAPE.layers = None,
    hidden: SHAPE.hidden = None,
    embed: SHAPE.embed = None,
    dropout: options.Dropout = DEFAULT_MODEL.dropout,
    token_dropout: options.TokenDropout = DEFAULT_MODEL.token_dropout,
    residual: options.Residual = None,
    steps: options.Steps = None,
    time_budget: options.TimeBudget = None,
    batch_size: Annotated[
        int, typer.Option(help="Sentences per step.", rich_help_panel=options.TRAIN)
    ] = DEFAULT_TRAIN.batch_size,
    lr: options.Lr = DEFAULT_TRAIN.lr,
    warmup: options.Warmup = DEFAULT_TRAIN.warmup_steps,
    weight_decay: options.WeightDecay = DEFAULT_TRAIN.weight_decay,
    clip: options.Clip = DEFAULT_TRAIN.clip,
    eval_every: options.EvalEvery = DEFAULT_TRAIN.eval_every,
    seed: options.Seed = DEFAULT_TRAIN.seed,
    device: options.Device = DEFAULT_TRAIN.device,
    precision: options.Precision = DEFAULT_TRAIN.precision,
) -> None:
    """Train a word tagger and keep the best one (by validation accuracy; entity F1 for BIO tags) in a run folder.

    Reads CoNLL-U (the UPOS column unless --column names another) and token<TAB>tag files,
    sentences separated by an empty line.

    [b]Examples[/b]

      charnn tag train en_ewt-ud-train.conllu --val en_ewt-ud-dev.conllu --time 15m
      charnn tag train wnut17train.conll --out runs/ner --time 15m
      charnn tag train train.conllu --column xpos --out runs/xpos
    """
    settings = encoder_settings(locals(), SHAPE.defaults)

    def start(folder: Path, config: TrainConfig, **kw):  # noqa: ANN003, ANN202
        from charnn.tasks.tag.tagger import train_tagger
        from charnn.text.tagged import read_tagged

        tagged = read_tagged(data, fmt, column)
        val_data = read_tagged([val], fmt, column) if val is not None else None
        return train_tagger(
            tagged, folder, settings["model_options"], config, val=val_data, word_layers=word_layers,
            init_from=init_from or (), tokenizer_from=tokenizer_from, overwrite=overwrite,
            tokenizer_kind=settings["tokenizer_kind"],
            tokenizer_options=settings["tokenizer_options"], chosen=settings["chosen"], **kw,
        )  # fmt: skip

    train_or_resume(
        Tagger, data or [], resume, out, settings["training"], settings["model_options"], start,
        has_data=bool(data), typed=typed_options(ctx),
        missing="name the tagged data: CoNLL-U or token<TAB>tag files ('-' for standard input)",
    )  # fmt: skip


@tag_app.command("predict")
@console.pipe_safe
def tag_predict(
    source: Annotated[
        str,
        typer.Argument(help="Sentences, one a line (or tokens, one a line, with --tokens); '-' reads standard input."),
    ] = "-",
    model: _Model = None,
    tokens: Annotated[
        bool,
        typer.Option(
            "--tokens",
            help="Read one token a line, an empty line between sentences (a line's first column; "
            "CoNLL-U lines give their FORM).",
        ),
    ] = False,
    probs: Annotated[bool, typer.Option("--probs", help="Print each tag's probability after it.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object a sentence: its tokens, tags and their probabilities.")
    ] = False,
    device: options.PredictDevice = "cpu",
) -> None:
    """Tag text: print token<TAB>tag lines, an empty line after each sentence, as the sentences arrive.

    Raw text is read one sentence a line and split on whitespace; --tokens reads one token a
    line, so a token<TAB>tag file or a CoNLL-U file can be piped straight in.

    [b]Examples[/b]

      echo "Where is the Empire State Building ?" | charnn tag predict -m runs/ner
      charnn tag predict sentences.txt --json > tagged.jsonl
      cut -f1 wnut17train.conll | charnn tag predict --tokens -m runs/ner
    """
    from charnn.tasks.tag.tagger import tag_sentences

    run = load(Tagger, model, device)
    sentences = _token_sentences(source) if tokens else (line.split() for line in input_lines(source))
    out = sys.stdout
    ahead, more_ready = read_ahead(sentences)
    for words, tags, chosen in tag_sentences(run, ahead, more_ready=more_ready):
        if as_json:
            out.write(json.dumps({"tokens": words, "tags": tags, "probabilities": chosen}) + "\n")
        elif probs:
            out.write("".join(f"{w}\t{t}\t{p:.4f}\n" for w, t, p in zip(words, tags, chosen, strict=True)) + "\n")
        else:
            out.write("".join(f"{w}\t{t}\n" for w, t in zip(words, tags, strict=True)) + "\n")
        out.flush()


def _token_sentences(source: str):  # noqa: ANN202
    """Sentences of one token a line, split at empty lines.

    A token<TAB>tag line gives its first column; a CoNLL-U line (10 columns) its FORM, with
    comment lines ('# ...'), multiword-token lines (3-4) and empty nodes (8.1) skipped; a line of
    space-separated columns (CoNLL-2003) its first, a -DOCSTART- line ending the sentence.
    """
    from charnn.text.tagged import DOCSTART

    words: list[str] = []
    told, shape = False, None
    for number, line in enumerate(input_lines(source), 1):
        shape = _same_shape(shape, line, number, source)
        if not line.strip() or line.split(maxsplit=1)[0] == DOCSTART:
            if words:
                yield words
                words = []
            continue
        fields = line.split("\t")
        if len(fields) == 1 and line.startswith("# "):
            continue  # a CoNLL-U comment: a token holds no space
        if len(fields) == 10:
            if "-" in fields[0] or "." in fields[0]:
                continue
            fields = fields[1:]
        elif len(fields) == 1 and len(line.split()) > 1:
            fields = line.split()  # space-separated columns: a token holds no space
        if len(fields) > 1 and not told:
            say("lines hold columns: tagging each line's token (the FORM of CoNLL-U lines, else the first column)")
            told = True
        words.append(fields[0].strip() or "_")
    if words:
        yield words


def _same_shape(shape: str | None, line: str, number: int, source: str) -> str | None:
    """The input's shape (one token a line, or columns), as its first token line sets it; a line of columns after
    lines of one token is refused, as training refuses mixed formats: "New York" among single tokens would be read
    as the token "New" tagged "York", and a word silently lost."""
    from charnn.errors import CorpusError

    if not line.strip() or line.startswith("# "):
        return shape
    this = "columns" if "\t" in line or len(line.split()) > 1 else "one token"
    if shape == "one token" and this == "columns":
        where = "standard input" if source == "-" else source
        raise CorpusError(
            f"{where}, line {number}: holds columns (or a space), but the lines before hold one token each; "
            "a token holds no space: give it one line a token"
        )
    return shape or this


@tag_app.command("eval")
@console.pipe_safe
def tag_eval(
    source: Annotated[str, typer.Argument(help="CoNLL-U or token<TAB>tag file; '-' reads standard input.")],
    model: _Model = None,
    fmt: _Format = "auto",
    column: _Column = "upos",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    device: options.PredictDevice = "cpu",
) -> None:
    """Token accuracy, per-tag precision/recall/F1 and, for BIO tags, entity precision/recall/F1.

    An entity counts when its span and type both match, as conlleval counts them.

    [b]Examples[/b]

      charnn tag eval en_ewt-ud-dev.conllu -m runs/pos
      charnn tag eval emerging.dev.conll -m runs/ner --json | jq .entity_f1
    """
    from charnn.tasks.tag.tagger import evaluate_tagged
    from charnn.text.tagged import read_tagged

    run = load(Tagger, model, device)
    report(run, evaluate_tagged(run, read_tagged([source], fmt, column)), "unknown_tags", as_json, _print_table)


def _print_table(figures: dict) -> None:
    print(f"token accuracy {figures['accuracy']:.4f}  ({figures['words']:,} words, {figures['sentences']:,} sentences)")
    if "entity_f1" in figures:
        print(
            f"entities: precision {figures['entity_precision']:.4f}  recall {figures['entity_recall']:.4f}  "
            f"F1 {figures['entity_f1']:.4f}  ({figures['entities']:,} in the file)"
        )
    print_scores("tag", figures["tags"], figures)
    if "entity_types" in figures:
        types = figures["entity_types"]
        names = list(types)
        print_scores(
            "entity", names, {k: [types[n][k] for n in names] for k in ("precision", "recall", "f1", "support")}
        )
