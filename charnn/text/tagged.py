"""Tagged sentences for taggers: CoNLL-U files, or two-column token<TAB>tag files.

    # sent_id = 1                               CoNLL-U: ten tab-separated columns a token,
    1   From   from   ADP   IN   _  ...          comments (#), multiword-token lines (3-4)
    2   the    the    DET   DT   _  ...          and empty nodes (8.1) skipped; the tag is
                                                 UPOS unless --column names another
    Empire<TAB>B-location                       two columns: token<TAB>tag, BIO tags as
    State<TAB>I-location                        named-entity files come
    <TAB>                                       a sentence ends at an empty or
                                                 whitespace-only line
    -DOCSTART- -X- -X- O                        space-separated columns (CoNLL-2003): the
    EU NNP B-NP B-ORG                           token first, the tag last; -DOCSTART- lines
    rejects VBZ B-VP O                          end a document and are skipped

The format is detected from the first token line, or named (``conllu``, ``columns``, ``spaces``);
a line of the other format later in the file is an error that names the file and the
line. A two-column line whose token or tag holds whitespace is one too (a label<TAB>text
line is not a token<TAB>tag line); a CoNLL-U FORM may hold spaces, as the UD guidelines allow
(words with spaces: Vietnamese, some numbers), and a run folder's two-column copy keeps them.
The held-out split is a seeded random sample of whole sentences.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from charnn.errors import ConfigError, CorpusError
from charnn.text.corpus import STDIN, read_text

FORMATS = ("auto", "conllu", "columns", "spaces")
DOCSTART = "-DOCSTART-"
"""CoNLL-2003's line between documents."""
CONLLU_COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")


@dataclass(frozen=True)
class Tagged:
    sentences: tuple[tuple[str, ...], ...]
    tags: tuple[tuple[str, ...], ...]
    sources: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.sentences)

    @property
    def words(self) -> int:
        return sum(len(s) for s in self.sentences)

    def tag_set(self) -> list[str]:
        """The tags in the order they are first met."""
        return list(dict.fromkeys(tag for tags in self.tags for tag in tags))

    def to_text(self) -> str:
        """Two-column text (token<TAB>tag, an empty line after each sentence): how a run folder keeps it."""
        return "".join(
            "".join(f"{word}\t{tag}\n" for word, tag in zip(words, tags, strict=True)) + "\n"
            for words, tags in zip(self.sentences, self.tags, strict=True)
        )

    def subset(self, indices: Sequence[int]) -> Tagged:
        return Tagged(tuple(self.sentences[i] for i in indices), tuple(self.tags[i] for i in indices), self.sources)


def tag_column(column: str) -> int:
    """A CoNLL-U column, by name (upos, xpos, deprel, ...) or 1-based number, as a 0-based index."""
    name = column.strip().lower()
    if name in CONLLU_COLUMNS[2:]:
        return CONLLU_COLUMNS.index(name)
    if name.isdigit() and 3 <= int(name) <= 10:
        return int(name) - 1
    raise ConfigError(
        f"--column {column!r} is not a CoNLL-U tag column; name one of {', '.join(CONLLU_COLUMNS[2:])} "
        "(or its number, 3-10)"
    )


