"""Training as the command line shows it: progress on stderr, Ctrl-C and SIGTERM as a resumable stop."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from charnn.cli.console import SIGPIPE_EXIT, PipeGuard, say, silence, silence_stdout, stderr_console
from charnn.errors import ConfigError

RESUME_TAKES = ("resume", "out", "steps", "time_budget", "device")
"""The options `--resume RUN` without data reads: which run, how much longer, on what device. The run
keeps every other setting it was started with."""


def typed_options(ctx: typer.Context, takes: tuple[str, ...] = RESUME_TAKES) -> list[str]:
    """The options of ``ctx``'s command typed on its command line, as typed (``--no-ngrams``), but
    those in ``takes``."""
    named = []
    for param in ctx.command.params:
        if param.param_type_name != "option" or param.name in takes:
            continue
        if getattr(ctx.get_parameter_source(param.name), "name", None) != "COMMANDLINE":
            continue
        negated = param.secondary_opts and ctx.params.get(param.name) is False
        named.append(param.secondary_opts[0] if negated else max(param.opts, key=len))
    return named


def refuse_fixed(named: list[str]) -> None:
    """Refuse, before a run is resumed, the options it was started with and cannot change (``named``, as typed)."""
    if named:
        are, them = ("are", "them") if len(named) > 1 else ("is", "it")
        options = " and ".join(named)
        raise ConfigError(f"{options} {are} fixed when a run starts; drop {them} to resume the run as it is")


def resume_run(folder: Path, kind: str, steps: int | None, budget: float | None, device: str, command: str) -> None:
    """`COMMAND --resume RUN` with no data: continue the run of ``kind`` in ``folder`` (the one path for every kind)."""
    from charnn.tasks import resume

    run_training(lambda **kw: resume(folder, kind=kind, steps=steps, time_budget=budget, device=device, **kw), command)


def run_training(start: Callable[..., Any], command: str = "charnn train", notes: list[str] | None = None) -> None:
    """Run training with SIGINT/SIGTERM turned into a clean, resumable stop; ``command`` resumes it.
    A reader that goes away (`charnn train 2>&1 | head -1`) stops it the same way, and the command
    then exits 141, as a process killed by SIGPIPE would (console.PipeGuard).

    ``notes`` are said when training starts, before its first line."""
    guard = PipeGuard()
    try:
        _run_training(start, command, notes, guard)
    except BrokenPipeError:  # a closed stdout (its last line, the run folder) or stderr (its last words)
        guard.broken = True
    except typer.Exit:
        if not guard.broken:
            raise
    if guard.broken:
        silence_stdout()
        silence(sys.stderr)  # nothing more is said: what it would say is what the exit code says
        raise typer.Exit(SIGPIPE_EXIT)


def _run_training(start: Callable[..., Any], command: str, notes: list[str] | None, guard: PipeGuard) -> None:
    stop = threading.Event()
    view = _TrainView(notes or [])

    asked = {"stop": False, "before_training": False}  # plain flags: a handler run again inside Event.set() (its
    # lock is not reentrant) must not wait on it

    def request_stop(signum: int, frame: Any) -> None:
        if asked["stop"]:
            raise KeyboardInterrupt  # asked twice: stop at once
        asked["stop"] = True
        # Still reading the corpus (a --records regex may take long): no step to wait for. Under torchrun only
        # rank 0 hears that training began, and the ranks must stop together at a step.
        if not view.began and os.environ.get("WORLD_SIZE", "1") == "1":
            say("stopped before training began")
            asked["before_training"] = True
            stop.set()  # should code that was running swallow the interrupt, the first step stops (resumable)
            raise KeyboardInterrupt
        stop.set()
        say("stopping after this step with a resumable checkpoint (press Ctrl-C again to stop at once)")

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        finished = start(on_event=guard.wrap(view, stop), stop=stop)
    except Exception:
        if asked["before_training"]:  # the interrupt, raised inside a library, came out as its error
            raise KeyboardInterrupt from None
        raise
    finally:
        view.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    from charnn.training.distributed import is_main_process

    if not is_main_process():
        # Under torchrun rank 0 speaks for all. The others leave at once: torch's teardown of
        # its distributed threads at interpreter exit sometimes aborts ("terminate called
        # without an active exception"), which torchrun reports as a failed run.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    if finished.reason == "complete":
        say(
            f"{finished.folder} already finished its budget at step {finished.steps}; nothing to do "
            "(pass a larger --steps or --time with --resume to train it further)"
        )
    kept = "the model is in" if finished.reason == "complete" else "model saved in"  # nothing new was saved
    say(f"{finished.headline}; {kept} {finished.folder}")
    print(finished.folder, flush=True)
    if finished.reason == "stopped":
        say(f"stopped at step {finished.steps}; continue with: {command} --resume {finished.folder}")
        raise typer.Exit(130)
    if finished.reason == "interrupted":
        say(f"stopped early at step {finished.steps}; the best model so far is kept")
        raise typer.Exit(130)


INFO_WIDTH = 64
"""Columns of a training's live figures (loss, val, chars/s, |g|, lr) on a terminal wide enough for them."""


