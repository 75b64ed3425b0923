"""RecurrentLM: embedding -> stacked recurrent layers (residual between them) -> head.

One contract: ``forward(tokens, state) -> (logits, state)``. The state is a list
with one tuple per layer: ``(h, c)`` for an LSTM, ``(h,)`` for a GRU or RNN, each
tensor shaped (1, B, H) as PyTorch's fused modules expect. ``stepper()`` gives a
fast one-token-at-a-time view of the same weights for generation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from charnn.config import ModelConfig

State = list[tuple[Tensor, ...]]

_MODULES = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentLM(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.embed)
        self.drop = nn.Dropout(c.dropout)
        self.rnns = nn.ModuleList(
            _MODULES[c.cell](c.embed if i == 0 else c.hidden, c.hidden, batch_first=True) for i in range(c.layers)
        )
        # Tied weights reuse embed.weight as the head; a projection bridges the widths.
        self.project = nn.Linear(c.hidden, c.embed, bias=False) if c.tie_weights and c.hidden != c.embed else None
        self.head = None if c.tie_weights else nn.Linear(c.hidden, c.vocab_size)
        self.head_bias = nn.Parameter(torch.zeros(c.vocab_size)) if c.tie_weights else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.config.cell == "lstm":
            # A forget-gate bias of 1 lets gradient flow through the cell from the start.
            h = self.config.hidden
            for rnn in self.rnns:
                with torch.no_grad():
                    rnn.bias_hh_l0[h : 2 * h].fill_(1.0)
                    rnn.bias_ih_l0[h : 2 * h].zero_()

    def initial_state(self, batch: int, device: torch.device | None = None) -> State:
        device = device or self.embed.weight.device
        n = 2 if self.config.cell == "lstm" else 1
        zeros = lambda: torch.zeros(1, batch, self.config.hidden, device=device)  # noqa: E731
        return [tuple(zeros() for _ in range(n)) for _ in self.rnns]

    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """tokens (B, T) int64 -> logits (B, T, V) and the state after the last token."""
        if state is None:
            state = self.initial_state(tokens.shape[0], tokens.device)
        x = self.drop(self.embed(tokens))  # (B, T, E)
        new_state: State = []
        for i, (rnn, layer_state) in enumerate(zip(self.rnns, state, strict=True)):
            hx = layer_state if self.config.cell == "lstm" else layer_state[0]
            out, hn = rnn(x, hx)  # (B, T, H)
            new_state.append(hn if isinstance(hn, tuple) else (hn,))
            out = self.drop(out)
            x = x + out if self.config.residual and i > 0 else out  # (B, T, H)
        return self.logits(x), new_state

    def logits(self, x: Tensor) -> Tensor:
        """Top-layer output (..., H) -> logits (..., V)."""
        if self.head is not None:
            return self.head(x)
        if self.project is not None:
            x = self.project(x)  # (..., E)
        return F.linear(x, self.embed.weight, self.head_bias)

    def stepper(self) -> Stepper:
        """A fast one-token-at-a-time view of this model's current weights (inference only)."""
        return Stepper(self)


class Stepper:
    """Runs the model one token per row: ``stepper(token (B,), state) -> logits (B, V), state``.

    The fused modules carry a large fixed cost per call, which dominates when
    generating one token at a time; here each layer is one matrix product of the
    joined input and state, [x, h] @ W, with W built once from the weights::

        LSTM, RNN:  W = [W_ih | W_hh]^T                   b = b_ih + b_hh
        GRU:        W = [[W_ir W_iz W_in 0   ],           b = [b_ir + b_hr, b_iz + b_hz, b_in, b_hn]
                         [W_hr W_hz 0    W_hn]]

    The weights are copied when the stepper is made: make a new one after training.
    """

    def __init__(self, model: RecurrentLM) -> None:
        self.model = model
        self.cell = model.config.cell
        self.residual = model.config.residual
        with torch.no_grad():
            self.layers = [_joined_weights(self.cell, rnn) for rnn in model.rnns]

    @torch.inference_mode()
    def __call__(self, token: Tensor, state: State) -> tuple[Tensor, State]:
        x = self.model.embed(token)  # (B, E)
        new_state: State = []
        for i, ((weight, bias), layer_state) in enumerate(zip(self.layers, state, strict=True)):
            h = layer_state[0][0]  # (B, H)
            gates = torch.addmm(bias, torch.cat([x, h], dim=1), weight)  # (B, G*H)
            new = _cell_update(self.cell, gates, layer_state)
            new_state.append(tuple(s.unsqueeze(0) for s in new))
            x = x + new[0] if self.residual and i > 0 else new[0]  # (B, H)
        return self.model.logits(x), new_state


def _joined_weights(cell: str, rnn: nn.Module) -> tuple[Tensor, Tensor]:
    w_ih, w_hh = rnn.weight_ih_l0, rnn.weight_hh_l0  # (G*H, In), (G*H, H)
    b_ih, b_hh = rnn.bias_ih_l0, rnn.bias_hh_l0
    if cell != "gru":
        return torch.cat([w_ih, w_hh], dim=1).t().contiguous(), b_ih + b_hh
    h = rnn.hidden_size
    zeros_i, zeros_h = w_ih.new_zeros(h, w_ih.shape[1]), w_hh.new_zeros(h, h)
    top = torch.cat([w_ih[: 2 * h], w_ih[2 * h :], zeros_i])  # (4H, In): r, z, n from x; none from h
    bottom = torch.cat([w_hh[: 2 * h], zeros_h, w_hh[2 * h :]])  # (4H, H)
    bias = torch.cat([b_ih[: 2 * h] + b_hh[: 2 * h], b_ih[2 * h :], b_hh[2 * h :]])
    return torch.cat([top, bottom], dim=1).t().contiguous(), bias


def _cell_update(cell: str, gates: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """The cell equations of torch.nn.RNN/LSTM/GRU given the pre-activations."""
    if cell == "lstm":
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * state[1][0] + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    if cell == "gru":
        r, z, n_x, n_h = gates.chunk(4, dim=1)
        r, z = torch.sigmoid(r), torch.sigmoid(z)
        n = torch.tanh(n_x + r * n_h)
        return ((1 - z) * n + z * state[0][0],)
    return (torch.tanh(gates),)


def detach_state(state: State) -> State:
    """Cut the graph between windows (truncated BPTT) while keeping the values."""
    return [tuple(s.detach() for s in layer) for layer in state]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
