"""Named corpora: catalogue, fetching with checksums, the cache, transforms, `charnn corpus`.

No test touches the network: urlopen is replaced for every test, and the upstream files
come from the mirror folder ../shared/corpora/upstream (tests that need it skip without it).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import unicodedata
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from charnn.corpora import catalogue as corpora
from charnn.corpora.transforms import (
    BOILERPLATE_MARKERS,
    beeton_recipes,
    colour_names,
    decode,
    drop_illustrations,
    drop_page_numbers,
    gutenberg_book,
    gutenberg_prose,
)
from charnn.errors import ConfigError, CorpusError, CorpusFetchError
from tests.conftest import SHARED_CORPORA

MIRROR = SHARED_CORPORA / "upstream"
URLOPEN = urllib.request.urlopen  # the real one, before the autouse fixture replaces it
NAMES = ("fantasy", "recipes", "paint-names", "shakespeare")
needs_mirror = pytest.mark.skipif(not MIRROR.is_dir(), reason=f"the upstream mirror {MIRROR} is absent")
needs_shared = pytest.mark.skipif(not SHARED_CORPORA.is_dir(), reason=f"the shared corpora {SHARED_CORPORA} are absent")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache per test, no mirror from the environment, and no network at all."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("CHARNN_CACHE", str(cache))
    monkeypatch.delenv("CHARNN_CORPUS_MIRROR", raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    return cache


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


class FakeResponse(io.BytesIO):
    """What urlopen returns, serving ``data``; optionally failing after the first chunk."""

    def __init__(self, data: bytes, fail: BaseException | None = None) -> None:
        super().__init__(data)
        self.fail = fail

    def read(self, size: int = -1) -> bytes:
        if self.fail is not None and self.tell() > 0:
            raise self.fail
        return super().read(min(size, 4096) if size > 0 else 4096)


def serve(monkeypatch: pytest.MonkeyPatch, data: bytes, fail: BaseException | None = None) -> list[str]:
    """Make urlopen serve ``data``; returns the list of URLs asked for."""
    asked: list[str] = []

    def urlopen(request, timeout=None):
        asked.append(request.full_url)
        assert timeout is not None and timeout > 0
        return FakeResponse(data, fail)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return asked


# --- the catalogue ------------------------------------------------------------------------


def test_catalogue_names_the_four_corpora_with_licences_and_pinned_files():
    catalogue = corpora.load_catalogue()
    assert tuple(catalogue) == NAMES
    fantasy = catalogue["fantasy"]
    assert [f.name for f in fantasy.files] == [
        f"{n}.txt" for n in ("11-0", "12-0", "55", "54", "708", "778", "836-0", "837-0", "3536", "20606", "23661")
    ]
    assert catalogue["recipes"].files[0].name == "10136-8.txt" and catalogue["recipes"].files[0].encoding == "latin-1"
    paint = catalogue["paint-names"]
    assert paint.licence == "MIT" and "David Aerne" in paint.attribution
    assert "Permission is hereby granted" in paint.licence_text
    assert catalogue["shakespeare"].files[0].name == "input.txt"
    for entry in catalogue.values():
        assert entry.description and entry.style and entry.licence and entry.attribution
        for f in entry.files:
            assert f.url.startswith("https://") and re.fullmatch(r"[0-9a-f]{64}", f.sha256)


@needs_shared
def test_catalogue_urls_and_hashes_are_the_ones_the_shared_readme_pins():
    readme = (SHARED_CORPORA / "README.md").read_text(encoding="utf-8")
    pinned = dict(re.findall(r"\| (https://\S+) \| `([0-9a-f]{64})` \|", readme))
    files = [f for entry in corpora.list_corpora() for f in entry.files]
    assert len(files) == len(pinned) == 14
    assert {f.url: f.sha256 for f in files} == pinned


@pytest.mark.parametrize(
    "corpus, field, value, message",
    [
        ("shakespeare", "sha256", "not-a-hash", r"corpus 'shakespeare': files\[0\]\.sha256"),
        ("recipes", "encoding", "cp1252", r"corpus 'recipes': files\[0\]\.encoding must be one of utf-8, latin-1"),
        ("recipes", "parameters", {"chapter": {}}, r"corpus 'recipes': 'transform.parameters' do not fit"),
    ],
)
def test_a_broken_catalogue_says_which_entry_and_field(tmp_path: Path, corpus, field, value, message):
    raw = json.loads(corpora.CATALOGUE_PATH.read_text(encoding="utf-8"))
    if field == "parameters":
        raw["corpora"][corpus]["transform"]["parameters"] = value
    else:
        raw["corpora"][corpus]["files"][0][field] = value
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(CorpusError, match=message):
        corpora.load_catalogue(path)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match="fantasy, recipes, paint-names, shakespeare"):
        corpora.info("harry-potter")


# --- decoding and transforms on small synthetic files -------------------------------------

NEW_LAYOUT = (
    "\ufeffThe Project Gutenberg EBook of Tiny Tale, by A. Writer\r\n\r\n"
    "This eBook is for the use of anyone anywhere at no cost.\r\n\r\n"
    "*** START OF THIS PROJECT GUTENBERG EBOOK TINY TALE ***\r\n\r\n\r\n"
    "Produced by A. Volunteer and the Online Distributed\r\nProofreading Team\r\n\r\n\r\n\r\n\r\n"
    "TINY TALE\r\n\r\n"
    "\u2018Hello,\u2019 said the \u201cdragon\u201d\u2014kindly. Cafe\u0301.\r\n\r\n"
    "[Illustration: The dragon\r\nsmiles.]\r\n\r\n"
    "It waited\u2026 and smiled.\r\n\r\n"
    "End of the Project Gutenberg EBook of Tiny Tale, by A. Writer\r\n\r\n"
    "*** END OF THIS PROJECT GUTENBERG EBOOK TINY TALE ***\r\n\r\n"
    "Section 1. General Terms of Use and Redistributing Project Gutenberg-tm electronic works\r\n"
)


def old_layout(end_line: str, footer: str) -> str:
    return (
        "*Project Gutenberg Etext of Old Tale, by B. Writer*\r\n\r\n"
        "Copyright laws are changing all over the world.\r\n\r\n"
        "***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***\r\n"
        'Why is this "Small Print!" statement here?  You know: lawyers.\r\n\r\n'
        f"{end_line}\r\n"
        "[Portions of this header are copyright (C) 2001 by Michael S. Hart\r\n"
        "and may be reprinted only when these Etexts are free of all fees.]\r\n"
        "[Project Gutenberg is a TradeMark and may not be used in any sales\r\n"
        "of Project Gutenberg Etexts.]\r\n\r\n\r\n\r\n\r\n"
        "OLD TALE\r\n\r\nOnce upon a time there were 'three' of them.\r\n\r\n\r\n\r\n\r\n"
        f"{footer}\r\n"
    )


def test_decode_handles_bom_crlf_latin1_and_nfc():
    assert decode(b"\xef\xbb\xbfA\r\nB\rC\n", "utf-8", "x") == "A\nB\nC\n"
    assert decode(b"Caf\xe9 cr\xe8me, \xa31\r\n", "latin-1", "x") == "Caf\u00e9 cr\u00e8me, \u00a31\n"
    assert decode("Cafe\u0301".encode(), "utf-8", "x") == "Caf\u00e9"
    with pytest.raises(CorpusError, match="not valid utf-8 at byte 3"):
        decode(b"Caf\xe9", "utf-8", "x")


def test_gutenberg_new_layout_keeps_only_the_book_in_ascii_punctuation():
    text = decode(NEW_LAYOUT.encode("utf-8"), "utf-8", "tiny.txt")
    book = gutenberg_book(text, "tiny.txt")
    assert book == "TINY TALE\n\n'Hello,' said the \"dragon\"--kindly. Caf\u00e9.\n\n\nIt waited... and smiled.\n"


@pytest.mark.parametrize(
    "end_line, footer",
    [
        ("*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*", "*Project Gutenberg Etext of Old Tale*"),
        ("*END THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.05/20/01*END*", "End of The Project Gutenberg Etext"),
    ],
)
def test_gutenberg_old_small_print_layout_drops_header_notes_and_footer(end_line: str, footer: str):
    text = decode(old_layout(end_line, footer).encode("latin-1"), "latin-1", "old.txt")
    assert gutenberg_book(text, "old.txt") == "OLD TALE\n\nOnce upon a time there were 'three' of them.\n"


def test_books_are_joined_with_two_blank_lines_and_no_boilerplate_is_left():
    new = decode(NEW_LAYOUT.encode("utf-8"), "utf-8", "a")
    old_bytes = old_layout("*END THE SMALL PRINT! x*END*", "End of Project Gutenberg's Old Tale").encode()
    old = decode(old_bytes, "utf-8", "b")
    prose = gutenberg_prose([new, old], ["a", "b"])
    assert "smiled.\n\n\nOLD TALE\n" in prose and prose.endswith("them.\n")
    assert not any(marker in line for line in prose.splitlines() for marker in BOILERPLATE_MARKERS)


def test_a_file_without_gutenberg_markers_is_an_error():
    with pytest.raises(CorpusError, match="neither a"):
        gutenberg_book("Just some text.\n", "plain.txt")


def test_page_numbers_pictures_and_back_matter_are_removed():
    assert drop_page_numbers("seized him--\n\n\n\n9\nlie upon his back") == "seized him--\nlie upon his back"
    assert drop_page_numbers('said:\n\n28\n\n"You') == 'said:\n\n\n"You'
    assert drop_illustrations("nose, and\n\n   Line-Art Drawing\n\nmore") == "nose, and\n\n\nmore"
    body = "".join(f"Line {i} of the story.\n" for i in range(60))
    text = (
        "*** START OF THE PROJECT GUTENBERG EBOOK X ***\nX\n\nILLUSTRATIONS\n\n\n  A picture      7\n\n"
        "  Another        9\n\n\n" + body + "\nTHE END\n\n\nNew Books for the Young\n\nBuy them.\n\n"
        "       *       *       *\n\nTranscriber's Notes:\n\nPage 3, typo fixed.\n"
    )
    assert gutenberg_book(text, "x") == "X\n\n\n" + body + "\nTHE END\n"


def test_colour_csv_becomes_name_and_decimal_rgb_in_source_order():
    csv_text = 'name,hex,good name\n100 Mph,#c93f38,x\n"Red, Deep",#FF0000,\nNavy,#000080,\n'
    assert colour_names([csv_text], ["c.csv"]) == "100 Mph 201 63 56\nRed, Deep 255 0 0\nNavy 0 0 128\n"
    with pytest.raises(CorpusError, match="row 3"):
        colour_names(["name,hex\nOk,#000000\nOops,#12345\n"], ["c.csv"])
    with pytest.raises(CorpusError, match="header"):
        colour_names(["colour,value\nOk,#000000\n"], ["c.csv"])


BEETON = """*** START OF THE PROJECT GUTENBERG EBOOK THE BOOK OF HOUSEHOLD MANAGEMENT ***

