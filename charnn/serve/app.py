"""The HTTP API: OpenAI's shapes for models, completions and errors, and charnn's endpoints.

Every refusal is OpenAI's error object, ``{"error": {"message", "type", "param", "code"}}``,
with the status that fits: 400 a request that cannot be read or asks for what is not allowed,
401 a missing key, 404 an unknown model or path, 413 a body over the cap. A refused request
changes nothing. ``model`` is only ever looked up among the served names: no request names a path.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from charnn.errors import RequestError
from charnn.serve.runs import Served
from charnn.tasks.worker import Worker

STATIC = Path(__file__).parent / "static"
PAGE_FILES = {"page.js": "text/javascript", "page.css": "text/css", "index.html": "text/html"}
"""The playground page's files (docs/playground.md): only these are ever read."""
MAX_BODY = 1 << 20
"""Bytes a request body may hold (1 MiB); more is a 413."""
EVENT_INTERVAL = 0.05
"""Seconds at least between two events of a stream: each carries what was written since the last."""
TOO_DEEP = "the body nests arrays or objects too deeply to read; a request needs a few levels"
DISCONNECT_POLL = 0.25
"""Seconds between checks that the client of a request that is not streamed is still there."""


def error_response(status: int, message: str, param: str | None = None, kind: str | None = None) -> JSONResponse:
    kind = kind or ("invalid_request_error" if status < 500 else "server_error")
    codes = {401: "invalid_api_key", 404: "not_found", 413: "request_too_large"}
    body = {"error": {"message": message, "type": kind, "param": param, "code": codes.get(status)}}
    return JSONResponse(body, status_code=status)


def _not_allowed(message: str, allow: str) -> JSONResponse:
    """A 405, with the methods the path answers in its Allow header (HTTP asks for one)."""
    refused = error_response(405, message)
    refused.headers["Allow"] = allow
    return refused


def create_app(
    served: dict[str, Served], worker: Worker, api_key: str | None = None, ready: Callable[[], None] | None = None
) -> FastAPI:
    """The API for ``served``, whose networks run on ``worker``'s thread (charnn.tasks.worker)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if ready is not None:
            ready()
        yield

    app = FastAPI(title="charnn", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.router.redirect_slashes = False  # /v1/completions/ is no path: a 404 that says so, not an empty 307
    app.state.served = served

    _add_errors(app, served, api_key)
    _add_page(app)

    @app.api_route("/health", methods=["GET", "HEAD"])
    async def health() -> dict[str, Any]:
        if api_key:
            return {"status": "ok"}
        return {"status": "ok", "models": {s.name: {"active": s.service.active} for s in served.values()}}

    @app.api_route("/v1/models", methods=["GET", "HEAD"])
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model(s) for s in served.values()]}

    @app.api_route("/v1/models/{name}", methods=["GET", "HEAD"])
    async def model(name: str) -> Any:
        if name not in served:
            return _unknown(name, served)
        return _model(served[name])

    @app.post("/v1/{endpoint}")
    async def answer(endpoint: str, request: Request) -> Response:
        if endpoint == "models":
            return _not_allowed(f"POST is not allowed on /v1/models; GET it. {_endpoints(served)}", "GET, HEAD")
        try:
            body = await _body(request)
            target = _target(body, endpoint, served)
            stream = bool(body.get("stream"))
            loop, event = asyncio.get_running_loop(), asyncio.Event()
            notify = lambda: loop.call_soon_threadsafe(event.set)  # noqa: E731
            job = await asyncio.wrap_future(worker.call(lambda: target.service.submit(body, notify, endpoint)))
        except RequestError as error:
            return error_response(error.status, str(error), error.param, error.kind)
        stamp = {"id": f"cmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": target.name}
        if stream:
            return StreamingResponse(_events(job, event, stamp), media_type="text/event-stream")
        return await _whole(job, event, request, stamp)

    return app


def _add_errors(app: FastAPI, served: dict[str, Served], api_key: str | None) -> None:
    """The key check before every /v1 request and the API's own error bodies for paths and methods it does not serve."""
    if api_key:
        app.add_middleware(KeyCheck, api_key=api_key)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        if error.status_code == 404 and request.url.path == "/v1/chat/completions":
            return error_response(
                404,
                "charnn's models complete text; they take no chat messages: POST /v1/completions with a prompt "
                f"(llm: add the runs as completion models, docs/serve.md). {_endpoints(served)}",
            )
        if error.status_code == 404:
            return error_response(404, f"no such path {request.url.path}; {_endpoints(served)}")
        posted = {e for s in served.values() for e in _paths(s)}  # what /v1/{endpoint} answers
        part = request.url.path.removeprefix("/v1/")
        unknown = part not in posted and part != "models"  # /v1/models is there, to GET
        if error.status_code == 405 and part != request.url.path and "/" not in part and unknown:
            return error_response(404, f"no such path {request.url.path}; {_endpoints(served)}")
        if error.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; {_endpoints(served)}"
            return _not_allowed(message, "POST" if part in posted else "GET, HEAD")
        return error_response(error.status_code, str(error.detail))


