"""SIGTERM stops training as Ctrl-C (SIGINT) does: exit 130, a resumable run, "continue with" on stderr."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from charnn.runs.checkpoint import RESUME_FILE, check_run_folder
from tests.conftest import ROOT
from tests.run_kinds import KINDS


def _logged_steps(folder) -> list[int]:
    try:
        lines = (folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    steps = []
    for line in lines:
        try:
            steps.append(json.loads(line).get("step", 0))
        except ValueError:  # being written
            pass
    return steps


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_training_with_a_resumable_run(tmp_path, signum):
    from charnn.tasks import resume

    folder = tmp_path / "run"
    command = [*KINDS[0].command(tmp_path, folder), "--steps", "2000", "--eval-every", "500"]  # later flags win
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "charnn", *command], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 120
    while max(_logged_steps(folder), default=0) < 20:  # training, before its first checkpoint
        assert process.poll() is None and time.time() < deadline, "the run ended or never started"
        time.sleep(0.01)
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    stopped_at = json.loads((folder / "config.json").read_text())["results"]["steps"]
    assert 20 <= stopped_at < 2000
    assert f"stopped at step {stopped_at}; continue with: charnn train --resume {folder}" in err
    assert "Traceback" not in err
    assert out.strip() == str(folder)
    check_run_folder(folder, for_resume=True)  # a resume state at the step it stopped
    told = subprocess.run(
        [sys.executable, "-m", "charnn", "info", str(folder)], env=env, capture_output=True, text=True
    )
    finished = [line for line in told.stdout.splitlines() if line.startswith("finished")]
    assert finished == [
        f"finished         no: stopped at step {stopped_at:,}; continue with: charnn train --resume {folder}"
    ]
    assert (folder / RESUME_FILE).is_file()
    events = []
    finished = resume(folder, steps=stopped_at + 10, on_event=events.append)
    assert [e.resumed_from for e in events if type(e).__name__ == "Started"] == [stopped_at]  # nothing lost
    assert finished.reason == "budget" and finished.steps == stopped_at + 10


@pytest.mark.parametrize("gap", [0.05, 0.4])
def test_ctrl_c_twice_stops_at_once_without_a_traceback(tmp_path, gap):
    """The second Ctrl-C stops at once (no evaluation first), and one that lands as the run ends finds the
    exit uninterruptible: it showed a traceback from torch's exit hooks, or killed the process by the signal."""
    folder = tmp_path / "run"
    command = [*KINDS[0].command(tmp_path, folder), "--steps", "2000", "--eval-every", "500"]
    process = subprocess.Popen(
        [sys.executable, "-m", "charnn", *command],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 120
    while max(_logged_steps(folder), default=0) < 20:
        assert process.poll() is None and time.time() < deadline, "the run ended or never started"
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    time.sleep(gap)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    # the second may land in the last step, in the evaluation that saves a first model, or in the exit: it stops
    # there; what was saved before stays a run (the run folder is switched in before the first step)
    assert (folder / "config.json").is_file()


def _catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (its SigCgt mask in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


@pytest.mark.parametrize("library", ["swallows it", "turns it into its own error"])
def test_an_interrupt_inside_a_library_before_training_still_stops(library, capsys):
    """A Ctrl-C before training raises KeyboardInterrupt in whatever runs: torch's imports once turned it into a
    RuntimeError (a traceback, exit 1), and code that swallowed it trained the whole budget (exit 0)."""
    from charnn.cli.console import PipeGuard
    from charnn.cli.progress import _run_training

    seen = []

    def start(on_event, stop):  # noqa: ANN001, ANN202
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt as error:
            if library == "turns it into its own error":
                raise RuntimeError("Error calling __set_name__") from error
        seen.append(stop.is_set())  # what the first step reads: it stops there, resumable
        raise ValueError("the run's setup failed for a reason of its own")

    with pytest.raises(KeyboardInterrupt):
        _run_training(start, "charnn train", None, PipeGuard())
    assert seen == ([True] if library == "swallows it" else [])
    assert "stopped before training began" in capsys.readouterr().err


def test_a_signal_before_training_begins_stops_at_once(tmp_path):
    corpus = tmp_path / "aaa.txt"
    corpus.write_text(("a" * 40 + "\n") * 50 + "hello world b\n" * 100)
    folder = tmp_path / "run"
    command = [sys.executable, "-m", "charnn", "train", str(corpus), "--records", "(a+)+b", "--out", str(folder)]
    process = subprocess.Popen(
        command, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not _catches(process.pid, signal.SIGTERM):  # training's handler is in: the corpus is being read
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.05)
        time.sleep(0.5)  # splitting it by a regex that backtracks for ages
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    # before: "stopping after this step", and it went on spinning: no step was coming
    assert process.returncode == 130 and time.monotonic() - started < 10, err
    assert "stopped before training began" in err and "Traceback" not in err
    assert not folder.exists() and [p.name for p in tmp_path.iterdir()] == ["aaa.txt"]
