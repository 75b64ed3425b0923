"""Exact resume, atomic checkpoints, and the NaN/Inf guard."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import charnn.loop as train_module
from charnn.checkpoint import MODEL_FILE, RESUME_FILE
from charnn.data import Corpus
from charnn.errors import CheckpointError, ConfigError, TrainingDiverged
from charnn.files import atomic_write_bytes
from charnn.train import resume, train
from tests.conftest import CORPORA, ROOT, TINY_MODEL, tiny_train_config

MODEL = {**TINY_MODEL, "dropout": 0.1}  # dropout makes the RNG state matter


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in charnn catches it."""


def corpus(text):
    return Corpus(text=text, name="t", sources=("t.txt",))


def config(**overrides):
    return tiny_train_config(**{"steps": 30, "eval_every": 10, "log_every": 5, **overrides})


def final_weights(folder):
    last = {k: v for k, v in load_file(folder / RESUME_FILE).items() if k.startswith("model.")}
    return last, load_file(folder / MODEL_FILE)


def assert_same_weights(a, b):
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        assert all(torch.equal(x[k], y[k]) for k in x), "weights differ"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, small_text):
    folder = tmp_path_factory.mktemp("ref") / "run"
    train(corpus(small_text), folder, MODEL, config())
    return folder


def test_resume_state_is_one_safetensors_file(reference):
    names = sorted(p.name for p in reference.iterdir())
    assert RESUME_FILE in names and not any(n.endswith((".pt", ".pkl", ".pth")) for n in names)
    tensors = load_file(reference / RESUME_FILE)
    assert any(k.startswith("optim.exp_avg.") for k in tensors)
    assert any(k.startswith("carry.") for k in tensors)
    assert tensors["rng.cpu"].dtype == torch.uint8


@pytest.mark.parametrize("moment", ["mid-step", "mid-save", "mid-eval"])
def test_killed_and_resumed_run_matches_the_uninterrupted_one(moment, reference, small_text, tmp_path, monkeypatch):
    folder = tmp_path / "run"
    calls = {"n": 0}
    if moment == "mid-step":
        real = train_module.clip_gradients

        def kill(*args):
            calls["n"] += 1
            if calls["n"] == 17:
                raise Killed
            return real(*args)

        monkeypatch.setattr(train_module, "clip_gradients", kill)
    elif moment == "mid-save":
        real_replace = os.replace

        def kill(src, dst):
            if str(dst).endswith(RESUME_FILE):
                calls["n"] += 1
                if calls["n"] == 3:  # the save after step 20's evaluation
                    raise Killed
            return real_replace(src, dst)

        monkeypatch.setattr(os, "replace", kill)
    else:
        real_nll = train_module.total_nll

        def kill(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 2:
                raise Killed
            return real_nll(*args, **kwargs)

        monkeypatch.setattr(train_module, "total_nll", kill)
    with pytest.raises(Killed):
        train(corpus(small_text), folder, MODEL, config())
    monkeypatch.undo()
    resume(folder)
    assert_same_weights(final_weights(folder), final_weights(reference))
    ref_lines = (reference / "metrics.jsonl").read_text().splitlines()
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(ref_lines)  # the log holds each step once
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_stop_request_saves_and_resume_continues_exactly(reference, small_text, tmp_path):
    import threading

    stop = threading.Event()

    def stop_at_step_13(event):
        if getattr(event, "step", 0) >= 13:
            stop.set()

    folder = tmp_path / "run"
    first = train(corpus(small_text), folder, MODEL, config(log_every=1), on_event=stop_at_step_13, stop=stop)
    assert first.reason == "stopped" and first.steps == 13
    resume(folder)
    assert_same_weights(final_weights(folder), final_weights(reference))


def test_sigkill_at_a_random_moment_then_resume(reference, small_text, tmp_path):
    (tmp_path / "t.txt").write_text(small_text)
    folder = tmp_path / "run"
    args = ["train", str(tmp_path / "t.txt"), "--out", str(folder), *_cli_settings()]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "charnn", *args], env=env, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and '"step": 20' not in _read(folder / "metrics.jsonl"):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = subprocess.run([sys.executable, "-m", "charnn", "train", "--resume", str(folder)], env=env)
    assert done.returncode == 0
    assert_same_weights(final_weights(folder), final_weights(reference))


