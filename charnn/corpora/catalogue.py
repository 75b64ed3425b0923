"""Named corpora: a catalogue of upstream files, fetched with a checksum and prepared once.

    corpora/catalogue.json           which files make each corpus, their sha256, licence,
                                     and the transform that turns them into training text
    <cache>/corpora/
      upstream/<file>                downloads, kept only once their sha256 matched
      <name>.txt                     the prepared training text (what `get` returns)
      <name>.json                    its record: sha256 of <name>.txt and what it was built from

<cache> is $CHARNN_CACHE, else $XDG_CACHE_HOME/charnn, else ~/.cache/charnn. An upstream
file comes from the cache, else from the mirror folder (``mirror=`` or
$CHARNN_CORPUS_MIRROR; the file name is the last part of its URL), else from the network.
Its bytes are checked against the catalogue's sha256 before anything is written or
transformed: a mismatch raises and leaves no file behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from charnn import __version__
from charnn.corpora.entries import (  # noqa: F401  (the catalogue's names, read here)
    CATALOGUE_FORMAT,
    CATALOGUE_PATH,
    PREPARE_VERSION,
    CorpusEntry,
    UpstreamFile,
    load_catalogue,
)
from charnn.corpora.transforms import TRANSFORMS, decode
from charnn.errors import CheckpointError, ConfigError, CorpusError, CorpusFetchError
from charnn.files import FolderLock, atomic_write, remove_stale_temporaries

CACHE_ENV = "CHARNN_CACHE"
MIRROR_ENV = "CHARNN_CORPUS_MIRROR"
MIRROR_OPTION = f"--mirror DIR (or ${MIRROR_ENV})"
UPSTREAM_DIR = "upstream"
"""Under the cache's corpora/ folder: the downloaded files, verified."""
DOWNLOAD_TIMEOUT = 30.0
"""Seconds to wait for the server to answer or send more bytes."""
MAX_DOWNLOAD_BYTES = 64 << 20
Notify = Callable[[str], None]


def list_corpora() -> list[CorpusEntry]:
    """Every corpus in the catalogue, in catalogue order."""
    return list(load_catalogue().values())


def info(name: str) -> CorpusEntry:
    """The catalogue entry of ``name``; an unknown name is an error that lists the known ones."""
    catalogue = load_catalogue()
    if name not in catalogue:
        raise ConfigError(f"unknown corpus {name!r}; choose one of: {', '.join(catalogue)} (see `charnn corpus list`)")
    return catalogue[name]


# --- the cache ----------------------------------------------------------------------------


