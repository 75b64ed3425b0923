"""Reading corpus text, and laying token streams out for truncated BPTT."""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from charnn.errors import CorpusError

STDIN = "-"


CHUNK_BYTES = 1 << 24
"""Corpus files are read, checked and encoded this many bytes at a time."""
_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class CorpusStats:
    chars: int
    codepoint_counts: np.ndarray
    """How often each Unicode code point occurs (length 0x110000)."""
    sha256: str
    """Of the text as UTF-8, as charnn joins it: resuming checks the corpus is the same."""

    @property
    def alphabet(self) -> str:
        return "".join(map(chr, np.flatnonzero(self.codepoint_counts)))


@dataclass(frozen=True)
class Corpus:
    """Training text, held in memory (``text``) or streamed from ``paths`` chunk by chunk.

    Files are joined in order; a newline is put between two files when the first does
    not end with one, so that lines of different files never run together.
    """

    text: str | None
    name: str
    """A short name for the run folder: the first file's stem, or 'stdin'."""
    sources: tuple[str, ...]
    paths: tuple[Path, ...] = ()
    stats: CorpusStats | None = None

    def chunks(self) -> Iterator[str]:
        """The text in pieces of about CHUNK_BYTES, checked as they are read."""
        if self.text is not None:
            step = CHUNK_BYTES // 4
            for start in range(0, len(self.text), step):
                yield self.text[start : start + step]
            return
        last = ""
        for index, path in enumerate(self.paths):
            first = True
            for piece in _file_chunks(path):
                if first and index > 0 and last and not last.endswith("\n"):
                    yield "\n"
                first = False
                yield piece
                last = piece


def corpus_stats(corpus: Corpus) -> CorpusStats:
    """One pass over the corpus: characters, code point counts and checksum; checks it holds text."""
    if corpus.stats is not None:
        return corpus.stats
    counts = np.zeros(0x110000, dtype=np.int64)
    digest = hashlib.sha256()
    chars = 0
    for piece in corpus.chunks():
        chars += len(piece)
        counts += np.bincount(codepoints(piece), minlength=0x110000)
        digest.update(piece.encode("utf-8"))
    if not np.any(np.delete(counts, _WHITESPACE)):
        names = ", ".join(corpus.sources)
        raise CorpusError(f"the corpus ({names}) holds no text, only whitespace; give it some text to learn")
    return CorpusStats(chars, counts, digest.hexdigest())


