"""RecurrentLM: embedding -> stacked recurrent layers (residual between them) -> head.

One contract: ``forward(tokens, state) -> (logits, state)`` (the state as charnn.model.stack
describes it). ``stepper()`` gives a fast one-token-at-a-time view of the same weights for
generation (int8 weights where the CPU runs them fast).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from charnn.config import ModelConfig
from charnn.errors import ConfigError
from charnn.model.stack import State, forget_bias_one, make_stack, run_stack, zero_state


class RecurrentLM(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.embed)
        self.drop = nn.Dropout(c.dropout)
        check_language_model(c)
        self.rnns = make_stack(c)
        # Tied weights reuse embed.weight as the head; a projection bridges the widths.
        self.project = nn.Linear(c.hidden, c.embed, bias=False) if c.tie_weights and c.hidden != c.embed else None
        self.head = None if c.tie_weights else nn.Linear(c.hidden, c.vocab_size)
        self.head_bias = nn.Parameter(torch.zeros(c.vocab_size)) if c.tie_weights else None
        # A conditional model: one learned vector per style and layer, added to that layer's input
        # at every step (zeros at first: a warm start from an unconditional run begins as it was).
        widths = [c.embed] + [c.hidden] * (c.layers - 1)
        self.style_vectors = nn.Parameter(torch.zeros(c.styles, sum(widths))) if c.styles else None
        self.style_widths = widths
        self.style: Tensor | None = None
        """The style weights (S,) that calls without ``style`` use (``use_style``); None: none chosen."""
        self.reset_parameters()

    def reset_parameters(self) -> None:
        forget_bias_one(self.config, self.rnns)

    def initial_state(self, batch: int, device: torch.device | None = None) -> State:
        return zero_state(self.config, len(self.rnns), batch, device or self.embed.weight.device)

    def forward(self, tokens: Tensor, state: State | None = None, style: Tensor | None = None) -> tuple[Tensor, State]:
        """tokens (B, T) int64 -> logits (B, T, V) and the state after the last token.

        ``style`` (a conditional model's): each row's style id (B,) int64, or weights over the
        styles (B, S) or (S,) float, which blend them; default: the weights ``use_style`` set.
        """
        if state is None:
            state = self.initial_state(tokens.shape[0], tokens.device)
        x = self.drop(self.embed(tokens))  # (B, T, E)
        resets = tokens == self.boundary if self.boundary is not None else None  # (B, T)
        biases = self.style_biases(style, tokens.shape[0])
        x, new_state = run_stack(self.rnns, x, state, self.config, self.drop, resets, biases)  # (B, T, H)
        return self.logits(x), new_state

    def use_style(self, weights: Tensor | None) -> None:
        """Set the style weights (S,) that calls without ``style`` (and new steppers) use."""
        self.style = None if weights is None else weights.to(self.embed.weight.device, torch.float32)

    def style_biases(self, style: Tensor | None, batch: int) -> list[Tensor] | None:
        """Each layer's style vector for the batch: (B, 1, width) per layer; None for an unconditional model."""
        if self.style_vectors is None:
            return None
        style = self.style if style is None else style
        if style is None:
            raise ValueError("a conditional model needs a style (use_style, or style=)")
        if style.dtype in (torch.int64, torch.int32):
            mixed = self.style_vectors[style]  # (B, D)
        else:
            mixed = style.to(self.style_vectors.dtype) @ self.style_vectors  # (B, D) or (D,)
        mixed = mixed.expand(batch, -1) if mixed.dim() == 1 else mixed
        return [part[:, None, :] for part in mixed.split(self.style_widths, dim=1)]

    @property
    def boundary(self) -> int | None:
        """A record run's boundary id (the last), where the state restarts; None otherwise."""
        return self.config.vocab_size - 1 if self.config.records else None

    def logits(self, x: Tensor) -> Tensor:
        """Top-layer output (..., H) -> logits (..., V)."""
        if self.head is not None:
            return self.head(x)
        if self.project is not None:
            x = self.project(x)  # (..., E)
        return F.linear(x, self.embed.weight, self.head_bias)

    def stepper(self, dtype: torch.dtype | None = None, exact_rows: bool = False) -> Stepper:
        """A fast one-token-at-a-time view of this model's current weights (inference only)."""
        return Stepper(self, dtype, exact_rows)


def check_language_model(config: ModelConfig) -> None:
    if config.bidirectional:
        raise ConfigError(
            "a language model reads left to right and cannot be --bidirectional; "
            "drop the option (classifiers use it: charnn classify train)"
        )


class Stepper:
    """Runs the model one token per row: ``stepper(token (B,), state) -> logits (B, V), state``.

    The fused sequence modules carry a large fixed cost per call, which dominates when
    generating one token at a time; each layer here is one call of torch's fused cell
    (``torch.lstm_cell``, ``gru_cell``, ``rnn_tanh_cell``: the equations of nn.LSTM/GRU/RNN)
    on weights taken out of the modules once, and the embedding is a row lookup.

    ``dtype`` is the arithmetic of weights and state (default: the model's). bfloat16
    halves the bytes every step reads and, on CPUs with bf16 matrix units, runs batches
    several times faster; the sampler uses it for large batches only (charnn.tasks.lm.sample).
    The weights are copied when the stepper is made: make a new one after training.

    ``exact_rows`` (with int8): each row's logits are bit for bit the same whatever rows share
    its batch (a server's promise; ``exact`` says whether this stepper keeps it). Every product,
    head included, then sums integers (``_ExactLinear``), which no order of summing can round
    differently, where a float gemm's blocking rounds a row's sums by the rows beside it.
    """

    def __init__(self, model: RecurrentLM, dtype: torch.dtype | None = None, exact_rows: bool = False) -> None:
        c = model.config
        self.cell, self.residual, self.boundary = c.cell, c.residual, model.boundary
        # torch's int8 kernel is only right for input widths that are multiples of 16; else fp32.
        self.int8 = dtype == torch.int8 and c.embed % 16 == 0 and c.hidden % 16 == 0
        self.dtype = d = model.embed.weight.dtype if dtype in (None, torch.int8) else dtype
        self._step = {"lstm": torch.lstm_cell, "gru": torch.gru_cell, "rnn": torch.rnn_tanh_cell}[c.cell]
        with torch.no_grad():
            self.embed = model.embed.weight.detach().to(d)  # (V, E)
            self.layers = [
                tuple(p.detach().to(d) for p in (rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0))
                for rnn in model.rnns
            ]
            self.project = model.project.weight.detach().to(d) if model.project is not None else None
            if model.head is not None:
                self.head = (model.head.weight.detach().to(d), model.head.bias.detach().to(d))
            else:
                self.head = (model.embed.weight.detach().to(d), model.head_bias.detach().to(d))
            self.exact = exact_rows and self.int8 and hasattr(torch, "_int_mm")
            """Whether a row's logits are the same in any company (``exact_rows`` with int8 weights)."""
            if self.exact:  # each layer (input product, state product or None), the head and projection
                # one product a layer for [input, state] where the cell adds the two (LSTM, RNN)
                joint = c.cell != "gru"
                self.layers = [
                    (_ExactLinear(torch.cat([w, u], 1), b + v), None)
                    if joint
                    else (_ExactLinear(w, b), _ExactLinear(u, v))
                    for w, u, b, v in self.layers
                ]
                self.head = _ExactLinear(*self.head)
                self.project = None if self.project is None else _ExactLinear(self.project)
            elif self.int8:
                self.layers = [(*_int8(w_ih), *_int8(w_hh), b_ih, b_hh) for w_ih, w_hh, b_ih, b_hh in self.layers]
            # A conditional model's style (the one use_style set), one (1, width) vector a layer.
            # (None when no style is chosen yet: each call then passes its rows' own, as a server does.)
            chosen = model.style_vectors is None or model.style is not None
            biases = model.style_biases(None, 1) if chosen else None
            self.biases = None if biases is None else [b[:, 0].detach().to(d) for b in biases]

    @torch.inference_mode()
    def __call__(self, token: Tensor, state: State, biases: list[Tensor] | None = None) -> tuple[Tensor, State]:
        """``biases``: a conditional model's style vectors for each row, (B, width) a layer, in the
        stepper's dtype (``row_biases``); default: the style chosen when the stepper was made."""
        biases = self.biases if biases is None else biases
        if self.boundary is not None:  # a row that reads a record boundary starts from zeros
            keep = (token != self.boundary).to(self.dtype)[None, :, None]  # (1, B, 1)
            state = [tuple(s * keep for s in layer) for layer in state]
        x = self.embed[token]  # (B, E)
        new_state: State = []
        for i, (weights, layer_state) in enumerate(zip(self.layers, state, strict=True)):
            hx = tuple(s[0].to(self.dtype) for s in layer_state)  # (B, H) each
            read = x if biases is None else x + biases[i]  # (B, E or H)
            if self.exact:
                ih, hh = weights
                if hh is None:
                    new = _cell(self.cell, ih(torch.cat([read, hx[0]], 1)), None, hx, _tanh)
                else:
                    new = _cell(self.cell, ih(read), hh(hx[0]), hx, _tanh)
            elif self.int8:
                new = _int8_cell(self.cell, read, hx, *weights)
            else:
                new = self._step(read, hx, *weights) if self.cell == "lstm" else (self._step(read, hx[0], *weights),)
            new_state.append(tuple(s.unsqueeze(0) for s in new))
            x = x + new[0] if self.residual and i > 0 else new[0]  # (B, H)
        if self.exact:
            x = x if self.project is None else self.project(x)  # (B, E)
            return self.head(x), new_state
        if self.project is not None:
            x = F.linear(x, self.project)  # (B, E)
        return F.linear(x, *self.head).float(), new_state

    def row_biases(self, model: RecurrentLM, weights: Tensor) -> list[Tensor]:
        """One row's style vectors for ``__call__``'s ``biases``: weights over the styles (S,)."""
        with torch.no_grad():
            mixed = model.style_biases(weights.to(model.embed.weight.device, torch.float32), 1)
        return [b[:, 0].detach().to(self.dtype) for b in mixed]  # (1, width) a layer


def int8_available() -> bool:
    """Whether this torch has the CPU kernel for int8 weights (``torch._weight_int8pack_mm``)."""
    return hasattr(torch, "_weight_int8pack_mm")


def _int8(weight: Tensor) -> tuple[Tensor, Tensor]:
    """(N, K) weights -> int8 (N, K) and a bf16 scale per output row: weight ~ int8 * scale."""
    scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127  # (N,)
    return torch.round(weight / scale[:, None]).to(torch.int8), scale.to(torch.bfloat16)


def _int8_linear(x: Tensor, weight: Tensor, scale: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear`` over int8 weights (``_int8``): products in bf16, sums and result in fp32."""
    out = torch._weight_int8pack_mm(x.to(torch.bfloat16), weight, scale).float()
    return out if bias is None else out + bias


def _int8_cell(cell: str, x: Tensor, hx: tuple[Tensor, ...], w_ih, s_ih, w_hh, s_hh, b_ih, b_hh):  # noqa: ANN001
    """One step of nn.LSTM/GRU/RNN's equations with int8 weights; products in bf16, the rest in fp32."""
    return _cell(cell, _int8_linear(x, w_ih, s_ih, b_ih), _int8_linear(hx[0], w_hh, s_hh, b_hh), hx)


def _cell(cell: str, gi: Tensor, gh: Tensor | None, hx: tuple[Tensor, ...], tanh=torch.tanh) -> tuple[Tensor, ...]:  # noqa: ANN001
    """nn.LSTM/GRU/RNN's equations given the input's and the state's products (B, G*H), biases
    added; ``gh`` None: ``gi`` is their sum (not for a GRU, which reads them apart)."""
    h = hx[0]
    gates = gi if gh is None else gi + gh
    if cell == "lstm":
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * hx[1] + torch.sigmoid(i) * tanh(g)
        return torch.sigmoid(o) * tanh(c), c
    if cell == "gru":
        ir, iz, i_n = gi.chunk(3, dim=1)
        hr, hz, h_n = gh.chunk(3, dim=1)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        n = tanh(i_n + r * h_n)
        return ((1 - z) * n + z * h,)
    return (tanh(gates),)


def _tanh(x: Tensor) -> Tensor:
    """tanh as 2 sigmoid(2x) - 1: on a CPU about twice as fast as torch.tanh, within 2e-7 of it."""
    return torch.sigmoid(x * 2).mul_(2).sub_(1)


class _ExactLinear:
    """``F.linear`` whose rows are exact in any company: int8 weights (a scale per output) and
    int8 inputs (a scale per row). The integer sums are exact in whatever order a kernel takes
    them, and the rest is elementwise. The held-out loss moves less than under the sampler's int8
    stepping (0.008% against 0.018% on a 10-minute fantasy model; docs/benchmarks.md#serving)."""

    def __init__(self, weight: Tensor, bias: Tensor | None = None) -> None:
        self.scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127  # (N,)
        self.weight = torch.round(weight / self.scale[:, None]).to(torch.int8)  # (N, K)
        self.bias = bias

    def __call__(self, x: Tensor) -> Tensor:
        low, high = torch.aminmax(x, dim=1, keepdim=True)  # (B, 1) each
        unit = torch.maximum(high, -low).clamp_(min=1e-30) / 127  # (B, 1)
        digits = (x / unit).round_().to(torch.int8)  # (B, K)
        out = _int_mm(digits, self.weight.t()).float().mul_(unit).mul_(self.scale)  # (B, N)
        return out if self.bias is None else out.add_(self.bias)


def _int_mm(a: Tensor, b: Tensor) -> Tensor:
    """``torch._int_mm`` on oneDNN's kernel even where a server turned oneDNN off (torch's own is
    about 90 times slower). A server runs every network on one thread, so the switch is safe."""
    if torch.backends.mkldnn.enabled:
        return torch._int_mm(a, b)
    torch._C._set_mkldnn_enabled(True)
    try:
        return torch._int_mm(a, b)
    finally:
        torch._C._set_mkldnn_enabled(False)
