"""Tokenizers: a small protocol (base) and the kinds registered with it."""

from charnn.tokenizers import char, subword  # noqa: F401  (register "char", "bpe" and "unigram")
from charnn.tokenizers.base import (
    Tokenizer,
    UnknownTextWarning,
    build_tokenizer,
    load_tokenizer,
    tokenizer_for,
    tokenizer_kinds,
)

__all__ = [
    "Tokenizer",
    "UnknownTextWarning",
    "build_tokenizer",
    "load_tokenizer",
    "tokenizer_for",
    "tokenizer_kinds",
]
