"""Embeddings that start from the training text's co-occurrence counts (`charnn train --embed-init`).

A language model learns its embedding from next-token prediction, which groups tokens by the
slot they fill: on a megabyte of film reviews " good" sits beside " bad" and " best" beside
" worst". Counting which tokens occur near each other sees what a passage is about: praise
comes with praise. Starting the embedding there (positive pointwise mutual information over a
window of the token stream, reduced by SVD: Levy, Goldberg and Dagan 2015) gives a language
model that keeps that knowledge, and a classifier warm-started from it carries it to words its
few labels never show (docs/classifying.md, "Warm starts").
"""

from __future__ import annotations

import numpy as np
import torch

WINDOW = 20
"""Tokens either side of a token that count as its context, within its line or record."""
MAX_TOKENS = 5_000_000
"""Counts come from at most this many tokens, from the start of the training text."""
MAX_VOCAB = 8192
"""Only the most frequent tokens are counted (a dense table of this many squared); the rest keep
their random start."""
SCALE = 0.77
"""Each vector's root-mean-square entry: about what a trained embedding has (0.79 measured on the
sentiment-mr text), where a random start has 1."""


def cooccurrence_embedding(ids: np.ndarray, embedding: torch.Tensor, breaks: tuple[int, ...] = ()) -> int:
    """Overwrite ``embedding`` (vocab, dim) rows with co-occurrence vectors of ``ids``; returns how many.

    A context never reaches across a token of ``breaks`` (a newline, a record boundary): the
    lines of most corpora are units of sense, and the next one is often about something else.
    Tokens that never occur (or fall outside the MAX_VOCAB most frequent) keep their rows.
    Uses torch's global generator (the randomised SVD): seed it for a repeatable start.
    """
    vocab, dim = embedding.shape
    ids = np.asarray(ids[:MAX_TOKENS], dtype=np.int64)
    is_break = np.isin(ids, np.asarray(breaks, dtype=np.int64))
    segment = np.cumsum(is_break)  # positions on either side of a break differ
    counts = np.bincount(ids[~is_break], minlength=vocab)
    kept = np.argsort(-counts, kind="stable")[:MAX_VOCAB]
    kept = kept[counts[kept] > 0]
    if len(kept) < 2:
        return 0
    position = np.full(vocab, -1, dtype=np.int64)
    position[kept] = np.arange(len(kept))
    at = np.where(is_break, -1, position[ids])
    size = len(kept)
    pairs = np.zeros(size * size, dtype=np.float64)
    for offset in range(1, WINDOW + 1):
        left, right = at[:-offset], at[offset:]
        both = (left >= 0) & (right >= 0) & (segment[:-offset] == segment[offset:])
        pairs += np.bincount(left[both] * size + right[both], minlength=size * size)
    pairs = pairs.reshape(size, size)
    vectors = ppmi_vectors(torch.from_numpy(pairs + pairs.T).float(), min(dim, size))  # (size, <= dim)
    found = vectors.norm(dim=1) > 0  # a token with no positive association keeps its random start
    rows = torch.from_numpy(kept)[found]
    with torch.no_grad():
        embedding[rows] = 0.0
        embedding[rows, : vectors.shape[1]] = vectors[found] * (SCALE * dim**0.5)
    return int(found.sum())


def ppmi_vectors(pairs: torch.Tensor, rank: int) -> torch.Tensor:
    """Unit vectors (V, rank) from a symmetric co-occurrence table (V, V): positive PMI with the
    context distribution smoothed (power 0.75), then a rank-``rank`` randomised SVD, U * sqrt(S).
    A row with no positive PMI comes out zero."""
    total = pairs.sum()
    context = pairs.sum(0) ** 0.75
    expected = pairs.sum(1, keepdim=True) * (context / context.sum() * total)[None]  # (V, V)
    pmi = torch.where(pairs > 0, torch.log(pairs * total / expected.clamp(min=1e-30)), torch.zeros(()))
    del expected
    u, s, _ = torch.svd_lowrank(pmi.clamp(min=0), q=rank, niter=4)
    vectors = u * s.sqrt()
    return vectors / vectors.norm(dim=1, keepdim=True).clamp(min=1e-12) * (vectors.norm(dim=1, keepdim=True) > 1e-6)
