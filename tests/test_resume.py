"""Exact resume, atomic checkpoints, and the NaN/Inf guard."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import charnn.training.loop as train_module
from charnn.errors import CheckpointError, ConfigError, RunFolderError, TrainingDiverged
from charnn.events import Notice
from charnn.files import atomic_write_bytes
from charnn.runs import checkpoint
from charnn.runs import folder as runfolder
from charnn.runs.checkpoint import CONFIG_FILE, MODEL_FILE, RESUME_FILE, check_run_folder
from charnn.tasks import resume
from charnn.tasks.lm.prepare import train
from charnn.text.corpus import Corpus
from tests.conftest import CORPORA, ROOT, TINY_MODEL, tiny_train_config
from tests.run_kinds import KINDS, TEXT

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


# Where a kill can land, from before the run folder exists to the end. Each stands in for
# SIGKILL by raising Killed there. They hook the run-folder and loop code that every kind of
# run shares, so each kind in tests/run_kinds.py is killed at the same instants.
def _kill_at_call(monkeypatch, owner, name, at):
    real = getattr(owner, name)
    calls = {"n": 0}

    def kill(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at:
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, kill)


def _kill_at_rename(monkeypatch, at):
    """Kill at the ``at``-th rename of a folder (the switch of a new run into place)."""
    real = os.rename
    calls = {"n": 0}

    def kill(src, dst):
        if Path(src).is_dir():
            calls["n"] += 1
            if calls["n"] == at:
                raise Killed
        return real(src, dst)

    monkeypatch.setattr(os, "rename", kill)


def _kill_at_save(monkeypatch, at):
    real = os.replace
    calls = {"n": 0}

    def kill(src, dst):
        if str(dst).endswith(RESUME_FILE):
            calls["n"] += 1
            if calls["n"] == at:
                raise Killed
        return real(src, dst)

    monkeypatch.setattr(os, "replace", kill)


MOMENTS = {
    "before the folder exists": lambda mp: _kill_at_call(mp, runfolder, "check_target", 1),
    "while the data is written": lambda mp: _kill_at_call(mp, checkpoint, "write_config", 1),  # its last file
    "when the new run is complete": lambda mp: _kill_at_call(mp, runfolder, "_switch", 1),
    "between the renames": lambda mp: _kill_at_rename(mp, 2),  # an --overwrite's second rename
    "before the first checkpoint": lambda mp: _kill_at_call(mp, train_module, "clip_gradients", 3),
    "mid-step": lambda mp: _kill_at_call(mp, train_module, "clip_gradients", 17),
    "mid-save": lambda mp: _kill_at_save(mp, 3),  # saving after step 20's evaluation
    "mid-eval": lambda mp: _kill_at_call(mp, train_module, "Evaluated", 2),  # scored, not yet saved
    "writing the results": lambda mp: _kill_at_call(mp, train_module.Loop, "_write_results", 1),
}
BEFORE_THE_RUN_EXISTS = ("before the folder exists", "while the data is written")


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Each kind's run, never interrupted."""
    made = {}
    for kind in KINDS:
        folder = tmp_path_factory.mktemp("ref") / "run"
        kind.start(folder)
        made[kind.name] = folder
    return made


def _leftovers(folder):
    """Anything but the run folder beside it, and any temporary inside it."""
    beside = [p.name for p in folder.parent.iterdir() if p != folder]
    inside = [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    return beside + inside


@pytest.mark.parametrize("kind", KINDS, ids=str)
@pytest.mark.parametrize("moment", [m for m in MOMENTS if m != "between the renames"])
def test_a_run_killed_at_any_moment_resumes_to_the_uninterrupted_one(kind, moment, references, tmp_path, monkeypatch):
    folder = tmp_path / "run"
    MOMENTS[moment](monkeypatch)
    with pytest.raises(Killed):
        kind.start(folder)
    monkeypatch.undo()
    events = []
    kind.start(folder, resume=True, on_event=events.append)
    reference = references[kind.name]
    assert_same_weights(final_weights(folder), final_weights(reference))
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len((reference / "metrics.jsonl").read_text().splitlines())  # each step logged once
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert (moment in BEFORE_THE_RUN_EXISTS) == any("starting it afresh" in n for n in notices)
    assert _leftovers(folder) == []


@pytest.mark.parametrize("kind", KINDS, ids=str)
@pytest.mark.parametrize(
    ("moment", "older"),
    [
        *((m, "settings") for m in BEFORE_THE_RUN_EXISTS),
        ("when the new run is complete", "settings"),
        ("between the renames", "settings"),
        ("mid-step", "settings"),
        ("while the data is written", "budget"),  # the older run differs in its budget alone
    ],
)
def test_a_killed_overwrite_leaves_one_whole_run_and_resumes_the_new_one(
    kind, moment, older, references, tmp_path, monkeypatch
):
    folder = tmp_path / "run"
    kind.start(folder, variant=older)
    older_files = {p.name: p.read_bytes() for p in folder.iterdir()}
    MOMENTS[moment](monkeypatch)
    with pytest.raises(Killed):
        kind.start(folder, overwrite=True)
    monkeypatch.undo()
    check_run_folder(folder, for_resume=True)  # opens; the next command finishes what the kill left
    now = {p.name: p.read_bytes() for p in folder.iterdir()}
    if moment in BEFORE_THE_RUN_EXISTS:
        assert now == older_files  # the older run, whole
    else:
        assert now[CONFIG_FILE] != older_files[CONFIG_FILE]  # the new one
        assert now[RESUME_FILE] != older_files[RESUME_FILE]
    kind.start(folder, overwrite=True, resume=True)
    assert_same_weights(final_weights(folder), final_weights(references[kind.name]))
    assert _leftovers(folder) == []


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


def charnn(*args, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "charnn", *map(str, args)], env=env, **kwargs)


