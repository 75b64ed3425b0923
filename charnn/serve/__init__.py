"""`charnn serve`: trained runs behind an OpenAI-compatible HTTP API (FastAPI on uvicorn).

runs.py    the run folders served, each loaded once and answered by its kind's service
app.py     the HTTP API: routes, the OpenAI error object, the key, body caps, streaming
server.py  uvicorn on a bound socket; SIGINT/SIGTERM end in-flight streams, then the server

This package knows no kind of run: each kind's service (``Task.service``) answers its endpoint.
"""
