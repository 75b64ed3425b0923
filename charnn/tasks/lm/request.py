"""A completion request as OpenAI's completions API defines it, checked field by field.

Every refusal is a RequestError naming the parameter at fault, so the server answers it with
OpenAI's error object and a 400. charnn's own fields ride along: ``top_k`` and ``style``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from charnn.errors import ConfigError, RequestError, as_json

DEFAULT_MAX_TOKENS = 256
"""Characters a completion writes when max_tokens is not given (OpenAI's default, 16, is a few words)."""
MAX_LOGPROBS = 5
"""Alternatives a position may report, as OpenAI allows."""

KNOWN = {
    "model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "n", "seed", "stop", "stream",
    "stream_options", "logprobs", "echo", "style", "user", "presence_penalty", "frequency_penalty",
    "best_of", "logit_bias", "suffix",
}  # fmt: skip


@dataclass(frozen=True)
class Completion:
    """What a completion request asks for."""

    prompts: tuple[str, ...]
    max_tokens: int | None
    """Characters of text per completion; None: the default (a record run's: its cap)."""
    temperature: float
    top_p: float
    top_k: int
    n: int
    seed: int | None
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool
    logprobs: int | None
    echo: bool
    style: str | None


def parse_completion(body: dict[str, Any], limits: Any) -> Completion:
    unknown = sorted(set(body) - KNOWN)
    if unknown:
        raise RequestError(f"unknown parameter {unknown[0]!r}; see GET /v1/models and docs/serve.md", param=unknown[0])
    _unsupported(body)
    prompts = _prompts(body.get("prompt", ""), limits)
    max_tokens = _integer(body, "max_tokens", None, 0, limits.max_tokens, "the server's --max-tokens")
    n = _integer(body, "n", 1, 1, limits.max_n, "the server's --max-n")
    if n * len(prompts) > limits.max_n:
        raise RequestError(
            f"n ({n}) times the prompts ({len(prompts)}) asks for {n * len(prompts)} completions; "
            f"the server's --max-n allows {limits.max_n}",
            param="n",
        )
    temperature = _number(body, "temperature", 1.0)
    if not 0 <= temperature <= 100:  # as charnn sample's --temp
        raise RequestError(f"temperature must be between 0 (greedy) and 100, got {temperature:g}", param="temperature")
    top_p = _number(body, "top_p", 1.0)
    if not 0 < top_p <= 1:
        raise RequestError(f"top_p must be in (0, 1], got {top_p:g}", param="top_p")
    stream = _flag(body, "stream")
    options = body.get("stream_options")
    if options is not None and not (
        isinstance(options, dict)
        and set(options) <= {"include_usage"}
        and isinstance(options.get("include_usage", False), bool)
    ):
        raise RequestError('stream_options must be an object like {"include_usage": true}', param="stream_options")
    return Completion(
        prompts=prompts,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=_integer(body, "top_k", 0, 0, None, ""),
        n=n,
        seed=_integer(body, "seed", None, -(2**63), 2**64 - 1, "a 64-bit seed"),
        stop=_stops(body.get("stop")),
        stream=stream,
        include_usage=bool((options or {}).get("include_usage")) and stream,
        logprobs=_integer(body, "logprobs", None, 0, MAX_LOGPROBS, "OpenAI's limit"),
        echo=_flag(body, "echo"),
        style=_style(body.get("style")),
    )


def _unsupported(body: dict[str, Any]) -> None:
    """OpenAI fields charnn accepts only at their neutral values."""
    for name in ("presence_penalty", "frequency_penalty"):
        if body.get(name) not in (None, 0, 0.0):
            raise RequestError(f"{name} is not supported by charnn; leave it out or 0", param=name)
    if body.get("logit_bias"):
        raise RequestError("logit_bias is not supported by charnn; leave it out", param="logit_bias")
    if body.get("suffix"):
        raise RequestError("suffix (insertion) is not supported by charnn; leave it out", param="suffix")
    best_of = body.get("best_of")
    if best_of is not None and best_of != (body.get("n") if body.get("n") is not None else 1):  # null n: 1
        raise RequestError("best_of is not supported by charnn; leave it out", param="best_of")


def _prompts(value: Any, limits: Any) -> tuple[str, ...]:
    prompts = [value] if isinstance(value, str) else value
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise RequestError("prompt must be a string or a non-empty list of strings (not token ids)", param="prompt")
    if len(prompts) > limits.max_inputs:
        raise RequestError(
            f"prompt holds {len(prompts)} prompts; the server allows {limits.max_inputs} a request", param="prompt"
        )
    for text in prompts:
        if len(text) > limits.max_prompt:
            raise RequestError(
                f"a prompt is {len(text):,} characters; the server's --max-prompt allows {limits.max_prompt:,}",
                param="prompt",
            )
    return tuple(prompts)


def _integer(body: dict[str, Any], name: str, default: int | None, low: int | None, high: int | None, cap: str):  # noqa: ANN202
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{name} must be a whole number, got {as_json(value)}", param=name)
    if low is not None and value < low:
        raise RequestError(f"{name} must be at least {low}, got {value}", param=name)
    if high is not None and value > high:
        raise RequestError(f"{name} is {value}; {cap} allows at most {high}", param=name)
    return value


def _number(body: dict[str, Any], name: str, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(f"{name} must be a finite number, got {as_json(value)}", param=name)
    return float(value)


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RequestError(f"{name} must be true or false, got {as_json(value)}", param=name)
    return value


def _stops(value: Any) -> tuple[str, ...]:
    stops = [] if value is None else [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > 16:
        raise RequestError("stop must be a non-empty string or a list of at most 16 of them", param="stop")
    return tuple(stops)


def _style(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise RequestError("style must be a style's name or a blend like 'a=0.5,b=0.5'", param="style")
    if value is not None and not value.strip():
        raise RequestError(
            "style is empty; give a style's name or a blend like 'a=0.5,b=0.5', or leave style out "
            "to have one drawn by the training mixture",
            param="style",
        )
    return value


def style_error(error: ConfigError) -> RequestError:
    """A style that does not parse, as a refused request."""
    return RequestError(str(error).replace("--style", "style"), param="style")
