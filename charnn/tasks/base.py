"""What a kind of run is: the one class each task package gives the registry (charnn.tasks).

A kind says how its runs are named to users, which network its config.json describes, how
a training session on one of its run folders reads its data (the session object the loop
drives: charnn.training.loop), and how its validation figures are told. Everything below
the tasks (training, the run folder, loading) takes a kind as an argument and names none.

A session object, made by ``Task.session`` for one training session with its data loaded, gives:

    chars_per_step    characters of text one optimizer step reads (for chars/s)
    train_tokens, val_tokens
    initial_carry()   this process's state carried into the next step ([] when none is)
    carry_template()  the whole batch's carried state, zeros: the shape the resume file holds
    own_rows(carry)   this process's part of a whole batch's carried state
    loss(net, step, carry, autocast) -> (loss, carry)
                      the mean loss of step ``step``'s batch; the batch is a function of
                      the step alone, so a resumed run reads what an uninterrupted one reads
    evaluate(model, final) -> (score, metrics)
                      validation figures (a dict with ``val_loss``); a lower score is a
                      better model (the one kept)
    headline(metrics), brief(metrics), best_line(metrics)
                      the figures told: a line per validation, a few characters for a
                      progress bar, the kept model's line when training ends
    logged(metrics, best)
                      a validation's figures as metrics.jsonl records them
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from charnn.errors import CheckpointError, RequestError, WrongRunKind
from charnn.runs import checkpoint

TASKS: dict[str, type[Task]] = {}
"""Every kind of run, by the name config.json gives it: each Task subclass adds itself, and
charnn.tasks imports them all."""
DEFAULT_KIND = "lm"
"""The kind of a run folder whose config.json names none (format 1), and of `charnn sample`'s runs."""


class Task:
    """A kind of run. Subclasses set the names and implement the class methods."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:  # a kind, not a base that kinds share (charnn.tasks.encoders.kind)
            TASKS[cls.kind] = cls

    kind: ClassVar[str]
    """The name in config.json's "task" section."""
    noun: ClassVar[str]
    """How messages name a run of this kind: 'a classifier'."""
    run_noun: ClassVar[str]
    """'classifier run'."""
    use_with: ClassVar[str]
    """The commands that use a trained run: 'charnn classify predict / eval'."""
    train_command: ClassVar[str]
    """The command that starts one: 'charnn classify train'."""
    start_hint: ClassVar[str]
    """How to start a run where there is none yet: 'pass the labelled data to start it: charnn classify train DATA'."""
    plotted: ClassVar[tuple[str, str] | None] = None
    """The logged figure that `charnn plot` shows beside the loss, and its name: ('val_accuracy', 'accuracy')."""
    loss_per: ClassVar[str] = "token"
    """What its loss is the mean over, as `charnn plot` words it: 'token', 'text', 'word'."""
    endpoint: ClassVar[str | None] = None
    """Where `charnn serve` answers a run of this kind: the API path after /v1/ ('completions')."""
    more_endpoints: ClassVar[tuple[str, ...]] = ()
    """charnn's own paths a served run of this kind also answers ('cells')."""

    @classmethod
    def build_model(cls, run_config: dict[str, Any], model_config: Any) -> Any:
        """The untrained network a run of this kind's config.json describes."""
        raise NotImplementedError

    @classmethod
    def session(cls, folder: Path, run_config: dict[str, Any], model: Any, config: Any, world: Any, device: Any) -> Any:
        """The task of one training session on the run in ``folder``, with its data loaded."""
        raise NotImplementedError

    @classmethod
    def service(cls, run: Any, limits: Limits, worker: Any) -> Any:
        """What answers requests for one loaded run of this kind under `charnn serve`: an object
        with ``describe() -> dict`` (its fields in /v1/models), ``active`` (requests in flight),
        ``submit(body, notify) -> Job`` (raises RequestError for a bad body; called on ``worker``'s
        thread, charnn.tasks.worker) and ``close()`` (end what is in flight); see Job."""
        raise NotImplementedError

    @classmethod
    def summary(cls, run_config: dict[str, Any], results: dict[str, Any]) -> Summary:
        """What `charnn info` shows of a run of this kind; ``results`` are its kept model's
        figures (config.json's, or the best logged validation's while it trains)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Limits:
    """The most one request to `charnn serve` may ask for (its --max-* options)."""

    max_tokens: int = 4096
    """Characters a completion may ask for (max_tokens)."""
    max_n: int = 16
    """Completions a request may ask for (n, times the prompts)."""
    max_prompt: int = 20_000
    """Characters of one prompt, or of one text to classify or tag."""
    max_inputs: int = 256
    """Texts one request may hold (a prompt list, or classify and tag inputs)."""
    max_cells: int = 4000
    """Characters of a text whose units' values one request may ask for (/v1/cells)."""