def cache_dir() -> Path:
    """The user's charnn cache folder: $CHARNN_CACHE, else $XDG_CACHE_HOME/charnn, else ~/.cache/charnn."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "charnn"


def prepared_path(name: str) -> Path:
    """Where the prepared text of ``name`` lives (whether or not it has been prepared yet)."""
    return cache_dir() / "corpora" / f"{name}.txt"


def _record_path(name: str) -> Path:
    return cache_dir() / "corpora" / f"{name}.json"


def is_prepared(entry: CorpusEntry) -> bool:
    """Whether the cache holds an intact prepared text built from the current catalogue entry."""
    return _prepared_state(entry) == "ok"


def _prepared_state(entry: CorpusEntry) -> str:
    """'ok', 'missing', 'stale' (built from another catalogue entry) or 'damaged'."""
    try:
        record = json.loads(_record_path(entry.name).read_text(encoding="utf-8"))
        data = prepared_path(entry.name).read_bytes()
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError):
        return "damaged"
    if not isinstance(record, dict) or record.get("source_key") != entry.source_key:
        return "stale"
    return "ok" if hashlib.sha256(data).hexdigest() == record.get("sha256") else "damaged"


def get(name: str, mirror: Path | str | None = None, notify: Notify | None = None) -> Path:
    """The path of the prepared training text of corpus ``name``, preparing it if needed.

    A prepared text is reused while its sha256 matches the one recorded when it was
    written; a damaged or stale one is prepared again. ``notify`` receives one-line notes
    on progress (for stderr).
    """
    entry = info(name)
    if _prepared_state(entry) == "ok":
        return prepared_path(name)
    folder = prepared_path(name).parent
    _make_cache_folder(folder)
    # One `get` at a time prepares: a second waits, then finds the text ready. Under the
    # lock no live writer is mid-file, so temporaries a killed `get` left are stale.
    try:
        lock = FolderLock(folder).acquire(wait=True)
    except OSError as exc:
        raise CorpusError(f"cannot open the cache folder {folder}: {exc.strerror or exc}") from None
    with lock:
        for stale in (folder, folder / UPSTREAM_DIR):
            if stale.is_dir():
                remove_stale_temporaries(stale)
        return _prepare(entry, mirror, notify)


def _prepare(entry: CorpusEntry, mirror: Path | str | None, notify: Notify | None) -> Path:
    name = entry.name
    say = notify or (lambda message: None)
    state = _prepared_state(entry)
    if state == "ok":
        return prepared_path(name)
    if state == "damaged":
        say(f"the cached {name} corpus is damaged (its sha256 changed); preparing it again")
    elif state == "stale":
        say(f"the cached {name} corpus was prepared from another catalogue entry; preparing it again")
    mirror_dir = _mirror_dir(mirror)
    texts = [decode(fetch(f, mirror_dir, say), f.encoding, f.name) for f in entry.files]
    say(f"preparing {name} ({entry.transform})")
    text = TRANSFORMS[entry.transform](texts, [f.name for f in entry.files], **entry.parameters)
    data = text.encode("utf-8")
    if not text.strip():
        raise CorpusError(f"preparing {name} gave no text; the catalogue's transform does not fit its files")
    record = {
        "corpus": name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "source_key": entry.source_key,
        "charnn_version": __version__,
    }
    # The record goes first and comes back last, so a text without its record (a kill in
    # between) reads as missing, not as damaged.
    _record_path(name).unlink(missing_ok=True)
    _write(prepared_path(name), lambda f: f.write(data))
    _write(_record_path(name), lambda f: f.write((json.dumps(record, indent=2) + "\n").encode("utf-8")))
    return prepared_path(name)


def declared_records(sources: tuple[str, ...], sha256: str) -> str | None:
    """The record format a prepared corpus declares: ``sources`` is the text of a `corpus get`
    (its record beside it vouches for it by sha256) whose catalogue entry names its records."""
    entry = prepared_entry(sources, sha256)
    return entry.records if entry is not None else None


def prepared_entry(sources: tuple[str, ...], sha256: str) -> CorpusEntry | None:
    """The catalogue entry of a `corpus get` text (vouched for by its record's sha256); else None."""
    if len(sources) != 1 or sources[0] == "-":
        return None
    try:
        record = json.loads(Path(sources[0]).with_suffix(".json").read_text(encoding="utf-8"))
        return load_catalogue().get(record["corpus"]) if record.get("sha256") == sha256 else None
    except (OSError, ValueError, TypeError, KeyError, AttributeError, CorpusError):
        return None


def _make_cache_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CorpusError(
            f"cannot create the cache folder {folder}: {exc.strerror or exc}; "
            f"set ${CACHE_ENV} to a folder you can write"
        ) from None


def _write(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    _make_cache_folder(path.parent)
    try:
        atomic_write(path, write)
    except CheckpointError as exc:  # a full disk or a read-only cache: say so as a corpus problem
        raise CorpusError(f"{exc}; set ${CACHE_ENV} to a folder you can write") from None


# --- fetching -----------------------------------------------------------------------------


def _mirror_dir(mirror: Path | str | None) -> Path | None:
    if mirror is None or str(mirror) == "":
        mirror = os.environ.get(MIRROR_ENV) or None
    if mirror is None:
        return None
    folder = Path(mirror).expanduser()
    if folder.exists() and not folder.is_dir():
        raise CorpusFetchError(
            f"mirror {folder} is a file, not a folder; pass the folder that holds it to {MIRROR_OPTION}"
        )
    if not folder.is_dir():
        raise CorpusFetchError(f"mirror folder {folder} does not exist; pass an existing folder to {MIRROR_OPTION}")
    return folder


def fetch(file: UpstreamFile, mirror: Path | None = None, notify: Notify | None = None) -> bytes:
    """The verified bytes of ``file``: from the download cache, else the mirror, else the network."""
    say = notify or (lambda message: None)
    cached = cache_dir() / "corpora" / UPSTREAM_DIR / file.name
    if cached.is_file():
        data = cached.read_bytes()
        if _sha256(data) == file.sha256:
            return data
        say(f"the cached download {cached} is damaged; fetching it again")
    if mirror is not None:
        source = mirror / file.name
        try:
            data = source.read_bytes()
        except FileNotFoundError:
            raise CorpusFetchError(
                f"{file.name} is not in the mirror folder {mirror}; put the file from {file.url} there, "
                f"or leave out {MIRROR_OPTION} to download it"
            ) from None
        except OSError as exc:
            raise CorpusFetchError(f"cannot read {source}: {exc.strerror or exc}") from None
        _verify(data, file, str(source))
        return data
    say(f"downloading {file.url}")
    _download(file, cached)
    return cached.read_bytes()


def _verify(data: bytes, file: UpstreamFile, source: str) -> None:
    digest = _sha256(data)
    if digest != file.sha256:
        raise CorpusFetchError(
            f"checksum mismatch for {source}: sha256 {digest}, expected {file.sha256}; "
            "the file was changed or damaged, so nothing was kept; fetch an intact copy of "
            f"{file.url}"
        )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download(file: UpstreamFile, target: Path) -> None:
    """Stream ``file.url`` into a temporary file beside ``target``; rename it only if its sha256 matches."""
    offline = (
        f"cannot download {file.url} ({{reason}}); check the network, or pass {MIRROR_OPTION} "
        f"pointing at a folder that holds {file.name}"
    )
    request = urllib.request.Request(file.url, headers={"User-Agent": f"charnn/{__version__}"})
    try:
        response = urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT)  # noqa: S310 (the URL is pinned)
    except urllib.error.HTTPError as exc:
        raise CorpusFetchError(offline.format(reason=f"HTTP {exc.code} {exc.reason}")) from None
    except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections
        raise CorpusFetchError(offline.format(reason=_reason(exc))) from None

    def write(out: BinaryIO) -> None:
        digest, size = hashlib.sha256(), 0
        try:
            with response:
                while chunk := response.read(1 << 16):
                    size += len(chunk)
                    if size > MAX_DOWNLOAD_BYTES:
                        raise CorpusFetchError(
                            f"{file.url} is larger than {MAX_DOWNLOAD_BYTES >> 20} MiB, so it is not "
                            "the pinned file; nothing was kept"
                        )
                    digest.update(chunk)
                    out.write(chunk)
        except OSError as exc:  # raised as our error so that atomic_write drops the partial file
            raise CorpusFetchError(offline.format(reason=_reason(exc))) from None
        if digest.hexdigest() != file.sha256:
            raise CorpusFetchError(
                f"checksum mismatch for {file.url}: sha256 {digest.hexdigest()}, expected {file.sha256}; "
                "nothing was kept; the server sent other bytes than the catalogue pins"
            )

    try:
        _write(target, write)
    finally:
        response.close()


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
    return str(reason) or type(exc).__name__
