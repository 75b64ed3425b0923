"""The tokenizer contract and the registry of tokenizer kinds.

A tokenizer turns text into a 1-D numpy array of ids and back. Every token also has
a byte string, so that generated ids can be decoded incrementally with an
incremental UTF-8 decoder (a character may be split across subword tokens).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from charnn.errors import TokenizerError, TokenizerOptionError


def spelled(pieces: list[bytes]) -> list[str]:
    """What each of a text's tokens (their bytes, in order) spells: a character read as several byte tokens is
    spelt by the token that completes it and the others spell "", so that the pieces spell the text; bytes that
    complete no character read as U+FFFD."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out = [decoder.decode(piece) for piece in pieces]
    if out:
        out[-1] += decoder.decode(b"", final=True)
    return out


class UnknownTextWarning(UserWarning):
    """Text contained characters the tokenizer has no id for."""


class Tokenizer(Protocol):
    kind: str
    """Registry name, stored in config.json."""
    file_name: str
    """The file in the run folder that holds this tokenizer."""

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> np.ndarray: ...

    def encode_many(self, texts: list[str] | tuple[str, ...]) -> list[np.ndarray]:
        """``encode`` of each text, the same arrays; as fast as the tokenizer can do a batch."""
        ...

    def decode(self, ids: np.ndarray | list[int]) -> str: ...

    def token_bytes(self, token_id: int) -> bytes: ...

    def never_sample(self) -> list[int]:
        """Ids that must never be generated (the unknown token, for one)."""
        ...

    def start_ids(self) -> np.ndarray:
        """Context to read before generating when no prime text is given."""
        ...

    def save(self, folder: Path) -> None: ...


_REGISTRY: dict[str, Callable[[Path, dict[str, Any]], Tokenizer]] = {}
_BUILDERS: dict[str, Callable[..., Tokenizer]] = {}


def register(kind: str, *, build: Callable[..., Tokenizer], load: Callable[[Path, dict[str, Any]], Tokenizer]) -> None:
    _BUILDERS[kind] = build
    _REGISTRY[kind] = load


def tokenizer_kinds() -> list[str]:
    return sorted(_BUILDERS)


def build_tokenizer(kind: str, text: str, **options: Any) -> Tokenizer:
    """Build (train) a tokenizer of ``kind`` on ``text``.

    ``held_out=`` passes the validation text: a kind may use it for its alphabet, never
    to learn from.
    """
    if kind not in _BUILDERS:
        raise TokenizerOptionError(f"unknown --tokenizer {kind!r}; choose one of: {', '.join(tokenizer_kinds())}")
    return _BUILDERS[kind](text, **options)


def load_tokenizer(folder: Path, meta: dict[str, Any]) -> Tokenizer:
    """Load the tokenizer described by config.json's ``tokenizer`` entry."""
    kind = meta.get("kind")
    if not isinstance(kind, str) or kind not in _REGISTRY:
        raise TokenizerError(
            f"{folder}/config.json names tokenizer {kind!r}, which this charnn does not know "
            f"(known: {', '.join(tokenizer_kinds())}); upgrade charnn to use this run"
        )
    return _REGISTRY[kind](folder, meta)


class WarnOnce:
    """Emits an UnknownTextWarning the first time only, per tokenizer."""

    def __init__(self) -> None:
        self.warned = False

    def __call__(self, message: str) -> None:
        if not self.warned:
            self.warned = True
            warnings.warn(message, UnknownTextWarning, stacklevel=3)


def tokenizer_for(
    kind: str, options: dict[str, Any] | None, alphabet: Callable[[], str], sample: Callable[[], str]
) -> Tokenizer:
    """A new run's tokenizer, however the run reads its data: a character one over ``alphabet()``
    (every character the run holds, held-out text included: one first met in validation is an
    ordinary, untrained token rather than an unknown one), a subword one learnt from ``sample()``
    (training text only)."""
    return build_tokenizer(kind, alphabet() if kind == "char" else sample(), **(options or {}))
