"""RecurrentLM: embedding -> stacked recurrent layers (residual between them) -> head;
Encoder: the same stack, one- or two-way, reading whole texts; SentenceClassifier pools
its states into a label, WordTagger reads them at each word into a tag.

One contract: ``forward(tokens, state) -> (logits, state)``. The state is a list
with one tuple per layer: ``(h, c)`` for an LSTM, ``(h,)`` for a GRU or RNN, each
tensor shaped (1, B, H) as PyTorch's fused modules expect. ``stepper()`` gives a
fast one-token-at-a-time view of the same weights for generation.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from charnn.config import ModelConfig
from charnn.errors import ConfigError

State = list[tuple[Tensor, ...]]

_MODULES = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


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

    def stepper(self, dtype: torch.dtype | None = None) -> Stepper:
        """A fast one-token-at-a-time view of this model's current weights (inference only)."""
        return Stepper(self, dtype)


POOLS = ("final", "mean", "max", "mean-max", "attention")
"""How a sentence head turns the states of a text into one vector."""


class Encoder(nn.Module):
    """embed -> a left-to-right stack (+ a right-to-left one): the states of whole texts.

    Texts come right-padded with their lengths. The second stack reads each text
    reversed within its length, padding left at the end, and its states are put back
    in text order::

        tokens:     a b c d _ _          (n = 4; _ is padding)
        forward:    reads a b c d _ _    f[i] has read a .. t_i
        reversed:   d c b a _ _          b[i], put back in order, has read d .. t_i
        joined:     [f ; b]  (B, T, 2H); positions >= n are masked out by every head

    Both stacks are causal and padding comes after every real token in both reading
    orders, so it never reaches a real position's state: a text padded more gets the
    same states. Each direction is exactly a language model's stack (same layer
    shapes, residuals and names: ``embed``/``rnns`` and ``embed_reverse``/``rnns_reverse``),
    so a left-to-right and a right-to-left language model warm-start it. The heads
    (SentenceClassifier, WordTagger) read the joined states.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.embed)
        self.drop = nn.Dropout(c.dropout)
        self.rnns = make_stack(c)
        self.rnns_reverse = make_stack(c) if c.bidirectional else None
        # Each direction has its own embedding, as each language model that warm-starts it had.
        self.embed_reverse = nn.Embedding(c.vocab_size, c.embed) if c.bidirectional else None
        self.width = c.hidden * (2 if c.bidirectional else 1)
        forget_bias_one(c, self.rnns)
        if self.rnns_reverse is not None:
            forget_bias_one(c, self.rnns_reverse)

    def states(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """The top layer's states of both directions, in text order: (B, T, H or 2H)."""
        batch, steps = tokens.shape
        p = self.config.token_dropout
        keep = None
        if self.training and p > 0:  # whole tokens go: the head cannot lean on a few words
            keep = torch.bernoulli(torch.full((batch, steps, 1), 1 - p, device=tokens.device))  # (B, T, 1)
        x = self.drop(self.embed(tokens))  # (B, T, E)
        if keep is not None:
            x = x * keep
        zeros = zero_state(self.config, len(self.rnns), batch, tokens.device)
        forward, _ = run_stack(self.rnns, x, zeros, self.config, self.drop)  # (B, T, H)
        if self.rnns_reverse is None:
            return forward
        order = _reverse_within(lengths, steps)  # (B, T); its own inverse
        x_rev = self.drop(self.embed_reverse(tokens.gather(1, order)))  # (B, T, E)
        if keep is not None:  # the same tokens go in both directions
            x_rev = x_rev * keep.gather(1, order[..., None])
        backward, _ = run_stack(self.rnns_reverse, x_rev, zeros, self.config, self.drop)  # (B, T, H)
        backward = backward.gather(1, order[..., None].expand_as(backward))  # back in text order
        return torch.cat([forward, backward], dim=2)  # (B, T, 2H)


