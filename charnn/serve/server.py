"""uvicorn on a socket bound before it starts (so ``--port 0`` can say its port), ended cleanly.

uvicorn answers on a thread of its own; the main thread is the worker that runs every network
(charnn.tasks.worker). On SIGINT or SIGTERM every served run ends its in-flight completions
(finish reason 'stop'), their streams send ``data: [DONE]``, requests still being scored,
classified or tagged get a 503 at their next chunk, uvicorn closes, and the process exits 0.
A second signal stops at once.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import threading
from collections.abc import Callable

import uvicorn

from charnn.errors import ConfigError
from charnn.serve.app import create_app
from charnn.serve.runs import Served
from charnn.tasks.worker import Worker

LOOPBACK = ("127.0.0.1", "::1", "localhost")
GRACE_SECONDS = 5
"""After a signal, how long uvicorn waits for open connections before it closes them."""


PRIMITIVE_CACHE = "32"
"""oneDNN kernels a server keeps (default 1,024): each new text length or batch shape read by a fused
layer (scoring, classify, tag) makes one, and a long-running server would grow by hundreds of MB."""


def limit_caches() -> None:
    """Keep a long-running server's memory flat; call it before any network runs. The fused
    recurrent layers (prompts, scoring, classify, tag) run torch's own kernels, not oneDNN's,
    which keep a kernel for every new shape (about 15% slower for them, and no growth); what
    else uses oneDNN keeps at most PRIMITIVE_CACHE."""
    import torch

    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", PRIMITIVE_CACHE)
    torch.backends.mkldnn.enabled = False


def _give_back_memory() -> None:
    """Hand freed memory back to the system (glibc keeps what a large request freed, so a server's
    size would follow the largest requests it has seen rather than what it holds)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as error:
        sock.close()
        why = getattr(error, "strerror", None) or str(error)
        raise ConfigError(f"cannot listen on {host}:{port} ({why}); choose another --port or --host") from None
    sock.listen(2048)
    return sock


def run(
    served: dict[str, Served],
    worker: Worker,
    sock: socket.socket,
    api_key: str | None,
    access_log: bool,
    ready: Callable[[], None],
) -> None:
    """Answer on ``sock`` until SIGINT or SIGTERM; ``ready()`` is called once it listens. Call it
    on the main thread (signals arrive there), the thread that loaded ``served``."""
    app = create_app(served, worker, api_key, ready)
    config = uvicorn.Config(
        app, log_level="warning", access_log=access_log, timeout_graceful_shutdown=GRACE_SECONDS, lifespan="on"
    )
    server = uvicorn.Server(config)

    def stop(sig: int, frame: object) -> None:
        if server.should_exit:
            server.force_exit = True
        for entry in served.values():
            entry.service.close()
        worker.close()  # scoring, classify and tag in progress end at their next chunk (503)
        server.should_exit = True

    failed: list[BaseException] = []

    def answer() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as error:  # noqa: BLE001  (raised again on the main thread)
            failed.append(error)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    thread = threading.Thread(target=answer, name="charnn-http", daemon=True)
    thread.start()
    try:
        worker.run(thread.is_alive, tidy=_give_back_memory)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for entry in served.values():
            entry.service.close()
    if failed:
        raise failed[0]
