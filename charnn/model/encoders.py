"""Encoder: the recurrent stack, one- or two-way, reading whole texts; SentenceClassifier pools
its states into a label, WordTagger reads them at each word into a tag."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from charnn.config import ModelConfig
from charnn.errors import ConfigError
from charnn.model.stack import forget_bias_one, make_stack, run_stack, zero_state

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
    """The encoder's states pooled over the text -> label logits; with ``ngram_buckets``, beside it
    a linear model of the text's hashed n-grams (fitted outside the network, charnn.tasks.classify.ngrams).

    The n-gram table, its bias and the weight that mixes it in are buffers: saved and loaded
    with the weights, never trained by the optimizer. Training reads the encoder alone
    (``forward``); prediction mixes the two parts' log-probabilities, the
    n-grams' weighing ``ngram_share`` and the encoder's the rest.
    """

    def __init__(
        self, config: ModelConfig, labels: int, pool: str = "attention", ngram_buckets: int = 0,
        ngram_extras: tuple[str, ...] = (), ngram_chars: tuple[int, int] = (3, 5),
    ) -> None:  # fmt: skip
        if pool not in POOLS:
            raise ConfigError(f"unknown --pool {pool!r}; choose one of: {', '.join(POOLS)}")
        if labels < 2:
            raise ConfigError(f"a classifier needs at least 2 labels, got {labels}")
        super().__init__(config)
        self.pool = pool
        self.attention = nn.Linear(self.width, 1) if pool == "attention" else None
        self.head = nn.Linear(self.width * (2 if pool == "mean-max" else 1), labels)
        self.ngram_buckets = ngram_buckets
        self.ngram_extras = tuple(ngram_extras)  # what its n-grams read beyond words and characters (config.json)
        self.ngram_chars = (int(ngram_chars[0]), int(ngram_chars[1]))  # the lengths of its character n-grams
        if ngram_buckets:
            self.register_buffer("ngram_weight", torch.zeros(ngram_buckets, labels))
            self.register_buffer("ngram_bias", torch.zeros(labels))
            self.register_buffer("ngram_share", torch.zeros(()))

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """tokens (B, T) int64, right-padded; lengths (B,) >= 1 -> the encoder's logits (B, labels).

        The n-gram part, when there is one, is read apart (``ngram_logits``) and mixed in by ``mix``."""
        return self.head(self.drop(self.pooled(tokens, lengths)))

    def ngram_logits(self, ids: Tensor, offsets: Tensor) -> Tensor:
        """The n-gram part's logits (B, labels) of texts given as F.embedding_bag's ids (N,) and offsets (B,)."""
        return F.embedding_bag(ids, self.ngram_weight, offsets, mode="sum") + self.ngram_bias

    def attention_weights(self, tokens: Tensor, lengths: Tensor) -> Tensor | None:
        """The attention pooling's weight on each token (B, T), each row summing to 1; None for another pooling."""
        if self.pool != "attention":
            return None
        states = self.states(tokens, lengths)  # (B, T, D)
        mask = torch.arange(states.shape[1], device=tokens.device)[None, :] < lengths[:, None]  # (B, T)
        return self.attention(states).squeeze(2).masked_fill(~mask, float("-inf")).softmax(dim=1)

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


def mix(logits: Tensor, ngram_logits: Tensor, share: Tensor | float) -> Tensor:
    """Logits of the weighted geometric mean of the two parts' probabilities, the n-grams' weighing ``share`` (0-1)."""
    return (1 - share) * logits.float().log_softmax(-1) + share * ngram_logits.float().log_softmax(-1)


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