class SentenceClassifier(Encoder):
    """The encoder's states pooled over the text -> label logits."""

    def __init__(self, config: ModelConfig, labels: int, pool: str = "attention") -> None:
        if pool not in POOLS:
            raise ConfigError(f"unknown --pool {pool!r}; choose one of: {', '.join(POOLS)}")
        if labels < 2:
            raise ConfigError(f"a classifier needs at least 2 labels, got {labels}")
        super().__init__(config)
        self.pool = pool
        self.attention = nn.Linear(self.width, 1) if pool == "attention" else None
        self.head = nn.Linear(self.width * (2 if pool == "mean-max" else 1), labels)

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """tokens (B, T) int64, right-padded; lengths (B,) >= 1 -> logits (B, labels)."""
        return self.head(self.drop(self.pooled(tokens, lengths)))

    def pooled(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        states = self.states(tokens, lengths)  # (B, T, D)
        steps = states.shape[1]
        mask = torch.arange(steps, device=tokens.device)[None, :] < lengths[:, None]  # (B, T)
        if self.pool == "final":
            h = self.config.hidden
            last = states.gather(1, (lengths - 1)[:, None, None].expand(-1, 1, states.shape[2]))[:, 0]  # (B, D)
            return torch.cat([last[:, :h], states[:, 0, h:]], dim=1) if self.rnns_reverse is not None else last
        if self.pool == "attention":
            scores = self.attention(states).squeeze(2).masked_fill(~mask, float("-inf"))  # (B, T)
            return torch.bmm(scores.softmax(dim=1)[:, None, :], states)[:, 0]  # (B, D)
        mean = (states * mask[..., None]).sum(1) / lengths[:, None].to(states.dtype)  # (B, D)
        if self.pool == "mean":
            return mean
        top = states.masked_fill(~mask[..., None], float("-inf")).amax(1)  # (B, D)
        return top if self.pool == "max" else torch.cat([mean, top], dim=1)


class WordTagger(Encoder):
    """The encoder over a sentence's tokens -> one vector a word -> a two-way word-level LSTM -> tag logits.

    A word's vector joins the forward state at its last token with the backward state at
    its first: each direction's reading of the sentence up to and including the whole
    word, spelling and all, so a word never seen in training is tagged from its spelling
    and its neighbours::

        tokens:   T h e _ c a t _ s a t        (char tokenizer; '_' is the space)
        words:    [0,3)   [4,7)   [8,11)       (start, end) of each word's tokens
        vector:   [f[2] ; b[0]]  [f[6] ; b[4]]  [f[10] ; b[8]]

    A word-level two-way LSTM (``word_layers``, 0 for none) then reads the word vectors,
    so a tag can depend on the neighbours' tags as well as their letters. Padding words
    sit after every real one in both reading orders and never reach them.
    """

    def __init__(self, config: ModelConfig, tags: int, word_layers: int = 1) -> None:
        if tags < 1:
            raise ConfigError("a tagger needs at least 1 tag")
        if word_layers < 0:
            raise ConfigError(f"--word-layers must be >= 0, got {word_layers}")
        super().__init__(config)
        c = config
        self.word_rnn = (
            nn.LSTM(self.width, c.hidden, num_layers=word_layers, batch_first=True, bidirectional=True,
                    dropout=c.dropout if word_layers > 1 else 0.0)
            if word_layers else None
        )  # fmt: skip
        self.head = nn.Linear(2 * c.hidden if word_layers else self.width, tags)

    def forward(self, tokens: Tensor, lengths: Tensor, starts: Tensor, ends: Tensor, words: Tensor) -> Tensor:
        """tokens (B, T), lengths (B,); starts, ends (B, W): each word's tokens; words (B,) -> logits (B, W, tags)."""
        states = self.states(tokens, lengths)  # (B, T, D)
        h = self.config.hidden
        x = states[..., :h].gather(1, (ends - 1).clamp_min(0)[..., None].expand(-1, -1, h))  # (B, W, H)
        if self.rnns_reverse is not None:
            backward = states[..., h:].gather(1, starts[..., None].expand(-1, -1, h))  # (B, W, H)
            x = torch.cat([x, backward], dim=2)  # (B, W, 2H)
        x = self.drop(x)
        if self.word_rnn is not None:
            packed = nn.utils.rnn.pack_padded_sequence(
                x, words.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False
            )
            out, _ = self.word_rnn(packed)
            x, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, W, 2H)
            x = self.drop(x)
        return self.head(x)


def _reverse_within(lengths: Tensor, steps: int) -> Tensor:
    """Index (B, T) that reverses each row's first ``length`` positions and keeps the rest."""
    i = torch.arange(steps, device=lengths.device)[None, :]  # (1, T)
    n = lengths[:, None]  # (B, 1)
    return torch.where(i < n, n - 1 - i, i)


