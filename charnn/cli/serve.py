"""`charnn serve`: trained runs behind an OpenAI-compatible HTTP API."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from charnn.cli.console import say
from charnn.tasks.base import Limits

_LIMITS = Limits()


def serve_command(
    runs: Annotated[
        Optional[list[Path]],
        typer.Argument(
            help="Run folders to serve, each under its folder's name \\[default: every run in ./runs].",
            show_default=False,
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to listen on; another than 127.0.0.1 is reachable by others.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one (said on stderr).")] = 8000,
    api_key: Annotated[
        Optional[str],
        typer.Option(
            envvar="CHARNN_API_KEY",
            help="Require 'Authorization: Bearer KEY' on every request.",
            show_default=False,
        ),
    ] = None,
    max_tokens: Annotated[int, typer.Option(help="Most characters one completion may ask for.")] = _LIMITS.max_tokens,
    max_n: Annotated[
        int, typer.Option(help="Most completions one request may ask for (n times its prompts).")
    ] = _LIMITS.max_n,
    max_prompt: Annotated[
        int, typer.Option(help="Most characters of one prompt, or of one text to classify or tag.")
    ] = _LIMITS.max_prompt,
    max_cells: Annotated[
        int, typer.Option(help="Most characters of a text whose units' values one request may ask for.")
    ] = _LIMITS.max_cells,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request on stderr.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "cpu",
) -> None:
    """Serve trained runs over HTTP: an OpenAI-compatible API and a page to use them (the playground).

    OpenAI's completions API for language models, /v1/classify and /v1/tag for classifiers and
    taggers, and the playground at /. Answers until Ctrl-C (or SIGTERM), then ends the streams in
    flight and exits 0. Needs the serve extra: pip install 'charnn\\[serve]'.

    [b]Examples[/b]

      charnn serve                                  # every run in ./runs, on 127.0.0.1:8000
      charnn serve runs/shakespeare runs/mood --port 8080
      curl localhost:8000/v1/completions -H 'Content-Type: application/json' \\
        -d '{"model": "shakespeare", "prompt": "ROMEO:", "max_tokens": 200}'
    """
    from charnn.errors import ConfigError

    try:
        from charnn.serve import runs as served_runs
        from charnn.serve import server
    except ImportError as error:
        raise ConfigError(
            f"charnn serve needs the serve extra ({error.name} is missing): pip install 'charnn[serve]'"
        ) from None
    from charnn.device import resolve_device

    caps = (("--max-tokens", max_tokens), ("--max-n", max_n), ("--max-prompt", max_prompt), ("--max-cells", max_cells))
    for name, value in caps:
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {port}")
    if api_key is not None and not api_key.strip():
        raise ConfigError(
            '--api-key is empty (an unset variable in --api-key "$KEY"?); give the key clients must send, '
            "or leave --api-key out to serve without one"
        )
    if api_key is not None and (odd := [c for c in api_key.strip() if not " " < c < "\x7f"]):
        raise ConfigError(
            f"--api-key holds {odd[0]!r}, which an HTTP header cannot carry as typed; use printable ASCII "
            "(letters, digits, punctuation: openssl rand -hex 32 makes one)"
        )
    limits = Limits(max_tokens=max_tokens, max_n=max_n, max_prompt=max_prompt, max_cells=max_cells)
    folders = list(runs or served_runs.default_folders(Path("runs")))
    if not folders:
        raise ConfigError("no run to serve: name run folders (charnn serve runs/NAME) or train one into ./runs")
    from charnn.tasks.worker import Worker

    worker = Worker()  # this thread: it loads the runs and runs their networks (charnn.tasks.worker)
    served, skipped = served_runs.load_served(folders, limits, str(resolve_device(device)), worker, not runs)
    for line in skipped:
        say(line)
    if not served:
        raise ConfigError("no run in ./runs could be loaded; see the lines above")
    server.limit_caches()  # process-wide: only once the command is sure to serve (loading runs no network)
    sock = server.bind(host, port)
    address = sock.getsockname()
    url = f"http://{'[' + address[0] + ']' if ':' in address[0] else address[0]}:{address[1]}"
    if host not in server.LOOPBACK and not api_key:
        say(f"warning: listening on {host} without --api-key: anyone who can reach this address can use the models")

    def ready() -> None:
        names = ", ".join(
            f"{s.name} ({s.task.noun}, right to left: refused, charnn eval scores it)"
            if s.service.describe().get("reverse")
            else f"{s.name} ({s.task.noun}, POST /v1/{s.task.endpoint})"
            for s in served.values()
        )
        print(f"charnn serve: listening on {url}", file=sys.stderr)
        print(f"charnn serve: models: {names}", file=sys.stderr, flush=True)

    server.run(served, worker, sock, api_key or os.environ.get("CHARNN_API_KEY") or None, access_log, ready)
    say("charnn serve: stopped")
