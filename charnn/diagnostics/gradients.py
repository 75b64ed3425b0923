"""Gradient flow: how the gradient of the loss decays with distance back in time.

For a model and a text, many windows are cut at random positions and
run one time step at a time, keeping every step's hidden state. The loss J(t) at the
last position t is backpropagated, and the norm of its gradient with respect to the
hidden state ℓ steps earlier, ‖∂J(t)/∂h(t−ℓ)‖, is read for ℓ = 1..L::

    window:  [ burn-in (no grad) | x(t−L) ... x(t−1) x(t) | y ]
                                    h(t−L) ... h(t−1) h(t) -> logits -> J(t) = −log p(y)
             ‖∂J(t)/∂h(t−ℓ)‖ for ℓ = 1..L, averaged over the windows

h(s) is the hidden state that *all* layers carry from step s to step s+1, joined into
one vector (for an LSTM the output h, with the cell c held fixed): the same as making
h(t−ℓ) a leaf and running the model's own forward from there. The bottom layer's part
reaches J(t) up through the layers above, which is where residual connections act.
Each window's own loss is differentiated (a sum over the batch, not a mean), and the
measurement runs in float64 so that a vanishing curve is not cut off by float32
underflow at 1e-38. Where ModelConfig has no option for it, a vanilla RNN can be
measured with a linear activation (``activation='linear'``): the textbook case where
the recurrent matrix alone decides whether gradients vanish or explode.

numpy and torch are imported inside the functions that need them, so the CLI can
take its defaults from here without loading them. Run reports live in
charnn.diagnostics.reports, PNG charts in charnn.diagnostics.plots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from charnn.config import ModelConfig
from charnn.errors import ConfigError, CorpusError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from charnn.model import RecurrentLM
    from charnn.runs.checkpoint import Run

DEFAULT_TEXT = Path(__file__).resolve().parents[2] / "corpora" / "fantasy.txt"
"""The text fresh models are measured on when none is given."""
ACTIVATIONS = ("tanh", "linear")
BURN_IN = 50
"""Tokens read (without gradient) before each window, so states start from a typical value, not zero."""
BATCH = 32
"""Windows measured together; bounds the memory of the kept states."""
VANISHED = 1e-3
"""A gradient has vanished at the first ℓ where its norm is below this fraction of the norm at ℓ = 1."""


@dataclass(frozen=True)
class GradFlowConfig:
    """How gradient flow is measured."""

    length: int = 200
    """Largest distance ℓ measured (L)."""
    samples: int = 64
    """Windows of text, at random positions, that the norms are averaged over."""
    seed: int = 1337
    """Seeds the window positions and fresh models' weights."""

    def __post_init__(self) -> None:
        if not 2 <= self.length <= 10_000:
            raise ConfigError(f"--length must be between 2 and 10000, got {self.length}")
        if not 1 <= self.samples <= 4096:
            raise ConfigError(f"--samples must be between 1 and 4096, got {self.samples}")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"--seed must be from 0 to 2**63-1, got {self.seed}")


_SIZES = ModelConfig(vocab_size=2)


