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

from charnn.errors import CorpusError

ENCODINGS = ("utf-8", "latin-1")
"""Encodings a catalogue entry may name; UTF-8 may start with a byte-order mark."""

BOILERPLATE_MARKERS = ("Project Gutenberg", "Gutenberg-tm", "SMALL PRINT")
"""Substrings that no line of cleaned Gutenberg text may contain."""


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


# --- Mrs Beeton's Book of Household Management -> recipes ------------------------------
#
# A recipe in the book (Latin-1, 1861) and what it becomes:
#
#     RICH STRONG STOCK.                          Title: Rich Strong Stock
#                                                 Categories: Soups       (from the chapter)
#     104. INGREDIENTS.--4 lbs. of shin of        Yield: 8 persons        (from _Sufficient_)
#     beef, 4 lbs. of knuckle of veal; ...
#                                                 4 lbs. of shin of beef
#     _Mode_.--Line a delicately clean ...        4 lbs. of knuckle of veal
#                                                 ...
#     _Time_.--5 hours. _Average cost_, ...
#                                                 Line a delicately clean ...
#     _Sufficient_ for 8 persons.
#                                                 Time.--5 hours. Average cost, ...
#         THE OX.--(natural history, indented)    Sufficient for 8 persons.

_CHAPTER = re.compile(r"^CHAPTER ([IVXLC]+)\.$")
_RECIPE_START = re.compile(r"^\d+\s*[.\-]*\s*INGREDIENTS\.?\s*[-.,:]*\s*")
_VARIANT = re.compile(r"^_?[IVX]+\.(?:\s+\(.*\)\.?)?$")
_NUMBERED_PARAGRAPH = re.compile(r"^\d+\.\s")
_SIDE_NOTE = re.compile(r"^[A-Z][A-Z ,'&-]+\.--")  # "TO CHOOSE COD.--The cod should be ..."
_MODE = re.compile(r"^_?Mode_?\.?\s*-+\s*")
_FACT = re.compile(r"^_?(?:Time|Average cost|Seasonable|Sufficient|Note)(?![a-z])")
_SUFFICIENT = re.compile(r"_?Sufficient_?[\s.,:;-]*(?:for\s+)?(.*?)(?:\.\s|\.?$)")
# An ingredient list breaks at a semicolon, and at a comma when a new quantity follows it:
# "2 oz. of butter, 2 large onions, each stuck with 3 cloves; 1 turnip".
_INGREDIENT_BREAK = re.compile(r";\s*|,\s+(?=\d|(?:a|an|the|any|some|one|two|three|half|salt|pepper|sugar)\b)", re.I)


def _paragraphs(text: str) -> list[list[str]]:
    """Runs of non-blank lines."""
    out: list[list[str]] = [[]]
    for line in text.split("\n"):
        if line.strip():
            out[-1].append(line.rstrip())
        elif out[-1]:
            out.append([])
    return [p for p in out if p]


def _heading(paragraph: list[str]) -> str | None:
    """The title a capitalised heading paragraph gives, or None if it is not a heading.

    "MAITRE D'HOTEL SAUCE (HOT), to serve with Calf's Head, ..." gives "Maitre D'Hotel Sauce (Hot)".
    """
    text = " ".join(line.strip() for line in paragraph).replace("_", "").rstrip(".")
    if len(paragraph) > 3 or paragraph[0][:1].isspace() or not text[:1].isalpha() or text.startswith("CHAPTER"):
        return None
    # Words in brackets may be in lower case and hold commas: mask them as capitals.
    masked = re.sub(r"\([^)]*\)?|&c\b", lambda m: "X" * len(m.group()), text)
    end = 0
    for clause in re.finditer(r"[^,]+", masked):
        letters = [c for c in clause.group() if c.isalpha()]
        if sum(c.isupper() for c in letters) < 0.75 * len(letters):
            break
        end = clause.end()
    title = text[:end].strip(" .,")
    if sum(c.isupper() for c in title) < 3:
        return None
    return re.sub(r"[^\W\d_]+", _title_word, title)


def _title_word(match: re.Match[str]) -> str:
    word, text, i = match.group(), match.string, match.start()
    if not word.isupper():
        return word
    # After an apostrophe, capitalise a name ("D'HOTEL" -> "D'Hotel"), not a possessive ("CALF'S" -> "Calf's").
    if i >= 2 and text[i - 1] == "'" and (i >= 3 and text[i - 3].isalpha() or len(word) == 1):
        return word.lower()
    return word.capitalize()


