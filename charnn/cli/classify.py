"""`charnn classify train | predict | eval`: sentence classifiers, in fastText's verbs."""

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
from charnn.tasks.classify import Classifier

classify_app = typer.Typer(
    help="Classify sentences with a bidirectional recurrent encoder: train, predict, eval.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

# The classifier's defaults, chosen by measurement on sentiment-mr (docs/benchmarks.md).
DEFAULT_MODEL = ModelConfig(
    vocab_size=2, layers=1, hidden=256, embed=128, dropout=0.3, bidirectional=True, token_dropout=0.15
)
DEFAULT_TRAIN = TrainConfig(batch_size=32, lr=3e-3, warmup_steps=50, eval_every=100)
DEFAULT_TOKENIZER, DEFAULT_VOCAB, DEFAULT_POOL = "bpe", 4000, "attention"
WARM_ENCODER_LR_SCALE = 0.1  # chosen on training rows outside the labelled ones (docs/classifying.md, "Warm starts")
SHAPE = shape_options(DEFAULT_MODEL, DEFAULT_TOKENIZER, DEFAULT_VOCAB)
"""The options a warm start takes from its language model (charnn.cli.encoders.shape_options)."""

_Model = Annotated[
    Optional[Path],
    typer.Option(
        "--model", "-m", help="Classifier run \\[default: $CHARNN_MODEL, else the newest classifier in ./runs]."
    ),
]


@classify_app.command("train")
@console.pipe_safe
def classify_train(
    ctx: typer.Context,
    data: Annotated[
        Optional[list[str]],
        typer.Argument(help="label<TAB>text files; '-' reads standard input.", show_default=False),
    ] = None,
    label: Annotated[
        Optional[list[str]],
        typer.Option(
            "--label", help="NAME=FILE: every line of FILE is a text of label NAME (repeatable).", show_default=False
        ),
    ] = None,
    out: options.Out = None,
    overwrite: options.Overwrite = False,
    resume: options.Resume = None,
    init_from: options.InitFrom = None,
    tokenizer_from: options.TokenizerFrom = None,
    val: Annotated[Optional[Path], typer.Option("--val", help="Validation file (label<TAB>text).")] = None,
    val_fraction: Annotated[
        float, typer.Option(help="Fraction of each label's texts held out for validation.")
    ] = DEFAULT_TRAIN.val_fraction,
    tokenizer: SHAPE.tokenizer = None,
    vocab_size: SHAPE.vocab_size = None,
    pool: Annotated[
        str, typer.Option(help="Sentence head: final, mean, max, mean-max or attention.", rich_help_panel=options.MODEL)
    ] = DEFAULT_POOL,
    bidirectional: Annotated[
        bool, typer.Option(help="Read each text both ways.", rich_help_panel=options.MODEL)
    ] = DEFAULT_MODEL.bidirectional,
    ngrams: Annotated[
        bool | None,
        typer.Option(
            help="Beside the encoder, a naive-Bayes-weighted regression over each text's word 1-2-grams and "
            "character 3-6-grams, fitted in seconds and mixed in as the held-out texts choose "
            "\\[default: ngrams].",
            show_default=False,
            rich_help_panel=options.MODEL,
        ),
    ] = None,
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
        int, typer.Option(help="Texts per step.", rich_help_panel=options.TRAIN)
    ] = DEFAULT_TRAIN.batch_size,
    lr: options.Lr = DEFAULT_TRAIN.lr,
    encoder_lr_scale: Annotated[
        Optional[float],
        typer.Option(
            help="The embedding and recurrent layers learn at this fraction of --lr, the head at the full rate "
            "(0 freezes them) \\[default: 0.1 with --init-from, so that the labels adjust what the language "
            "models learnt rather than overwrite it; else 1].",
            rich_help_panel=options.TRAIN,
            show_default=False,
        ),
    ] = None,
    warmup: options.Warmup = DEFAULT_TRAIN.warmup_steps,
    weight_decay: options.WeightDecay = DEFAULT_TRAIN.weight_decay,
    clip: options.Clip = DEFAULT_TRAIN.clip,
    eval_every: options.EvalEvery = DEFAULT_TRAIN.eval_every,
    seed: options.Seed = DEFAULT_TRAIN.seed,
    device: options.Device = DEFAULT_TRAIN.device,
    precision: options.Precision = DEFAULT_TRAIN.precision,
) -> None:
    """Train a sentence classifier and keep the best one (by validation accuracy) in a run folder.

    [b]Examples[/b]

      charnn classify train reviews.tsv --time 10m
      charnn classify train --label pos=good.txt --label neg=bad.txt --out runs/mood
      charnn train texts.txt --tokenizer bpe --embed-init cooccurrence --out runs/fwd
      charnn train texts.txt --reverse --tokenizer-from runs/fwd --embed-init cooccurrence --out runs/bwd
      charnn classify train few.tsv --init-from runs/fwd --init-from runs/bwd --time 5m
    """
    if encoder_lr_scale is None:
        encoder_lr_scale = WARM_ENCODER_LR_SCALE if init_from else 1.0
    settings = encoder_settings(locals(), SHAPE.defaults)
    settings["training"]["encoder_lr_scale"] = encoder_lr_scale

    def start(folder: Path, config: TrainConfig, **kw):  # noqa: ANN003, ANN202
        from charnn.tasks.classify.classifier import train_classifier
        from charnn.text.labelled import parse_label_files, read_labelled

        labelled = read_labelled(data or [], parse_label_files(label or []))
        val_data = read_labelled([val]) if val is not None else None
        return train_classifier(
            labelled, folder, settings["model_options"], config, val=val_data, pool=pool,
            **({} if ngrams is None else {"ngrams": ngrams}),
            init_from=init_from or (),
            tokenizer_from=tokenizer_from, overwrite=overwrite, tokenizer_kind=settings["tokenizer_kind"],
            tokenizer_options=settings["tokenizer_options"], chosen=settings["chosen"], **kw,
        )  # fmt: skip

    train_or_resume(
        Classifier, data or [], resume, out, settings["training"], settings["model_options"], start,
        has_data=bool(data or label), typed=typed_options(ctx),
        missing="name the labelled data: label<TAB>text files ('-' for standard input), or --label NAME=FILE",
    )  # fmt: skip