@dataclass(frozen=True)
class FreshModel:
    """A newly initialised model to measure; sizes default to ModelConfig's."""

    cell: str = _SIZES.cell
    layers: int = _SIZES.layers
    hidden: int = _SIZES.hidden
    embed: int = _SIZES.embed
    residual: bool | None = None
    """Residual connections between layers (None: ModelConfig's default, on for 2+ layers)."""
    init_scale: float = 1.0
    """Multiplies every recurrent weight matrix (weight_hh) after initialisation."""
    activation: str = "tanh"
    """'tanh', or 'linear' for a vanilla RNN with no squashing (measurement only)."""

    def __post_init__(self) -> None:
        config = self.model_config(vocab_size=2)  # validates the sizes with the flags' names
        object.__setattr__(self, "residual", config.residual)
        if not (self.init_scale > 0 and math.isfinite(self.init_scale)):
            raise ConfigError(f"--init-scale must be a positive number, got {self.init_scale}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"unknown --activation {self.activation!r}; choose one of: {', '.join(ACTIVATIONS)}")
        if self.activation != "tanh" and self.cell != "rnn":
            raise ConfigError(f"--activation {self.activation} applies to --cell rnn only, not {self.cell}")

    def model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(
            vocab_size=vocab_size,
            cell=self.cell,
            layers=self.layers,
            hidden=self.hidden,
            embed=self.embed,
            residual=self.residual,
        )


def labels(models: Sequence[FreshModel]) -> list[str]:
    """Short names that tell the models apart: the cell, plus each setting that varies among them."""
    varies = {name: len({getattr(m, name) for m in models}) > 1 for name in ("layers", "hidden", "residual")}
    names = []
    for m in models:
        parts = [m.cell]
        if m.activation != "tanh":
            parts.append(m.activation)
        if m.init_scale != 1.0:
            parts.append(f"x{m.init_scale:g}")
        if varies["layers"]:
            parts.append(f"{m.layers} layers")
        if varies["hidden"]:
            parts.append(f"h{m.hidden}")
        if varies["residual"]:
            parts.append("residual" if m.residual else "no residual")
        names.append(" ".join(parts))
    return names


@dataclass(frozen=True)
class GradientCurve:
    """One model's measured ‖∂J(t)/∂h(t−ℓ)‖ against ℓ."""

    label: str
    settings: dict[str, Any]
    norms: tuple[float, ...]
    """Mean norm over the windows for ℓ = 1..L (all layers' h joined)."""
    layer_norms: tuple[tuple[float, ...], ...]
    """The same per layer, bottom layer first."""
    decay_per_step: float | None
    """exp(slope) of a least-squares line through (ℓ, ln norm): <1 vanishing, >1 exploding."""
    r_squared: float | None
    """How straight that line is on a log scale (1: perfectly geometric)."""
    vanishes_at: int | None
    """First ℓ whose norm is below 1e-3 of the norm at ℓ = 1; None: none within L."""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["norms"] = [_finite_or_none(v) for v in self.norms]
        data["layer_norms"] = [[_finite_or_none(v) for v in layer] for layer in self.layer_norms]
        return data


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class DecayFit:
    slope: float
    """Least-squares slope of ln(norm) against ℓ."""
    intercept: float
    r_squared: float

    @property
    def factor(self) -> float:
        """The norm is multiplied by this much per step."""
        return math.exp(self.slope)


def fit_decay(norms: Sequence[float], first: int = 1, last: int | None = None) -> DecayFit | None:
    """Fit ln(norm) = a + b·ℓ over ℓ = first..last, using the finite, positive norms only."""
    last = len(norms) if last is None else min(last, len(norms))
    points = [(ell, math.log(norms[ell - 1])) for ell in range(first, last + 1) if 0 < norms[ell - 1] < math.inf]
    if len(points) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    syy = sum((y - mean_y) ** 2 for _, y in points)
    slope = sxy / sxx
    r_squared = 1.0 if syy == 0 else sxy * sxy / (sxx * syy)
    return DecayFit(slope, mean_y - slope * mean_x, r_squared)


def vanishing_distance(norms: Sequence[float], fraction: float = VANISHED) -> int | None:
    """First ℓ (1-based) where the norm is below ``fraction`` of the norm at ℓ = 1."""
    if not norms or not 0 < norms[0] < math.inf:
        return None
    return next((ell for ell, v in enumerate(norms, start=1) if v < fraction * norms[0]), None)


def make_curve(
    label: str, settings: dict[str, Any], norms: Sequence[float], layer_norms: Sequence[Sequence[float]] = ()
) -> GradientCurve:
    fit = fit_decay(norms)
    return GradientCurve(
        label=label,
        settings=settings,
        norms=tuple(norms),
        layer_norms=tuple(tuple(layer) for layer in layer_norms),
        decay_per_step=fit.factor if fit else None,
        r_squared=fit.r_squared if fit else None,
        vanishes_at=vanishing_distance(norms),
    )


def build_fresh_model(spec: FreshModel, vocab_size: int, seed: int) -> RecurrentLM:
    """A RecurrentLM initialised from ``seed`` (the global RNG untouched), weight_hh scaled."""
    import torch

    from charnn.model import RecurrentLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = RecurrentLM(spec.model_config(vocab_size))
    with torch.no_grad():
        for rnn in model.rnns:
            rnn.weight_hh_l0.mul_(spec.init_scale)
    return model.eval()


def spectral_radii(model: RecurrentLM) -> list[float]:
    """Largest |eigenvalue| of each layer's recurrent matrix (vanilla RNN only; [] otherwise)."""
    import torch

    if model.config.cell != "rnn":
        return []
    return [float(torch.linalg.eigvals(rnn.weight_hh_l0.detach().double()).abs().max()) for rnn in model.rnns]


def measure_fresh(spec: FreshModel, text: str, config: GradFlowConfig, label: str | None = None) -> GradientCurve:
    """Measure a fresh model on ``text`` (a character vocabulary is built from the text)."""
    from charnn.tokenizers import build_tokenizer

    tokenizer = build_tokenizer("char", text)
    windows, burn_in = text_windows(tokenizer.encode(text), config)
    model = build_fresh_model(spec, tokenizer.vocab_size, config.seed)
    settings = {"source": "fresh", **asdict(spec), "spectral_radius": spectral_radii(model)}
    norms, layer_norms = gradient_norms(model, windows, burn_in, activation=spec.activation)
    return make_curve(label or labels([spec])[0], settings, norms, layer_norms)


def measure_run(run: Run, text: str, config: GradFlowConfig, label: str | None = None) -> GradientCurve:
    """Measure a trained run's model on ``text``, encoded with the run's tokenizer."""
    windows, burn_in = text_windows(run.tokenizer.encode(text), config)
    model_config = run.model.config
    settings = {
        "source": "run",
        "run": str(run.folder),
        **{k: getattr(model_config, k) for k in ("cell", "layers", "hidden", "embed", "residual")},
        "spectral_radius": spectral_radii(run.model),
    }
    norms, layer_norms = gradient_norms(run.model.eval(), windows, burn_in)
    return make_curve(label or str(run.folder), settings, norms, layer_norms)


def text_windows(tokens: np.ndarray, config: GradFlowConfig) -> tuple[np.ndarray, int]:
    """``samples`` windows (S, burn_in + L + 2) at seeded random positions, and the burn-in used."""
    import numpy as np

    need = config.length + 2
    if len(tokens) < need:
        raise CorpusError(
            f"the text has {len(tokens)} token{'s' * (len(tokens) != 1)} but --length {config.length} needs at least "
            f"{need}; "
            "give a longer text or lower --length"
        )
    burn_in = min(BURN_IN, len(tokens) - need)
    width = burn_in + need
    starts = np.random.default_rng(config.seed).integers(0, len(tokens) - width + 1, size=config.samples)
    return np.stack([np.asarray(tokens[s : s + width], dtype=np.int64) for s in starts]), burn_in


def gradient_norms(
    model: RecurrentLM, windows: np.ndarray, burn_in: int, activation: str = "tanh"
) -> tuple[list[float], list[list[float]]]:
    """Mean ‖∂J(t)/∂h(t−ℓ)‖ for ℓ = 1..L over the windows (S, burn_in + L + 2): all layers joined, and per layer.

    The model is copied to float64; the caller's model is left as it was.
    """
    import copy

    import torch
    import torch.nn.functional as F

    model = copy.deepcopy(model).double().eval()
    length = windows.shape[1] - burn_in - 2
    joined = torch.zeros(length, dtype=torch.float64)
    per_layer = torch.zeros(len(model.rnns), length, dtype=torch.float64)
    for chunk in torch.from_numpy(windows).split(BATCH):
        state = _zero_state(model, chunk.shape[0])
        with torch.no_grad():
            state, _, _ = _run_steps(model, chunk[:, :burn_in], state, activation)
        state = [tuple(s.detach() for s in layer) for layer in state]
        _, hidden, top = _run_steps(model, chunk[:, burn_in:-1], state, activation)  # positions t−L .. t
        loss = F.cross_entropy(model.logits(top), chunk[:, -1], reduction="sum")  # each window's own J(t)
        earlier = [h for step in hidden[:-1] for h in step]  # h(t−L) .. h(t−1), every layer
        grads = torch.autograd.grad(loss, earlier, allow_unused=True)
        grads = [torch.zeros_like(h) if g is None else g for g, h in zip(grads, earlier)]
        squares = torch.stack(grads).view(length, len(model.rnns), *top.shape).pow(2).sum(-1)  # (L, layers, B)
        joined += squares.sum(1).sqrt().sum(-1).flip(0).detach()  # ℓ = 1 first
        per_layer += squares.sqrt().sum(-1).flip(0).t().detach()
    count = windows.shape[0]
    return (joined / count).tolist(), (per_layer / count).tolist()


def _zero_state(model: RecurrentLM, batch: int) -> list[tuple[torch.Tensor, ...]]:

    n = 2 if model.config.cell == "lstm" else 1
    weight = model.embed.weight
    return [tuple(weight.new_zeros(batch, model.config.hidden) for _ in range(n)) for _ in model.rnns]


def _run_steps(
    model: RecurrentLM, tokens: torch.Tensor, state: list[tuple[torch.Tensor, ...]], activation: str
) -> tuple[list[tuple[torch.Tensor, ...]], list[list[torch.Tensor]], torch.Tensor | None]:
    """Run (B, T) tokens one step at a time -> final state, every step's h per layer [(B, H)], top output (B, H)."""
    x_all = model.embed(tokens)  # (B, T, E)
    hidden: list[list[torch.Tensor]] = []
    top = None
    for t in range(tokens.shape[1]):
        x = x_all[:, t]  # (B, E)
        step = []
        for i, rnn in enumerate(model.rnns):
            new = _cell_step(model.config.cell, rnn, x, state[i], activation)
            h = new[0]  # (B, H)
            # The copy handed to the next step is its own graph node: its gradient counts the
            # paths forward in time only, not the one up into the next layer at this same step.
            carried = h.clone()
            state[i] = (carried, *new[1:])
            step.append(carried)
            x = x + h if model.config.residual and i > 0 else h
        hidden.append(step)
        top = x
    return state, hidden, top


def _cell_step(cell: str, rnn: Any, x: torch.Tensor, state: tuple, activation: str) -> tuple:
    """One step of the model's own nn.RNN/LSTM/GRU module on (B, In) and (B, H) state tensors."""
    import torch.nn.functional as F

    if activation == "linear":
        h = F.linear(x, rnn.weight_ih_l0, rnn.bias_ih_l0) + F.linear(state[0], rnn.weight_hh_l0, rnn.bias_hh_l0)
        return (h,)
    hx = tuple(s.unsqueeze(0) for s in state)  # (1, B, H) each
    _, new = rnn(x.unsqueeze(1), hx if cell == "lstm" else hx[0])
    return tuple(s[0] for s in new) if cell == "lstm" else (new[0],)