CHAPTER I.


THE MISTRESS.

1. AS WITH THE COMMANDER OF AN ARMY, so is it with the mistress of a house.

CHAPTER VI.


FRUIT AND VEGETABLE SOUPS.

ALMOND SOUP.

110. INGREDIENTS.--4 lbs. of lean beef, 1/2 a scrag of mutton; the yolks
of 6 eggs, 1 gill of thick cream, rather more than 2 quarts of water.

_Mode_.--Boil the beef
gently.

_Time_.--3 hours. _Average cost_ per quart, 2s. 3d.

_Seasonable_ all the year.

_Sufficient_ for 8 persons.

[Illustration: ALMOND & BLOSSOM.]

    THE ALMOND-TREE.--This tree is indigenous to Asia.

ASPARAGUS SOUP, to serve with Cold Meat.

I.

113. INGREDIENTS.--5 lbs. of lean beef (or veal, 3 lbs.), 3 slices of bacon.

_Mode_.--Put the beef in.

II.

114. INGREDIENTS.--1-1/2 pint of split peas.

_Mode_.--Boil the peas.

*** END OF THE PROJECT GUTENBERG EBOOK THE BOOK OF HOUSEHOLD MANAGEMENT ***
"""

BEETON_RECIPES = """Title: Almond Soup
Categories: Soups
Yield: 8 persons

