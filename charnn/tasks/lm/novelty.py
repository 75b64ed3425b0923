"""Is a sample new, or copied from the training text? And how much does it share with it?

A record is what a sample stands for: on a record run (charnn.text.records), one of its
training records; else a line when the stop string is a newline, a block when it is
a blank line, the whole sample otherwise. A sample is a copy when
it equals a training record (surrounding whitespace aside), or, without a stop
string, when it appears in the training text verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from charnn.errors import CheckpointError
from charnn.runs.checkpoint import TRAIN_TOKENS_FILE


def training_text(run: Any) -> str:
    """The run's training split, decoded from the tokens kept in its folder (a record run's
    records joined as in its corpus)."""
    records = training_records(run)
    if records is not None:
        return run.config["task"]["records"]["joiner"].join(records)
    return run.tokenizer.decode(_training_tokens(run))


def training_records(run: Any) -> list[str] | None:
    """A record run's training records, decoded; None for a stream run."""
    from charnn.text.records import record_format

    boundary = run.model.boundary
    if boundary is None or record_format(run) is None:
        return None
    tokens = _training_tokens(run)
    cuts = np.flatnonzero(tokens == boundary)
    return [run.tokenizer.decode(tokens[a + 1 : b]) for a, b in zip(cuts, cuts[1:])]


def _training_tokens(run: Any) -> np.ndarray:
    path = run.folder / TRAIN_TOKENS_FILE
    info = run.config.get("data", {})
    try:
        tokens = np.fromfile(path, dtype=np.dtype(info["token_dtype"]))
        style = run.config.get("style")  # a style run's style (charnn.tasks.lm.styles.styled_run): its own tokens
        if style is not None:
            before = run.config["task"]["styles"][: style["index"]]
            start = sum(s["train_tokens"] for s in before)
            tokens = tokens[start : start + style["train_tokens"]]
        return tokens
    except (OSError, KeyError, TypeError, ValueError):
        raise CheckpointError(
            f"{run.folder} keeps no training tokens ({TRAIN_TOKENS_FILE}), so samples cannot be checked "
            "against the training text; retrain it with this version of charnn"
        ) from None


@dataclass(frozen=True)
class Overlap:
    novel: bool
    longest_shared_span: int
    """Length in characters of the longest stretch of the sample found in the training text."""
    longest_shared_text: str


class NoveltyChecker:
    def __init__(self, text: str, stops: tuple[str, ...] = (), records: list[str] | None = None) -> None:
        self.text = text
        self.stops = stops
        self.records: set[str] | None = None
        if records is not None:  # a record run: a sample is a record
            self.records = {r.strip() for r in records}
        elif stops:
            records = [text]
            for stop in stops:
                records = [part for record in records for part in record.split(stop)]
            self.records = {r.strip() for r in records if r.strip()}

    def is_copy(self, sample: str) -> bool:
        record = sample.strip()
        if not record:
            return False
        if self.records is not None:
            return record in self.records
        return record in self.text

    def check(self, sample: str) -> Overlap:
        length, shared = longest_shared_span(sample, self.text)
        return Overlap(not self.is_copy(sample), length, shared)


def longest_shared_span(sample: str, text: str) -> tuple[int, str]:
    """The longest substring of ``sample`` that occurs in ``text`` (leftmost if tied).

    Matching statistics with a sliding window: the end only moves forward, so there
    are at most 2 * len(sample) substring searches, each done by str's C search.
    """
    best_start = best_len = 0
    end = 0
    for start in range(len(sample)):
        end = max(end, start)
        while end < len(sample) and sample[start : end + 1] in text:
            end += 1
        if end - start > best_len:
            best_start, best_len = start, end - start
    return best_len, sample[best_start : best_start + best_len]
