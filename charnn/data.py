"""Reading corpus text, and laying token streams out for truncated BPTT."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from charnn.errors import CorpusError

STDIN = "-"


@dataclass(frozen=True)
class Corpus:
    text: str
    name: str
    """A short name for the run folder: the first file's stem, or 'stdin'."""
    sources: tuple[str, ...]


def read_corpus(sources: Sequence[str | Path], stdin: BinaryIO | None = None) -> Corpus:
    """Read and join corpus files ('-' is standard input) as one validated text.

    Files are joined in order; a newline is put between two files when the first does
    not end with one, so that lines of different files never run together.
    """
    if not sources:
        raise CorpusError("no corpus given; name one or more text files, or '-' for standard input")
    parts: list[str] = []
    for source in sources:
        text = read_text(source, stdin=stdin)
        if parts and parts[-1] and not parts[-1].endswith("\n"):
            parts.append("\n")
        parts.append(text)
    text = "".join(parts)
    if not text.strip():
        names = ", ".join(str(s) for s in sources)
        raise CorpusError(f"the corpus ({names}) holds no text, only whitespace; give it some text to learn")
    first = str(sources[0])
    name = "stdin" if first == STDIN else Path(first).stem or "corpus"
    return Corpus(text=text, name=name, sources=tuple(str(s) for s in sources))


def read_text(source: str | Path, stdin: BinaryIO | None = None) -> str:
    """One file (or '-') as text, with errors that name the file and what to do."""
    label = "standard input" if str(source) == STDIN else str(source)
    if str(source) == STDIN:
        data = (stdin or sys.stdin.buffer).read()
    else:
        path = Path(source)
        if path.is_dir():
            raise CorpusError(f"{label} is a folder, not a text file; name the files inside it")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise CorpusError(f"{label}: no such file") from None
        except OSError as exc:
            raise CorpusError(f"cannot read {label}: {exc.strerror or exc}") from None
    return decode_utf8(data, label)


def decode_utf8(data: bytes, label: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise CorpusError(
            f"{label} looks like UTF-16 text; convert it to UTF-8 first "
            f"(e.g. iconv -f UTF-16 -t UTF-8 {label} > out.txt)"
        )
    nul = data.find(b"\x00")
    if nul >= 0:
        raise CorpusError(f"{label} holds a NUL byte at offset {nul}: it looks like a binary file, not text")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 4].hex(" ")
        raise CorpusError(
            f"{label} is not valid UTF-8: byte offset {exc.start} ({bad}); "
            f"convert it first (e.g. iconv -f LATIN1 -t UTF-8)"
        ) from None


def split_text(text: str, val_fraction: float) -> tuple[str, str]:
    """First (1 - f) of the text for training, the last f for validation."""
    cut = len(text) - int(round(len(text) * val_fraction))
    return text[:cut], text[cut:]


def token_dtype(vocab_size: int) -> np.dtype:
    """The narrowest unsigned dtype that holds every id."""
    if vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


class TBPTTStream:
    """The training stream cut into ``rows`` parallel streams, read in windows.

    The token sequence is split into B equal contiguous rows (the tail that does not
    fill a row is dropped); window w of row b continues exactly where window w-1 of
    row b ended, so the hidden state of row b can be carried from one window to the
    next::

        tokens: a b c d e f g h i j k l m n o p q r s t u v w x  (N = 24, B = 3)

                 window 0   window 1
        row 0:  [a b c d]  [e f g h]          x = rows[:, t : t+T]
        row 1:  [i j k l]  [m n o p]          y = rows[:, t+1 : t+T+1]
        row 2:  [q r s t]  [u v w x]

    Targets are inputs shifted by one, so each row yields (L - 1) // T full windows
    per pass; after the last one the stream starts a new pass (epoch) and the
    carried state should be reset.
    """

    def __init__(self, tokens: np.ndarray, rows: int, seq_len: int) -> None:
        length = len(tokens) // rows
        if length < seq_len + 1:
            raise CorpusError(
                f"the training text has {len(tokens)} tokens, too few for {rows} rows of windows of "
                f"{seq_len} (needs at least {rows * (seq_len + 1)}); use a smaller --batch-size or --seq-len"
            )
        self.rows = tokens[: rows * length].reshape(rows, length)  # (B, L), a view
        self.seq_len = seq_len
        self.windows_per_epoch = (length - 1) // seq_len

    def window(self, index: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """Window ``index`` (counted over all epochs): inputs, targets, first-of-epoch."""
        w = index % self.windows_per_epoch
        t = w * self.seq_len
        x = self.rows[:, t : t + self.seq_len]  # (B, T)
        y = self.rows[:, t + 1 : t + self.seq_len + 1]  # (B, T)
        return x, y, w == 0

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, bool]]:
        index = 0
        while True:
            yield self.window(index)
            index += 1