def _add_page(app: FastAPI) -> None:
    """The playground at / and its files under /static/ (nothing else there is ever read)."""

    @app.api_route("/", methods=["GET", "HEAD"])
    async def page() -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.api_route("/static/{name}", methods=["GET", "HEAD"])
    async def static(name: str) -> Response:
        if name not in PAGE_FILES:
            return error_response(404, f"no such file /static/{name}")
        return FileResponse(STATIC / name, media_type=PAGE_FILES[name])


class KeyCheck:
    """Refuse a /v1 request without the key, as plain ASGI: Starlette's @app.middleware wraps each request's
    receive channel, and a handler behind it never hears that its client went away (is_disconnected)."""

    def __init__(self, app: Any, api_key: str) -> None:
        self.app, self.api_key = app, api_key

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            request = Request(scope)
            if not _authorised(request, self.api_key):
                message = "this server needs an API key: send the header 'Authorization: Bearer KEY'"
                if request.headers.get("authorization", "").lower().startswith("bearer "):
                    message = "the API key sent is not this server's; send the key it was started with"
                await error_response(401, message)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _authorised(request: Request, key: str) -> bool:
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


def _endpoints(served: dict[str, Served]) -> str:
    gets = {"GET /v1/models", "GET /v1/models/NAME", "GET /health", "GET /"}
    paths = sorted({f"POST /v1/{e}" for s in served.values() for e in _paths(s)} | gets)
    return "charnn serves " + ", ".join(paths)


def _model(s: Served) -> dict[str, Any]:
    return {"id": s.name, "object": "model", "created": s.created, "owned_by": "charnn", **s.service.describe()}


def _unknown(name: Any, served: dict[str, Served]) -> JSONResponse:
    names = ", ".join(served) or "none"
    return error_response(404, f"model {name!r} is not served here; the served models are: {names}", "model")


async def _body(request: Request) -> dict[str, Any]:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
        raise RequestError(f"the request body is over {MAX_BODY:,} bytes", status=413)
    data = bytearray()
    try:
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_BODY:
                raise RequestError(f"the request body is over {MAX_BODY:,} bytes", status=413)
    except ClientDisconnect:  # nobody reads the answer; what matters is that no traceback is logged for it
        raise RequestError("the client went away before its request's body was read") from None
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(f"the body is not valid JSON ({error})") from None
    except RecursionError:  # Python's parser recurses once a bracket: a megabyte of '[' is deeper than its stack
        raise RequestError(TOO_DEEP) from None
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object")
    try:  # JSON may spell half a surrogate pair ("\\ud800"), which is no character: no tokenizer can read it
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise RequestError(TOO_DEEP) from None
    except UnicodeEncodeError as error:
        bad = error.object[error.start : error.end].encode("unicode_escape").decode("ascii")
        raise RequestError(
            f"the body holds {bad}, half of a surrogate pair and no character; send whole characters"
        ) from None
    return body