class _TrainView:
    """Renders trainer events: a rich progress bar on a terminal, plain lines otherwise."""

    def __init__(self, notes: list[str]) -> None:
        self.notes = notes
        self.console = stderr_console()
        self.live = sys.stderr.isatty()
        self.progress = None
        self.task = None
        self.last_line = 0.0
        self.val = "–"
        self.fields = ""
        self.began = False
        """Whether training has started (its first event): before it, a stop request stops at once."""

    def __call__(self, event) -> None:  # noqa: ANN001
        from charnn.events import Evaluated, Notice, Progress, RolledBack, Started

        if isinstance(event, Notice):
            self._print(event.message)
        elif isinstance(event, RolledBack):
            self._print(
                f"warning: non-finite loss or gradient in every recent step up to {event.step}: rolled back to step "
                f"{event.to_step} and halved the learning rate (now x{event.lr_scale:g})"
            )
        elif isinstance(event, Started):
            self.began = True
            self._started(event)
        elif isinstance(event, Progress):
            self.fields = (
                f"loss {event.loss:.3f}  val {self.val}  {event.chars_per_sec / 1000:.1f}k chars/s  "
                f"|g| {event.grad_norm:.2f}  lr {event.lr:.1e}"
            )
            self._update(event.step, event.fraction, force=False)
        elif isinstance(event, Evaluated):
            self.val = event.brief
            self._print(f"step {event.step}: {event.headline}{' (best)' if event.best else ''}")

    def _started(self, event) -> None:  # noqa: ANN001
        budget = " and ".join(
            part
            for part in (
                f"{event.steps} steps" if event.steps else "",
                f"{event.time_budget:g}s" if event.time_budget else "",
            )
            if part
        )
        precision = "bf16 autocast" if event.bf16 else "fp32"
        for note in self.notes:
            say(note)
        if event.resumed_from is not None:
            say(f"resuming {event.folder} at step {event.resumed_from}")
        say(
            f"training {event.parameters:,} parameters on {event.device} ({precision}); "
            f"{event.train_tokens:,} training / {event.val_tokens:,} validation tokens; budget {budget}; "
            f"run folder {event.folder}"
        )
        if self.live:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.table import Column

            # The figures give way (cut with an ellipsis) where the terminal is narrow, not the time left: rich
            # shrank every column of an 80-column line, "eta 0:0…" too.
            room = min(INFO_WIDTH, max(8, self.console.width - 52))  # step, bar, elapsed, eta, time left: 52
            self.progress = Progress(
                TextColumn("step {task.fields[step]}"),
                BarColumn(bar_width=20),
                TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True, overflow="ellipsis", width=room)),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=1.0, step=0, info="")

    def _update(self, step: int, fraction: float, force: bool) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=fraction, step=step, info=self.fields)
            return
        now = time.monotonic()
        if force or now - self.last_line >= 10:
            self.last_line = now
            say(f"step {step} ({fraction:.0%}): {self.fields}")

    def _print(self, line: str) -> None:
        if self.progress is not None:
            self.progress.console.print(line)
        else:
            say(line)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=1.0)
            self.progress.stop()
            self.progress = None