def check_language_model(config: ModelConfig) -> None:
    if config.bidirectional:
        raise ConfigError(
            "a language model reads left to right and cannot be --bidirectional; "
            "drop the option (classifiers use it: charnn classify train)"
        )


def make_stack(config: ModelConfig) -> nn.ModuleList:
    """The recurrent layers: the first reads the embedding, the others the layer below."""
    c = config
    return nn.ModuleList(
        _MODULES[c.cell](c.embed if i == 0 else c.hidden, c.hidden, batch_first=True) for i in range(c.layers)
    )


def forget_bias_one(config: ModelConfig, rnns: nn.ModuleList) -> None:
    """A forget-gate bias of 1 lets gradient flow through an LSTM's cell from the start."""
    if config.cell == "lstm":
        h = config.hidden
        for rnn in rnns:
            with torch.no_grad():
                rnn.bias_hh_l0[h : 2 * h].fill_(1.0)
                rnn.bias_ih_l0[h : 2 * h].zero_()


def run_stack(
    rnns: nn.ModuleList,
    x: Tensor,
    state: State,
    config: ModelConfig,
    drop: nn.Module,
    resets: Tensor | None = None,
    biases: list[Tensor] | None = None,
) -> tuple[Tensor, State]:
    """x (B, T, E) through the layers, dropout after each, residual from layer 2 on -> (B, T, H), state.

    ``biases`` (a conditional model's style): one (B, 1, width) vector per layer, added to
    what the layer reads at every step (the residual path carries the layer's input without it).

    ``resets`` (B, T) marks where a row's state restarts from zeros before reading the
    token (a record boundary). The window is then cut at every position where some row
    restarts and each piece runs fused, the restarting rows' state zeroed between pieces:
    exactly what stepping token by token gives. (Measured on 2 cores, a 2x384 LSTM on
    paint names, about 25 tokens a record: 2.3x the time of an uncut window. Packing the
    records as separate sequences, or a cell loop in Python, cost as much; long records,
    with few cuts a window, cost little.)
    """
    cuts = _cuts(resets, x.shape[1]) if resets is not None else None
    new_state: State = []
    for i, (rnn, layer_state) in enumerate(zip(rnns, state, strict=True)):
        layer = _with_weight_drop(rnn, config.weight_drop) if drop.training and config.weight_drop > 0 else rnn
        read = x if biases is None else x + biases[i]  # (B, T, E or H)
        if cuts is None:
            out, hn = layer(read, layer_state if config.cell == "lstm" else layer_state[0])  # (B, T, H)
            hn = hn if isinstance(hn, tuple) else (hn,)
        else:
            out, hn = _run_in_pieces(layer, read, layer_state, config.cell, resets, cuts)
        new_state.append(hn)
        out = drop(out)
        x = x + out if config.residual and i > 0 else out  # (B, T, H)
    return x, new_state


def _with_weight_drop(rnn: nn.Module, p: float):  # noqa: ANN202
    """The layer with DropConnect on its hidden-to-hidden weights: one mask for the whole window.

    Dropping recurrent connections (not activations) regularises what the state carries from
    step to step without breaking the fused kernels: the mask is drawn once and the whole
    window runs fused with the masked matrix (the recurrent-weight dropout of AWD-LSTM).
    """
    weights = {"weight_hh_l0": F.dropout(rnn.weight_hh_l0, p, training=True)}

    def call(x: Tensor, state):  # noqa: ANN001, ANN202
        with warnings.catch_warnings():  # cuDNN copies the masked weights into its buffer: expected
            warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
            return torch.func.functional_call(rnn, weights, (x, state))

    return call


def _cuts(resets: Tensor, steps: int) -> list[int] | None:
    """[0, t1, .., T]: the pieces a window is run in; None when no row restarts in it."""
    where = resets.any(dim=0).nonzero().flatten().tolist()
    if not where:
        return None
    return sorted({0, *where, steps})


def _run_in_pieces(rnn: nn.Module, x: Tensor, state: tuple[Tensor, ...], cell: str, resets: Tensor, cuts: list[int]):
    outs = []
    for start, end in zip(cuts, cuts[1:]):
        keep = (~resets[:, start]).to(state[0].dtype)[None, :, None]  # (1, B, 1): 0 where the row restarts
        state = tuple(s * keep for s in state)
        out, hn = rnn(x[:, start:end], state if cell == "lstm" else state[0])  # (B, t, H)
        state = hn if isinstance(hn, tuple) else (hn,)
        outs.append(out)
    return torch.cat(outs, dim=1), state


