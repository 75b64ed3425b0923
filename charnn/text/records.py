"""Record corpora: text made of records (a name a line, a recipe a block), read as records.

A record format names what separates the records of a corpus::

    line      one record a line
    blank     blocks separated by one or more blank lines
    REGEX     any separator, as a Python regular expression ('\\n{3,}': two blank lines or more)

A record run sees each record as a *boundary* token, then the record's tokens; the
stream ends with one more boundary. The boundary id is one past the tokenizer's own
(so no character is given up for it), and the model restarts its state from zeros
wherever it reads one (``ModelConfig.records``)::

    corpus:  Red Fox 200 40 10\\nSea Mist 180 200 210\\n     (--records line)
    tokens:  | R e d _ F o x ... 1 0 | S e a _ M i s t ... 2 1 0 |       (| the boundary)

So every record is learnt from the state a sample starts from (zeros, then the
boundary), and its end is learnt as the prediction of the next boundary. The order of
records says nothing a record needs, so each pass over the training records takes
them in a fresh seeded order, and validation is a seeded random sample of records.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from charnn.errors import ConfigError, CorpusError

if TYPE_CHECKING:  # numpy is imported where it is used: `charnn corpus` reads formats without it
    import numpy as np

PRESETS = {"line": r"\r?\n", "blank": r"\r?\n(?:[ \t]*\r?\n)+"}
JOINERS = {"line": "\n", "blank": "\n\n"}
MAX_RECORD_CHARS = 1_000_000
"""A longer record is taken for a separator that does not fit the corpus."""
MAX_COLUMN_PADDING = 0.05
"""Records are laid out in columns (``columns``) when that pads at most this fraction of the positions."""
CAP_FACTOR = 2
"""A record sample stops at this many times the longest training record unless --length says otherwise."""


@dataclass(frozen=True)
class RecordFormat:
    """How a corpus separates its records: ``spec`` as the user gave it, the ``pattern`` it
    stands for, and the ``joiner`` put between records when printing them."""

    spec: str
    pattern: str
    joiner: str

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "pattern": self.pattern, "joiner": self.joiner}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RecordFormat:
        return cls(str(data["spec"]), str(data["pattern"]), str(data["joiner"]))

    def describe(self) -> str:
        if self.spec == "line":
            return "one record a line"
        if self.spec == "blank":
            return "records separated by blank lines"
        return f"records separated by /{self.spec}/"


def parse_format(spec: str) -> RecordFormat:
    """The format ``spec`` names ('line', 'blank' or a regular expression); the joiner of a
    regular expression is settled by ``with_joiner`` once the text is known."""
    pattern = PRESETS.get(spec, spec)
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(
            f"--records {spec!r} is not a valid regular expression ({exc}); "
            "write e.g. --records line, --records blank or --records '\\n{3,}'"
        ) from None
    if _can_match_empty(compiled):
        raise ConfigError(
            f"--records {spec!r} matches the empty string, so it would cut everywhere; "
            "give a separator that matches at least one character"
        )
    return RecordFormat(spec, pattern, JOINERS.get(spec, ""))


def _can_match_empty(compiled: re.Pattern[str]) -> bool:
    """Whether a pattern can match the empty string somewhere: '', '^', '(?=A)', '\\b' (its shortest match is 0)."""
    try:
        from re import _parser as regex_parser  # Python 3.11+
    except ImportError:  # Python 3.10
        import sre_parse as regex_parser
    try:
        shortest = regex_parser.parse(compiled.pattern, compiled.flags).getwidth()[0]
    except Exception:  # noqa: BLE001  (a private parser: should it ever fail, fall back to the empty text)
        shortest = 1
    return shortest == 0 or compiled.match("") is not None


def cut(text: str, fmt: RecordFormat) -> list[tuple[str, str | None]]:
    """``text`` at each separator: (a record, the separator after it), the last record's None.

    Unlike ``split``, nothing is trimmed or refused: a page that scores a text shows every
    character of it, an empty record (two separators in a row) included.
    """
    pieces, start = [], 0
    for match in re.finditer(fmt.pattern, text):
        if match.end() > match.start():  # an empty match (a pattern like 'x*' between records) separates nothing
            pieces.append((text[start : match.start()], match.group(0)))
            start = match.end()
    pieces.append((text[start:], None))
    return pieces


def trim_separators(text: str, fmt: RecordFormat) -> str:
    """``text`` without the separators it begins or ends with: a record's start (a prime, a prompt) holds
    none, and `echo "Red" | charnn sample` adds one (on a line-record run, "Red\\n" is the record "Red", ended)."""
    while (match := re.match(fmt.pattern, text)) and match.end() > 0:
        text = text[match.end() :]
    while True:
        last = None
        for match in re.finditer(fmt.pattern, text):
            last = match
        if last is None or last.end() != len(text) or last.end() == last.start():
            return text
        text = text[: last.start()]


def split(text: str, fmt: RecordFormat, what: str, minimum: int = 2, corpus: bool = True) -> list[str]:
    """The records of ``text``; separators at its very start and end only trim it.

    ``what`` names the text in errors. Empty records, a separator that never matches and
    implausibly long records are refused: each says how to fix the corpus or the format
    (``corpus``: a text to train on, whose format can be changed; else one a trained run reads).
    """
    text = text.strip("\r\n")  # the file's last newline, say, bounds no record
    spans = [m.span() for m in re.finditer(fmt.pattern, text)]
    records, start = [], 0
    for lo, hi in spans:
        records.append((start, text[start:lo]))
        start = hi
    records.append((start, text[start:]))
    # A separator at the very start or end (the file's last newline) bounds no record.
    while records and not records[0][1]:
        records.pop(0)
    while records and not records[-1][1]:
        records.pop()
    for offset, record in records:
        if not record.strip():
            line = text.count("\n", 0, offset) + 1
            if not corpus:  # a trained run's format is fixed
                hint = f"remove it: this run reads {fmt.describe()}"
            elif fmt.spec == "line":
                hint = "delete empty lines, or use --records blank for blocks"
            else:
                hint = "remove it, or give a separator that absorbs it"
            raise CorpusError(f"{what}: the record at line {line:,} is empty; {hint}")
        if len(record) > MAX_RECORD_CHARS:
            line = text.count("\n", 0, offset) + 1
            raise CorpusError(
                f"{what}: the record at line {line:,} is {len(record):,} characters long "
                f"(at most {MAX_RECORD_CHARS:,}); "
                + (f"--records {fmt.spec!r} does not fit this corpus" if corpus else "cut it into records")
            )
    if not records and minimum == 1:  # a text to score, on a record run: nothing in it
        raise CorpusError(f"{what} holds no record, only separators or nothing; give at least one record")
    if len(records) < minimum:
        raise CorpusError(
            f"{what}: --records {fmt.spec!r} finds {'no' if not records else 'one'} record"
            f"{' (the separator matches nothing inside the text)' if records else ''}; "
            "check the separator, or drop --records to train on the text as one stream"
        )
    return [record for _, record in records]


def with_joiner(fmt: RecordFormat, text: str) -> RecordFormat:
    """A regular expression's joiner is its commonest match in the text (a preset's is fixed)."""
    if fmt.joiner:
        return fmt
    counts = collections.Counter(m.group(0) for m in re.finditer(fmt.pattern, text.strip("\n")))
    joiner = counts.most_common(1)[0][0] if counts else "\n"
    return RecordFormat(fmt.spec, fmt.pattern, joiner)


def held_out(count: int, fraction: float, seed: int) -> np.ndarray:
    """A seeded random choice of ``round(count * fraction)`` record indices (at least one,
    never all), sorted: the validation records."""
    import numpy as np

    n_val = min(count - 1, max(1, round(count * fraction)))
    return np.sort(np.random.default_rng([seed, 0x7EC0]).choice(count, size=n_val, replace=False))


def split_held_out(
    text: str, fmt: RecordFormat, what: str, val_text: str | None, val_what: str, fraction: float, seed: int
) -> tuple[list[str], list[str], str]:
    """(training records, held-out records, where the held-out ones come from) of a record text:
    the records of ``val_text`` when given (``val_what`` names it), else a seeded random
    ``fraction`` of the text's (charnn.text.records.held_out)."""
    every = split(text, fmt, what)
    if val_text is not None:
        return every, split(val_text, fmt, val_what, minimum=1), "--val file"
    chosen = set(held_out(len(every), fraction, seed).tolist())
    train = [r for i, r in enumerate(every) if i not in chosen]
    val = [r for i, r in enumerate(every) if i in chosen]
    return train, val, f"a random {fraction:g} of the records (seed {seed})"


