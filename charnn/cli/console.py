"""Console helpers shared by the commands: stderr output, errors, run lookup."""

from __future__ import annotations

import errno
import functools
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from charnn.tasks.base import DEFAULT_KIND


def stderr_console() -> Console:
    """A console on the current stderr; colour and bars only on a terminal, NO_COLOR respected."""
    return Console(file=sys.stderr, no_color="NO_COLOR" in os.environ, highlight=False, soft_wrap=True)


def say(message: str) -> None:
    """One diagnostic line on stderr."""
    print(message, file=sys.stderr, flush=True)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    say(f"warning: {message}")


def install_warning_format() -> None:
    warnings.showwarning = show_warning


def resolve_run(model: Path | None, kind: str | None = DEFAULT_KIND, argument_of: str | None = None) -> Path:
    """The run a command uses: --model, else $CHARNN_MODEL, else the newest under ./runs of ``kind`` (None: any).
    ``argument_of``: the command that takes the run as its argument, not as --model (plot, info)."""
    if model is not None:
        return model
    from charnn.runs.names import MODEL_ENV
    from charnn.tasks import find_default_run, run_noun

    choose = "with --model" if argument_of is None else "by naming its folder"
    give = "pass --model RUN" if argument_of is None else f"name a run folder: charnn {argument_of} RUN"
    found = find_default_run(kind=kind, give=give)
    what = run_noun(kind)
    source = f"${MODEL_ENV}" if os.environ.get(MODEL_ENV) else f"the newest {what} in ./runs"
    say(f"using run {found} ({source}; choose another {choose})")
    return found


def read_stdin_prime() -> str:
    """The prime from standard input when it is a pipe or a file, else ''."""
    stream = sys.stdin
    if stream is None or stream.closed or stream.isatty():
        return ""
    from charnn.text.corpus import STDIN, read_text

    return read_text(STDIN, stream.buffer)


def stdin_piped() -> bool:
    """Whether something is piped or redirected into standard input (a pipe, or a non-empty file)."""
    import stat

    try:
        found = os.fstat(sys.stdin.fileno())
        return stat.S_ISFIFO(found.st_mode) or (stat.S_ISREG(found.st_mode) and found.st_size > 0)
    except (AttributeError, OSError, ValueError):
        return False


def unescape(text: str) -> str:
    r"""Turn the escapes \n, \t, \r and \\ typed on a command line into characters."""
    out, i = [], 0
    table = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "0": "\0"}
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in table:
            out.append(table[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def pipe_safe(command: Callable[..., Any]) -> Callable[..., Any]:
    """A closed stdout (`charnn sample | head`) ends the command quietly with exit 0."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BrokenPipeError:
            silence_stdout()
            raise typer.Exit(0) from None

    return wrapper


WRITE_FAILURES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EROFS})
"""The errors of a write that failed for want of room or a working disk (not of a bug): one line, exit 1."""


def flush_stdout(quiet: bool = False) -> None:
    """Flush stdout; a closed pipe is silenced, and with ``quiet`` so is any other failure (at exit,
    after the command's own outcome was reported)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
    except OSError:
        if not quiet:
            raise
        silence_stdout()


def silence_stdout() -> None:
    """Point stdout at /dev/null so that the final flush at exit cannot fail."""
    silence(sys.stdout)


def silence(stream: Any) -> None:
    """Point ``stream`` (stdout, stderr) at /dev/null: what is written to it from now on is dropped."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


SIGPIPE_EXIT = 141
"""The exit code of a command whose reader went away (128 + SIGPIPE, as the shell reports a process it killed)."""


class PipeGuard:
    """Guards the renderer of training's events against a reader that went away (`charnn train 2>&1 | head -1`).

    The first write to a closed pipe silences stderr and sets the stop event: training stops after
    its step with a resumable checkpoint, as Ctrl-C stops it, instead of dying half-way through an
    event; ``broken`` then tells the command to exit with SIGPIPE_EXIT."""

    def __init__(self) -> None:
        self.broken = False

    def wrap(self, render: Callable[[Any], None], stop: Any) -> Callable[[Any], None]:
        def guarded(event: Any) -> None:
            if self.broken:
                return
            try:
                render(event)
            except BrokenPipeError:
                self.broken = True
                silence(sys.stderr)
                stop.set()

        return guarded