4 lbs. of lean beef
1/2 a scrag of mutton
the yolks of 6 eggs
1 gill of thick cream, rather more than 2 quarts of water

Boil the beef
gently.

Time.--3 hours. Average cost per quart, 2s. 3d.
Seasonable all the year.
Sufficient for 8 persons.


Title: Asparagus Soup I
Categories: Soups
Yield: unknown

5 lbs. of lean beef (or veal, 3 lbs.)
3 slices of bacon

Put the beef in.


Title: Asparagus Soup II
Categories: Soups
Yield: unknown

1-1/2 pint of split peas

Boil the peas.
"""


def test_beeton_recipes_layout():
    text = decode(BEETON.replace("\n", "\r\n").encode("latin-1"), "latin-1", "beeton.txt")
    assert beeton_recipes([text], ["beeton.txt"], chapters={"VI": "Soups"}) == BEETON_RECIPES


# --- fetching, verifying, caching -----------------------------------------------------------


def check_prepared(name: str, text: str) -> None:
    """Invariants of each prepared corpus."""
    assert text.endswith("\n") and not text.endswith("\n\n")
    assert "\r" not in text and "\ufeff" not in text
    assert unicodedata.is_normalized("NFC", text)
    lines = text.split("\n")[:-1]
    if name in ("fantasy", "recipes"):
        assert not [line for line in lines if any(marker in line for marker in BOILERPLATE_MARKERS)]
        assert "\n\n\n\n" not in text
    if name == "fantasy":
        assert text.isascii() and len(text) > 2_500_000
        for title in ("ALICE'S ADVENTURES IN WONDERLAND", "FIVE CHILDREN AND IT", "The Enchanted Castle"):
            assert f"\n\n\n{title}\n" in text or text.startswith(f"{title}\n")
    elif name == "recipes":
        recipes = text.split("\n\n\n")
        assert len(recipes) >= 1026
        categories = set(corpora.info("recipes").parameters["chapters"].values())
        for recipe in recipes:
            head = recipe.split("\n")
            assert head[0].startswith("Title: ") and head[2].startswith("Yield: ") and head[3] == ""
            assert head[1].removeprefix("Categories: ") in categories
    elif name == "paint-names":
        assert len(lines) == 31_914 and lines[0] == "100 Mph 201 63 56"
        for line in lines:
            *words, red, green, blue = line.split(" ")
            assert words and all(0 <= int(v) <= 255 for v in (red, green, blue))
    elif name == "shakespeare":
        assert hashlib.sha256(text.encode()).hexdigest() == corpora.info(name).files[0].sha256


@needs_mirror
@pytest.mark.parametrize("name", NAMES)
def test_corpus_get_prepares_once_and_reuses_the_cache(name: str, run_cli, monkeypatch, isolated_cache: Path):
    code, out, err = run_cli("corpus", "get", name, "--mirror", MIRROR)
    assert code == 0, err
    path = Path(out.removesuffix("\n"))
    assert out == f"{path}\n" and path == isolated_cache / "corpora" / f"{name}.txt"
    text = path.read_text(encoding="utf-8")
    check_prepared(name, text)
    stamp = path.stat().st_mtime_ns

    def no_fetch(*args, **kwargs):
        raise AssertionError("a cached corpus was fetched again")

    monkeypatch.setattr(corpora, "fetch", no_fetch)
    monkeypatch.setenv("CHARNN_CORPUS_MIRROR", str(MIRROR))
    code, again, err = run_cli("corpus", "get", name)
    assert (code, again, err) == (0, out, "")
    assert path.stat().st_mtime_ns == stamp


@needs_shared
@pytest.mark.parametrize(
    "name, shared",
    [("fantasy", "fantasy-prose.txt"), ("paint-names", "paint-names.txt"), ("shakespeare", "tinyshakespeare.txt")],
)
def test_prepared_text_equals_the_shared_cleaned_file(name: str, shared: str):
    path = corpora.get(name, mirror=MIRROR)
    assert path.read_bytes() == (SHARED_CORPORA / shared).read_bytes()


@needs_shared
def test_recipes_hold_nearly_every_ingredient_list_of_the_shared_cleaned_file():
    ours = corpora.get("recipes", mirror=MIRROR).read_text(encoding="utf-8").split("\n\n\n")
    shared = (SHARED_CORPORA / "recipes-beeton.txt").read_text(encoding="utf-8").split("\n\n\n")
    ingredients = {recipe.split("\n\n")[1] for recipe in ours}
    found = sum(recipe.split("\n\n")[1] in ingredients for recipe in shared)
    assert found >= 0.99 * len(shared)


@needs_mirror
def test_a_damaged_prepared_file_is_rebuilt(run_cli):
    path = corpora.get("shakespeare", mirror=MIRROR)
    good = path.read_bytes()
    path.write_bytes(good[:1000] + b"X" + good[1001:])
    code, out, err = run_cli("corpus", "get", "shakespeare", "--mirror", MIRROR)
    assert code == 0 and out == f"{path}\n" and "damaged" in err
    assert path.read_bytes() == good


@needs_mirror
def test_a_corrupted_upstream_file_is_an_error_that_keeps_nothing(tmp_path: Path, run_cli, isolated_cache: Path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    data = bytearray((MIRROR / "colornames.csv").read_bytes())
    data[1000] ^= 0x01
    (mirror / "colornames.csv").write_bytes(bytes(data))
    code, out, err = run_cli("corpus", "get", "paint-names", "--mirror", mirror)
    assert code == 1 and out == ""
    error = err.strip().splitlines()[-1]
    assert error.startswith("error: checksum mismatch") and "colornames.csv" in error
    assert files_under(isolated_cache) == []
    assert files_under(mirror) == [mirror / "colornames.csv"]


def test_offline_without_mirror_names_the_url_and_the_mirror_option(monkeypatch, run_cli, isolated_cache: Path):
    def offline(request, timeout=None):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    code, out, err = run_cli("corpus", "get", "shakespeare")
    assert code == 1 and out == ""
    error = err.strip().splitlines()[-1]
    assert error.startswith("error: cannot download https://raw.githubusercontent.com/karpathy/char-rnn/")
    assert "name resolution" in error and "--mirror DIR" in error and "CHARNN_CORPUS_MIRROR" in error
    assert files_under(isolated_cache) == []


def test_an_unreachable_server_is_reported_without_a_traceback(monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", URLOPEN)  # the real one, towards a closed local port
    for proxy in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)  # so that nothing leaves this machine
    monkeypatch.setattr(corpora, "DOWNLOAD_TIMEOUT", 2.0)
    file = corpora.UpstreamFile("http://127.0.0.1:9/input.txt", "0" * 64, "utf-8")
    with pytest.raises(CorpusFetchError, match=r"cannot download http://127\.0\.0\.1:9/input\.txt .*--mirror"):
        corpora.fetch(file)


@needs_mirror
def test_a_download_is_verified_cached_and_reused(monkeypatch, isolated_cache: Path):
    upstream = (MIRROR / "input.txt").read_bytes()
    asked = serve(monkeypatch, upstream)
    path = corpora.get("shakespeare")
    assert path.read_bytes() == upstream and asked == [corpora.info("shakespeare").files[0].url]
    downloads = isolated_cache / "corpora" / "upstream"
    assert files_under(downloads) == [downloads / "input.txt"]
    path.unlink()  # preparing again needs no network: the verified download is kept
    serve(monkeypatch, b"", fail=AssertionError("fetched twice"))
    assert corpora.get("shakespeare").read_bytes() == upstream


@needs_mirror
@pytest.mark.parametrize("failure", ["corrupted", "cut off"])
def test_a_bad_download_leaves_no_partial_or_temporary_file(failure: str, monkeypatch, isolated_cache: Path):
    upstream = bytearray((MIRROR / "input.txt").read_bytes())
    if failure == "corrupted":
        upstream[-2] ^= 0x01
        serve(monkeypatch, bytes(upstream))
        expected = "checksum mismatch"
    else:
        serve(monkeypatch, bytes(upstream), fail=TimeoutError("timed out"))
        expected = r"cannot download .*\(timed out\).*--mirror"
    with pytest.raises(CorpusFetchError, match=expected):
        corpora.get("shakespeare")
    assert files_under(isolated_cache) == []


def test_a_missing_mirror_file_or_folder_is_explained(tmp_path: Path):
    with pytest.raises(CorpusFetchError, match="input.txt is not in the mirror folder"):
        corpora.get("shakespeare", mirror=tmp_path)
    with pytest.raises(CorpusFetchError, match="does not exist"):
        corpora.get("shakespeare", mirror=tmp_path / "nowhere")
    (tmp_path / "input.txt").write_text("not the corpus")
    with pytest.raises(CorpusFetchError, match="is a file, not a folder; pass the folder that holds it"):
        corpora.get("shakespeare", mirror=tmp_path / "input.txt")


# --- the command line ---------------------------------------------------------------------


def test_corpus_list_and_info(run_cli):
    code, out, err = run_cli("corpus", "list")
    assert code == 0 and err == ""
    assert [line.split()[0] for line in out.splitlines()[1:]] == list(NAMES)
    code, out, _ = run_cli("corpus", "list", "--json")
    rows = json.loads(out)
    assert code == 0 and [row["name"] for row in rows] == list(NAMES)
    assert all(row["kind"] == row["style"] for row in rows) and rows[NAMES.index("paint-names")]["kind"] == "names"
    code, out, _ = run_cli("corpus", "info", "paint-names")
    assert code == 0 and "colornames.csv" in out and "MIT License" in out and "David Aerne" in out
    code, out, _ = run_cli("corpus", "info", "recipes", "--json")
    info = json.loads(out)
    assert code == 0 and info["files"][0]["encoding"] == "latin-1" and info["path"] is None


@pytest.mark.parametrize("command", ["info", "get"])
def test_an_unknown_corpus_is_a_usage_error_listing_the_names(command: str, run_cli):
    code, out, err = run_cli("corpus", command, "harry-potter")
    assert code == 2 and out == ""
    assert err.strip() == (
        "error: unknown corpus 'harry-potter'; choose one of: fantasy, recipes, paint-names, shakespeare "
        "(see `charnn corpus list`)"
    )


def test_corpus_commands_do_not_import_torch_or_numpy(tmp_path: Path):
    script = (
        "import sys\n"
        "from charnn.cli import main\n"
        "for args in (['corpus', '--help'], ['corpus', 'list'], ['corpus', 'info', 'fantasy']):\n"
        "    assert main(args) == 0, args\n"
        "assert 'torch' not in sys.modules and 'numpy' not in sys.modules\n"
    )
    env = {**os.environ, "CHARNN_CACHE": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr


# A `charnn corpus get` that SIGKILLs itself at a chosen moment, as a power cut would.
KILLED_GET = """
import os, signal, sys
from charnn.corpora import catalogue as corpora

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if sys.argv[1] == "mid-transform":
    corpora.TRANSFORMS = {name: die for name in corpora.TRANSFORMS}
else:  # mid-write: the temporary holds the text, not yet renamed
    real_replace = os.replace
    os.replace = lambda src, dst: die() if str(dst).endswith(".txt") else real_replace(src, dst)
corpora.get("paint-names", mirror=sys.argv[2])
"""


@needs_mirror
@pytest.mark.parametrize("moment", ["mid-transform", "mid-write"])
def test_a_killed_get_leaves_nothing_half_written_and_the_next_get_succeeds(moment: str, isolated_cache: Path):
    clean = corpora.get("paint-names", mirror=MIRROR).read_bytes()
    for path in files_under(isolated_cache):
        path.unlink()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    killed = subprocess.run([sys.executable, "-c", KILLED_GET, moment, str(MIRROR)], env=env)
    assert killed.returncode == -9
    left = [p.name for p in files_under(isolated_cache)]
    assert "paint-names.txt" not in left and "paint-names.json" not in left
    assert (moment == "mid-write") == any(name.endswith(".tmp") for name in left)  # what the kill left behind
    assert corpora.get("paint-names", mirror=MIRROR).read_bytes() == clean
    names = sorted(p.name for p in files_under(isolated_cache))
    assert names == ["paint-names.json", "paint-names.txt"]  # nothing stale survives the next get