def _wait_for(condition, seconds):
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.005)


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_two_early_sigkills_then_the_same_command_with_resume(kind, tmp_path):
    reference = tmp_path / "reference" / "run"
    assert charnn(*kind.command(tmp_path, reference), stderr=subprocess.DEVNULL).wait() == 0
    runs = tmp_path / "runs"
    folder = runs / "run"
    command = kind.command(tmp_path, folder)
    first = charnn(*command, stderr=subprocess.DEVNULL)
    _wait_for(lambda: runs.is_dir() and any(runs.iterdir()), 60)  # the run is being made
    _kill_and_check_it_landed(first, folder)
    second = charnn(*command, "--resume", folder, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: "training" in second.stderr.readline(), 60)  # set up, about to train
    _kill_and_check_it_landed(second, folder)
    done = charnn(*command, "--resume", folder, stderr=subprocess.PIPE, text=True)
    assert done.wait() == 0, done.stderr.read()
    assert_same_weights(final_weights(folder), final_weights(reference))
    assert _leftovers(folder) == []


SIGKILL_STEPS, SIGKILL_EVAL_EVERY = 400, 50
"""Long enough (about a second of training on a 2-core machine) for kills to land at random steps."""


def _logged_steps(folder):
    """The steps metrics.jsonl has logged so far (a line being written is skipped)."""
    steps = []
    for line in _text(folder / "metrics.jsonl").splitlines():
        try:
            steps.append(json.loads(line).get("step", 0))
        except ValueError:
            pass
    return steps


def _text(path):
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def _finished(folder):
    """Whether the run in ``folder`` has ended its training (its results are written)."""
    written = checkpoint.read_config(folder) or {}
    return "results" in written or '"event": "end"' in _text(folder / "metrics.jsonl")


def _kill_and_check_it_landed(process, folder):
    assert process.poll() is None, "the run ended before the kill"
    process.kill()
    assert process.wait(timeout=60) == -signal.SIGKILL
    assert not _finished(folder), "the kill landed after training had ended"


