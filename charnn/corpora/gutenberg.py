"""Project Gutenberg books cleaned into prose: licence header and footer, credits, page numbers,
illustrations and back matter dropped (the catalogue's gutenberg_prose transform)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from charnn.errors import CorpusError

BOILERPLATE_MARKERS = ("Project Gutenberg", "Gutenberg-tm", "SMALL PRINT")
"""Substrings that no line of cleaned Gutenberg text may contain."""


_START = re.compile(r"^\*{3}\s*START OF (?:THIS|THE) PROJECT GUTENBERG.*$", re.MULTILINE)
_END = re.compile(r"^\*{3}\s*END OF (?:THIS|THE) PROJECT GUTENBERG.*$", re.MULTILINE)
# The licence block of old (pre-2002) files ends with a line such as
#   *END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*
#   *END THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.05/20/01*END*
_SMALL_PRINT_END = re.compile(r"^\*END\*?\s*THE SMALL PRINT!.*\*END\*\s*$", re.MULTILINE)
# A footer line in the body: "End of the Project Gutenberg EBook of ...", or the
# old "*Project Gutenberg Etext of Five Children and It, by E. Nesbit*".
_FOOTER = re.compile(r"^\W*(?:end of\s+)?(?:the\s+|this\s+)?project gutenberg", re.IGNORECASE | re.MULTILINE)
# Paragraphs a Gutenberg volunteer added before the book: production credits, and in
# old files the bracketed notes on the header's own copyright.
_CREDIT = re.compile(
    r"^(?:produced by|e-?text prepared by|this e-?text was prepared by|\[portions of this header|\[project gutenberg)",
    re.IGNORECASE,
)


def gutenberg_body(text: str, label: str) -> str:
    """The book between the licence header and footer, in either of Gutenberg's layouts."""
    start = _START.search(text)
    if start is not None:
        end = _END.search(text, start.end())
        body = text[start.end() : end.start() if end else len(text)]
    else:
        small_print = _SMALL_PRINT_END.search(text)
        if small_print is None:
            raise CorpusError(
                f"{label}: found neither a '*** START OF ... PROJECT GUTENBERG' line nor the end of a "
                "'SMALL PRINT' block; check that the catalogue names a Project Gutenberg text"
            )
        body = text[small_print.end() :]
    body = _drop_leading_credits(body)
    footer = _FOOTER.search(body)
    return body if footer is None else body[: footer.start()]


def _drop_leading_credits(body: str) -> str:
    paragraphs = re.split(r"(\n\s*\n)", body.strip("\n"))
    while paragraphs and _CREDIT.match(paragraphs[0].strip()):
        paragraphs = paragraphs[2:]
    return "".join(paragraphs)


# A bare page number at the foot of a page: when the sentence goes on after it, the blank
# lines before it go too, so that the two halves of the sentence meet again.
_PAGE_NUMBER_MID_SENTENCE = re.compile(r"\n(?:[ \t]*\n)+\d{1,4}[ \t]*\n(?=\S)")
_PAGE_NUMBER = re.compile(r"(?<=\n\n)\d{1,4}[ \t]*\n(?=[ \t]*\n)")
# Placeholders some transcribers left where a picture was ("19   Full page line-art drawing.").
_PICTURE_PLACEHOLDER = re.compile(r"^[ \t]*\d*[ \t]*(?:full page )?line-art drawing\b.*\n", re.I | re.M)
# A list of illustrations: its heading, then entries up to the first two blank lines in a row.
_ILLUSTRATION_LIST = re.compile(
    r"^(?:list of )?illustrations\.?[ \t]*\n(?:[ \t]*\n)*(?:.*\S.*\n(?:[ \t]*\n)?)*", re.I | re.M
)
_THE_END = re.compile(r"^[ \t]*(?:the end|finis)\.?[ \t]*$", re.I | re.M)
_TRANSCRIBER_NOTE = re.compile(r"^(?:[ \t]*(?:\*[ \t]*){3,}\n\s*)?transcriber'?s'? notes?\b", re.I | re.M)
_TYPOGRAPHY = str.maketrans(
    {
        **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032", "'"),  # curly and low single quotes, prime
        **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb", '"'),  # double quotes, guillemets
        **dict.fromkeys("\u2010\u2011\u2012\u2013", "-"),  # hyphens, figure and en dashes
        **dict.fromkeys("\u2014\u2015", "--"),  # em dash, horizontal bar
        "\u2026": "...",
        "\u00a0": " ",
    }
)


def drop_illustrations(text: str) -> str:
    """Remove ``[Illustration: ...]`` tags, which may span several lines, and picture placeholders."""
    text = _PICTURE_PLACEHOLDER.sub("", text)
    out, i = [], 0
    for match in re.finditer(r"^\[Illustration\b", text, re.MULTILINE):
        if match.start() < i:
            continue
        close = text.find("]", match.end())
        close = len(text) if close < 0 else close + 1
        out.append(text[i : match.start()])
        i = close + 1 if text.startswith("\n", close) else close
    out.append(text[i:])
    return "".join(out)


def drop_back_matter(text: str) -> str:
    """Cut a transcriber's note at the end, and the publisher's adverts after a closing THE END."""
    note = _TRANSCRIBER_NOTE.search(text)
    if note is not None:
        text = text[: note.start()]
    ends = list(_THE_END.finditer(text))
    # Only a THE END in the last tenth of the book closes it; an earlier one is a chapter title.
    if ends and ends[-1].start() > 0.9 * len(text):
        text = text[: ends[-1].end()]
    return text


def drop_illustration_lists(text: str) -> str:
    """Remove a front-matter list of illustrations (the pictures themselves are gone)."""
    return _ILLUSTRATION_LIST.sub("", text)


def drop_page_numbers(text: str) -> str:
    """Remove bare page numbers that sit between blank lines and the next line of a page."""
    return _PAGE_NUMBER.sub("", _PAGE_NUMBER_MID_SENTENCE.sub("\n", text))


def ascii_punctuation(text: str) -> str:
    """Typographic quotes, dashes and ellipses as the ASCII a typewriter would use."""
    return text.translate(_TYPOGRAPHY)


def tidy_blank_lines(text: str, most: int = 2) -> str:
    """Strip trailing spaces, keep at most ``most`` blank lines in a row, end with one newline."""
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(rf"\n{{{most + 2},}}", "\n" * (most + 1), text)
    return text.strip("\n") + "\n"


def gutenberg_book(text: str, label: str) -> str:
    """One Gutenberg book as clean prose."""
    body = gutenberg_body(text, label)
    body = drop_page_numbers(drop_illustrations(drop_illustration_lists(body)))
    body = drop_back_matter(body)
    return check_no_boilerplate(tidy_blank_lines(ascii_punctuation(body)), label)


def check_no_boilerplate(text: str, label: str) -> str:
    """``text`` unchanged, or an error if a line still names Project Gutenberg or its licence."""
    for line in text.split("\n"):
        if any(marker in line for marker in BOILERPLATE_MARKERS):
            raise CorpusError(
                f"{label}: licence boilerplate is left after cleaning ({line.strip()[:60]!r}); "
                "its layout is not one charnn knows, so name another file in the catalogue"
            )
    return text


def gutenberg_prose(texts: Sequence[str], labels: Sequence[str]) -> str:
    """Books cleaned one by one and joined with two blank lines."""
    books = [gutenberg_book(text, label).strip("\n") for text, label in zip(texts, labels)]
    return "\n\n\n".join(books) + "\n"