def _cli_settings():
    c = config()
    m = MODEL
    return [
        *("--steps", str(c.steps), "--eval-every", str(c.eval_every), "--seq-len", str(c.seq_len)),
        *("--batch-size", str(c.batch_size), "--seed", str(c.seed), "--precision", c.precision),
        *("--hidden", str(m["hidden"]), "--embed", str(m["embed"]), "--dropout", str(m["dropout"])),
        *("--device", "cpu"),
    ]


def _read(path):
    try:
        return path.read_text()
    except OSError:
        return ""


def test_resume_refuses_another_corpus(reference, tmp_path):
    with pytest.raises(ConfigError, match="corpus differs"):
        resume(reference, corpus=corpus("some other text " * 100))


def test_finished_run_is_complete_unless_the_budget_grows(reference, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(reference, copy)
    before = (copy / "resume.safetensors").read_bytes()
    assert resume(copy).reason == "complete"
    assert (copy / "resume.safetensors").read_bytes() == before
    result = resume(copy, steps=35)
    assert result.steps == 35


def poison_norms(monkeypatch, bad, value=float("nan")):
    """Make the gradient norm of the steps numbered by ``bad(call)`` non-finite, as training sees it."""
    real = train_module.clip_gradients
    calls = {"n": 0}

    def poisoned(*args):
        calls["n"] += 1
        norm = real(*args)
        return torch.tensor(value) if bad(calls["n"]) else norm

    monkeypatch.setattr(train_module, "clip_gradients", poisoned)


def test_nan_steps_roll_back_lower_the_rate_and_are_logged(small_text, tmp_path, monkeypatch):
    poison_norms(monkeypatch, lambda n: 13 <= n < 13 + train_module.MAX_BAD_STEPS)
    events = []
    result = train(corpus(small_text), tmp_path / "r", MODEL, config(), on_event=events.append)
    assert result.reason == "budget" and result.steps == 30
    rollbacks = [e for e in events if type(e).__name__ == "RolledBack"]
    assert len(rollbacks) == 1 and rollbacks[0].to_step == 10 and rollbacks[0].lr_scale == 0.5
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert any(r["event"] == "rollback" for r in records)
    weights = load_file(tmp_path / "r" / MODEL_FILE)
    assert all(torch.isfinite(t).all() for t in weights.values())


def test_hopeless_divergence_stops_with_the_last_good_checkpoint(small_text, tmp_path, monkeypatch):
    poison_norms(monkeypatch, lambda n: n > 12, float("inf"))
    with pytest.raises(TrainingDiverged, match="train again with a lower --lr"):
        train(corpus(small_text), tmp_path / "r", MODEL, config())
    good = load_file(tmp_path / "r" / RESUME_FILE)
    assert all(torch.isfinite(t).all() for k, t in good.items() if k.startswith("model."))


def test_full_disk_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"previous")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CheckpointError, match="No space left on device; the previous version of the file is intact"):
        atomic_write_bytes(target, b"new contents")
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_cli_resume_auto_continues_a_stopped_run(tmp_path, small_text):
    (tmp_path / "t.txt").write_text(small_text)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", "charnn", "train", str(tmp_path / "t.txt"), "--out", str(tmp_path / "r")]
    first = subprocess.run([*base, *_cli_settings(), "--steps", "10"], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    again = subprocess.run([*base, "--resume", "auto", "--steps", "20"], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stderr and "at step 10" in again.stderr
    assert json.loads((tmp_path / "r" / "config.json").read_text())["results"]["steps"] == 20
    other = tmp_path / "other.txt"
    other.write_text((CORPORA / "recipes.txt").read_text())
    clash = subprocess.run(
        [*base[:4], str(other), "--out", str(tmp_path / "r"), "--resume", "auto"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert clash.returncode == 2 and "corpus differs" in clash.stderr