def zero_state(config: ModelConfig, layers: int, batch: int, device: torch.device) -> State:
    n = 2 if config.cell == "lstm" else 1
    return [tuple(torch.zeros(1, batch, config.hidden, device=device) for _ in range(n)) for _ in range(layers)]


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
    """

    def __init__(self, model: RecurrentLM, dtype: torch.dtype | None = None) -> None:
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
            if self.int8:
                self.layers = [(*_int8(w_ih), *_int8(w_hh), b_ih, b_hh) for w_ih, w_hh, b_ih, b_hh in self.layers]
            self.project = model.project.weight.detach().to(d) if model.project is not None else None
            if model.head is not None:
                self.head = (model.head.weight.detach().to(d), model.head.bias.detach().to(d))
            else:
                self.head = (model.embed.weight.detach().to(d), model.head_bias.detach().to(d))
            # A conditional model's style (the one use_style set), one (1, width) vector a layer.
            biases = model.style_biases(None, 1)
            self.biases = None if biases is None else [b[:, 0].detach().to(d) for b in biases]

    @torch.inference_mode()
    def __call__(self, token: Tensor, state: State) -> tuple[Tensor, State]:
        if self.boundary is not None:  # a row that reads a record boundary starts from zeros
            keep = (token != self.boundary).to(self.dtype)[None, :, None]  # (1, B, 1)
            state = [tuple(s * keep for s in layer) for layer in state]
        x = self.embed[token]  # (B, E)
        new_state: State = []
        for i, (weights, layer_state) in enumerate(zip(self.layers, state, strict=True)):
            hx = tuple(s[0].to(self.dtype) for s in layer_state)  # (B, H) each
            read = x if self.biases is None else x + self.biases[i]  # (B, E or H)
            if self.int8:
                new = _int8_cell(self.cell, read, hx, *weights)
            else:
                new = self._step(read, hx, *weights) if self.cell == "lstm" else (self._step(read, hx[0], *weights),)
            new_state.append(tuple(s.unsqueeze(0) for s in new))
            x = x + new[0] if self.residual and i > 0 else new[0]  # (B, H)
        if self.project is not None:
            x = F.linear(x, self.project)  # (B, E)
        return F.linear(x, *self.head).float(), new_state


def int8_available() -> bool:
    """Whether this torch has the CPU kernel for int8 weights (``torch._weight_int8pack_mm``)."""
    return hasattr(torch, "_weight_int8pack_mm")


def _int8(weight: Tensor) -> tuple[Tensor, Tensor]:
    """(N, K) weights -> int8 (N, K) and a bf16 scale per output row: weight ~ int8 * scale."""
    scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127  # (N,)
    return torch.round(weight / scale[:, None]).to(torch.int8), scale.to(torch.bfloat16)


def _int8_cell(cell: str, x: Tensor, hx: tuple[Tensor, ...], w_ih, s_ih, w_hh, s_hh, b_ih, b_hh):  # noqa: ANN001
    """One step of nn.LSTM/GRU/RNN's equations with int8 weights; products in bf16, the rest in fp32."""
    h = hx[0]
    gi = torch._weight_int8pack_mm(x.to(torch.bfloat16), w_ih, s_ih).float() + b_ih  # (B, G*H)
    gh = torch._weight_int8pack_mm(h.to(torch.bfloat16), w_hh, s_hh).float() + b_hh  # (B, G*H)
    if cell == "lstm":
        i, f, g, o = (gi + gh).chunk(4, dim=1)
        c = torch.sigmoid(f) * hx[1] + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    if cell == "gru":
        ir, iz, i_n = gi.chunk(3, dim=1)
        hr, hz, h_n = gh.chunk(3, dim=1)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        n = torch.tanh(i_n + r * h_n)
        return ((1 - z) * n + z * h,)
    return (torch.tanh(gi + gh),)


def detach_state(state: State) -> State:
    """Cut the graph between windows (truncated BPTT) while keeping the values."""
    return [tuple(s.detach() for s in layer) for layer in state]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
