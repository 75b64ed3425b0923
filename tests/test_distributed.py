"""Two CPU processes under torchrun train the model one process trains with the same global batch."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import ROOT
from tests.run_kinds import KINDS

SETTINGS = [
    # No dropout: each rank draws its own masks, so only a dropout-free run can match one process.
    *("--dropout", "0", "--steps", "20", "--eval-every", "10", "--seq-len", "32", "--batch-size", "4"),
    *("--hidden", "32", "--embed", "16", "--precision", "fp32", "--device", "cpu", "--seed", "5"),
]


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_two_processes_match_one(tmp_path, kind):
    """Every kind of run: stream, records in columns, two styles whose rows fall one style to a
    process, and classifiers and taggers, whose ranks hold different numbers of targets."""

    def command(out: str) -> list[str]:
        args = kind.command(tmp_path, tmp_path / out)
        args[args.index("--dropout") + 1] = "0"  # each rank draws its own masks: only no dropout matches
        return args + (["--token-dropout", "0"] if args[0] in ("classify", "tag") else [])

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        [sys.executable, "-m", "charnn", *command("one")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert single.returncode == 0, single.stderr
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    double = subprocess.run(
        [*launcher, "-m", "charnn", *command("two")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert double.returncode == 0, double.stderr
    assert double.stdout.strip() == str(tmp_path / "two")  # rank 0 alone reports
    assert double.stderr.count("; model saved in") == 1
    for name in ("model.safetensors", "resume.safetensors"):
        one, two = load_file(tmp_path / "one" / name), load_file(tmp_path / "two" / name)
        assert one.keys() == two.keys()
        for key in one:
            assert two[key].dtype == one[key].dtype and two[key].shape == one[key].shape, f"{name} {key}"
            if not one[key].is_floating_point():  # the RNG states, integer counters: exactly
                assert torch.equal(two[key], one[key]), f"{name} {key}"
            elif "attention.bias" in key:
                # Not bit for bit (docs/gpus.md): the ranks' gradients are summed in another order,
                # which moves weights by about 1e-7. Attention pooling's bias shifts every score
                # alike, which softmax ignores: its gradient is that rounding noise, which AdamW
                # scales up to full steps (about 4e-4 here). It changes no prediction.
                torch.testing.assert_close(two[key], one[key], rtol=0, atol=1e-2, msg=f"{name} {key}")
            else:
                torch.testing.assert_close(two[key], one[key], rtol=1e-5, atol=1e-6, msg=f"{name} {key}")


def test_batch_must_split_over_the_processes(tmp_path, small_text):
    corpus = tmp_path / "t.txt"
    corpus.write_text(small_text)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    args = [arg if arg != "4" else "5" for arg in SETTINGS]
    result = subprocess.run(
        [*launcher, "-m", "charnn", "train", corpus, "--out", tmp_path / "r", *args],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "--batch-size 5 does not split evenly over 2 processes; use a multiple of 2" in result.stderr
    assert not (tmp_path / "r").exists()


def _worker(launcher: subprocess.Popen, rank: int) -> int:
    """The pid of torchrun's worker of ``rank`` (Linux /proc)."""
    children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
    for pid in children:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environ:
            return int(pid)
    raise AssertionError(f"no worker of rank {rank} among {children}")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds torchrun's workers through /proc")
def test_a_dead_process_under_torchrun_resumes_to_the_uninterrupted_run(tmp_path, small_text):
    corpus = tmp_path / "t.txt"
    corpus.write_text(small_text)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    settings = [*SETTINGS, "--dropout", "0.1", "--steps", "40"]  # the later flags win; dropout: ranks' own RNG

    def command(folder, *extra):
        return [*launcher, "-m", "charnn", "train", corpus, "--out", folder, *settings, *extra]

    reference = subprocess.run(command(tmp_path / "ref"), env=env, capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr
    folder = tmp_path / "run"
    killed = subprocess.Popen(command(folder), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while '"step": 20' not in _text(folder / "metrics.jsonl") and time.time() < deadline:
        time.sleep(0.02)
    os.kill(_worker(killed, 1), signal.SIGKILL)  # one process dies; torchrun ends the other
    assert killed.wait(timeout=120) != 0
    again = subprocess.run(command(folder, "--resume", folder), env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stderr
    for name in ("model.safetensors", "resume.safetensors"):
        one, two = load_file(tmp_path / "ref" / name), load_file(folder / name)
        assert one.keys() == two.keys()
        assert all(torch.equal(one[k], two[k]) for k in one), f"{name} differs from the uninterrupted run"


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
