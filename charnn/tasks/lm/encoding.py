"""A new language-model run's data, encoded: the token files, record offsets and held-out text.

With a borrowed vocabulary (``--init-from``, ``--tokenizer-from``), every character of the
text that the vocabulary lacks is counted, and the run is refused before it starts.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from charnn.errors import CorpusError
from charnn.runs import names
from charnn.text.corpus import Corpus, TBPTTStream, split_pieces


@dataclass
class Counts:
    train_tokens: int = 0
    val_tokens: int = 0
    unknown: int = 0
    """Tokens of characters the borrowed vocabulary lacks."""
    unknown_chars: str = ""
    source: Path | None = None
    """The run whose vocabulary is borrowed (None: the run's own, which covers its text)."""
    val_first_chars: int | None = None
    """Characters the validation text's first token stands for (``first_token_chars``)."""

    def check(self, config: Any, val_file: bool = False) -> None:
        """Refuse a text the borrowed vocabulary does not cover, or a split too small to train or measure
        (``val_file``: the validation text is a --val file, not a part of the corpus)."""
        self.check_covered()
        if self.val_tokens < 2 and val_file:
            raise CorpusError(
                f"the --val file has {self.val_tokens} token(s), too few to measure; give a longer validation text"
            )
        if self.val_tokens < 2:
            raise CorpusError(
                f"the validation split has {self.val_tokens} token(s), too few to measure; "
                "raise --val-fraction, give a longer corpus, or pass --val FILE"
            )
        try:
            TBPTTStream.check_length(self.train_tokens, config.batch_size, config.seq_len)
        except CorpusError as exc:
            if config.val_fraction <= 0.5 or self.val_tokens <= self.train_tokens:
                raise
            held = f"{exc}, or a smaller --val-fraction ({config.val_fraction:g} holds most of it out)"
            raise CorpusError(held) from None

    def check_covered(self) -> None:
        if self.unknown:
            raise CorpusError(
                f"the corpus has {self.unknown} character(s) that {self.source}'s vocabulary lacks "
                f"(e.g. {self.unknown_chars!r}); a borrowed vocabulary (--init-from, --tokenizer-from) must cover "
                "the text: train with a tokenizer of its own instead"
            )


def encode(text: str, tokenizer: Any, dtype: np.dtype, counts: Counts) -> np.ndarray:
    """``text`` as tokens of ``dtype``; with a borrowed vocabulary, the characters it lacks are counted."""
    with warnings.catch_warnings(record=counts.source is not None):
        ids = tokenizer.encode(text).astype(dtype, copy=False)
    if counts.source is not None:
        banned = np.asarray(tokenizer.never_sample())
        if len(banned):
            unknown = np.isin(ids, banned)
            if unknown.any():
                counts.unknown += int(unknown.sum())
                seen = {text[i] for i in np.flatnonzero(unknown)[:100] if i < len(text)}
                counts.unknown_chars = "".join(sorted(set(counts.unknown_chars) | seen))[:10]
    return ids


def encode_corpus(
    corpus: Corpus,
    n_train: int,
    val_text: str | None,
    tokenizer: Any,
    dtype: np.dtype,
    where: Path,
    source: Path | None,
) -> Counts:
    """Encode the corpus chunk by chunk into the token files and the validation text of ``where``."""
    counts = Counts(source=source)
    files = {True: open(where / names.TRAIN_TOKENS_FILE, "wb"), False: open(where / names.VAL_TOKENS_FILE, "wb")}
    val_file = open(where / names.VALIDATION_FILE, "wb")
    pieces = split_pieces(corpus, n_train)
    if val_text is not None:
        pieces = itertools.chain(pieces, [(False, val_text)])
    try:
        for is_train, piece in pieces:
            ids = encode(piece, tokenizer, dtype, counts)
            files[is_train].write(ids.tobytes())
            if is_train:
                counts.train_tokens += len(ids)
            else:
                if counts.val_first_chars is None and len(ids):
                    counts.val_first_chars = first_token_chars(tokenizer, ids, piece)
                counts.val_tokens += len(ids)
                val_file.write(piece.encode("utf-8"))
    finally:
        for f in (*files.values(), val_file):
            f.close()
    return counts


def encode_records(
    texts: list[str], tokenizer: Any, boundary: int, dtype: np.dtype, counts: Counts
) -> tuple[np.ndarray, np.ndarray]:
    """[boundary, record 1, boundary, record 2, ..., boundary] and each record's boundary offset (and the last)."""
    pieces, starts, at = [], [], 0
    mark = np.asarray([boundary], dtype=dtype)
    for text in texts:
        ids = encode(text, tokenizer, dtype, counts)
        starts.append(at)
        pieces += [mark, ids]
        at += 1 + len(ids)
    starts.append(at)
    return np.concatenate([*pieces, mark]), np.asarray(starts, dtype=np.int64)


def write_records(pending: Path, train_ids: np.ndarray, starts: np.ndarray, val_ids: np.ndarray, val_text: str) -> None:
    """A record text's token files, training record offsets and held-out text."""
    (pending / names.TRAIN_TOKENS_FILE).write_bytes(train_ids.tobytes())
    (pending / names.TRAIN_RECORDS_FILE).write_bytes(starts.tobytes())
    (pending / names.VAL_TOKENS_FILE).write_bytes(val_ids.tobytes())
    (pending / names.VALIDATION_FILE).write_text(val_text, encoding="utf-8", newline="")


def covered_by_predictions(tokenizer: Any, tokens: np.ndarray, text: str) -> tuple[int, int]:
    """Characters and UTF-8 bytes of ``text`` that the predicted tokens (all but the first) cover.

    The first token is only context: its bytes are not counted, nor the characters
    whose last byte it holds. A character split across tokens (a subword tokenizer's
    byte fallback) counts for the token that completes it, so a first token holding
    only the leading byte(s) of a character leaves that character to be counted::

        text "éa", bytes C3 A9 61, tokens <0xC3> <0xA9> a:  2 tokens predicted, 2 chars, 2 bytes
    """
    data = text.encode("utf-8", "surrogatepass")
    first = tokenizer.token_bytes(int(tokens[0]))
    if first and data.startswith(first):
        # errors="ignore" drops only a character cut at the end of the first token.
        skipped_chars = len(data[: len(first)].decode("utf-8", errors="ignore"))
        return len(text) - skipped_chars, len(data) - len(first)
    # The first token does not spell the text (a character tokenizer's unknown token):
    # it stands for as many characters as it decodes to.
    skipped = text[: len(tokenizer.decode(tokens[:1]))]
    return len(text) - len(skipped), len(data) - len(skipped.encode("utf-8", "surrogatepass"))


def first_token_chars(tokenizer: Any, ids: np.ndarray, text: str) -> int:
    """Characters of ``text`` its first token stands for: what a validation text's figure leaves out, as
    `charnn eval` does (``covered_by_predictions``), where its predictions are all the tokens but the first."""
    return len(text) - covered_by_predictions(tokenizer, ids, text)[0]
