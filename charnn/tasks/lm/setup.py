"""What a language-model run reads, decided from what the user gave: records or a stream, styles.

A corpus fetched by `charnn corpus get` says in its catalogue entry whether it is records;
a run fine-tuned from a record run trains on records too; a text that looks like records
gets a hint. Each function returns the messages to say (the command line says them).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from charnn.corpora.catalogue import declared_records, prepared_entry
from charnn.errors import ConfigError, CorpusError
from charnn.runs.checkpoint import check_run_folder
from charnn.tasks.lm.style_runs import StyleData
from charnn.tasks.lm.styles import parse_styles, per_style_option, styles_per_file
from charnn.text.corpus import read_corpus, read_validation
from charnn.text.records import parse_format, suggest


def records_setting(given: str | None, corpus: Any, init_from: Path | None) -> tuple[str | None, list[str]]:
    """--records as given; else what a prepared corpus or the fine-tuned run declares; else a hint."""
    if given is not None:
        return (None if given == "none" else given), []
    declared = declared_records(corpus.sources, corpus.stats.sha256)
    if declared is not None:
        return declared, [
            f"{corpus.sources[0]}: {parse_format(declared).describe()}, as its catalogue entry says; "
            "training on whole records (--records none reads it as one stream)"
        ]
    if init_from is not None:
        declared = ((check_run_folder(init_from).get("task") or {}).get("records") or {}).get("spec")
        if declared is not None:
            return declared, [
                f"{init_from} was trained on records ({parse_format(declared).describe()}); fine-tuning on records"
            ]
    hint = None if prepared_entry(corpus.sources, corpus.stats.sha256) else suggest(next(iter(corpus.chunks()), ""))
    if hint is None:  # a catalogued corpus that declares no records is a stream
        return None, []
    return None, [
        f"hint: {corpus.sources[0]} looks like a record corpus ({parse_format(hint).describe()}); "
        f"--records {shlex.quote(hint)} trains on whole records (random held-out records, whole records sampled)"
    ]


def style_data(
    specs: Sequence[str] | None, files: Sequence[str] | None, records: Sequence[str], val: Sequence[str]
) -> tuple[list[StyleData], list[str]]:
    """The styles of `charnn train --style NAME=FILE ...` (or each of ``files`` a style), read, with
    each one's record setting (given, declared by its catalogue entry, or hinted at)."""
    sources = parse_styles(specs) if specs else styles_per_file(files or [])
    names = [s.name for s in sources]
    given_records, bare_records = per_style_option(records, names, "--records")
    given_val, _ = per_style_option(val, names, "--val")
    for spec in [*given_records.values(), *([bare_records] if bare_records else [])]:
        if spec != "none":
            parse_format(spec)  # a bad separator is refused before any text is read
    styles, messages = [], []
    for source in sources:
        try:
            corpus = read_corpus(list(source.files))
        except CorpusError as exc:
            raise CorpusError(f"style {source.name}: {exc}") from None
        spec = given_records.get(source.name)
        if spec is None:
            spec = _style_records(source.name, corpus, bare_records, messages)
        spec = None if spec == "none" else spec
        val_text = None
        if source.name in given_val:  # a stream style's validation text needs 2 tokens at least
            val_text = read_validation(given_val[source.name], 1 if spec else 2, f"style {source.name}'s --val file")
        styles.append(StyleData(source.name, corpus, spec, val_text))
    return styles, messages


def _style_records(name: str, corpus: Any, bare: str | None, messages: list[str]) -> str | None:
    """A style's record setting where none names it: its catalogue entry's, else the unnamed --records."""
    spec = declared_records(corpus.sources, corpus.stats.sha256)
    if spec is not None:
        messages.append(f"style {name}: {parse_format(spec).describe()}, as its catalogue entry says")
        return spec
    if bare is not None:
        return bare
    if prepared_entry(corpus.sources, corpus.stats.sha256) is None:  # a catalogued stream: no hint
        hint = suggest(next(iter(corpus.chunks()), ""))
        if hint is not None:
            messages.append(
                f"hint: style {name} looks like records ({parse_format(hint).describe()}); "
                f"--records {name}={shlex.quote(hint)} trains on whole records"
            )
    return None


def check_distinct(corpus: list[str], val: Path | None) -> None:
    """A file named twice is read twice (the held-out end then repeats training text); a --val file that is
    also a training file measures what the model memorised. Both are refused."""
    seen: set[Path] = set()
    for name in corpus:
        if name == "-":
            continue
        key = Path(name).resolve()
        if key in seen:
            raise ConfigError(f"{name} is named twice; name each corpus file once")
        seen.add(key)
    if val is not None and str(val) != "-" and val.resolve() in seen:
        raise ConfigError(
            f"--val {val} is also a training file: it would measure what the model memorised; "
            "give held-out text the model does not train on, or leave --val out (the corpus's end is held out)"
        )
