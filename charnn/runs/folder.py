"""Making, replacing and recovering run folders, so that a kill at any instant leaves one whole run.

A new run is made in a pending folder beside its target and renamed into place whole:

    runs/
      .corpus.charnn-new/   the new run while it is made; locked by the process making it;
                            complete once its config.json is written (the last file)
      .corpus.charnn-old/   an --overwrite's older run, between the two renames
      corpus/               the run: config.json, the tokens, the tokenizer and a resume
                            state from step 0 on, so it can always be resumed

    1. check the target: absent, empty, or a run (or debris of one) --overwrite may replace
    2. make and lock the pending folder; write the run's files into it, config.json last
    3. switch: target -> .old (if any), pending -> target, remove .old

A killed command leaves one of the states between these steps. ``recover``, called by
the next command that touches the folder, finishes a switch whose pending folder is
complete, removes one that is not, and clears temporaries, so the folder holds the old
run whole or the new one whole, never a mix. A lock (flock on the folder) keeps it from
touching what a live process is still writing, and goes with the process that held it.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from charnn.errors import RunFolderError
from charnn.files import TEMPORARY_SUFFIX, FolderBusy, FolderLock, fsync_dir, remove_stale_temporaries
from charnn.runs.names import CONFIG_FILE, FORMAT, MODEL_FILE, RESUME_FILE, RUN_FOLDER_FILES, TOKENIZER_FILES  # noqa: F401

PENDING_SUFFIX = ".charnn-new"
OLD_SUFFIX = ".charnn-old"


def pending_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}{PENDING_SUFFIX}"


def old_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}{OLD_SUFFIX}"


def _ours(name: str) -> bool:
    """Whether a file name is one a run folder holds, or a temporary of one (a killed charnn may have left it)."""
    return name in RUN_FOLDER_FILES or any(
        name.startswith(f".{own}.") and name.endswith(TEMPORARY_SUFFIX) for own in RUN_FOLDER_FILES
    )


def _is_run_config(path: Path) -> bool:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def folder_state(folder: Path) -> str:
    """What ``folder`` holds, as a new run sees it.

    'absent', 'empty', 'run' (resumable: config.json and a resume state, and maybe a user's
    files beside them), 'trained' (config.json and a model but no resume state: it predicts, it
    cannot be continued), 'unfinished'
    (only files a run folder holds, but no resumable run: debris of a killed run), 'foreign'
    (anything else: never written into) or 'file'.
    """
    if not folder.exists():
        return "absent"
    if not folder.is_dir():
        return "file"
    names = [p.name for p in folder.iterdir()]
    if not names:
        return "empty"
    if CONFIG_FILE in names and not _is_run_config(folder / CONFIG_FILE):
        return "foreign"
    if CONFIG_FILE in names and RESUME_FILE in names:
        return "run"
    if CONFIG_FILE in names and MODEL_FILE in names:
        return "trained"
    if not all(_ours(name) for name in names):
        return "foreign"
    return "unfinished"


def gone_resume_state(folder: Path) -> str:
    """What a --resume of a 'trained' folder is told: it is kept, not started afresh."""
    return (
        f"{folder} holds a trained run whose {RESUME_FILE} is gone: it samples and predicts but cannot be "
        "continued; pass --overwrite to train a new run there, or --out to choose another folder"
    )


def _strangers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not _ours(p.name))


def recover(folder: Path) -> None:
    """Finish or undo what a killed command left around ``folder``; a no-op when nothing was left.

    Best effort for a reader (a folder it cannot write is left as it is); what a live
    process is still writing is never touched.
    """
    try:
        _recover(Path(folder))
    except (OSError, FolderBusy, RunFolderError):
        pass


def _recover(folder: Path) -> None:
    pending, old = pending_path(folder), old_path(folder)
    if pending.is_dir():
        # Under the birth lock a pending folder is locked by its maker if that maker lives.
        with _birth_lock(pending.parent), FolderLock(pending):
            if (pending / CONFIG_FILE).is_file():
                with _target_lock(folder):
                    _switch(pending, folder)
            else:
                shutil.rmtree(pending)
    if old.is_dir():
        if folder.exists():
            shutil.rmtree(old)
        else:  # no switch ever removes the target before the new run is complete; undo anyway
            os.rename(old, folder)
    if folder.is_dir():
        try:
            with FolderLock(folder):
                remove_stale_temporaries(folder, RUN_FOLDER_FILES)
        except FolderBusy:
            pass  # a live trainer's temporaries are not stale


@contextmanager
def _birth_lock(parent: Path) -> Iterator[None]:
    """Held (on the parent folder) while a pending folder is made and locked, and while one is judged.

    A pending folder is made, then locked: without this lock, another command could find it
    in between, unlocked though its maker lives. With it, an unlocked pending folder is always
    debris of a killed command, to be cleared at once, however young.
    """
    busy = f"{parent} is locked by another charnn process (a run being trained there?); choose an --out outside it"
    lock = _lock_within(parent, 10.0, busy)
    try:
        yield
    finally:
        lock.release()


@contextmanager
def _target_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock (if it exists) while it is swapped out: never swap out a run being trained."""
    if not folder.is_dir():
        yield
        return
    try:
        lock = FolderLock(folder).acquire()
    except FolderBusy:
        raise RunFolderError(
            f"{folder} is being trained by another charnn process; stop it before replacing the run"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _switch(pending: Path, folder: Path) -> None:
    """Put the complete run in ``pending`` in place of whatever ``folder`` holds."""
    old = old_path(folder)
    if folder.is_dir() and any(folder.iterdir()):
        if old.exists():
            shutil.rmtree(old)
        os.rename(folder, old)
    os.rename(pending, folder)  # an absent or empty target is replaced in one step
    fsync_dir(folder.parent)
    shutil.rmtree(old, ignore_errors=True)


def check_target(folder: Path, overwrite: bool) -> str:
    """Refuse a target a new run must not replace; returns its folder_state."""
    state = folder_state(folder)
    if state == "file":
        raise RunFolderError(f"--out {folder} is a file, not a folder; choose another --out")
    above = next((parent for parent in folder.parents if parent.exists()), None) if state == "absent" else None
    if above is not None and not above.is_dir():
        raise RunFolderError(f"cannot write to --out {folder}: {above} is a file, not a folder; choose another --out")
    if state == "foreign":
        raise RunFolderError(f"--out {folder} is not empty and holds no charnn run; choose a new or empty folder")
    if state in ("run", "trained", "unfinished") and not overwrite:
        what = {"run": "a run", "trained": "a trained run"}.get(state, "an unfinished run that cannot be resumed")
        carry_on = f"--resume {folder} to continue it, " if state == "run" else ""
        raise RunFolderError(
            f"{folder} already holds {what}; pass --overwrite to replace it, {carry_on}"
            "or --out to choose another folder"
        )
    if state in ("run", "trained") and overwrite and _strangers(folder):
        raise RunFolderError(
            f"{folder} holds files charnn did not write ({', '.join(_strangers(folder)[:3])}); "
            "move them out before --overwrite replaces the run, or choose another --out"
        )
    if folder.exists() and folder.resolve() == Path.cwd().resolve():
        raise RunFolderError("--out cannot be the current folder; name a folder inside it")
    holder = next((p for p in folder.resolve().parents if _holds_run(p)), None)
    if holder is not None:  # its files would be a stranger's to that run (its --overwrite then refuses)
        raise RunFolderError(f"--out {folder} is inside the run folder {holder}; choose a folder outside it")
    return state


def _holds_run(folder: Path) -> bool:
    try:
        return (folder / CONFIG_FILE).is_file() and folder_state(folder) in ("run", "trained")
    except OSError:  # a folder above that cannot be listed holds no run of ours
        return False


def hold(folder: Path, patience: float = 3.0) -> FolderLock:
    """Lock a run folder for training in it, or say that another process is training it.

    A reader tidying the folder (``recover``) holds the lock for an instant: wait that out.
    """
    busy = f"{folder} is being written by another charnn process; wait for it to finish or stop it first"
    try:
        return _lock_within(folder, patience, busy)
    except OSError as exc:
        raise RunFolderError(f"cannot open {folder}: {exc.strerror or exc}") from None


def being_written(folder: Path) -> bool:
    """Whether a live process holds ``folder``'s lock: a run being trained (a reader tidying it holds it an instant)."""
    try:
        FolderLock(folder).acquire().release()
    except FolderBusy:
        return True
    except OSError:
        pass
    return False


def _lock_within(folder: Path, seconds: float, busy: str) -> FolderLock:
    """``folder``'s lock, waited for up to ``seconds`` (others hold it for an instant); RunFolderError(busy) after."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return FolderLock(folder).acquire()
        except FolderBusy:
            if time.monotonic() >= deadline:
                raise RunFolderError(busy) from None
            time.sleep(0.01)


@contextmanager
def new_run(folder: Path, overwrite: bool) -> Iterator[tuple[Path, FolderLock]]:
    """A locked, empty pending folder for a new run, switched into ``folder`` when the block succeeds.

    The block writes the run's files into the pending folder, config.json last. If it fails,
    the pending folder is removed and ``folder`` is as it was. On success the lock, which
    now holds ``folder``, is the caller's to release.
    """
    recover(folder)
    check_target(folder, overwrite)
    pending = pending_path(folder)
    made = [p for p in reversed(folder.parents) if not p.exists()]  # removed again if the run fails
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with _birth_lock(folder.parent):
            if pending.exists():  # recover found it live: another process is making this run
                raise RunFolderError(
                    f"{folder} is being made by another charnn process; wait for it to finish or stop it first"
                )
            pending.mkdir()
            lock = FolderLock(pending).acquire()
    except OSError as exc:
        _remove_made(made)
        raise RunFolderError(f"cannot write to --out {folder}: {exc.strerror or exc}") from None
    try:
        with _target_lock(folder):
            yield pending, lock
            check_target(folder, overwrite)  # nothing appeared there meanwhile that must be kept
            try:
                _switch(pending, folder)
            except OSError as exc:
                hint = ""
                if exc.errno == errno.EBUSY or os.path.ismount(folder):  # a run is made beside it, then renamed
                    hint = f"; {folder} is a mount point, which cannot be replaced: use --out {folder}/run"
                raise RunFolderError(
                    f"cannot put the new run in place at {folder}: {exc.strerror or exc}{hint}"
                ) from None
    except BaseException as exc:
        lock.release()
        if isinstance(exc, (Exception, KeyboardInterrupt, SystemExit)):
            shutil.rmtree(pending, ignore_errors=True)
            _remove_made(made)
        # else: an abrupt end (tests stand in for SIGKILL so): leave it, as a kill would, for recover
        raise


def _remove_made(made: list[Path]) -> None:
    """Remove the (still empty) parent folders a failed new run made."""
    for parent in reversed(made):
        try:
            parent.rmdir()
        except OSError:
            break
