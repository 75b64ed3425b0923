"""The catalogue file (corpora/catalogue.json) read and checked: each corpus's upstream files,
their sha256, licence and the transform that makes its training text."""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from charnn.corpora.transforms import ENCODINGS, TRANSFORMS
from charnn.errors import ConfigError, CorpusError
from charnn.text.records import parse_format

CATALOGUE_PATH = Path(__file__).resolve().parents[2] / "corpora" / "catalogue.json"
CATALOGUE_FORMAT = "charnn-corpora"
PREPARE_VERSION = 1
"""Bump when a transform's output changes, so that cached prepared files are rebuilt."""


@dataclass(frozen=True)
class UpstreamFile:
    """One file a corpus is made from, pinned by URL and sha256."""

    url: str
    sha256: str
    encoding: str  # "utf-8" (a byte-order mark is allowed) or "latin-1"
    title: str = ""  # what the file is, for `charnn corpus info`

    @property
    def name(self) -> str:
        """The file name a mirror folder holds it under: the last part of the URL."""
        return urlparse(self.url).path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class CorpusEntry:
    """A named corpus as the catalogue describes it."""

    name: str
    description: str
    style: str  # prose, recipes, names, plays: what the text looks like
    licence: str
    attribution: str
    files: tuple[UpstreamFile, ...]
    transform: str  # a key of charnn.corpora.transforms.TRANSFORMS
    parameters: dict[str, Any] = field(default_factory=dict)
    licence_text: str = ""  # the full licence, where it asks to travel with the data
    records: str | None = None  # what separates its records (charnn.text.records); None: one stream of prose

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "style": self.style,
            "licence": self.licence,
            "attribution": self.attribution,
            "licence_text": self.licence_text,
            "files": [{"url": f.url, "sha256": f.sha256, "encoding": f.encoding, "title": f.title} for f in self.files],
            "transform": {"name": self.transform, "parameters": self.parameters},
            "records": self.records,
        }

    @property
    def source_key(self) -> str:
        """A digest of everything the prepared text depends on."""
        recipe = json.dumps([PREPARE_VERSION, self.to_dict()["files"], self.transform, self.parameters], sort_keys=True)
        return hashlib.sha256(recipe.encode("utf-8")).hexdigest()


# --- the catalogue ------------------------------------------------------------------------


def load_catalogue(path: Path = CATALOGUE_PATH) -> dict[str, CorpusEntry]:
    """Read and validate the catalogue; every problem names the entry and the field."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorpusError(f"the corpus catalogue {path} is missing; reinstall charnn from its source tree") from None
    except (OSError, ValueError) as exc:
        raise CorpusError(f"the corpus catalogue {path} cannot be read: {exc}") from None
    if not isinstance(raw, dict) or raw.get("format") != CATALOGUE_FORMAT or not isinstance(raw.get("corpora"), dict):
        raise CorpusError(f"{path} is not a charnn corpus catalogue (format {CATALOGUE_FORMAT!r} with 'corpora')")
    entries = {name: _entry(path, name, spec) for name, spec in raw["corpora"].items()}
    _check_file_names(path, entries)
    return entries


def _entry(path: Path, name: str, spec: Any) -> CorpusEntry:
    def bad(what: str) -> CorpusError:
        return CorpusError(f"{path}: corpus {name!r}: {what}; fix the catalogue")

    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
        raise bad("a name is lower-case letters, digits and '-'")
    if not isinstance(spec, dict):
        raise bad("the entry is not an object")
    texts = {}
    for key in ("description", "style", "licence", "attribution"):
        if not isinstance(spec.get(key), str) or not spec[key].strip():
            raise bad(f"{key!r} must be a non-empty string")
        texts[key] = spec[key]
    files = spec.get("files")
    if not isinstance(files, list) or not files:
        raise bad("'files' must be a non-empty list")
    upstream = []
    for i, item in enumerate(files):
        if not isinstance(item, dict):
            raise bad(f"files[{i}] is not an object")
        url, digest, encoding = item.get("url"), item.get("sha256"), item.get("encoding")
        if not isinstance(url, str) or urlparse(url).scheme not in ("https", "http") or not urlparse(url).path:
            raise bad(f"files[{i}].url must be an http(s) URL")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise bad(f"files[{i}].sha256 must be 64 lower-case hex digits")
        if encoding not in ENCODINGS:
            raise bad(f"files[{i}].encoding must be one of {', '.join(ENCODINGS)}")
        upstream.append(UpstreamFile(url, digest, encoding, str(item.get("title", ""))))
    transform = spec.get("transform")
    if not isinstance(transform, dict) or transform.get("name") not in TRANSFORMS:
        raise bad(f"'transform' must be {{'name': one of {', '.join(TRANSFORMS)}, 'parameters': {{...}}}}")
    parameters = transform.get("parameters", {})
    if not isinstance(parameters, dict):
        raise bad("'transform.parameters' must be an object")
    licence_text = spec.get("licence_text", "")
    if not isinstance(licence_text, str):
        raise bad("'licence_text' must be a string")
    records = spec.get("records")
    if records is not None:
        if not isinstance(records, str):
            raise bad("'records' must be 'line', 'blank' or a separator regex")
        try:
            parse_format(records)
        except ConfigError as exc:
            raise bad(f"'records': {exc}") from None
    try:  # the parameters must be ones the transform takes
        inspect.signature(TRANSFORMS[transform["name"]]).bind([], [], **parameters)
    except TypeError as exc:
        raise bad(f"'transform.parameters' do not fit {transform['name']}: {exc}") from None
    return CorpusEntry(
        name,
        files=tuple(upstream),
        transform=transform["name"],
        parameters=parameters,
        licence_text=licence_text,
        records=records,
        **texts,
    )


def _check_file_names(path: Path, entries: dict[str, CorpusEntry]) -> None:
    """A mirror folder holds one file per name, so a name must always mean the same bytes."""
    seen: dict[str, str] = {}
    for entry in entries.values():
        for f in entry.files:
            if seen.setdefault(f.name, f.sha256) != f.sha256:
                raise CorpusError(f"{path}: two different upstream files are named {f.name!r}; fix the catalogue")
