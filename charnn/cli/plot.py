"""`charnn plot`: a run's loss and gradient-norm curves, in the terminal and as a PNG.

Also the terminal chart that `charnn grads` shares: plain ASCII on a grid, one marker
per series, coloured (via rich) only when the stream is a terminal and NO_COLOR is unset.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional, TextIO

import typer

from charnn.cli.console import resolve_run, say

if TYPE_CHECKING:
    from charnn.diagnostics.reports import TrainingHistory

MARKERS = "*o+x#@%&"
COLORS = ("red", "green", "blue", "magenta", "cyan", "yellow", "bright_red", "bright_green")


@dataclass(frozen=True)
class Series:
    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    marker: str | None = None
    """Drawn with this character (default: the next of MARKERS); '.' suits reference lines."""


Cell = tuple[str, Optional[int]]
"""A character of the chart and the series it belongs to (None: axes and labels)."""


def render_chart(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    log_y: bool = False,
    width: int = 64,
    height: int = 14,
) -> list[list[Cell]]:
    """Lay the series out on a width x height grid of characters with axes and a legend.

    Points in the same column are averaged (on the log scale when ``log_y``) and joined
    by straight lines; non-finite values, and values <= 0 on a log scale, are left out.
    """
    transform = (lambda v: math.log10(v) if v > 0 else math.nan) if log_y else (lambda v: v)
    points = [[(x, transform(y)) for x, y in zip(s.xs, s.ys) if math.isfinite(y)] for s in series]
    points = [[(x, y) for x, y in pts if math.isfinite(y)] for pts in points]
    xs = [x for pts in points for x, _ in pts]
    ys = [y for pts in points for _, y in pts]
    if not xs:
        return [[(c, None) for c in f"{title}: nothing to draw"]]
    x_lo, x_hi = min(xs), max(xs)
    y_lo, y_hi = min(ys), max(ys)
    if y_hi - y_lo < 1e-12:
        pad = 1.0 if log_y else abs(y_hi) * 0.1 or 1.0
        y_lo, y_hi = y_lo - pad, y_hi + pad
    grid: list[list[Cell]] = [[(" ", None)] * width for _ in range(height)]
    for index, pts in enumerate(points):
        marker = series[index].marker or MARKERS[index % len(MARKERS)]
        columns: dict[int, list[float]] = {}
        for x, y in pts:
            col = 0 if x_hi == x_lo else round((x - x_lo) / (x_hi - x_lo) * (width - 1))
            columns.setdefault(col, []).append(y)
        for col, y in _join(columns).items():
            row = round((y_hi - y) / (y_hi - y_lo) * (height - 1))
            grid[row][col] = (marker, index)

    def tick(value: float) -> str:
        return f"{10**value:.2g}" if log_y else f"{value:.3g}"

    ticks = {0: tick(y_hi), height // 2: tick((y_hi + y_lo) / 2), height - 1: tick(y_lo)}
    margin = max(len(t) for t in ticks.values())
    lines: list[list[Cell]] = [_plain(f"{title}{' (log scale)' if log_y else ''}")]
    for row in range(height):
        lines.append(_plain(f"{ticks.get(row, ''):>{margin}} |") + grid[row])
    lines.append(_plain(f"{'':>{margin}} +{'-' * width}"))
    left, right = f"{x_lo:g}", f"{x_hi:g}"
    gap = max(1, width - len(left) - len(right) - len(x_label))
    lines.append(_plain(f"{'':>{margin}}  {left}{' ' * (gap // 2)}{x_label}{' ' * (gap - gap // 2)}{right}"))
    legend: list[Cell] = _plain(" " * (margin + 2))
    for index, s in enumerate(series):
        marker = s.marker or MARKERS[index % len(MARKERS)]
        legend += [(marker, index)] + _plain(f" {s.label}   ")
    lines.append(legend)
    return lines


def _join(columns: dict[int, list[float]]) -> dict[int, float]:
    """Each column's mean, and straight-line values for the empty columns between two points."""
    means = {col: sum(values) / len(values) for col, values in sorted(columns.items())}
    cols = list(means)
    for left, right in zip(cols, cols[1:]):
        for col in range(left + 1, right):
            means[col] = means[left] + (means[right] - means[left]) * (col - left) / (right - left)
    return means


def _plain(text: str) -> list[Cell]:
    return [(c, None) for c in text]


