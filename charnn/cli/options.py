"""Options that the commands share: one declaration each.

Each is an ``Annotated`` type; a command gives it its own default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from charnn.config import CELLS, CUDA_DEFAULTS, device_defaults, parse_duration

MODEL = "Model"
TRAIN = "Training"

Overwrite = Annotated[bool, typer.Option(help="Replace the run already in --out.")]

CELL = f"Recurrent cell: {', '.join(CELLS)}."
Cell = Annotated[str, typer.Option(help=CELL, rich_help_panel=MODEL)]

Embed = Annotated[int, typer.Option(help="Embedding width.", rich_help_panel=MODEL)]

Dropout = Annotated[float, typer.Option(help="Dropout probability.", rich_help_panel=MODEL)]

Residual = Annotated[
    Optional[bool],
    typer.Option(
        "--residual/--no-residual",
        help="Residual connections between layers \\[default: on for 2+ layers].",
        rich_help_panel=MODEL,
        show_default=False,
    ),
]

TieWeights = Annotated[bool, typer.Option(help="Share embedding and output weights.", rich_help_panel=MODEL)]

Steps = Annotated[Optional[int], typer.Option(help="Stop after this many steps.", rich_help_panel=TRAIN)]


def _duration(value: Optional[str]) -> Optional[str]:
    """--time checked as it is read: an empty one (`--time ''`) is refused, not taken for the default."""
    if value is not None:
        parse_duration(value)
    return value


TimeBudget = Annotated[
    Optional[str],
    typer.Option(
        "--time",
        help="Stop after this long, e.g. 90s, 5m, 1h \\[default: 5m when --steps is not given].",
        rich_help_panel=TRAIN,
        show_default=False,
        callback=_duration,
    ),
]

BatchSize = Annotated[int, typer.Option(help="Parallel rows of the text stream.", rich_help_panel=TRAIN)]

SeqLen = Annotated[int, typer.Option(help="Tokens per backpropagation window.", rich_help_panel=TRAIN)]

Lr = Annotated[
    float, typer.Option(help="Peak learning rate (AdamW, warm-up then cosine decay).", rich_help_panel=TRAIN)
]

Warmup = Annotated[int, typer.Option(help="Warm-up steps.", rich_help_panel=TRAIN)]

WeightDecay = Annotated[float, typer.Option(help="AdamW weight decay.", rich_help_panel=TRAIN)]

Clip = Annotated[float, typer.Option(help="Gradient-norm clipping threshold (0: off).", rich_help_panel=TRAIN)]

EvalEvery = Annotated[int, typer.Option(help="Validate every this many steps.", rich_help_panel=TRAIN)]

Seed = Annotated[
    int, typer.Option(help="Random seed: the same seed repeats a --steps run exactly.", rich_help_panel=TRAIN)
]

Device = Annotated[str, typer.Option(help="auto, cpu, cuda or mps.", rich_help_panel=TRAIN)]

Precision = Annotated[str, typer.Option(help="auto, fp32 or bf16 (autocast).", rich_help_panel=TRAIN)]


def _by_device(kind: type, what: str, key: str, panel: str):  # noqa: ANN202
    """An option whose default depends on the device (None: not given; see charnn.config.CUDA_DEFAULTS)."""
    cpu, cuda = device_defaults("cpu")[key], CUDA_DEFAULTS[key]
    return Annotated[
        Optional[kind],
        typer.Option(help=f"{what} \\[default: {cpu:g}; {cuda:g} on CUDA].", rich_help_panel=panel, show_default=False),
    ]


LayersByDevice = _by_device(int, "Stacked recurrent layers.", "layers", MODEL)
HiddenByDevice = _by_device(int, "Hidden state width.", "hidden", MODEL)
DropoutByDevice = _by_device(float, "Dropout probability.", "dropout", MODEL)
WeightDropByDevice = _by_device(
    float,
    "DropConnect on the recurrent (hidden-to-hidden) weights, one mask a window: holds back a large model "
    "on a small corpus.",
    "weight_drop",
    MODEL,
)
BatchSizeByDevice = _by_device(int, "Parallel rows of the text stream.", "batch_size", TRAIN)
SeqLenByDevice = _by_device(int, "Tokens per backpropagation window.", "seq_len", TRAIN)
LrByDevice = _by_device(float, "Peak learning rate (AdamW, warm-up then cosine decay).", "lr", TRAIN)

Out = Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder to write \\[default: runs/<data-name>].")]

Resume = Annotated[
    Optional[str],
    typer.Option(
        help="Continue a run exactly where it stopped or was killed: a run folder, or 'auto'.", show_default=False
    ),
]

InitFrom = Annotated[
    Optional[list[Path]],
    typer.Option(
        help="Warm start from a language model run (charnn train) of the same kind of text; give a second, "
        "trained with --reverse --tokenizer-from FIRST, for the backward direction. The model takes its "
        "shape and tokenizer: --cell, --layers, --hidden, --embed, --residual, --tokenizer and --vocab-size, "
        "when given, must match it.",
        show_default=False,
    ),
]


def later(kind: type, what: str, default: Any, panel: str | None = MODEL) -> Any:
    """An option that is None when not given, its ``default`` (said in the help) applied by the command:
    so that --init-from can refuse what the user gave against the language model it starts from."""
    return Annotated[
        Optional[kind],
        typer.Option(help=f"{what} \\[default: {default}].", rich_help_panel=panel, show_default=False),
    ]


LAYERS, HIDDEN, EMBED = "Stacked recurrent layers.", "Hidden state width.", "Embedding width."
ENCODER_TOKENIZER, VOCAB_SIZE = "Tokenizer: char, bpe or unigram.", "Subword vocabulary size."

TokenDropout = Annotated[
    float, typer.Option(help="Drop each input token whole with this probability.", rich_help_panel=MODEL)
]

PredictDevice = Annotated[str, typer.Option(help="cpu, cuda, mps or auto.")]

TokenizerFrom = Annotated[
    Optional[Path],
    typer.Option(
        help="Read text with this run's tokenizer (a language model's, say) instead of learning one from the "
        "data: a from-scratch run that reads as a warm start would (not with --init-from, --tokenizer, --vocab-size).",
        show_default=False,
    ),
]
