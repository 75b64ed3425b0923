"""Today's behaviour, pinned: every command in tests/data/pinned/manifest.json prints the same bytes.

tests/make_pinned.py made the runs in tests/data/pinned/runs and recorded, with the code of
the day, what each command printed on stdout (and, for a command that trains or resumes, the
fingerprint of each tensor of the weights and resume state it left, and its metrics and settings
less times). Here each command runs again, in process, through `python -m charnn`'s own entry
(runpy: nothing of charnn is imported by name, so modules can move), in a scratch copy of the
runs it needs, and must print the same bytes, but for the last bits of floating-point numbers,
which other CPUs round differently (tests.make_pinned.same). A failure means the output
changed: if on purpose, regenerate the fixtures with `python tests/make_pinned.py` (or
`--expected-only`, to keep the runs) and review the diff of tests/data/pinned/expected.
"""

from __future__ import annotations

import io
import json
import os
import runpy
import sys

import pytest

from tests.make_pinned import PINNED, observe, same, stage

MANIFEST = json.loads((PINNED / "manifest.json").read_text(encoding="utf-8"))["cases"]


def charnn(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """`python -m charnn ARGV` in this process; returns its exit code."""
    monkeypatch.setattr(sys, "argv", ["charnn", *argv])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b""), encoding="utf-8"))
    try:
        runpy.run_module("charnn", run_name="__main__")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


@pytest.mark.parametrize("entry", MANIFEST, ids=[entry["id"] for entry in MANIFEST])
def test_pinned(entry, tmp_path, monkeypatch, capsysbinary):
    stage(entry, tmp_path)
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("CHARNN_")]:
        monkeypatch.delenv(name)
    for name, value in {"OMP_NUM_THREADS": "1", "COLUMNS": "100", "LINES": "40", "TERM": "dumb"}.items():
        monkeypatch.setenv(name, value)

    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the fixtures were made on one thread; more may round differently
    try:
        code = charnn(entry["argv"], monkeypatch)
    finally:
        torch.set_num_threads(threads)
    out, err = capsysbinary.readouterr()
    assert code == 0, err.decode("utf-8", "replace")

    expected = (PINNED / entry["expected"]).read_bytes()
    got = observe(entry, tmp_path, out)
    if not same(got, expected):
        assert got.decode("utf-8", "replace") == expected.decode("utf-8", "replace")  # a readable diff
        assert got == expected


@pytest.mark.parametrize(
    ("got", "expected", "verdict"),
    [
        (b"loss 0.6196455001831055 step 60\n", b"loss 0.6196455001831055 step 60\n", True),
        # AMD EPYC against Intel Xeon:
        (b"loss 0.6196455001831055 step 60\n", b"loss 0.6196454524993896 step 60\n", True),
        (b"abs 345.254994954681  sq 1.5e-05", b"abs 345.2549949546 sq 1.5e-05", False),  # a space is not a number
        (b"abs 345.254994954681  sq 1.50001e-05", b"abs 345.254994954681  sq 1.5e-05", True),
        (b"bits 2.35", b"bits 2.36", True),  # one unit of the last printed digit: a rounding flip
        (b"bits 2.35", b"bits 2.37", False),
        (b"loss 0.6196", b"loss 0.6203", False),  # 1e-3 apart: a change of behaviour
        (b"step 60/80", b"step 61/80", False),  # integers match exactly
        (b"seed 7 loss 0.5", b"seed 7 loss 0.5 more", False),
        (b"predicted: sad 0.51", b"predicted: happy 0.51", False),
    ],
)
def test_replays_match_to_the_last_bits_and_no_further(got, expected, verdict):
    assert same(got, expected) is verdict