def test_sigkills_at_random_instants_then_resume_end_as_the_uninterrupted_run(tmp_path):
    """Real SIGKILLs (no finally block runs) at three seeded random steps of a CLI run, each
    followed by the same command with --resume; the last one ends with the uninterrupted run's
    weights, bit for bit (CPU, fp32)."""
    import random

    kind = KINDS[0]  # the plain language model
    budget = ["--steps", str(SIGKILL_STEPS), "--eval-every", str(SIGKILL_EVAL_EVERY)]  # later flags win
    reference = tmp_path / "reference"
    settings = {"steps": SIGKILL_STEPS, "eval_every": SIGKILL_EVAL_EVERY, "warmup_steps": 5}
    train(Corpus(text=TEXT, name="t", sources=("t.txt",)), reference, MODEL, config(**settings))
    folder = tmp_path / "runs" / "run"
    command = [*kind.command(tmp_path, folder), *budget]
    rng = random.Random(32)
    targets = sorted(rng.sample(range(10, SIGKILL_STEPS * 3 // 5, 10), 3))  # logged steps: every 10th
    for n, target in enumerate(targets):
        process = charnn(*command, *(("--resume", folder) if n else ()), stderr=subprocess.DEVNULL)
        _wait_for(lambda p=process, t=target: max(_logged_steps(folder), default=0) >= t or p.poll() is not None, 120)
        time.sleep(rng.uniform(0, 0.02))  # a few steps more: anywhere in a step, a save or an evaluation
        _kill_and_check_it_landed(process, folder)
    done = charnn(*command, "--resume", folder, stderr=subprocess.PIPE, text=True)
    assert done.wait(timeout=120) == 0, done.stderr.read()
    assert _finished(folder)
    assert_same_weights(final_weights(folder), final_weights(reference))
    assert _leftovers(folder) == []


def _cli_settings():
    c = config()
    m = MODEL
    return [
        *("--steps", str(c.steps), "--eval-every", str(c.eval_every), "--seq-len", str(c.seq_len)),
        *("--batch-size", str(c.batch_size), "--seed", str(c.seed), "--precision", c.precision),
        *("--hidden", str(m["hidden"]), "--embed", str(m["embed"]), "--dropout", str(m["dropout"])),
        *("--device", "cpu"),
    ]


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


def test_a_trained_run_without_its_resume_state_is_kept_not_started_afresh(reference, small_text, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(reference, copy)
    (copy / RESUME_FILE).unlink()
    model = (copy / MODEL_FILE).read_bytes()
    gone = "holds a trained run whose resume.safetensors is gone: it samples and predicts but cannot be continued"
    with pytest.raises(RunFolderError, match=gone):
        resume(copy)
    with pytest.raises(RunFolderError, match=gone):
        train(corpus(small_text), copy, MODEL, config(steps=2), resume=True)
    with pytest.raises(RunFolderError, match="already holds a trained run; pass --overwrite to replace it, or --out"):
        train(corpus(small_text), copy, MODEL, config(steps=2))
    assert (copy / MODEL_FILE).read_bytes() == model and not (copy / RESUME_FILE).exists()
    train(corpus(small_text), copy, MODEL, config(steps=2), overwrite=True)  # --overwrite may replace it
    assert (copy / RESUME_FILE).exists()


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
    assert "goes on with the settings it was started with" in again.stderr  # the defaults given differ
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
    fresh = subprocess.run(
        [*base[:4], str(other), "--out", str(tmp_path / "new"), "--resume", "auto", *_cli_settings()[:2]],
        env=env,
        capture_output=True,
        text=True,
    )
    assert fresh.returncode == 0, fresh.stderr
    assert f"{tmp_path / 'new'} holds no run to resume yet; starting it afresh" in fresh.stderr


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_a_run_being_trained_is_neither_replaced_nor_trained_twice(kind, references, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(references[kind.name], folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with runfolder.hold(folder):  # as a live trainer holds it
        with pytest.raises(RunFolderError, match="being trained by another charnn process"):
            kind.start(folder, overwrite=True)
        with pytest.raises(RunFolderError, match="being written by another charnn process"):
            resume(folder, steps=40)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_a_symbolic_link_as_the_run_folder_stays_a_link(kind, references, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    kind.start(link)
    assert link.is_symlink() and (target / CONFIG_FILE).is_file()
    kind.start(link, overwrite=True)
    assert link.is_symlink()
    assert_same_weights(final_weights(target), final_weights(references[kind.name]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "link"]


@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_resume_never_takes_a_users_folder_for_debris(kind, tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "tokenizer.py").write_text("print(1)")
    with pytest.raises(RunFolderError, match="holds no charnn run"):
        kind.start(folder, resume=True)
    with pytest.raises(RunFolderError, match="holds no charnn run"):
        kind.start(folder, resume=True, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "tokenizer.py"]
    assert [p.name for p in tmp_path.iterdir()] == ["project"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_a_run_started_on_a_gpu_goes_on_on_the_cpu_when_asked(kind, references, tmp_path, run_cli):
    folder = tmp_path / "run"
    shutil.copytree(references[kind.name], folder)
    config = json.loads((folder / CONFIG_FILE).read_text())
    config["training"]["device"] = "cuda"  # as `--device cuda` on a GPU machine leaves it
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    command = kind.command(tmp_path, folder)
    verb = command[: command.index("train") + 1]  # train, classify train or tag train
    steps = str(config["results"]["steps"] + 5)
    code, _, err = run_cli(*verb, "--resume", folder, "--steps", steps)
    assert code == 2
    assert f"{folder} was trained with --device cuda, which this machine does not have; pass --device cpu" in err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    code, _, err = run_cli(*verb, "--resume", folder, "--steps", steps, "--device", "cpu")
    assert code == 0, err
    assert json.loads((folder / CONFIG_FILE).read_text())["results"]["steps"] == int(steps)