@classify_app.command("predict")
@console.pipe_safe
def classify_predict(
    source: Annotated[str, typer.Argument(help="Texts, one a line; '-' (the default) reads standard input.")] = "-",
    model: _Model = None,
    probs: Annotated[bool, typer.Option("--probs", help="Print the label's probability after it.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object a line: the text's label and every label's probability.")
    ] = False,
    device: options.PredictDevice = "cpu",
) -> None:
    """Print one predicted label per input line, in order, as the lines arrive.

    Lines holding a tab are read as label<TAB>text and their text is classified, so a
    labelled file can be piped straight in.

    [b]Examples[/b]

      echo "a gripping, funny film" | charnn classify predict -m runs/mood
      charnn classify predict reviews.txt --json > predictions.jsonl
    """
    from charnn.tasks.classify.classifier import predict_lines

    run = load(Classifier, model, device)
    told = False

    def texts():  # noqa: ANN202
        nonlocal told
        for line in input_lines(source):
            if "\t" in line:
                if not told:
                    say("lines hold a tab: reading them as label<TAB>text and classifying the text")
                    told = True
                line = line.split("\t", 1)[1]
            yield line.strip()

    out = sys.stdout
    lines, more_ready = read_ahead(texts())
    for label, probabilities in predict_lines(run, lines, more_ready=more_ready):
        if as_json:
            out.write(json.dumps({"label": label, "probabilities": probabilities}) + "\n")
        elif probs:
            out.write(f"{label}\t{probabilities[label]:.4f}\n")
        else:
            out.write(label + "\n")
        out.flush()


@classify_app.command("eval")
@console.pipe_safe
def classify_eval(
    source: Annotated[str, typer.Argument(help="label<TAB>text file; '-' reads standard input.")],
    model: _Model = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    device: options.PredictDevice = "cpu",
) -> None:
    """Accuracy, macro-F1, per-label precision/recall/F1 and the confusion matrix of labelled texts.

    [b]Examples[/b]

      charnn classify eval dev.tsv -m runs/mood
      charnn classify eval dev.tsv --json | jq .accuracy
    """
    from charnn.tasks.classify.classifier import evaluate_labelled
    from charnn.text.labelled import read_labelled

    run = load(Classifier, model, device)
    report(run, evaluate_labelled(run, read_labelled([source])), "unknown_labels", as_json, _print_table)


def _print_table(figures: dict) -> None:
    print(f"accuracy {figures['accuracy']:.4f}  macro-F1 {figures['macro_f1']:.4f}  ({figures['texts']} texts)")
    names = figures["labels"]
    print_scores("label", names, figures)
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        confusion = Table("true \\ predicted", *names)
        for name, row in zip(names, figures["confusion"]):
            confusion.add_row(name, *(str(n) for n in row))
        Console(file=sys.stdout, highlight=False, soft_wrap=True).print(confusion)
        return
    print("confusion (rows: true, columns: predicted)\t" + "\t".join(names))
    for name, row in zip(names, figures["confusion"]):
        print(name + "\t" + "\t".join(str(n) for n in row))