class Stopping(Exception):
    """Thrown into a server's chores when it stops (charnn.tasks.worker)."""


STOPPING = "the server is stopping; send the request again once it runs"


class Job:
    """One request being answered (``service.submit``). ``notify()`` is called, from any thread,
    whenever ``events()`` has something new; ``events()`` drains what is ready (a streamed
    request's chunks); ``response()`` is the whole answer once ``done``; ``cancel()`` says the
    client has gone, and the work stops at the next step."""

    done: bool = False
    error: str | None = None
    """Why the work failed, where it did (the server answers ``failure()``)."""
    error_status: int = 500
    error_param: str | None = None
    """The request parameter at fault, where a failure names one."""

    def events(self) -> list[dict[str, Any]]:
        return []

    def response(self) -> dict[str, Any]:
        raise NotImplementedError

    def cancel(self) -> None:
        pass

    def failure(self) -> RequestError:
        """The error a failed job answers with: 500 when the model failed, 503 when the server stopped first."""
        if self.error_status == 500:
            return RequestError(f"the model failed: {self.error}", status=500, kind="server_error")
        kind = "server_error" if self.error_status >= 500 else "invalid_request_error"
        return RequestError(str(self.error), param=self.error_param, status=self.error_status, kind=kind)


class Chunked(Job):
    """A job the worker answers a chunk at a time between the batches' steps (classify, tag, cells):
    ``work(steps)`` is the chore to begin, where ``steps`` yields between chunks and returns the
    whole response."""

    def __init__(self, notify: Callable[[], None]) -> None:
        self.notify, self.cancelled, self.answer = notify, False, None

    def work(self, steps: Iterator[Any]) -> Iterator[None]:
        return chunked(steps, self.finish, self.fail, lambda: self.cancelled)

    def finish(self, answer: dict[str, Any]) -> None:
        self.answer, self.done = answer, True
        self.notify()

    def fail(self, message: str, status: int, param: str | None = None) -> None:
        self.error, self.error_status, self.error_param, self.done = message, status, param, True
        self.notify()

    def response(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.failure()
        return self.answer

    def cancel(self) -> None:
        self.cancelled = True


class InFlight:
    """Requests a service is answering in chores (``around``): counted in its ``active`` (/health)."""

    def __init__(self) -> None:
        self.count = 0

    def around(self, chore: Iterator[None]) -> Iterator[None]:
        """``chore``, counted from the worker's priming of it (``Worker.begin``) to its end, however it ends."""
        self.count += 1
        try:
            yield from chore
        finally:
            self.count -= 1


def chunked(
    steps: Iterator[Any],
    finish: Callable[[Any], None],
    fail: Callable[[str, int, str | None], None],
    cancelled: Callable[[], bool],
) -> Iterator[None]:
    """A worker's chore (charnn.tasks.worker) around ``steps``, a generator that yields between two chunks
    of work and returns its result: ``finish(result)`` at its end, ``fail(message, status, param)`` if it
    raises or the server stops (``Stopping``: 503), nothing more once ``cancelled()`` (its client has gone).
    Its first advance does no work: the worker primes it as it begins, so that ``Stopping`` thrown in
    before any chunk is still answered."""
    try:
        yield
        while not cancelled():
            try:
                next(steps)
            except StopIteration as end:
                finish(end.value)
                return
            yield
    except Stopping:
        fail(STOPPING, 503, None)
    except RequestError as error:
        fail(str(error), error.status, error.param)
    except Exception as error:  # noqa: BLE001  (a failed chunk fails its request, never the server)
        fail(f"{type(error).__name__}: {error}", 500, None)
    finally:
        steps.close()


def drain(steps: Iterator[Any]) -> Any:
    """The result of ``steps`` (a generator that yields between chunks of work), every chunk done at once."""
    while True:
        try:
            next(steps)
        except StopIteration as end:
            return end.value


def logged_evaluation(metrics: dict[str, Any], best: bool, styles: dict[str, float] | None = None) -> dict[str, Any]:
    """A validation as metrics.jsonl logs it, the same keys for every kind (None where a kind has no
    such figure: a classifier's bits per character was NaN, which strict JSON readers refuse)."""
    return {
        "val_loss": metrics["val_loss"],
        "val_bits_per_char": metrics.get("val_bits_per_char"),
        "best": best,
        "val_accuracy": metrics.get("val_accuracy"),
        "val_f1": metrics.get("val_f1"),
        "val_styles": styles,
    }


INFO_FIELDS: dict[str, Any] = {
    "labels": None,
    "reverse": False,
    "best_val_bits_per_char": None,
    "best_val_accuracy": None,
    "best_val_macro_f1": None,
    "best_val_f1": None,
    "records": None,
    "styles": None,
}
"""`charnn info --json`'s keys that a kind fills, each kind the same keys (None where it has no such figure)."""


@dataclass(frozen=True)
class Summary:
    """What `charnn info` shows of a run beside the figures every run has (``Task.summary``)."""

    fields: dict[str, Any]
    """Its values of INFO_FIELDS."""
    task: str
    """The kind, said in a few words: 'classifier: neg, pos'."""
    best: str | None
    """The kept model's validation figures in one line; None before any."""
    rows: tuple[tuple[str, str], ...] = ()
    """Rows of its own, shown after what it was trained on."""
    trained_on: str | None = None
    """What it was trained on, where the sources alone do not say it (a style run)."""
    tokenizer_note: str = ""
    reads_windows: bool = False
    """Whether it reads TBPTT windows (so its --seq-len means something)."""


def task_kind(run_config: dict[str, Any]) -> str:
    """The kind of run a config.json describes; a folder with no task (format 1) is a language model."""
    task = run_config.get("task")
    if task is None:
        return DEFAULT_KIND
    kind = task.get("kind") if isinstance(task, dict) else None
    if not isinstance(kind, str) or kind not in TASKS:
        raise CheckpointError(f"config.json names an unknown task {kind!r}; a newer charnn may read it")
    return kind


def task_of(run_config: dict[str, Any]) -> type[Task]:
    """The kind (a Task class) of the run a config.json describes."""
    return TASKS[task_kind(run_config)]


def build_model(run_config: dict[str, Any], model_config: Any) -> Any:
    """The untrained network of a run's kind, shaped by its config.json."""
    return task_of(run_config).build_model(run_config, model_config)


def make_task(run_config: dict[str, Any], folder: Any, model: Any, config: Any, world: Any, device: Any) -> Any:
    """The task of a run folder for one training session, with its data loaded."""
    return task_of(run_config).session(folder, run_config, model, config, world, device)


def check_kind(folder: Path, config: dict[str, Any], kind: str | None) -> type[Task]:
    """The run's kind; a run of another kind than ``kind`` is refused in one line that says what to use."""
    found = task_of(config)
    if kind is None or found.kind == kind:
        return found
    raise WrongRunKind(f"{folder} is {found.noun}, not {TASKS[kind].noun}; use it with {found.use_with}")


def check_resumed_kind(folder: Path, config: dict[str, Any], kind: str | None) -> type[Task]:
    """The kind of the run to continue in ``folder``; a run of another kind than ``kind`` is refused in
    one line that names the command that continues it."""
    found = task_of(config)
    if kind is None or found.kind == kind:
        return found
    raise WrongRunKind(
        f"{folder} is {found.noun}, not {TASKS[kind].noun}; continue it with `{found.train_command} --resume {folder}`"
    )


def kind_to_train(folder: Path, kind: str) -> Callable[[dict[str, Any]], type[Task]]:
    """What training takes as ``task_of`` for a run of ``kind`` in ``folder``: the kind of a config.json,
    a run of another kind being refused (check_resumed_kind)."""
    return lambda config: check_resumed_kind(folder, config, kind)


def load_run(folder: str | Path, device: str = "cpu", kind: str | None = None) -> checkpoint.Run:
    """Load a run folder, validating every file; weights go to ``device``.

    ``kind`` (a name in TASKS), when given, refuses a run of another kind.
    """
    folder = Path(folder)

    def build(config: dict[str, Any], model_config: Any) -> Any:
        return check_kind(folder, config, kind).build_model(config, model_config)

    try:
        return checkpoint.load_run(folder, build, device)
    except checkpoint.MissingRun:
        if kind is None:
            raise
        raise checkpoint.MissingRun(folder, TASKS[kind].start_hint.rpartition(": ")[2]) from None
    except checkpoint.UnfinishedRun as exc:
        try:
            command = task_of(exc.config).train_command
        except CheckpointError:
            raise exc from None
        raise checkpoint.UnfinishedRun(exc.folder, exc.config, command) from None
