"""`charnn show`: one text scored and read by a run, as a page to open anywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from charnn.cli.console import resolve_run, say
from charnn.tasks.lm import LanguageModel

MAX_CHARS = 20_000
"""Characters of text one page may show (its cell values grow with the text times the units)."""


def show_command(
    text: Annotated[str, typer.Argument(help="Text file to show; '-' reads standard input.")],
    model: Annotated[
        Optional[Path],
        typer.Option(
            "--model",
            "-m",
            help="Run folder \\[default: $CHARNN_MODEL, else the newest in ./runs].",
            show_default=False,
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write (refused if it exists).")] = Path(
        "show.html"
    ),
    layer: Annotated[
        Optional[int],
        typer.Option(
            help="The layer whose units the cell view shows, from 1 \\[default: the top].", show_default=False
        ),
    ] = None,
    cell: Annotated[bool, typer.Option("--cell", help="Show an LSTM's cell c, not its hidden state h.")] = False,
    style: Annotated[
        Optional[str],
        typer.Option(
            help="On a run trained with --style: read the text under this style or blend (a=0.7,b=0.3), "
            "as charnn eval --style does \\[default: the run's first style].",
            show_default=False,
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "cpu",
) -> None:
    """Write one self-contained HTML page of how a language-model run reads a text.

    The page needs no server and no network: each character is shaded by how surprised the model
    was, with its alternatives and the bits per character `charnn eval` gives, and the text can be
    coloured by any one unit of a layer, with LSTMVis's span selection to find the units that
    track something.

    [b]Examples[/b]

      charnn show chapter.txt -m runs/fantasy --out chapter.html
      head -c 3000 notes.txt | charnn show - --layer 1 --cell -o notes.html
    """
    from charnn.device import resolve_device
    from charnn.errors import ConfigError, CorpusError, RequestError
    from charnn.files import atomic_write_text
    from charnn.serve.show import offline_page
    from charnn.tasks import load_run
    from charnn.tasks.lm.show import show_data
    from charnn.text.corpus import read_text

    if str(out) == "-":
        raise ConfigError("--out names the HTML file to write; a page cannot go to standard output")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; name the HTML file to write")
    if out.exists() or out.is_symlink():  # a dangling link too: writing would replace it
        raise ConfigError(
            f"{out} exists; choose another --out or remove it (charnn never replaces a file that is there)"
        )
    if not out.parent.exists():
        raise ConfigError(
            f"folder {out.parent} does not exist; make it (mkdir -p {out.parent}) or choose another --out"
        )
    if not out.parent.is_dir():
        raise ConfigError(f"{out.parent} is not a folder; choose another --out")
    body = read_text(text)
    if len(body) > MAX_CHARS:
        raise CorpusError(f"the text is {len(body):,} characters; a page shows at most {MAX_CHARS:,}: cut it (head -c)")
    run = load_run(resolve_run(model), device=str(resolve_device(device)), kind=LanguageModel.kind)
    if (run.config.get("task") or {}).get("reverse"):
        raise ConfigError(
            f"{run.folder} reads right to left (trained with --reverse), and a page reads left to right; "
            "show a left-to-right run (charnn eval scores this one)"
        )
    layers = run.model.config.layers
    if layer is not None and not 1 <= layer <= layers:
        raise ConfigError(f"--layer must be from 1 to {layers} on this run, got {layer}")
    if cell and run.model.config.cell != "lstm":
        raise ConfigError(f"--cell shows an LSTM's cell; this run is a {run.model.config.cell}: drop --cell")
    try:
        data = show_data(run, body, None if layer is None else layer - 1, "cell" if cell else "hidden", style=style)
    except RequestError as error:  # no such style, or a run without styles
        raise ConfigError(str(error).replace("leave style out", "drop --style")) from None
    atomic_write_text(out, offline_page(data))
    read = f"layer {data['cells']['layer'] + 1} of {layers}" + (f", style {data['style']}" if data["style"] else "")
    say(f"wrote {out}: {len(body):,} characters, {read}; open it in a browser")
    print(out)
