"""Subword tokenizers (BPE and unigram) trained with sentencepiece, in process.

The model is set up so that any Unicode text round-trips exactly and no id is ever
unknown:

- byte fallback: a character outside the vocabulary is spelled as its UTF-8 bytes,
  one piece per byte (``<0xAB>``);
- identity normalisation, no dummy prefix, no whitespace folding: the pieces of a
  text concatenate to exactly its UTF-8 bytes, once ``▁`` is read back as a space;
- ``\\n`` is a user-defined symbol: sentencepiece reads its input as lines, so the
  newline is a token of its own (pieces never span lines), which also makes every
  line boundary a place where a long text can be cut and encoded in parallel;
- a literal ``▁`` (U+2581, sentencepiece's space symbol) in the text is spelled as
  its three byte pieces, so that it is not read back as a space.

The trainer only sees the training split (``held_out`` is ignored), and the run
folder keeps the serialized model (``tokenizer.model``), which is all that sampling
and evaluation need.
"""

from __future__ import annotations

import io
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np

from charnn.errors import TokenizerError, TokenizerOptionError
from charnn.tokenizers.base import register

KINDS = ("bpe", "unigram")
FILE_NAME = "tokenizer.model"
DEFAULT_VOCAB_SIZE = 1024
"""--vocab-size when none is given."""
BYTE_PIECES = 256
SPACE = "\u2581"
"""sentencepiece's whitespace symbol '▁'."""
NEWLINE = "\n"
LARGE_ALPHABET = 1000
"""Above this many distinct characters (CJK, mixed scripts), the rarest 0.05% of
character occurrences are left to byte fallback instead of each taking an id."""
MAX_SENTENCE_CHARS = 8192
"""Training lines longer than this are cut (at a space when there is one)."""
TRAINING_SAMPLE_BYTES = 32 << 20
"""Larger training texts are sampled, line by line, down to about this size."""
ENCODE_CHUNK_CHARS = 1 << 14
"""Texts are encoded in pieces of about this size, cut after a newline."""


class SubwordTokenizer:
    """A sentencepiece model with byte fallback; ``kind`` is 'bpe' or 'unigram'."""

    file_name = FILE_NAME

    def __init__(self, kind: str, model_proto: bytes) -> None:
        import sentencepiece as spm

        self.kind = kind
        self.model_proto = bytes(model_proto)
        try:
            self._sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        except (RuntimeError, OSError) as exc:
            raise TokenizerError(f"cannot read the sentencepiece model: {exc}") from None
        sp = self._sp
        size = sp.get_piece_size()
        self._bytes = [_piece_bytes(sp, i) for i in range(size)]
        self._never = [i for i in range(size) if sp.is_unknown(i) or sp.is_control(i) or sp.is_unused(i)]
        byte_ids = [sp.piece_to_id(f"<0x{b:02X}>") for b in range(BYTE_PIECES)]
        if not all(sp.is_byte(i) for i in byte_ids) or sp.piece_to_id(NEWLINE) == sp.unk_id():
            raise TokenizerError(
                "the sentencepiece model lacks byte fallback or the newline symbol; "
                "it was not made by charnn: train the run again"
            )
        self._space_ids = np.array([byte_ids[b] for b in SPACE.encode("utf-8")], dtype=np.int32)
        self._dtype = np.uint8 if size <= 1 << 8 else np.uint16 if size <= 1 << 16 else np.int32
        self._threads = max(1, min(8, os.cpu_count() or 1))

    @property
    def vocab_size(self) -> int:
        return len(self._bytes)

    def encode(self, text: str) -> np.ndarray:
        """Ids of ``text``, in the narrowest dtype; long texts are encoded in parallel pieces."""
        return self.encode_many([text])[0]

    def encode_many(self, texts: list[str] | tuple[str, ...]) -> list[np.ndarray]:
        """``encode`` of each of ``texts``, in one call to sentencepiece (its threads share the pieces of
        all of them: ten thousand short lines take a seventh of the time they take one at a time)."""
        # A literal '▁' would come back as a space: it is spelled with its byte pieces.
        texts_chunks = [[_chunks(segment) for segment in text.split(SPACE)] for text in texts]
        pieces = [c for chunks in texts_chunks for cs in chunks for c in cs]
        try:
            encoded = self._sp.encode(pieces, out_type="numpy", num_threads=self._threads)
        except UnicodeEncodeError as exc:
            raise TokenizerError(f"the text is not valid Unicode ({exc.reason}); fix or re-encode it") from None
        out, done = [], 0
        for chunks in texts_chunks:
            parts: list[np.ndarray] = []
            for i, cs in enumerate(chunks):
                if i:
                    parts.append(self._space_ids)
                parts.extend(encoded[done : done + len(cs)])
                done += len(cs)
            out.append(np.concatenate(parts).astype(self._dtype, copy=False) if parts else np.zeros(0, self._dtype))
        return out

    def decode(self, ids: Any) -> str:
        table = self._bytes
        data = b"".join(table[i] for i in np.asarray(ids, dtype=np.int64).tolist())
        return data.decode("utf-8", errors="replace")

    def token_bytes(self, token_id: int) -> bytes:
        return self._bytes[token_id]

    def never_sample(self) -> list[int]:
        return list(self._never)

    def start_ids(self) -> np.ndarray:
        return self.encode(NEWLINE)

    def save(self, folder: Path) -> None:
        from charnn.files import atomic_write_bytes

        atomic_write_bytes(folder / self.file_name, self.model_proto)

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> SubwordTokenizer:
        kind = meta.get("kind")
        name = meta.get("file") or FILE_NAME
        path = folder / name
        try:
            proto = path.read_bytes()
        except OSError as exc:
            raise TokenizerError(f"cannot read the sentencepiece model {path}: {exc.strerror or exc}") from None
        try:
            return cls(str(kind), proto)
        except TokenizerError as exc:
            raise TokenizerError(f"{path}: {exc}") from None


