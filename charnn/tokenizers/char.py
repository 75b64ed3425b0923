"""Character-level tokenizer over any Unicode text.

Id 0 is the unknown token: characters not seen when the vocabulary was built map
to it (with one warning), so evaluation and priming never crash on new text, and
sampling never produces it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from charnn.errors import TokenizerError, TokenizerOptionError
from charnn.tokenizers.base import WarnOnce, register

UNKNOWN_ID = 0
_MAX_CODEPOINT = 0x110000


def _codepoints(text: str) -> np.ndarray:
    """Code points of ``text`` as uint32, without a Python-level loop."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


class CharTokenizer:
    kind = "char"
    file_name = "tokenizer.json"

    def __init__(self, chars: list[str]) -> None:
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise TokenizerError("a character vocabulary must list distinct single characters")
        self.chars = list(chars)
        self._id_to_char = ["\ufffd", *self.chars]
        # A lookup table over all of Unicode makes encoding one numpy gather.
        dtype = np.uint8 if self.vocab_size <= 256 else np.uint16 if self.vocab_size <= 65536 else np.int32
        self._lookup = np.zeros(_MAX_CODEPOINT, dtype=dtype)
        self._lookup[_codepoints("".join(self.chars))] = np.arange(1, len(self.chars) + 1)
        self._warn = WarnOnce()

    @classmethod
    def build(cls, text: str) -> CharTokenizer:
        if not text:
            raise TokenizerError("cannot build a character vocabulary from empty text")
        unique = np.unique(_codepoints(text))
        return cls([chr(c) for c in unique])

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 1

    def encode(self, text: str) -> np.ndarray:
        ids = self._lookup[_codepoints(text)]
        unknown = int(np.count_nonzero(ids == UNKNOWN_ID))
        if unknown:
            example = text[int(np.argmax(ids == UNKNOWN_ID))]
            self._warn(
                f"{unknown} character(s) the model never saw in training (first: {example!r}) "
                "were read as the unknown token"
            )
        return ids

    def encode_many(self, texts: list[str] | tuple[str, ...]) -> list[np.ndarray]:
        """``encode`` of each of ``texts`` (one table lookup each: nothing to gain from batching them)."""
        return [self.encode(text) for text in texts]

    def decode(self, ids: Any) -> str:
        table = self._id_to_char
        return "".join(table[i] for i in np.asarray(ids, dtype=np.int64).tolist())

    def token_bytes(self, token_id: int) -> bytes:
        return self._id_to_char[token_id].encode("utf-8")

    def never_sample(self) -> list[int]:
        return [UNKNOWN_ID]

    def start_ids(self) -> np.ndarray:
        start = "\n" if "\n" in self.chars else self.chars[0]
        return self._lookup[_codepoints(start)]

    def save(self, folder: Path) -> None:
        from charnn.files import atomic_write_text

        payload = {"kind": self.kind, "unknown_id": UNKNOWN_ID, "chars": "".join(self.chars)}
        atomic_write_text(folder / self.file_name, json.dumps(payload, ensure_ascii=False))

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> CharTokenizer:
        path = folder / cls.file_name
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            chars = payload.get("chars") if isinstance(payload, dict) else None
            if not isinstance(chars, str):
                raise TypeError('it has no "chars" string; the run is damaged: train it again')
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TokenizerError(f"cannot read the character vocabulary {path}: {exc}") from exc
        return cls(list(chars))


NO_VOCAB_SIZE = "--vocab-size applies to subword tokenizers; a char vocabulary is the text's alphabet"
"""What a --vocab-size given beside --tokenizer char is told."""


def _build(text: str, *, held_out: str = "", vocab_size: int | None = None, **_: object) -> CharTokenizer:
    if vocab_size is not None:
        raise TokenizerOptionError(NO_VOCAB_SIZE)
    # The alphabet covers the held-out text too: a character first met in validation
    # is then an ordinary (untrained, unlikely) token rather than a warning.
    return CharTokenizer.build(text + held_out)


register("char", build=_build, load=CharTokenizer.load)