def _target(body: dict[str, Any], endpoint: str, served: dict[str, Served]) -> Served:
    endpoints = {e for s in served.values() for e in _paths(s)}
    if endpoint not in endpoints:
        raise RequestError(f"no such path /v1/{endpoint}; {_endpoints(served)}", status=404)
    name = body.get("model")
    if not isinstance(name, str):
        raise RequestError("model must be the name of a served run (GET /v1/models lists them)", param="model")
    if name not in served:
        names = ", ".join(served)
        raise RequestError(
            f"model {name!r} is not served here; the served models are: {names}", param="model", status=404
        )
    target = served[name]
    if endpoint not in _paths(target):
        raise RequestError(
            f"model {name!r} is {target.task.noun}: ask POST /v1/{target.task.endpoint}, not /v1/{endpoint}",
            param="model",
        )
    return target


def _paths(s: Served) -> tuple[str, ...]:
    return (s.task.endpoint, *s.task.more_endpoints)


async def _events(job: Any, event: asyncio.Event, stamp: dict[str, Any]) -> AsyncIterator[str]:
    """Server-sent events: each holds what was generated since the last; then ``data: [DONE]``."""
    loop = asyncio.get_running_loop()
    try:
        last = -EVENT_INTERVAL
        while True:
            try:  # a notice may be spared (the job's last push while an earlier one is unread): look again anyway
                await asyncio.wait_for(event.wait(), DISCONNECT_POLL)
            except asyncio.TimeoutError:
                pass
            wait = last + EVENT_INTERVAL - loop.time()
            if wait > 0 and not job.done:
                await asyncio.sleep(wait)
            event.clear()
            done = job.done
            for chunk in job.events():
                yield f"data: {json.dumps({**stamp, **chunk})}\n\n"
            last = loop.time()
            if done:
                break
        if job.error is not None:
            error = job.failure()
            failed = {"message": str(error), "type": error.kind, "param": None, "code": None}
            yield f"data: {json.dumps({'error': failed})}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        if not job.done:
            job.cancel()  # the client went away: its rows leave the batch at the next step


async def _whole(job: Any, event: asyncio.Event, request: Request, stamp: dict[str, Any]) -> Response:
    checked = time.monotonic()
    while not job.done:
        try:
            await asyncio.wait_for(event.wait(), DISCONNECT_POLL)
        except asyncio.TimeoutError:
            pass
        if time.monotonic() - checked >= DISCONNECT_POLL:  # notices may come every step: look between them too
            checked = time.monotonic()
            if await request.is_disconnected():
                job.cancel()
                return Response(status_code=499)
        event.clear()
        job.events()  # re-arms the job's notice
    try:  # in a thread, as the encoding: a large answer (eight choices of 20,000 scored tokens) takes a second
        answer = await asyncio.to_thread(lambda: {**stamp, **job.response()})
    except RequestError as error:
        return error_response(error.status, str(error), error.param, error.kind)
    try:
        return Response(await asyncio.to_thread(_encoded, answer), media_type="application/json")
    except ValueError:  # as JSONResponse refuses them: JSON has no NaN or infinity
        return error_response(500, "the model failed: its answer holds a number JSON cannot carry (NaN or infinity)")


ENCODED_TOGETHER = {"choices": 1, "data": 1, "values": 256}
"""The list in an answer that ``_encoded`` encodes in pieces, and how many of its items a piece: a choice
(up to 20,000 scored tokens) or a text's result alone, a /v1/cells answer's values 256 tokens' worth."""


def _encoded(answer: dict[str, Any]) -> bytes:
    """``answer`` as JSONResponse encodes it, its long list (choices, texts or cells) a piece at a time: json's
    encoder holds the interpreter for a whole call, and encoding a large answer whole (eight choices of 20,000
    scored tokens: 25 MB; 60,000 tokens' cells) would hold up every other request, the batch's steps too, for a
    second."""
    dump = functools.partial(json.dumps, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    key = next((k for k in ENCODED_TOGETHER if isinstance(answer.get(k), list)), None)
    if key is None:
        return dump(answer).encode()
    before, _, after = dump({**answer, key: []}).partition(f'"{key}":[]')
    items, size = answer[key], ENCODED_TOGETHER[key]
    pieces = [dump(items[start : start + size])[1:-1] for start in range(0, len(items), size)]
    return "".join([before, f'"{key}":[', ",".join(pieces), "]", after]).encode()