def _ingredients(text: str) -> list[str]:
    items, depth, start = [], 0, 0
    text = text.strip().rstrip(".")
    for match in re.finditer(r"[()]|" + _INGREDIENT_BREAK.pattern, text, re.I):
        token = match.group()
        if token in "()":
            depth = max(0, depth + (1 if token == "(" else -1))
        elif depth == 0:
            items.append(text[start : match.start()])
            start = match.end()
    items.append(text[start:])
    return [item.strip(" ,.") for item in items if item.strip(" ,.")]


def _split_mode(paragraph: list[str]) -> tuple[list[str], list[list[str]]]:
    """An INGREDIENTS paragraph that runs on into "_Mode_.--..." as its two parts."""
    for i, line in enumerate(paragraph):
        found = re.search(r"_Mode_\.?\s*-+", line)
        if found and (i or found.start()):
            head = [*paragraph[:i], line[: found.start()]]
            return head, [[line[found.start() :], *paragraph[i + 1 :]]]
    return paragraph, []


def _recipe(title: str, category: str, paragraphs: list[list[str]]) -> str | None:
    """One recipe from its INGREDIENTS paragraph and the paragraphs that follow it."""
    head, mode = _split_mode(paragraphs[0])
    paragraphs = [head, *mode, *paragraphs[1:]]
    first = " ".join(line.strip() for line in head)
    ingredients = _ingredients(_RECIPE_START.sub("", first).replace("_", ""))
    method: list[str] = []
    facts: list[str] = []
    serves = "unknown"
    for paragraph in paragraphs[1:]:
        lines = [line.replace("_", "").strip() for line in paragraph]
        if _FACT.match(paragraph[0]):
            facts.extend(lines)
            found = _SUFFICIENT.search(" ".join(paragraph))
            if found and found.group(1).strip() and serves == "unknown":
                serves = found.group(1).replace("_", "").strip(" .,-")
            continue
        if facts:
            method.append("\n".join(facts))
            facts = []
        lines[0] = _MODE.sub("", lines[0])
        method.append("\n".join(lines))
    if facts:
        method.append("\n".join(facts))
    if not ingredients or not method:
        return None
    head = f"Title: {title}\nCategories: {category}\nYield: {serves}"
    return "\n\n".join([head, "\n".join(ingredients), *method])


def _ends_recipe(paragraph: list[str]) -> bool:
    first = paragraph[0]
    return (
        first[:1].isspace()
        or first.startswith("[")
        or bool(_CHAPTER.match(first) or _VARIANT.match(first) or _NUMBERED_PARAGRAPH.match(first))
        or bool(_SIDE_NOTE.match(first))
        or bool(_RECIPE_START.match(first))
        or (_heading(paragraph) is not None and not _FACT.match(first) and not _MODE.match(first))
    )


def beeton_recipes(texts: Sequence[str], labels: Sequence[str], chapters: dict[str, str]) -> str:
    """Recipes in MealMaster-like blocks, separated by two blank lines.

    ``chapters`` maps the Roman numeral of each recipe chapter to its category; recipes in
    other chapters (the essays on household management) are left out.
    """
    recipes: list[str] = []
    for text, label in zip(texts, labels):
        paragraphs = _paragraphs(drop_illustrations(gutenberg_body(text, label)))
        category: str | None = None
        title, variant = "", ""
        i = 0
        while i < len(paragraphs):
            paragraph = paragraphs[i]
            chapter = _CHAPTER.match(paragraph[0])
            if chapter:
                category, title, variant = chapters.get(chapter.group(1)), "", ""
            elif _VARIANT.match(paragraph[0]) and len(paragraph) == 1:
                variant = re.sub(r"[_.]", "", paragraph[0])  # "II. (_Economical_.)" -> "II (Economical)"
            elif _RECIPE_START.match(paragraph[0]):
                end = i + 1
                while end < len(paragraphs) and not _ends_recipe(paragraphs[end]):
                    end += 1
                if category and title:
                    recipe = _recipe(f"{title} {variant}".strip(), category, paragraphs[i:end])
                    if recipe:
                        recipes.append(recipe)
                i = end
                continue
            elif (heading := _heading(paragraph)) is not None:
                title, variant = heading, ""
            i += 1
    if not recipes:
        raise CorpusError(f"no recipes found in {', '.join(labels)}; check the catalogue's chapter list")
    return check_no_boilerplate("\n\n\n".join(recipes) + "\n", ", ".join(labels))


# --- Colour names -----------------------------------------------------------------------


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
