"""The command line: a thin layer that parses options, calls the library, renders.

Only this package imports typer or rich, and it imports torch only inside the
commands that need it, so that `charnn --help` answers at once.
"""

from __future__ import annotations

import inspect
import sys
from typing import Annotated

import typer

from charnn import __version__
from charnn.cli import console
from charnn.cli.classify import classify_app
from charnn.cli.corpus import corpus_app
from charnn.cli.evaluate import eval_command
from charnn.cli.grads import grads_command
from charnn.cli.info import info_command
from charnn.cli.plot import plot_command
from charnn.cli.sample import sample_command
from charnn.cli.serve import serve_command
from charnn.cli.show import show_command
from charnn.cli.tag import tag_app
from charnn.cli.train import train_command
from charnn.errors import CharnnError

app = typer.Typer(
    name="charnn",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("train")(console.pipe_safe(train_command))
app.command("sample")(console.pipe_safe(sample_command))
app.command("eval")(console.pipe_safe(eval_command))
app.command("grads")(console.pipe_safe(grads_command))
app.command("plot")(console.pipe_safe(plot_command))
app.command("info")(console.pipe_safe(info_command))
app.command("serve")(console.pipe_safe(serve_command))
app.command("show")(console.pipe_safe(show_command))
app.add_typer(corpus_app, name="corpus")
app.add_typer(classify_app, name="classify")
app.add_typer(tag_app, name="tag")


def reflowed(doc: str) -> str:
    """``doc`` with each prose paragraph on one line, so that the terminal wraps it.

    In rich markup mode typer keeps a paragraph's line breaks (all but the first paragraph's), so a
    docstring wrapped at 100 columns came out ragged in an 80-column terminal. Indented lines
    (the examples) keep theirs.
    """
    first, *rest = inspect.cleandoc(doc).split("\n\n")
    rest = [p if p.startswith(" ") else " ".join(p.split("\n")) for p in rest]
    # typer dedents what follows the first paragraph by its lines after the first: a newline before it
    # keeps "[b]Examples[/b]" among them, and the examples' indent with it.
    return "\n\n\n".join([first, "\n\n".join(rest)]) if rest else first


for _info in [
    *app.registered_commands,
    *(c for g in app.registered_groups for c in g.typer_instance.registered_commands),
]:
    if _info.help is None and _info.callback is not None and _info.callback.__doc__:
        _info.help = reflowed(_info.callback.__doc__)


def _version(value: bool) -> None:
    if value:
        print(f"charnn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Train recurrent language models (RNN, LSTM, GRU) on your own text and generate text in its style.

    [b]Examples[/b]

      charnn train corpus.txt --time 5m
      charnn sample --temp 0.8 --prime "ROMEO:"
      charnn eval held-out.txt --json
    """


app.registered_callback.help = reflowed(_root.__doc__)


def entry() -> None:
    """The `charnn` command: ``main``, then the exit, which a late Ctrl-C no longer interrupts (a second one as
    training ended showed a traceback from torch's exit hooks, or killed the process by the signal: Python puts
    its own handler back as it finalises). SIGTERM still ends an exit that hangs."""
    import signal

    code = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 runtime error, 2 usage error, 130 interrupted)."""
    console.install_warning_format()
    try:
        # Without standalone mode, typer returns the code of a typer.Exit raised by a command.
        code = app(args=argv, prog_name="charnn", standalone_mode=False)
        console.flush_stdout()  # a full disk shows at the last flush, too
        return code if isinstance(code, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        console.say("aborted")
        return 130
    except typer.exceptions.TyperException as exc:  # usage errors: bad option, missing argument
        message = " ".join(exc.format_message().split())  # one line, as charnn's own errors
        if message:  # none for a group named alone (`charnn classify`): its help is printed
            ctx = getattr(exc, "ctx", None)
            console.say(f"error: {message} (see `{ctx.command_path if ctx else 'charnn'} -h`)")
        return exc.exit_code
    except CharnnError as exc:
        console.say(f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        console.say("interrupted")
        return 130
    except MemoryError:
        console.say("error: out of memory; give a smaller text, batch or model, or free some memory")
        return 1
    except OSError as exc:
        if exc.errno not in console.WRITE_FAILURES:
            raise
        console.silence_stdout()  # what could not be written is gone; the exit flush must not fail again
        where = f" {exc.filename}" if exc.filename else " the output"
        console.say(f"error: cannot write{where}: {exc.strerror}; free some space or write elsewhere")
        return 1
    finally:
        console.flush_stdout(quiet=True)
