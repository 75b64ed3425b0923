"""The documentation holds together: every relative link in README.md and docs/ resolves (to a
file in the repository and, for a #fragment into a Markdown file, to one of its headings), every
page under docs/ is reachable from the README and from docs/index.md, and the README stays short."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 200

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
INLINE_LINK = re.compile(r"!?\[([^\[\]]*)\]\(\s*<?([^)\s>]*)>?(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[([^\]]+)\]:[ \t]*<?([^\s>]+)>?(?:[ \t]+.*)?$", re.MULTILINE)
REFERENCE_USE = re.compile(r"!?\[([^\[\]]+)\]\[([^\[\]]*)\]")
ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def prose_lines(text: str) -> list[str]:
    """The lines of a Markdown text with fenced code blocks blanked (kept as empty lines)."""
    lines, fence = [], None
    for line in text.split("\n"):
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)
            lines.append("")
        elif fence is not None:
            if line.strip().startswith(fence) and set(line.strip()) == {fence[0]}:
                fence = None
            lines.append("")
        else:
            lines.append(line)
    return lines


def prose(text: str) -> str:
    """The text without fenced code blocks and code spans, where a link is not a link."""
    return CODE_SPAN.sub("", "\n".join(prose_lines(text)))


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its visible text lowercased, punctuation dropped, spaces to hyphens."""
    text = INLINE_LINK.sub(lambda m: m.group(1), heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return "".join(c for c in text if c in " -" or _word_character(c)).replace(" ", "-")


def _word_character(c: str) -> bool:
    """A letter, a mark, a digit or a connector such as "_": what GitHub keeps of a heading."""
    category = unicodedata.category(c)
    return category[0] in "LMN" or category == "Pc"


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, with GitHub's -1, -2 ... for repeated headings."""
    lines = prose_lines(path.read_text(encoding="utf-8"))
    headings = []
    for i, line in enumerate(lines):
        atx = ATX_HEADING.match(line)
        if atx:
            headings.append(atx.group(2) or "")
        elif (
            i > 0
            and SETEXT_UNDERLINE.match(line)
            and lines[i - 1].strip()
            and not ATX_HEADING.match(lines[i - 1])
            and not lines[i - 1].lstrip().startswith(("|", "-", "*", ">"))
        ):
            headings.append(lines[i - 1].strip())
    found: set[str] = set()
    seen: dict[str, int] = {}
    for heading in headings:
        slug = github_slug(CODE_SPAN.sub(lambda m: m.group(0).strip("`"), heading))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def link_targets(path: Path) -> list[str]:
    """The targets of every inline and reference-style link (and image) in a Markdown file."""
    text = prose(path.read_text(encoding="utf-8"))
    targets = [m.group(2) for m in INLINE_LINK.finditer(text)]
    definitions = {label.strip().lower(): target for label, target in REFERENCE_DEF.findall(text)}
    targets += definitions.values()
    for m in REFERENCE_USE.finditer(text):
        label = (m.group(2) or m.group(1)).strip().lower()
        if label not in definitions:
            targets.append(f"<undefined reference [{label}]>")
    return targets


def broken_links(path: Path) -> list[str]:
    """What is wrong with each relative link of a Markdown file; empty when all resolve."""
    problems = []
    for target in link_targets(path):
        if target.startswith("<undefined reference"):
            problems.append(target)
            continue
        if not target:
            problems.append("an empty link target")
            continue
        if SCHEME.match(target) or target.startswith("//"):
            continue  # http(s), mailto and other absolute addresses are not checked here
        file_part, _, fragment = target.partition("#")
        linked = path if not file_part else (path.parent / unquote(file_part)).resolve()
        if not linked.exists():
            problems.append(f"{target}: {linked} does not exist")
            continue
        if not linked.is_relative_to(ROOT):
            problems.append(f"{target}: {linked} is outside the repository")
            continue
        if fragment and linked.suffix == ".md" and unquote(fragment) not in anchors(linked):
            problems.append(f"{target}: {linked.relative_to(ROOT)} has no heading with the anchor #{fragment}")
    return problems


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
    assert broken_links(path) == []


def test_the_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines, over {README_MAX_LINES}: move detail into docs/"


def test_every_docs_page_is_linked_from_the_readme_and_the_index():
    def linked_from(page: Path) -> set[Path]:
        return {
            (page.parent / unquote(t.partition("#")[0])).resolve()
            for t in link_targets(page)
            if t and not SCHEME.match(t) and t.partition("#")[0]
        }

    pages = {p.resolve() for p in DOCS.rglob("*.md")}
    index = (DOCS / "index.md").resolve()
    assert index in pages
    assert pages - linked_from(README) == set()
    assert pages - {index} - linked_from(index) == set()


def test_the_docs_do_not_point_outside_the_repository_at_the_shared_folder():
    for path in markdown_files():
        assert "../shared" not in path.read_text(encoding="utf-8"), path


def test_github_slugs():
    assert github_slug("Sentence classification (sentiment-mr)") == "sentence-classification-sentiment-mr"
    assert github_slug("How the tagger's defaults were chosen") == "how-the-taggers-defaults-were-chosen"
    assert github_slug("Several processes: torchrun") == "several-processes-torchrun"
    assert github_slug("The `config.json` file") == "the-configjson-file"
    assert github_slug("See [the run folder](run-folder.md)") == "see-the-run-folder"
    assert github_slug("snake_case and Ünïcode") == "snake_case-and-ünïcode"


def test_the_checker_finds_broken_links(tmp_path, monkeypatch):
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## Repeated\n\n## Repeated\n", encoding="utf-8")
    doc = tmp_path / "README.md"
    doc.write_text(
        "# Title\n\n"
        "[ok](docs/page.md) [ok](docs/page.md#a-page) [ok](docs/page.md#repeated-1) [ok](#title)\n"
        "[ok](https://example.com/missing) [ok][ref] `[not a link](missing.md)`\n\n"
        "```sh\n[not a link](missing.md)\n# not a heading\n```\n\n"
        "[missing file](docs/nope.md) [missing anchor](docs/page.md#nope) [code anchor](#not-a-heading)\n"
        "[undefined][nowhere] [missing][bad]\n\n"
        "[ref]: docs/page.md\n[bad]: ../elsewhere.md\n",
        encoding="utf-8",
    )
    problems = broken_links(doc)
    assert len(problems) == 5, problems
    assert any("docs/nope.md" in p for p in problems)
    assert any("#nope" in p for p in problems)
    assert any("#not-a-heading" in p for p in problems)
    assert any("[nowhere]" in p for p in problems)
    assert any("../elsewhere.md" in p for p in problems)
