import json
import os
import shutil

import pytest
import torch

from charnn.errors import CheckpointError, RunFolderError
from charnn.files import atomic_write_text
from charnn.runs.checkpoint import CONFIG_FILE, MODEL_FILE, save_model
from charnn.runs.folder import check_target
from charnn.tasks import find_default_run, load_run


def test_save_load_gives_bit_identical_logits(trained_run, tmp_path):
    run = load_run(trained_run)
    tokens = torch.from_numpy(run.tokenizer.encode("Once upon a time").astype("int64"))[None]
    before, _ = run.model(tokens)
    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    save_model(copy, run.model)
    after, _ = load_run(copy).model(tokens)
    assert torch.equal(before, after)


def test_run_folder_holds_no_pickle(trained_run):
    names = {p.name for p in trained_run.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.jsonl", "validation.txt"} <= names
    assert not any(name.endswith((".pt", ".pth", ".pkl", ".bin")) for name in names)
    config = json.loads((trained_run / CONFIG_FILE).read_text())
    assert config["format_version"] == 2 and config["task"] == {"kind": "lm", "reverse": False}
    assert config["model"]["cell"] == "lstm"


@pytest.mark.parametrize("missing", [MODEL_FILE, "tokenizer.json", CONFIG_FILE])
def test_missing_file_is_named(trained_run, tmp_path, missing):
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    (copy / missing).unlink()
    with pytest.raises(CheckpointError, match=missing):
        load_run(copy)


@pytest.mark.parametrize("name", [MODEL_FILE, "tokenizer.json", "resume.safetensors"])
def test_a_folder_where_a_run_file_should_be_is_damage_not_an_unfinished_run(trained_run, tmp_path, name):
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    (copy / name).unlink(missing_ok=True)
    (copy / name).mkdir()
    with pytest.raises(CheckpointError, match=f"run/{name} is not a file; the run is damaged"):
        load_run(copy)


def test_newer_format_is_refused(trained_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    config = json.loads((copy / CONFIG_FILE).read_text())
    config["format_version"] = 99
    (copy / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="newer charnn"):
        load_run(copy)


def test_shape_mismatch_is_refused(trained_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    config = json.loads((copy / CONFIG_FILE).read_text())
    config["model"]["hidden"] = 48
    (copy / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="needs"):
        load_run(copy)


def test_garbage_weights_are_refused(trained_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    (copy / MODEL_FILE).write_bytes(b"\x80\x04not safetensors")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_run(copy)


def test_missing_folder_says_how_to_make_one(tmp_path):
    with pytest.raises(CheckpointError, match="charnn train"):
        load_run(tmp_path / "nothing")


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "file.json"
    target.write_text("old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["file.json"]
    assert (target.stat().st_mode & 0o777) == (0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_new_run_refuses_to_clobber(tmp_path, trained_run):
    user_folder = tmp_path / "mine"
    user_folder.mkdir()
    (user_folder / "notes.txt").write_text("precious")
    with pytest.raises(RunFolderError, match="holds no charnn run"):
        check_target(user_folder, overwrite=True)
    assert (user_folder / "notes.txt").read_text() == "precious"

    run_copy = tmp_path / "run"
    shutil.copytree(trained_run, run_copy)
    with pytest.raises(RunFolderError, match="--overwrite"):
        check_target(run_copy, overwrite=False)
    assert check_target(run_copy, overwrite=True) == "run"
    (run_copy / "my-notes.txt").write_text("keep me")
    with pytest.raises(RunFolderError, match=r"did not write \(my-notes.txt\); move them out"):
        check_target(run_copy, overwrite=True)


def test_default_run_is_env_then_newest(tmp_path, monkeypatch, trained_run):
    monkeypatch.delenv("CHARNN_MODEL", raising=False)
    runs = tmp_path / "runs"
    old, new = runs / "old", runs / "new"
    shutil.copytree(trained_run, old)
    shutil.copytree(trained_run, new)
    os.utime(old / MODEL_FILE, ns=(1, 1))
    assert find_default_run(tmp_path) == new
    monkeypatch.setenv("CHARNN_MODEL", str(old))
    assert find_default_run(tmp_path) == old
    monkeypatch.delenv("CHARNN_MODEL")
    with pytest.raises(CheckpointError, match="no trained run of a language model found"):
        find_default_run(tmp_path / "empty")


def test_run_folders_know_every_tokenizer_file_name():
    from charnn.runs.folder import TOKENIZER_FILES
    from charnn.tokenizers.char import CharTokenizer
    from charnn.tokenizers.subword import FILE_NAME

    assert set(TOKENIZER_FILES) == {CharTokenizer.file_name, FILE_NAME}


def test_a_pending_folder_left_empty_by_a_kill_is_cleared_at_once(tmp_path):
    """A command killed between making its pending folder and locking it leaves it empty and
    young; the next command must not take it for a live maker's."""
    import threading

    from charnn.files import FolderLock
    from charnn.runs.folder import new_run, pending_path, recover

    folder = tmp_path / "runs" / "run"
    pending = pending_path(folder)
    pending.mkdir(parents=True)  # as a kill right after mkdir leaves it
    with new_run(folder, overwrite=False) as (made, lock):
        (made / "config.json").write_text("{}")
    lock.release()
    assert folder.is_dir() and not pending.exists()
    # A live maker's pending folder is left alone: it is locked whenever another command looks.
    other = tmp_path / "runs" / "other"
    pending_path(other).mkdir()
    held = FolderLock(pending_path(other)).acquire()
    recover(other)
    assert pending_path(other).is_dir()
    held.release()
    done = threading.Event()
    threading.Thread(target=lambda: (recover(other), done.set())).start()
    assert done.wait(10) and not pending_path(other).exists()
