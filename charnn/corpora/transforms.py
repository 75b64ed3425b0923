"""Transforms that turn upstream corpus files into training text.

Each transform takes the decoded upstream texts (in catalogue order) and the
parameters the catalogue gives it, and returns one training text that ends in a
newline. They are pure functions of their input: the same files always give the
same bytes, so a prepared corpus can be checked against its recorded sha256.

    upstream bytes --decode()--> str (NFC, LF line ends, no BOM)
                   --TRANSFORMS[name](texts, **params)--> training text
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Sequence

from charnn.corpora.gutenberg import (  # noqa: F401  (re-exported: the transforms' parts)
    BOILERPLATE_MARKERS,
    drop_illustrations,
    drop_page_numbers,
    gutenberg_book,
    gutenberg_prose,
)
from charnn.corpora.recipes import beeton_recipes
from charnn.errors import CorpusError

ENCODINGS = ("utf-8", "latin-1")
"""Encodings a catalogue entry may name; UTF-8 may start with a byte-order mark."""


def decode(data: bytes, encoding: str, label: str) -> str:
    """Bytes to text: BOM dropped, CRLF and CR turned into LF, Unicode NFC."""
    if encoding not in ENCODINGS:
        raise CorpusError(
            f"{label}: unknown encoding {encoding!r}; the catalogue may name one of {', '.join(ENCODINGS)}"
        )
    if encoding == "utf-8" and data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"{label} is not valid {encoding} at byte {exc.start}; fix the encoding named in the catalogue"
        ) from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return unicodedata.normalize("NFC", text)


# --- Project Gutenberg ------------------------------------------------------------------


def colour_names(texts: Sequence[str], labels: Sequence[str]) -> str:
    """``name,hex[,...]`` CSV rows as ``Name R G B`` lines with decimal RGB, in source order.

    ``100 Mph,#c93f38,x`` becomes ``100 Mph 201 63 56``.
    """
    lines: list[str] = []
    for text, label in zip(texts, labels):
        rows = csv.reader(io.StringIO(text))
        header = next(rows, [])
        if [cell.strip().lower() for cell in header[:2]] != ["name", "hex"]:
            raise CorpusError(f"{label}: the first row should be a 'name,hex' header, not {','.join(header)!r}")
        for number, row in enumerate(rows, start=2):
            if not row:
                continue
            name = " ".join(row[0].split())
            colour = row[1].strip() if len(row) > 1 else ""
            if not name or not re.fullmatch(r"#[0-9a-fA-F]{6}", colour):
                raise CorpusError(f"{label}, row {number}: expected 'name,#rrggbb', got {','.join(row)!r}")
            red, green, blue = (int(colour[k : k + 2], 16) for k in (1, 3, 5))
            lines.append(f"{name} {red} {green} {blue}")
    return "\n".join(lines) + "\n"


def plain_text(texts: Sequence[str], labels: Sequence[str]) -> str:
    """The files as they are (already decoded to NFC with LF line ends), one after another."""
    return "\n".join(text if text.endswith("\n") else text + "\n" for text in texts)


Transform = Callable[..., str]

TRANSFORMS: dict[str, Transform] = {
    "plain_text": plain_text,
    "gutenberg_prose": gutenberg_prose,
    "beeton_recipes": beeton_recipes,
    "colour_names": colour_names,
}
"""Transforms a catalogue entry may name; each is called as ``f(texts, labels, **parameters)``."""
