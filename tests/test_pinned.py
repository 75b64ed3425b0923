"""Today's behaviour, pinned: every command in tests/data/pinned/manifest.json prints the same bytes.

tests/make_pinned.py made the runs in tests/data/pinned/runs and recorded, with the code of
the day, what each command printed on stdout (and, for a command that trains or resumes, the
sha256 of the weights it left, of its resume state's tensors, and its metrics and settings less
times). Here each command runs again,
in process, through `python -m charnn`'s own entry (runpy: nothing of charnn is imported by
name, so modules can move), in a scratch copy of the runs it needs, and must print the same
bytes. A failure means the output changed: if on purpose, regenerate the fixtures with
`python tests/make_pinned.py` and review the diff of tests/data/pinned/expected.
"""

from __future__ import annotations

import io
import json
import os
import runpy
import sys

import pytest

from tests.make_pinned import PINNED, observe, stage

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
    assert got.decode("utf-8", "replace") == expected.decode("utf-8", "replace")  # a readable diff first
    assert got == expected
