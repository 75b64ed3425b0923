"""Labelled text for classifiers: `label<TAB>text` lines, or one file of texts per label.

    pos<TAB>a gripping , funny film .          one text a line; the label is what comes
    neg<TAB>a mess from start to end .         before the first tab

Errors name the file and the line. The held-out split is stratified: each label gives
the same fraction of its texts, chosen with a seeded shuffle, so the split is repeatable.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from charnn.errors import ConfigError, CorpusError
from charnn.text.corpus import STDIN, read_text

MIN_PER_LABEL = 2
"""Texts each label needs: one can go to validation and one stays to learn from."""


@dataclass(frozen=True)
class Labelled:
    texts: tuple[str, ...]
    labels: tuple[str, ...]
    sources: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.texts)

    def label_set(self) -> list[str]:
        """The labels in the order they are first met."""
        return list(dict.fromkeys(self.labels))

    def to_tsv(self) -> str:
        return "".join(f"{label}\t{text}\n" for label, text in zip(self.labels, self.texts, strict=True))


def read_labelled(
    sources: Sequence[str | Path] = (), per_label: dict[str, str | Path] | None = None, stdin: BinaryIO | None = None
) -> Labelled:
    """Labelled texts from TSV files ('-' is standard input) and from one file per label (``per_label``,
    None where the command has no --label, so that its errors do not offer one)."""
    offer = per_label is not None
    texts: list[str] = []
    labels: list[str] = []
    names: list[str] = []
    for source in sources:
        label = "standard input" if str(source) == STDIN else str(source)
        for number, line in _lines(read_text(source, stdin=stdin)):
            tab = line.find("\t")
            if tab < 0:
                raise CorpusError(
                    f"{label}, line {number}: no tab; each line is label<TAB>text"
                    + (" (or give one file per label with --label NAME=FILE)" if offer else "")
                )
            text = line[tab + 1 :].strip()
            if not line[:tab].strip() or not text:
                what = "label" if not line[:tab].strip() else "text"
                raise CorpusError(f"{label}, line {number}: empty {what}; remove the line or fill it in")
            texts.append(text)
            labels.append(line[:tab].strip())
        names.append(label)
    for name, path in (per_label or {}).items():
        for _, line in _lines(read_text(path, stdin=stdin)):
            if line.strip():
                texts.append(line.strip())
                labels.append(name)
        names.append(f"{name}={path}")
    if not texts:
        raise CorpusError(
            "no labelled texts given; pass label<TAB>text files" + (", or --label NAME=FILE per label" if offer else "")
        )
    return Labelled(tuple(texts), tuple(labels), tuple(names))


def parse_label_files(options: Sequence[str]) -> dict[str, str]:
    """--label NAME=FILE options as {name: file}."""
    found: dict[str, str] = {}
    for option in options:
        name, sep, path = option.partition("=")
        if not sep or not name.strip() or not path:
            raise ConfigError(f"--label {option!r} is not NAME=FILE; e.g. --label pos=positive.txt")
        if any(c in name for c in "\t\n\r"):
            raise ConfigError(
                f"--label {option!r}: a label's name cannot hold a tab or a line break (a run keeps its texts as "
                "label<TAB>text lines); give another name"
            )
        if name.strip() in found:
            raise ConfigError(f"--label {name.strip()!r} is given twice; join its files into one")
        found[name.strip()] = path
    return found


def _lines(text: str) -> list[tuple[int, str]]:
    # Split on \n alone: str.splitlines() would also split on U+0085, U+2028 and other
    # characters that can sit inside a text.
    return [(i, line.rstrip("\r")) for i, line in enumerate(text.split("\n"), 1) if line.strip()]


def check_labels(data: Labelled, what: str = "the training data", minimum: int = MIN_PER_LABEL) -> None:
    counts = Counter(data.labels)
    if not counts:
        raise CorpusError(f"{what} holds no texts")
    if len(counts) < 2:
        only = next(iter(counts))
        raise CorpusError(f"{what} has one label, {only!r}; a classifier needs texts of at least two labels")
    rare = sorted(label for label, n in counts.items() if n < minimum)
    if counts[data.labels[0]] == 1 < minimum:  # a lone first label: "label<TAB>text" heading a spreadsheet's
        first = f"{data.labels[0]}\t{data.texts[0]}"
        raise CorpusError(
            f"label {data.labels[0]!r} has 1 text in {what}, the first line's ({first[:40]!r}); if that line is a "
            "header, remove it (each label needs at least "
            f"{minimum} texts)"
        )
    if rare:
        raise CorpusError(
            f"label {rare[0]!r} has {counts[rare[0]]} text in {what}; each label needs at least "
            f"{minimum} (add texts, or drop the label's lines)"
        )


def stratified_split(data: Labelled, fraction: float, seed: int) -> tuple[Labelled, Labelled]:
    """(train, validation): ``fraction`` of each label's texts held out, at least one, and at least one kept."""
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(data.labels):
        by_label.setdefault(label, []).append(i)
    rng = random.Random(seed)
    held: set[int] = set()
    for indices in by_label.values():
        chosen = indices[:]
        rng.shuffle(chosen)
        held.update(chosen[: min(len(chosen) - 1, max(1, round(len(chosen) * fraction)))])
    train = [i for i in range(len(data)) if i not in held]
    val = sorted(held)
    return _subset(data, train), _subset(data, val)


def _subset(data: Labelled, indices: list[int]) -> Labelled:
    return Labelled(tuple(data.texts[i] for i in indices), tuple(data.labels[i] for i in indices), data.sources)
