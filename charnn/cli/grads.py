"""`charnn grads`: how the gradient of the loss decays with distance, model against model."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from charnn.cli.console import say
from charnn.config import CELLS
from charnn.diagnostics.gradients import ACTIVATIONS, FreshModel, GradFlowConfig
from charnn.tasks.lm import LanguageModel

if TYPE_CHECKING:
    from charnn.diagnostics.gradients import GradientCurve

_DEFAULT = GradFlowConfig()
_FRESH = FreshModel()
_MODELS = "Fresh models"


def grads_command(
    text: Annotated[
        Optional[str],
        typer.Argument(
            help="Text to measure on, '-' for standard input \\[default: a run's validation split; "
            "corpora/fantasy.txt for fresh models].",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        Optional[list[Path]],
        typer.Option("--model", "-m", help="A trained run folder to measure (repeatable).", show_default=False),
    ] = None,
    cell: Annotated[
        Optional[list[str]],
        typer.Option(
            help=f"A fresh model's cell: {', '.join(CELLS)} (repeatable) \\[default: all three, unless --model].",
            show_default=False,
            rich_help_panel=_MODELS,
        ),
    ] = None,
    layers: Annotated[
        Optional[int],
        typer.Option(help=f"Stacked layers \\[default: {_FRESH.layers}].", show_default=False, rich_help_panel=_MODELS),
    ] = None,
    hidden: Annotated[
        Optional[int],
        typer.Option(help=f"Hidden width \\[default: {_FRESH.hidden}].", show_default=False, rich_help_panel=_MODELS),
    ] = None,
    embed: Annotated[
        Optional[int],
        typer.Option(help=f"Embedding width \\[default: {_FRESH.embed}].", show_default=False, rich_help_panel=_MODELS),
    ] = None,
    residual: Annotated[
        Optional[bool],
        typer.Option(
            "--residual/--no-residual",
            help="Residual connections between layers \\[default: on for 2+ layers].",
            show_default=False,
            rich_help_panel=_MODELS,
        ),
    ] = None,
    compare_residual: Annotated[
        bool,
        typer.Option(
            "--compare-residual",  # a flag: no --no- form, which took the help table's columns at 80
            help="Measure each fresh model with residual connections on and off.",
            rich_help_panel=_MODELS,
        ),
    ] = False,
    init_scale: Annotated[
        Optional[list[float]],
        typer.Option(
            help="Multiply the recurrent weights (weight_hh) by this (repeatable) \\[default: 1].",
            show_default=False,
            rich_help_panel=_MODELS,
        ),
    ] = None,
    activation: Annotated[
        str,
        typer.Option(help=f"Vanilla RNN activation: {', '.join(ACTIVATIONS)}.", rich_help_panel=_MODELS),
    ] = _FRESH.activation,
    length: Annotated[int, typer.Option("--length", "-L", help="Largest distance ℓ measured.")] = _DEFAULT.length,
    samples: Annotated[int, typer.Option(help="Windows of text the norms are averaged over.")] = _DEFAULT.samples,
    seed: Annotated[int, typer.Option(help="Seeds window positions and fresh weights.")] = _DEFAULT.seed,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (with every norm).")] = False,
    png: Annotated[
        Optional[Path],
        typer.Option("--png", help="Also draw the curves to this PNG file (needs `pip install charnn\\[plot]`)."),
    ] = None,
) -> None:
    """Measure how the gradient ‖∂J(t)/∂h(t−ℓ)‖ decays with the distance ℓ, model against model.

    J(t) is the loss at step t and h(t−ℓ) the hidden state ℓ steps earlier: all layers
    joined (for an LSTM, h and not the cell c). The norm is averaged over many windows
    of real text, for ℓ = 1..L.
    Reported per model: the decay factor per step (a least-squares line through
    log norm against ℓ: below 1 the signal vanishes geometrically, above 1 it
    explodes), how straight that line is (R²), and the distance at which the norm
    falls below 1e-3 of its value at ℓ = 1.

    [b]Examples[/b]

      charnn grads                                   # fresh rnn, lstm and gru side by side
      charnn grads --cell rnn --init-scale 0.5 --init-scale 2 --layers 1
      charnn grads --cell rnn --activation linear --init-scale 3 -L 50
      charnn grads -m runs/fantasy --cell lstm --png grads.png
      charnn grads notes.txt --cell gru --compare-residual --json | jq '.models[].decay_per_step'
    """
    from charnn.diagnostics.plots import check_png_path, require_matplotlib

    config = GradFlowConfig(length=length, samples=samples, seed=seed)
    fresh = _fresh_models(cell, model, layers, hidden, embed, residual, compare_residual, init_scale, activation)
    if png is not None:
        check_png_path(png)
        require_matplotlib()
    curves, texts = _measure(text, model or [], fresh, config)
    if as_json:
        print(json.dumps(_report(curves, texts, config)))
    else:
        _print_table(curves, texts, config)
    if png is not None:
        from charnn.diagnostics.plots import gradient_flow_png

        say(f"wrote {gradient_flow_png(curves, png, title=f'Gradient flow on {_names(texts)}')}")


def _fresh_models(
    cells: list[str] | None,
    runs: list[Path] | None,
    layers: int | None,
    hidden: int | None,
    embed: int | None,
    residual: bool | None,
    compare_residual: bool,
    scales: list[float] | None,
    activation: str,
) -> list[FreshModel]:
    """The fresh models the options describe: each cell x init scale x residual setting."""
    from charnn.errors import ConfigError

    if not cells:
        used = [
            name
            for name, value in (
                ("--layers", layers),
                ("--hidden", hidden),
                ("--embed", embed),
                ("--residual", residual),
            )
            if value is not None
        ]
        used += [name for name, on in (("--compare-residual", compare_residual), ("--init-scale", scales)) if on]
        used += ["--activation"] if activation != _FRESH.activation else []
        if runs and used:
            verb = "describes" if len(used) == 1 else "describe"
            raise ConfigError(f"{', '.join(used)} {verb} fresh models; add --cell to measure one beside --model")
        cells = [] if runs else list(CELLS)
    if activation != _FRESH.activation and "rnn" not in cells:
        raise ConfigError(f"--activation {activation} applies to --cell rnn only; add --cell rnn")
    sizes = {k: v for k, v in (("layers", layers), ("hidden", hidden), ("embed", embed)) if v is not None}
    if compare_residual and (layers if layers is not None else _FRESH.layers) < 2:
        raise ConfigError("--compare-residual compares connections between layers; give --layers 2 or more")
    if residual is not None and (layers if layers is not None else _FRESH.layers) < 2:
        flag = "--residual" if residual else "--no-residual"
        raise ConfigError(f"{flag} sets connections between layers, and one layer has none; give --layers 2 or more")
    residuals = [True, False] if compare_residual else [residual]
    return [
        FreshModel(cell=c, residual=r, init_scale=s, activation=activation if c == "rnn" else "tanh", **sizes)
        for c in dict.fromkeys(cells)
        for s in (scales or [1.0])
        for r in residuals
    ]


def _measure(
    text: str | None, runs: list[Path], fresh: list[FreshModel], config: GradFlowConfig
) -> tuple[list[GradientCurve], list[str]]:
    from charnn.diagnostics.gradients import DEFAULT_TEXT, labels, measure_fresh, measure_run
    from charnn.errors import CheckpointError, CorpusError
    from charnn.tasks import load_run
    from charnn.text.corpus import read_text

    given = read_text(text) if text is not None else None
    name = "standard input" if text == "-" else text
    curves, texts = [], []
    for folder in runs:
        run = load_run(folder, kind=LanguageModel.kind)
        if given is None and not run.validation_path.is_file():
            raise CheckpointError(f"{run.folder} keeps no validation text; name a TEXT file to measure on")
        _progress(str(folder))
        curves.append(measure_run(run, given if given is not None else read_text(run.validation_path), config))
        texts.append(name or str(run.validation_path))
    if fresh:
        if given is None and not DEFAULT_TEXT.is_file():
            raise CorpusError(f"the bundled text {DEFAULT_TEXT} is not installed; name a TEXT file to measure on")
        fresh_text = given if given is not None else read_text(DEFAULT_TEXT)
        for spec, label in zip(fresh, labels(fresh)):
            _progress(label)
            curves.append(measure_fresh(spec, fresh_text, config, label=label))
            texts.append(name or f"corpora/{DEFAULT_TEXT.name}")
    return curves, texts


def _progress(label: str) -> None:
    if sys.stderr.isatty():
        say(f"measuring {label} ...")


def _names(texts: list[str]) -> str:
    return ", ".join(dict.fromkeys(texts))


def _report(curves: list[GradientCurve], texts: list[str], config: GradFlowConfig) -> dict[str, Any]:
    from charnn.diagnostics.gradients import BURN_IN, VANISHED

    return {
        "measure": (
            "mean over windows of ||dJ(t)/dh(t-l)|| for l = 1..length, "
            "h = the hidden state all layers carry to the next step (LSTM: h, with c fixed)"
        ),
        "length": config.length,
        "samples": config.samples,
        "seed": config.seed,
        "burn_in": BURN_IN,
        "vanished_fraction": VANISHED,
        "models": [{**curve.to_dict(), "text": text} for curve, text in zip(curves, texts)],
    }


def _print_table(curves: list[GradientCurve], texts: list[str], config: GradFlowConfig) -> None:
    from charnn.cli.plot import Series, chart_width, print_chart, render_chart

    L = config.length
    print(
        f"mean |dJ(t)/dh(t-l)| over {config.samples} windows of {_names(texts)}; h = the state all layers carry, joined"
    )
    rows = [("model", "decay/step", "R^2", "|g| at l=1", f"|g| at l={L}", "below 1e-3 at")]
    for c in curves:
        rows.append(
            (
                c.label,
                f"x{c.decay_per_step:.4g}" if c.decay_per_step else "-",
                f"{c.r_squared:.3f}" if c.r_squared is not None else "-",
                f"{c.norms[0]:.3g}",
                f"{c.norms[-1]:.3g}",
                f"l = {c.vanishes_at}" if c.vanishes_at else f"none within {L}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    print()
    series = [Series(c.label, range(1, L + 1), c.norms) for c in curves]
    print_chart(render_chart(series, title="|dJ(t)/dh(t-l)|", x_label="distance l", log_y=True, width=chart_width()))