def _piece_bytes(sp: Any, token_id: int) -> bytes:
    """The bytes a piece stands for: '▁' is a space, '<0xAB>' one raw byte, control pieces nothing."""
    if sp.is_byte(token_id):
        return bytes([int(sp.id_to_piece(token_id)[3:5], 16)])
    if sp.is_control(token_id) or sp.is_unknown(token_id) or sp.is_unused(token_id):
        return b""
    return sp.id_to_piece(token_id).replace(SPACE, " ").encode("utf-8")


def _chunks(text: str) -> list[str]:
    """``text`` cut after newlines into pieces of about ENCODE_CHUNK_CHARS characters.

    No piece spans a newline, so encoding the pieces apart gives a segmentation as
    good as encoding the whole (sentencepiece's BPE also slows down on long inputs).
    """
    size = ENCODE_CHUNK_CHARS
    if len(text) <= size:
        return [text]
    chunks, start = [], 0
    while start < len(text):
        cut = text.find(NEWLINE, start + size)
        end = len(text) if cut < 0 else cut + 1
        chunks.append(text[start:end])
        start = end
    return chunks


def training_sentences(text: str) -> list[str]:
    """What sentencepiece learns from: the lines of ``text`` without their newline (a
    symbol of its own) and without literal '▁', long lines cut, and a large text
    sampled line by line down to about TRAINING_SAMPLE_BYTES.

    The sample is drawn here rather than with sentencepiece's ``input_sentence_size``,
    which counts lines: a cap in lines bounds nothing when a line can be 20 bytes or 8 kB.
    """
    size = len(text) if 4 * len(text) <= TRAINING_SAMPLE_BYTES else len(text.encode("utf-8"))
    keep = min(1.0, TRAINING_SAMPLE_BYTES / max(size, 1))
    rng = random.Random(0)  # seeded: a corpus always gives the same tokenizer
    sentences = []
    for line in text.split(NEWLINE):
        if keep < 1.0 and rng.random() >= keep:
            continue
        for part in line.split(SPACE):
            while len(part) > MAX_SENTENCE_CHARS:
                cut = part.rfind(" ", MAX_SENTENCE_CHARS // 2, MAX_SENTENCE_CHARS)
                cut = cut if cut > 0 else MAX_SENTENCE_CHARS
                sentences.append(part[:cut])
                part = part[cut:]
            if part:
                sentences.append(part)
    return sentences


def train_sentencepiece(text: str, kind: str, vocab_size: int) -> bytes:
    """Train a sentencepiece ``kind`` model of exactly ``vocab_size`` pieces on ``text``."""
    import sentencepiece as spm

    sentences = training_sentences(text)
    if not sentences:
        raise TokenizerError(
            f"the training text holds no character a {kind} vocabulary can learn from; "
            "give it some text, or use --tokenizer char"
        )
    alphabet = len(set().union(*map(set, sentences)))
    options = dict(
        model_type=kind,
        vocab_size=vocab_size,
        byte_fallback=True,
        character_coverage=1.0 if alphabet <= LARGE_ALPHABET else 0.9995,
        normalization_rule_name="identity",
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        split_by_whitespace=True,
        allow_whitespace_only_pieces=True,
        user_defined_symbols=[NEWLINE],
        unk_id=0,
        bos_id=-1,  # generation starts from a newline, not a begin-of-text token
        eos_id=-1,
        pad_id=-1,
        max_sentence_length=4 * MAX_SENTENCE_CHARS,
        input_sentence_size=0,  # training_sentences has sampled already
        num_threads=max(1, min(8, os.cpu_count() or 1)),
        minloglevel=2,
    )
    try:
        return _train(spm, sentences, options)
    except RuntimeError as exc:
        message = str(exc)
    if "too high" in message and "<=" not in message:
        # A sentencepiece whose message no longer names the largest size: find it.
        largest = spm.SentencePieceProcessor(model_proto=_train(spm, sentences, {**options, "hard_vocab_limit": False}))
        message += f" Please set it to a value <= {largest.get_piece_size()}."
    raise _vocab_error(message, kind, vocab_size)


def _train(spm: Any, sentences: list[str], options: dict[str, Any]) -> bytes:
    spm.set_random_generator_seed(0)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=model, **options)
    return model.getvalue()


