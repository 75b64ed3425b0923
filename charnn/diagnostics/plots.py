"""PNG charts of gradient flow and training history.

matplotlib is an optional extra (``pip install charnn[plot]``), imported only
when a chart is drawn; `require_matplotlib` lets a command fail before any work.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charnn.errors import CharnnError, ConfigError

if TYPE_CHECKING:
    from charnn.diagnostics.gradients import GradientCurve
    from charnn.diagnostics.reports import TrainingHistory

PNG_DPI = 100
GRADS_PNG_SIZE = (900, 550)
"""Pixel width and height of `charnn grads --png`."""
HISTORY_PNG_SIZE = (900, 700)
"""Pixel width and height of `charnn plot --png`."""


class PlotUnavailableError(CharnnError):
    """matplotlib, needed for PNG output, is not installed."""


def require_matplotlib() -> None:
    """Fail early, before any measuring, when PNG output cannot be written."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotUnavailableError(
            "--png needs matplotlib, which is not installed; run `pip install charnn[plot]`"
        ) from None


def check_png_path(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir() or not path.parent.is_dir():
        raise ConfigError(f"--png {path}: cannot write there; name a file in an existing folder")
    if path.exists() or path.is_symlink():  # a device or a link, too: writing replaces what stands there
        raise ConfigError(
            f"--png {path} exists; choose another name or remove it (charnn never replaces a file that is there)"
        )
    if path.suffix.lower() != ".png":
        raise ConfigError(f"--png {path}: the chart is a PNG image; name a file ending in .png")
    return path


def gradient_flow_png(curves: Sequence[GradientCurve], path: str | Path, title: str | None = None) -> Path:
    """Draw ‖∂J(t)/∂h(t−ℓ)‖ against ℓ, one line per model, log-scale y axis."""
    figure = _figure(GRADS_PNG_SIZE)
    axes = figure.add_subplot()
    for curve in curves:
        ell = list(range(1, len(curve.norms) + 1))
        positive = [v if 0 < v < math.inf else math.nan for v in curve.norms]
        decay = f" (×{curve.decay_per_step:.3g}/step)" if curve.decay_per_step else ""
        axes.plot(ell, positive, label=f"{curve.label}{decay}", linewidth=1.8)
    axes.set_yscale("log")
    axes.set_xlabel("distance ℓ (steps back in time)")
    axes.set_ylabel("mean ‖∂J(t)/∂h(t−ℓ)‖")
    axes.set_title(title or "How the gradient of the loss decays with distance")
    axes.grid(True, which="major", alpha=0.3)
    axes.legend()
    return _save(figure, path)


def history_png(history: TrainingHistory, path: str | Path) -> Path:
    """Draw train and validation loss (bits per character) and the gradient norm against steps."""
    figure = _figure(HISTORY_PNG_SIZE)
    classifier = bool(history.val_score)
    panels = figure.subplots(3 if classifier else 2, 1, sharex=True)
    loss, grads = panels[0], panels[-1]
    if classifier:
        loss.plot(history.train_steps, history.train_loss, label="train")
        loss.plot(history.val_steps, history.val_loss, marker="o", label="validation")
        loss.set_ylabel(f"loss (nats per {history.loss_per})")
        panels[1].plot(history.val_steps, history.val_score, marker="o", label="validation")
        panels[1].set_ylabel(history.score_name)
        panels[1].grid(True, alpha=0.3)
    else:
        loss.plot(history.train_steps, history.train_bits_per_char, label="train")
        loss.plot(history.val_steps, history.val_bits_per_char, marker="o", label="validation")
        loss.set_ylabel("loss (bits per character)")
    loss.set_title(f"Training of {history.folder}")
    loss.legend()
    loss.grid(True, alpha=0.3)
    grads.plot(history.train_steps, history.grad_norm, label="mean before clipping")
    grads.plot(history.train_steps, history.grad_norm_max, label="max before clipping", alpha=0.6)
    if history.clip:
        grads.axhline(history.clip, color="grey", linestyle="--", label=f"clip at {history.clip:g}")
    grads.set_yscale("log")
    grads.set_xlabel("step")
    grads.set_ylabel("gradient norm")
    grads.legend()
    grads.grid(True, alpha=0.3)
    return _save(figure, path)


def _figure(size: tuple[int, int]) -> Any:
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # The Agg canvas and Figure API, not pyplot: no global backend switch, no GUI.
    figure = Figure(figsize=(size[0] / PNG_DPI, size[1] / PNG_DPI), dpi=PNG_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: str | Path) -> Path:
    from charnn.files import atomic_write_bytes

    path = check_png_path(path)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PNG_DPI)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as exc:
        raise ConfigError(f"--png {path}: cannot write: {exc.strerror or exc}") from None
    return path
