"""Guards on what a sample may draw: a healed prime spelt again exactly, and only whole UTF-8 characters.

A prime that ends inside what would be one token is *healed*: its last tokens are taken
back and the first tokens generated must spell them again, so the sample continues the
prime's characters exactly. With byte-level tokens, a token that would break a UTF-8
character is never drawn.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

MAX_HEALED_TOKENS = 4
"""At most this many tokens at the end of a prime are taken back and generated again."""


def heal_prime(prime: Sequence[int], token_bytes: Sequence[bytes]) -> tuple[list[int], bytes]:
    """Split the prime's ids into the ones to read and the bytes of a tail to generate again.

    A subword tokenizer encodes a prime that stops inside a word ("The qu") with a last
    token ("▁qu") that the model rarely saw followed by the rest of its word: in
    training text, that word is one token ("▁queen"). So the longest tail of up to
    MAX_HEALED_TOKENS tokens whose bytes are a proper prefix of some token's bytes
    is taken back; generation must then start by spelling it again (``Healing``).
    A character tokenizer has no token that extends another, so nothing is taken back.
    """
    ids = [int(i) for i in prime]
    prefixes = _proper_prefixes(token_bytes)
    take, tail = 0, b""
    for k in range(1, min(MAX_HEALED_TOKENS, len(ids)) + 1):
        tail = token_bytes[ids[-k]] + tail
        if tail in prefixes:
            take = k
    if take == 0:
        return ids, b""
    return ids[:-take], b"".join(token_bytes[i] for i in ids[-take:])


def _proper_prefixes(token_bytes: Sequence[bytes]) -> set[bytes]:
    return {b[:j] for b in token_bytes for j in range(1, len(b))}


class Healing:
    """Per sample, the taken-back bytes still to be spelled, and the tokens allowed meanwhile.

    While a sample owes bytes R, its next token must start with R (and then owes
    nothing) or be a non-empty prefix of R (and then owes the rest). The text of a
    sample leaves out R: the prime already printed it.
    """

    def __init__(self, token_bytes: Sequence[bytes], owed: bytes, n: int, device: torch.device) -> None:
        self.token_bytes = token_bytes
        self.owed = [owed] * n
        self.device = device
        self._allowed: dict[bytes, torch.Tensor] = {}

    def active(self) -> bool:
        return any(self.owed)

    def restrict(self, logits: torch.Tensor, rows: Sequence[int]) -> None:
        """Rule out, in place, the tokens a sample that owes bytes may not take. logits (b, V), row j
        holding sample ``rows[j]``."""
        for j, sample in enumerate(rows):
            if self.owed[sample]:
                logits[j].masked_fill_(~self._allowed_for(self.owed[sample]), float("-inf"))

    def _allowed_for(self, owed: bytes) -> torch.Tensor:
        if owed not in self._allowed:
            allowed = [bool(b) and (b.startswith(owed) or owed.startswith(b)) for b in self.token_bytes]
            self._allowed[owed] = torch.tensor(allowed, dtype=torch.bool, device=self.device)  # (V,)
        return self._allowed[owed]

    def new_bytes(self, row: int, token_id: int) -> bytes:
        """The bytes token ``token_id`` adds to sample ``row`` beyond what it owed."""
        data, owed = self.token_bytes[token_id], self.owed[row]
        if not owed:
            return data
        if data.startswith(owed):
            self.owed[row] = b""
            return data[len(owed) :]
        self.owed[row] = owed[len(data) :]
        return b""


class Utf8Guard:
    """Keeps each sample's bytes valid UTF-8 when the vocabulary has single-byte tokens.

    A subword tokenizer's byte fallback spells rare characters one byte per token. A
    byte is only sampled where it can start or continue a character: after a lead
    byte, only the continuation bytes UTF-8 allows there; elsewhere, no stray
    continuation byte. So generated text never holds U+FFFD that the model did not
    spell. A tokenizer without such tokens (char) is left alone.
    """

    def __init__(self, token_bytes: Sequence[bytes], n: int, device: torch.device) -> None:
        values = [b[0] if len(b) == 1 and b[0] >= 0x80 else -1 for b in token_bytes]
        self.byte_value = values
        self.enabled = any(v >= 0 for v in values)
        self.state = [(0, 0, 0)] * n  # (continuation bytes still needed, lowest and highest next byte)
        self.device = device
        # Bytes that cannot start a character: continuation bytes and bytes UTF-8 never uses.
        self._stray = {v for v in range(0x80, 0x100) if _lead(v)[0] == 0}
        stray_ids = [i for i, v in enumerate(values) if v in self._stray]
        self.stray = torch.tensor(stray_ids, dtype=torch.long, device=device)
        self._masks: dict[tuple[int, int, int], torch.Tensor] = {}

    def restrict(self, logits: torch.Tensor, rows: Sequence[int]) -> None:
        """Rule out, in place, the tokens that would break UTF-8. logits (b, V), row j holding sample ``rows[j]``."""
        if not self.enabled:
            return
        if not any(self.state[sample][0] for sample in rows):
            logits.index_fill_(1, self.stray, float("-inf"))  # the usual case: every sample between characters
            return
        for j, sample in enumerate(rows):
            logits[j].masked_fill_(~self._allowed(self.state[sample]), float("-inf"))

    def _allowed(self, state: tuple[int, int, int]) -> torch.Tensor:
        if state not in self._masks:
            need, lo, hi = state
            values = self.byte_value
            allowed = [lo <= v <= hi for v in values] if need else [v not in self._stray for v in values]
            self._masks[state] = torch.tensor(allowed, dtype=torch.bool, device=self.device)  # (V,)
        return self._masks[state]

    def update(self, row: int, token_id: int) -> None:
        if not self.enabled:
            return
        value, (need, _, _) = self.byte_value[token_id], self.state[row]
        if value < 0:
            self.state[row] = (0, 0, 0)
        elif need:
            self.state[row] = (need - 1, 0x80, 0xBF) if need > 1 else (0, 0, 0)
        else:
            self.state[row] = _lead(value)


def _lead(byte: int) -> tuple[int, int, int]:
    """For a byte that starts a multi-byte character: (continuation bytes, range of the next); else zeros."""
    if 0xC2 <= byte <= 0xDF:
        return 1, 0x80, 0xBF
    if 0xE0 <= byte <= 0xEF:
        return 2, 0xA0 if byte == 0xE0 else 0x80, 0x9F if byte == 0xED else 0xBF
    if 0xF0 <= byte <= 0xF4:
        return 3, 0x90 if byte == 0xF0 else 0x80, 0x8F if byte == 0xF4 else 0xBF
    return 0, 0, 0
