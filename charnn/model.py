"""RecurrentLM: embedding -> stacked recurrent layers (residual between them) -> head.

One contract: ``forward(tokens, state) -> (logits, state)``. The state is a list
with one tuple per layer: ``(h, c)`` for an LSTM, ``(h,)`` for a GRU or RNN, each
tensor shaped (1, B, H) as PyTorch's fused modules expect. ``step`` runs one token
with the same weights and plain matrix products: the fused modules carry a large
fixed cost per call, which dominates when generating one token at a time.
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

    @torch.inference_mode()
    def step(self, token: Tensor, state: State) -> tuple[Tensor, State]:
        """One token per row: token (B,) -> logits (B, V), new state. Inference only."""
        x = self.embed(token)  # (B, E)
        new_state: State = []
        for i, (rnn, layer_state) in enumerate(zip(self.rnns, state, strict=True)):
            h = _cell_step(self.config.cell, rnn, x, layer_state)
            new_state.append(tuple(s.unsqueeze(0) for s in h))
            out = h[0]  # (B, H)
            x = x + out if self.config.residual and i > 0 else out
        return self.logits(x), new_state


def _cell_step(cell: str, rnn: nn.Module, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """The cell equations of torch.nn.RNN/LSTM/GRU for one time step; x (B, In)."""
    h = state[0][0]  # (B, H)
    gi = torch.addmm(rnn.bias_ih_l0, x, rnn.weight_ih_l0.t())  # (B, G*H)
    gh = torch.addmm(rnn.bias_hh_l0, h, rnn.weight_hh_l0.t())  # (B, G*H)
    if cell == "lstm":
        c = state[1][0]
        i, f, g, o = (gi + gh).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    if cell == "gru":
        ir, iz, inn = gi.chunk(3, dim=1)
        hr, hz, hn = gh.chunk(3, dim=1)
        r = torch.sigmoid(ir + hr)
        z = torch.sigmoid(iz + hz)
        n = torch.tanh(inn + r * hn)
        return ((1 - z) * n + z * h,)
    return (torch.tanh(gi + gh),)


def detach_state(state: State) -> State:
    """Cut the graph between windows (truncated BPTT) while keeping the values."""
    return [tuple(s.detach() for s in layer) for layer in state]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