def wants_color(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set or TERM is dumb."""
    if "NO_COLOR" in os.environ or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def print_chart(lines: list[list[Cell]], stream: TextIO | None = None) -> None:
    """Write a rendered chart: plain text, or coloured markers on a colour terminal."""
    stream = stream or sys.stdout
    if not wants_color(stream):
        for line in lines:
            print("".join(c for c, _ in line).rstrip(), file=stream)
        return
    from rich.console import Console
    from rich.text import Text

    console = Console(file=stream, highlight=False, soft_wrap=True)
    for line in lines:
        text = Text()
        for char, index in line:
            text.append(char, style=COLORS[index % len(COLORS)] if index is not None else None)
        text.rstrip()
        console.print(text)


def chart_width() -> int:
    """Chart columns that fit the terminal (stdout), between 40 and 100."""
    import shutil

    return max(40, min(100, shutil.get_terminal_size((80, 24)).columns - 12))


def plot_command(
    run: Annotated[
        Optional[Path],
        typer.Argument(help="Run folder \\[default: $CHARNN_MODEL, else the newest in ./runs].", show_default=False),
    ] = None,
    png: Annotated[
        Optional[Path],
        typer.Option("--png", help="Also write the charts to this PNG file (needs `pip install charnn\\[plot]`)."),
    ] = None,
) -> None:
    """Draw a run's training: train and validation loss (bits per character) and the gradient norm.

    The gradient norm is taken before clipping, as training logs it (mean and largest
    over each logged interval); a summary says how often clipping fired. Works on a
    run that is still training.

    [b]Examples[/b]

      charnn plot runs/fantasy
      charnn plot runs/fantasy --png fantasy.png
    """
    from charnn.diagnostics.plots import check_png_path, history_png, require_matplotlib
    from charnn.diagnostics.reports import read_history

    if png is not None:
        check_png_path(png)
        require_matplotlib()
    history = read_history(resolve_run(run, kind=None, argument_of="plot"))
    for line in _summary(history):
        print(line)
    width = chart_width()
    print()
    if history.val_score:  # a classifier: loss per text, and the accuracy that picks the model
        loss = [Series("train", history.train_steps, history.train_loss)]
        loss.append(Series("validation", history.val_steps, history.val_loss))
        print_chart(render_chart(loss, title=f"loss, nats per {history.loss_per}", x_label="step", width=width))
        print()
        score = [Series("validation", history.val_steps, history.val_score)]
        print_chart(render_chart(score, title=f"validation {history.score_name}", x_label="step", width=width))
    else:
        loss = [Series("train", history.train_steps, history.train_bits_per_char)]
        loss.append(Series("validation", history.val_steps, history.val_bits_per_char))
        print_chart(render_chart(loss, title="loss, bits per character", x_label="step", width=width))
    grads = [
        Series("mean |g| before clipping", history.train_steps, history.grad_norm),
        Series("max |g|", history.train_steps, history.grad_norm_max),
    ]
    if history.clip:
        grads.insert(
            0, Series(f"clip at {history.clip:g}", history.train_steps, [history.clip] * len(history.train_steps), ".")
        )
    print()
    print_chart(render_chart(grads, title="gradient norm", x_label="step", log_y=True, width=width))
    if png is not None:
        say(f"wrote {history_png(history, png)}")


def _summary(history: TrainingHistory) -> list[str]:
    lines = []
    steps = history.train_steps[-1] if history.train_steps else 0
    if history.val_score and history.train_loss:
        first, last = history.train_loss[0], history.train_loss[-1]
        per = history.loss_per
        lines.append(f"{history.folder}: {steps} logged steps; train loss {first:.3f} -> {last:.3f} nats/{per}")
    elif history.train_bits_per_char:
        first, last = history.train_bits_per_char[0], history.train_bits_per_char[-1]
        lines.append(f"{history.folder}: {steps} logged steps; train loss {first:.3f} -> {last:.3f} bits/char")
    best = history.kept()  # the validation whose model the run keeps
    if best is not None and history.val_score:
        name, figure = history.score_name, history.evaluations[best].get(history.score_key)
        if isinstance(figure, int | float):
            lines.append(f"best validation {name} {figure:.4f} at step {history.val_steps[best]}")
    elif best is not None and history.val_bits_per_char:
        lines.append(
            f"best validation loss {history.val_bits_per_char[best]:.4f} bits/char at step {history.val_steps[best]}"
        )
    if history.grad_norm:
        clip = f"clipping at {history.clip:g}" if history.clip else "clipping (off)"
        share = f" ({history.clipped / steps:.0%})" if steps else ""
        lines.append(
            f"gradient norm before clipping: mean {sum(history.grad_norm) / len(history.grad_norm):.3g}, "
            f"max {max(history.grad_norm_max):.3g}; {clip} fired on {history.clipped} of {steps} steps{share}; "
            f"{history.skipped} skipped"
        )
    return lines
