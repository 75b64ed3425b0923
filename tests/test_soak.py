"""Slow: a run killed with SIGKILL twenty times at random moments ends as if never interrupted."""

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

SETTINGS = [
    *("--steps", "5000", "--eval-every", "5", "--seq-len", "32", "--batch-size", "4", "--seed", "11"),
    *("--hidden", "48", "--embed", "16", "--dropout", "0.1", "--precision", "fp32", "--device", "cpu"),
]


def charnn(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "charnn", *args], env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )


def weights(folder):
    resume = {k: v for k, v in load_file(folder / "resume.safetensors").items() if k.startswith("model.")}
    return resume, load_file(folder / "model.safetensors")


def test_twenty_random_kills(tmp_path, fantasy_text):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(fantasy_text[:8000])
    reference, soaked = tmp_path / "reference", tmp_path / "runs" / "soaked"
    assert charnn("train", corpus, "--out", reference, *SETTINGS).wait() == 0

    rng = random.Random(2026)
    command = ["train", corpus, "--out", soaked, *SETTINGS]
    kills = 0
    proc = charnn(*command)
    while kills < 20:
        # From the first instant on: while Python starts, while the corpus is read and
        # encoded, before the first checkpoint, during saves, and while training.
        time.sleep(rng.uniform(0.0, 3.0))
        if proc.poll() is not None:
            break  # finished before this kill
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        proc = charnn(*command, "--resume", soaked)  # the same command, every time
    assert proc.wait() == 0
    print(f"survived {kills} SIGKILLs")
    assert kills == 20
    for a, b in zip(weights(soaked), weights(reference)):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert [p.name for p in soaked.parent.iterdir()] == ["soaked"]
    assert not [p.name for p in soaked.iterdir() if p.name.endswith(".tmp")]