def read_tagged(
    sources: Sequence[str | Path],
    fmt: str = "auto",
    column: str = "upos",
    stdin: BinaryIO | None = None,
    *,
    spaced: bool = False,
) -> Tagged:
    """Tagged sentences from files ('-' is standard input), in CoNLL-U or two-column format.

    ``spaced`` reads two-column tokens and tags that hold spaces: a run folder's copy of CoNLL-U
    forms that do."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown --format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    index = tag_column(column)
    sentences: list[tuple[str, ...]] = []
    tags: list[tuple[str, ...]] = []
    names: list[str] = []
    for source in sources:
        label = "standard input" if str(source) == STDIN else str(source)
        text = read_text(source, stdin=stdin)
        lines = [line.rstrip("\r") for line in text.split("\n")]
        found = fmt if fmt != "auto" else detect_format(lines, label)
        _check_format(lines, label, fmt, found, column)
        read = (
            _spaced_sentences(lines, label)
            if found == "spaces"
            else _sentences(lines, label, found == "conllu", index, spaced)
        )
        for words, labels in read:
            sentences.append(words)
            tags.append(labels)
        names.append(label)
    if not sentences:
        raise CorpusError(
            f"no tagged sentences in {', '.join(names) or 'the input'}; give CoNLL-U or token<TAB>tag lines"
        )
    data = Tagged(tuple(sentences), tuple(tags), tuple(names))
    if not spaced:  # a run folder's copy was warned of when the user's file was read
        _say_loose_inside_tags(data)
    return data


FORMAT_NAMES = {
    "conllu": "CoNLL-U lines",
    "columns": "token<TAB>tag lines",
    "spaces": "space-separated columns (CoNLL-2003)",
}


def _check_format(lines: list[str], label: str, fmt: str, found: str, column: str) -> None:
    """Refuse a --format the file plainly is not, and a --column on a file without CoNLL-U's columns."""
    if fmt != "auto":
        try:
            seen = detect_format(lines, label)
        except CorpusError:
            seen = fmt  # lines no format reads: the chosen format's reader says what is wrong with them
        if seen != fmt:
            raise ConfigError(
                f"--format {fmt}, but {label} holds {FORMAT_NAMES[seen]}; pass --format {seen} or leave --format out"
            )
    if found != "conllu" and column.strip().lower() != "upos":
        raise ConfigError(
            f"--column {column} names a CoNLL-U column, but {label} holds {FORMAT_NAMES[found]}, whose tag is "
            "the last column; leave --column out"
        )


def detect_format(lines: list[str], label: str) -> str:
    """'conllu', 'columns' or 'spaces', from the first line that holds a token."""
    for number, line in enumerate(lines, 1):
        if not line.strip() or (line.startswith("#") and "\t" not in line):
            continue
        fields = line.split("\t")
        if len(fields) == 10:
            return "conllu"
        if len(fields) == 2:
            return "columns"
        if len(fields) == 1 and len(line.split()) >= 2:
            return "spaces"
        raise CorpusError(
            f"{label}, line {number}: {len(fields)} tab-separated columns; tagged data is CoNLL-U "
            "(10 columns), token<TAB>tag (2) or space-separated columns, the tag last (CoNLL-2003)"
        )
    raise CorpusError(f"{label} holds no tagged tokens; give CoNLL-U or token<TAB>tag lines")


def _sentences(
    lines: list[str], label: str, conllu: bool, column: int, spaced: bool = False
) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """The (words, tags) of each sentence of a CoNLL-U (``conllu``) or token<TAB>tag file; a
    token<TAB>tag line's token and tag hold no whitespace unless ``spaced``."""
    formats = {10: "a CoNLL-U line", 2: "a token<TAB>tag line"}
    width, other = (10, 2) if conllu else (2, 10)
    word_at, tag_at = (1, column) if conllu else (0, 1)
    out: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    words: list[str] = []
    tags: list[str] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():  # the WNUT-17 files end sentences with a line holding only a tab
            if words:
                out.append((tuple(words), tuple(tags)))
                words, tags = [], []
            continue
        if conllu and line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != width:
            mixed = f" ({formats[other]}: the file mixes the two formats)" if len(fields) == other else ""
            raise CorpusError(
                f"{label}, line {number}: {formats[width]} has {width} tab-separated columns, this one has "
                f"{len(fields)}{mixed}; fix the line"
            )
        if conllu and ("-" in fields[0] or "." in fields[0]):
            continue  # a multiword token (3-4) or an empty node (8.1): no tag to predict
        word, tag = fields[word_at].strip(), fields[tag_at].strip()
        if not word or not tag:
            what = "tag" if word else ("form" if conllu else "token")
            raise CorpusError(f"{label}, line {number}: empty {what}; fix the line")
        if not (conllu or spaced):
            _refuse_whitespace(word, tag, label, number)
        elif any(c.isspace() for c in tag):  # a CoNLL-U FORM may hold a space; its tag columns hold none
            raise CorpusError(f"{label}, line {number}: the tag {_shown(tag)} holds whitespace; fix the line")
        words.append(word)
        tags.append(tag)
    if words:
        out.append((tuple(words), tuple(tags)))
    return out