def epoch_order(count: int, seed: int, epoch: int) -> np.ndarray:
    """The order the training records are read in on pass ``epoch``: fresh each pass, seeded."""
    import numpy as np

    return np.random.default_rng([seed, 0x7EC1, epoch]).permutation(count)


def layout(tokens: np.ndarray, starts: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The training stream of one pass: each record (from its boundary) in ``order``, then the
    closing boundary. ``tokens`` holds the records in corpus order with a boundary before each
    and one at the end; ``starts`` has the offset of each record's boundary, and of the last."""
    import numpy as np

    lengths = np.diff(starts)  # (R,)
    chosen = lengths[order]
    # Index of every token of the permuted records: a start repeated over its length, plus a ramp.
    begin = np.repeat(starts[:-1][order], chosen)
    ramp = np.arange(chosen.sum()) - np.repeat(np.cumsum(chosen) - chosen, chosen)
    return np.concatenate([tokens[begin + ramp], tokens[-1:]])


def column_padding(starts: np.ndarray, rows: int) -> float:
    """The fraction of a column layout's positions that would be padding (``columns``; the same
    every pass, as the records of a column are neighbours in length whatever their order)."""
    import numpy as np

    lengths = np.sort(np.diff(starts))[::-1]  # (R,)
    widths = lengths[::rows]  # the longest record of each column
    return 1.0 - lengths.sum() / (rows * widths.sum())


def columns(
    tokens: np.ndarray, starts: np.ndarray, rows: int, length: int, seed: int, epoch: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pass ``epoch`` laid out in columns: ``rows`` records side by side, each row reading its own.

    The records, in a fresh seeded order, then stably sorted by length (longest first), are
    dealt into columns of ``rows`` records of one length wherever the corpus has that many.
    So every row restarts at the same positions and the model runs each column fused. (Laid
    end to end, a window is cut wherever *some* row restarts: `python -m bench records`
    measures columns at 2.7x the chars/s on paint names.) A shorter record in a column is
    padded to its width: the padding is read but never learnt, and the next column's
    boundary resets the state. The columns are taken in a seeded order, as many as fill
    ``length`` positions; what does not fit (a few records, as padding is rare where
    columns are used: ``column_padding``) waits for a later pass.

    Returns the inputs (rows, length) in ``tokens``' dtype and the targets (rows, length)
    int32: each token's successor within its record (the record's last predicts the next
    boundary), -100 (never learnt) on padding.
    """
    import numpy as np

    rng = np.random.default_rng([seed, 0xC01, epoch])
    lengths = np.diff(starts)  # (R,) tokens of each record, its boundary included
    order = rng.permutation(len(lengths))
    dealt = order[np.argsort(-lengths[order], kind="stable")]  # longest first; seeded order among equals
    count = -(-len(dealt) // rows)
    grid = np.full(count * rows, -1, dtype=np.int64)
    grid[: len(dealt)] = dealt
    grid = grid.reshape(count, rows)[rng.permutation(count)]  # (C, rows): record ids, -1 none
    sizes = np.where(grid >= 0, lengths[grid], 0)  # (C, rows)
    widths = sizes.max(axis=1)  # (C,)
    offsets = np.cumsum(widths) - widths  # (C,) where each column begins in a row
    inputs = np.zeros((rows, length), dtype=tokens.dtype)  # padding reads token 0, learnt by none
    targets = np.full((rows, length), -100, dtype=np.int32)
    column, row = np.nonzero(sizes)  # every placed record
    record, size = grid[column, row], sizes[column, row]
    ramp = np.arange(size.sum()) - np.repeat(np.cumsum(size) - size, size)  # position within the record
    at = np.repeat(offsets[column], size) + ramp
    rows_at = np.repeat(row, size)
    source = np.repeat(starts[record], size) + ramp
    fits = at < length
    inputs[rows_at[fits], at[fits]] = tokens[source[fits]]
    targets[rows_at[fits], at[fits]] = tokens[source[fits] + 1]
    return inputs, targets


def suggest(text: str) -> str | None:
    """A --records setting when ``text`` looks like records, else None.

    Conservative, as prose must never be nagged: many short lines and hardly a blank one
    (a name a line); or many blocks set apart by two blank lines or more while single blank
    lines stay inside them (Beeton's recipes); or blocks whose first lines start alike.
    """
    import numpy as np

    sample = text[:2_000_000]
    lines = sample.split("\n")
    if len(lines) >= 200:
        blank = sum(1 for line in lines if not line.strip())
        lengths = sorted(len(line) for line in lines if line.strip())
        if blank <= len(lines) // 200 and lengths and lengths[len(lengths) // 2] <= 60:
            return "line"
    wide = [b for b in re.split(r"\n(?:[ \t]*\n){2,}", sample) if b.strip()]
    if len(wide) >= 20 and re.search(r"\S\n[ \t]*\n\S", sample) and np.mean([len(b) for b in wide]) <= 20_000:
        return "\\n{3,}"
    blocks = [b.strip() for b in re.split(PRESETS["blank"], sample) if b.strip()]
    if len(blocks) >= 20:
        heads = collections.Counter(b.split(None, 1)[0] for b in blocks)
        word, count = heads.most_common(1)[0]
        if count >= 0.8 * len(blocks) and word.endswith(":"):
            return "blank"
    return None


def record_format(run: Any) -> RecordFormat | None:
    """The record format of a loaded run (charnn.runs.checkpoint.load_run); None for a stream run."""
    spec = ((getattr(run, "config", None) or {}).get("task") or {}).get("records")
    return RecordFormat.from_dict(spec) if spec else None


def record_cap(run: Any) -> int:
    """Characters a record sample may reach when --length is not given."""
    return max(100, CAP_FACTOR * int(run.config.get("data", {}).get("longest_record", 500)))


def record_chars(records: Sequence[str]) -> int:
    """Characters a record run scores in ``records``: their text and, for each, its end."""
    return sum(len(r) for r in records) + len(records)
