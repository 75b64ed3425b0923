"""Mrs Beeton's Book of Household Management (1861) as recipes: the catalogue's beeton_recipes transform."""

from __future__ import annotations

import re
from collections.abc import Sequence

from charnn.corpora.gutenberg import check_no_boilerplate, drop_illustrations, gutenberg_body
from charnn.errors import CorpusError

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
