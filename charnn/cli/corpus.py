"""`charnn corpus list | info NAME | get NAME`: the named demo corpora."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from charnn.cli import console

corpus_app = typer.Typer(
    name="corpus",
    help="Named demo corpora: list them, describe one, download and prepare one for training.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
Name = Annotated[str, typer.Argument(help="Corpus name, as `charnn corpus list` shows it.", show_default=False)]


def list_command(as_json: AsJson = False) -> None:
    """List the named corpora: the kind of text (prose, names, plays, recipes), licence, cache state, what it is.

    [b]Examples[/b]

      charnn corpus list
      charnn corpus list --json | jq -r '.[].name'
    """
    from charnn.corpora.catalogue import is_prepared, list_corpora, prepared_path

    entries = list_corpora()
    prepared = {entry.name: is_prepared(entry) for entry in entries}
    if as_json:
        rows = [
            {**_summary(entry.to_dict()), "path": str(prepared_path(entry.name)) if prepared[entry.name] else None}
            for entry in entries
        ]
        print(json.dumps(rows, ensure_ascii=False))
        return
    table = [("name", "kind", "licence", "cached", "description")]
    table += [(e.name, e.style, e.licence, "yes" if prepared[e.name] else "no", e.description) for e in entries]
    widths = [max(len(row[k]) for row in table) for k in range(4)]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4])


def _summary(entry: dict) -> dict:
    """A catalogue entry for `corpus list --json`: "kind" as the table says; "style" too, as before."""
    keys = ("name", "style", "licence", "attribution", "description")
    return {**{key: entry[key] for key in keys}, "kind": entry["style"]}


def info_command(name: Name, as_json: AsJson = False) -> None:
    """Describe one corpus: licence and attribution, pinned upstream files, transform, cache state.

    [b]Examples[/b]

      charnn corpus info paint-names
      charnn corpus info fantasy --json | jq -r '.files[].url'
    """
    from charnn.corpora.catalogue import info, is_prepared, prepared_path

    entry = info(name)
    path = str(prepared_path(name)) if is_prepared(entry) else None
    if as_json:
        print(json.dumps({**entry.to_dict(), "path": path}, ensure_ascii=False))
        return
    params = json.dumps(entry.parameters, ensure_ascii=False) if entry.parameters else ""
    rows = [
        ("name", entry.name),
        ("description", entry.description),
        ("kind", entry.style),
        ("records", _records(entry.records)),
        ("licence", entry.licence),
        ("attribution", entry.attribution),
        ("transform", f"{entry.transform} {params}".strip()),
        ("prepared", path or f"no (run `charnn corpus get {name}`)"),
        ("files", str(len(entry.files))),
    ]
    width = max(len(key) for key, _ in rows)
    print("\n".join(f"{key:<{width}}  {value}" for key, value in rows))
    for f in entry.files:
        print(f"  {f.name}  {f.encoding}  {f.title}".rstrip())
        print(f"    {f.url}")
        print(f"    sha256 {f.sha256}")
    if entry.licence_text:
        print("\nlicence text:\n")
        print(entry.licence_text.rstrip("\n"))


def get_command(
    name: Name,
    mirror: Annotated[
        Optional[Path],
        typer.Option(
            "--mirror",
            help="Read the upstream files from this folder (named as the last part of their URL) "
            "instead of the network \\[default: $CHARNN_CORPUS_MIRROR].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Download (or read from --mirror), verify and prepare a corpus; print its path.

    Every upstream file is checked against the sha256 the catalogue pins
    before it is used. The prepared text is cached ($CHARNN_CACHE, else
    $XDG_CACHE_HOME/charnn, else ~/.cache/charnn) and reused; only its path
    goes to stdout, notes go to stderr.

    [b]Examples[/b]

      charnn corpus get paint-names
      charnn train "$(charnn corpus get paint-names)" --time 5m
      charnn corpus get fantasy --mirror ../shared/corpora/upstream
    """
    from charnn.corpora.catalogue import get

    print(get(name, mirror=mirror, notify=console.say), flush=True)


corpus_app.command("list")(console.pipe_safe(list_command))
corpus_app.command("info")(console.pipe_safe(info_command))
corpus_app.command("get")(console.pipe_safe(get_command))


def _records(spec: str | None) -> str:
    from charnn.text.records import parse_format

    return "none: one stream of text" if spec is None else f"{parse_format(spec).describe()} (charnn train picks it up)"