def _vocab_error(message: str, kind: str, vocab_size: int) -> TokenizerError:
    """sentencepiece's complaint turned into advice that names a --vocab-size that works (a usage error, exit 2,
    where the size given is what to change)."""
    small = re.search(r"smaller than required_chars\. \d+ vs (\d+)", message)
    if small:
        least = int(small.group(1))
        return TokenizerOptionError(
            f"--vocab-size {vocab_size} is too small for this corpus: the {BYTE_PIECES} byte-fallback pieces, "
            f"the special tokens and the text's alphabet need {least} ids; pass --vocab-size {least} or more"
        )
    large = re.search(r"too high.*Please set it to a value <= (\d+)", message)
    if large:
        most = int(large.group(1))
        return TokenizerOptionError(
            f"--vocab-size {vocab_size} is too large for this corpus: {kind} finds at most {most} pieces in the "
            f"training text; pass --vocab-size {most} or less (or train on more text)"
        )
    if "all_chars_count" in message or "sentences_.empty()" in message:
        return TokenizerError(
            f"the training text holds no character a {kind} vocabulary can learn from; "
            "give it some text, or use --tokenizer char"
        )
    if "no pieces are loaded" in message:
        return TokenizerError(
            f"a {kind} vocabulary could not be learnt from this text: sentencepiece found no pieces to start "
            "from, as happens on a small text that repeats a character or two (such as 'xyxyxy'); give it more "
            "text, or use --tokenizer bpe or char"
        )
    detail = message.split("] ", 1)[-1].strip() or message
    return TokenizerError(f"sentencepiece could not train a {kind} tokenizer on this corpus: {detail}")


def _builder(kind: str):  # noqa: ANN202
    def build(text: str, *, held_out: str = "", vocab_size: int | None = None, **_: object) -> SubwordTokenizer:
        # held_out is the validation text: a subword vocabulary must never learn from it
        # (byte fallback covers the characters it alone holds).
        del held_out
        size = DEFAULT_VOCAB_SIZE if vocab_size is None else vocab_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 2:
            raise TokenizerOptionError(f"--vocab-size must be a whole number of at least 2, got {size!r}")
        return SubwordTokenizer(kind, train_sentencepiece(text, kind, size))

    return build


for _kind in KINDS:
    register(_kind, build=_builder(_kind), load=SubwordTokenizer.load)