def _refuse_whitespace(word: str, tag: str, label: str, number: int) -> None:
    """A token<TAB>tag line holds one token and its tag: whitespace inside either is a line of
    something else, most often a label<TAB>text file's whole text."""
    if any(c.isspace() for c in word):
        raise CorpusError(
            f"{label}, line {number}: the token {_shown(word)} holds whitespace, and a token<TAB>tag line holds "
            "one token; fix the line (CoNLL-U may hold words with spaces)"
        )
    if any(c.isspace() for c in tag):
        raise CorpusError(
            f"{label}, line {number}: the tag {_shown(tag)} holds whitespace, so this is not a token<TAB>tag "
            "line (label<TAB>text lines are for `charnn classify`); fix the line"
        )


def _shown(text: str, most: int = 40) -> str:
    return repr(text if len(text) <= most else text[: most - 3] + "...")


def _spaced_sentences(lines: list[str], label: str) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """The (words, tags) of each sentence of a space-separated file (CoNLL-2003): the token
    first, the tag last; every token line has as many columns as the first."""
    out: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    words: list[str] = []
    tags: list[str] = []
    width = 0
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or fields[0] == DOCSTART:  # a sentence ends at a blank line, a document too
            if words:
                out.append((tuple(words), tuple(tags)))
                words, tags = [], []
            continue
        width = width or len(fields)
        if len(fields) != width or width < 2:
            plain = (
                " (it reads like plain text, a sentence a line: tagged data is CoNLL-U, token<TAB>tag lines, or"
                " CoNLL-2003's columns, a token a line, its tag last)"
                if width > 5 or len(fields) > 5
                else ""
            )
            raise CorpusError(
                f"{label}, line {number}: {len(fields)} space-separated columns where the file's first token "
                f"line has {width}; fix the line{plain}"
            )
        words.append(fields[0])
        tags.append(fields[-1])
    if words:
        out.append((tuple(words), tuple(tags)))
    return out


def is_bio(tags: Sequence[str]) -> bool:
    """Whether a tag set is BIO: 'O' and B-/I- tags with a type, and at least one B- or I- tag."""
    return any(t[:2] in ("B-", "I-") for t in tags) and all(
        t == "O" or (t[:2] in ("B-", "I-") and len(t) > 2) for t in tags
    )


def entities(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """The (start, end, type) spans of BIO tags, counted as conlleval counts them.

    An entity starts at a B- tag, or at an I- tag that does not continue an entity of its
    type (after O, or after another type); it goes on over the I- tags of its type.
    """
    found: list[tuple[int, int, str]] = []
    start, kind = None, None
    for i, tag in enumerate(tags):
        prefix, _, name = tag.partition("-")
        inside = prefix == "I" and kind == name and start is not None
        if inside:
            continue
        if start is not None:
            found.append((start, i, kind))
            start, kind = None, None
        if prefix in ("B", "I") and name:
            start, kind = i, name
    if start is not None:
        found.append((start, len(tags), kind))
    return found


def loose_inside_tags(tags: Sequence[str]) -> int:
    """How many I- tags start an entity (no entity of their type right before them)."""
    count, previous = 0, "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            count += 1
        previous = tag if tag != "O" else "O"
    return count


def _say_loose_inside_tags(data: Tagged) -> None:
    if not is_bio(data.tag_set()):
        return
    loose = sum(loose_inside_tags(tags) for tags in data.tags)
    if loose:
        warnings.warn(
            f"{loose} I- tag(s) in {', '.join(data.sources)} follow no entity of their type; each starts "
            "an entity, as conlleval counts it",
            UserWarning,
            stacklevel=3,
        )


def split_sentences(data: Tagged, fraction: float, seed: int) -> tuple[Tagged, Tagged]:
    """(train, validation): a seeded random ``fraction`` of the sentences held out, at least one, one kept."""
    if len(data) < 2:
        raise CorpusError(
            f"{len(data)} tagged sentence is too few to hold some out for validation; give more, or --val FILE"
        )
    order = list(range(len(data)))
    random.Random(seed).shuffle(order)
    held = sorted(order[: min(len(data) - 1, max(1, round(len(data) * fraction)))])
    kept = sorted(set(range(len(data))) - set(held))
    return data.subset(kept), data.subset(held)