def codepoints(text: str) -> np.ndarray:
    """Code points of ``text`` as uint32, without a Python-level loop."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


_WHITESPACE = [ord(c) for c in map(chr, range(0x3000 + 1)) if c.isspace()]


def read_corpus(sources: Sequence[str | Path], stdin: BinaryIO | None = None) -> Corpus:
    """The corpus named by ``sources`` ('-' is standard input), checked in one streaming pass.

    Files are not held in memory: training reads them again, chunk by chunk. Standard
    input, which cannot be read twice, is held in memory, as is a corpus with a pipe among its
    files (a named FIFO, or bash's ``<(...)``), which cannot be read twice either.
    """
    if not sources:
        raise CorpusError("no corpus given; name one or more text files, or '-' for standard input")
    first = str(sources[0])
    name = "stdin" if first == STDIN else Path(first).stem or "corpus"
    labels = tuple(str(s) for s in sources)
    if labels.count(STDIN) > 1:
        raise CorpusError("standard input can be read only once; name '-' once")
    if STDIN in labels or any(_read_once(Path(label)) for label in labels):
        parts: list[str] = []
        for source in sources:
            text = read_text(source, stdin=stdin)
            if parts and parts[-1] and not parts[-1].endswith("\n"):
                parts.append("\n")
            parts.append(text)
        corpus = Corpus(text="".join(parts), name=name, sources=labels)
    else:
        for source in sources:
            _check_file(Path(source))
        corpus = Corpus(text=None, name=name, sources=labels, paths=tuple(Path(s) for s in sources))
    return dataclasses.replace(corpus, stats=corpus_stats(corpus))


def _read_once(path: Path) -> bool:
    """Whether ``path`` is a pipe or a socket (read once, then gone). A device is read as a file is, a chunk at a
    time, so that /dev/zero stops at its first NUL byte rather than filling the memory."""
    try:
        return path.is_fifo() or path.is_socket()
    except OSError:  # unreadable: _check_file says why
        return False


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise CorpusError(f"{path} is a folder, not a text file; name the files inside it")
    if not path.exists():
        raise CorpusError(f"{path}: no such file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise CorpusError(f"cannot read {path}: {exc.strerror or exc}") from None


def _file_chunks(path: Path) -> Iterator[str]:
    """Decode one file incrementally, with errors that name the file and the byte offset."""
    try:
        with open(path, "rb") as f:
            yield from _stream_chunks(f, str(path))
    except OSError as exc:
        raise CorpusError(f"cannot read {path}: {exc.strerror or exc}") from None


def _stream_chunks(stream: BinaryIO, label: str, limit: int | None = None) -> Iterator[str]:
    """Decode a stream incrementally, CHUNK_BYTES at a time, with errors that name ``label`` and the byte offset:
    a NUL byte (/dev/zero) or, with ``limit``, more bytes than that (`yes | charnn eval -`) is refused as it
    comes, not after filling the memory."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0
    while True:
        data = stream.read(CHUNK_BYTES)
        if offset == 0:
            _check_start(data, label)
            if data.startswith(_UTF8_BOM):
                data, offset = data[3:], 3
        nul = data.find(b"\x00")
        if nul >= 0:
            raise CorpusError(
                f"{label} holds a NUL byte at offset {offset + nul}: it looks like a binary file, not text"
            )
        pending = len(decoder.getstate()[0])
        try:
            text = decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            where = offset - pending + exc.start
            bad = (exc.object[exc.start : exc.start + 4]).hex(" ")
            raise CorpusError(
                f"{label} is not valid UTF-8: byte offset {where} ({bad}); "
                f"convert it first (e.g. iconv -f CP1252 -t UTF-8, for text from Windows)"
            ) from None
        offset += len(data)
        if limit is not None and offset > limit:
            size = f"{limit / 2**30:.1f} GiB" if limit >= 2**30 else f"{limit / 2**20:,.0f} MiB"
            raise CorpusError(
                f"{label} holds more than {size}, an eighth of this machine's memory; "
                "give a smaller text (or a file to `charnn train`, which reads it in pieces)"
            )
        if text:
            yield text
        if not data:
            return


def _check_start(data: bytes, label: str) -> None:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise CorpusError(
            f"{label} looks like UTF-16 text; convert it to UTF-8 first "
            f"(e.g. iconv -f UTF-16 -t UTF-8 {label} > out.txt)"
        )


def read_text(source: str | Path, stdin: BinaryIO | None = None) -> str:
    """One file (or '-') as text, with errors that name the file and what to do; at most an eighth of the
    memory (joined, the pieces and the text take three times that)."""
    label = "standard input" if str(source) == STDIN else str(source)
    if str(source) == STDIN:
        stream = stdin or sys.stdin.buffer
        if getattr(stream, "isatty", lambda: False)():  # nothing piped in: say what is awaited, not just wait
            import warnings

            warnings.warn(
                f"reading {label} from the terminal: type the text, then Ctrl-D on a line of its own", stacklevel=2
            )
        return "".join(_stream_chunks(stream, label, _memory_bytes() // 8))
    path = Path(source)
    if path.is_dir():
        raise CorpusError(f"{label} is a folder, not a text file; name the files inside it")
    try:
        with path.open("rb") as stream:
            return "".join(_stream_chunks(stream, label, _memory_bytes() // 8))
    except FileNotFoundError:
        raise CorpusError(f"{label}: no such file") from None
    except OSError as exc:
        raise CorpusError(f"cannot read {label}: {exc.strerror or exc}") from None


_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def _memory_bytes() -> int:
    """The memory this process may use: the machine's, or its container's limit (cgroup v2, then v1) if lower."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: no limit of ours
        total = 1 << 62
    for limit in _CGROUP_LIMITS:
        try:
            said = Path(limit).read_text().strip()
        except OSError:
            continue
        if said.isdigit():  # "max": none
            total = min(total, int(said))
    return total


def read_validation(source: str | Path, minimum: int, what: str = "the --val file") -> str:
    """A validation text given as a file (or '-'); one of fewer than ``minimum`` characters measures nothing and is
    refused, naming it (``what`` says whose it is)."""
    text = read_text(source)
    if len(text) < minimum:
        label = "standard input" if str(source) == STDIN else str(source)
        held = "is empty; name a file that holds" if not text else f"holds {len(text)} character(s); give it more of"
        raise CorpusError(f"{what} {label} {held} the text to measure the model on")
    return text


def decode_utf8(data: bytes, label: str) -> str:
    _check_start(data, label)
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
            f"convert it first (e.g. iconv -f CP1252 -t UTF-8, for text from Windows)"
        ) from None


def split_point(chars: int, val_fraction: float) -> int:
    """Characters of the training split: the first (1 - f) of the text; validation is the last f."""
    return chars - int(round(chars * val_fraction))


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
        self.check_length(len(tokens), rows, seq_len)
        length = len(tokens) // rows
        self.rows = tokens[: rows * length].reshape(rows, length)  # (B, L), a view
        self.seq_len = seq_len
        self.windows_per_epoch = (length - 1) // seq_len

    @staticmethod
    def check_length(tokens: int, rows: int, seq_len: int) -> None:
        if tokens // rows < seq_len + 1:
            raise CorpusError(
                f"the training text has {tokens} tokens, too few for {rows} rows of windows of "
                f"{seq_len} (needs at least {rows * (seq_len + 1)}); use a smaller --batch-size or --seq-len"
            )

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


def split_pieces(corpus: Corpus, n_train: int) -> Iterator[tuple[bool, str]]:
    """``(is_training, piece)`` over the corpus, cut exactly at character ``n_train``.

    Pieces end at a newline where the text allows, so that a subword tokenizer sees
    whole lines; a line longer than a chunk is cut anyway.
    """
    carry = ""
    side = True
    for is_train, piece in _cut(corpus, n_train):
        if is_train != side:
            if carry:
                yield side, carry
            carry, side = "", is_train
        text = carry + piece
        cut = text.rfind("\n") + 1
        if not cut and len(text) >= CHUNK_BYTES:
            cut = len(text)
        if cut:
            yield side, text[:cut]
        carry = text[cut:]
    if carry:
        yield side, carry


def _cut(corpus: Corpus, n_train: int) -> Iterator[tuple[bool, str]]:
    pos = 0
    for chunk in corpus.chunks():
        end = pos + len(chunk)
        if end <= n_train:
            yield True, chunk
        elif pos >= n_train:
            yield False, chunk
        else:
            yield True, chunk[: n_train - pos]
            yield False, chunk[n_train - pos :]
        pos = end


def training_sample(corpus: Corpus, n_train: int, limit: int) -> str:
    """Up to ``limit`` characters of the training split, from its start (to train a subword vocabulary)."""
    parts, size = [], 0
    for is_train, piece in split_pieces(corpus, n_train):
        if not is_train or size >= limit:
            break
        parts.append(piece[: limit - size])
        size += len(parts[-1])
    return "".join(parts)
