"""`charnn serve` with the clients people use: the official `openai` Python client and the `llm` command.

Both talk to a real uvicorn server started as `charnn serve` on a free localhost port."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from tests.serving import Server, copied_runs


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    served = Server(*copied_runs(tmp_path_factory.mktemp("clients"), "lm", "classifier"), "--api-key", "k3y")
    yield served
    assert served.stop() == 0


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="k3y", max_retries=0, timeout=60)


def test_the_openai_client_lists_the_models(client):
    models = {m.id: m for m in client.models.list()}
    assert set(models) == {"lm", "classifier"}
    assert models["classifier"].model_extra["labels"] == ["recipe", "story"]


def test_the_openai_client_completes_and_streams_the_same_text(client):
    whole = client.completions.create(model="lm", prompt="The ", max_tokens=80, seed=7, temperature=0.8)
    assert len(whole.choices[0].text) == 80 and whole.choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == 80 and whole.usage.prompt_tokens == 4
    chunks = list(
        client.completions.create(
            model="lm", prompt="The ", max_tokens=80, seed=7, temperature=0.8, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].usage.completion_tokens == 80


def test_the_openai_client_reads_logprobs_and_charnns_own_fields(client):
    out = client.completions.create(model="lm", prompt="An", max_tokens=12, logprobs=5, extra_body={"top_k": 3})
    logprobs = out.choices[0].logprobs
    assert "".join(logprobs.tokens) == out.choices[0].text
    assert all(len(top) == 5 and sum(math.exp(v) for v in top.values()) <= 1 + 1e-6 for top in logprobs.top_logprobs)
    # top_k 3: every drawn character is among the three most likely
    for token, top in zip(logprobs.tokens, logprobs.top_logprobs):
        assert token in sorted(top, key=top.get, reverse=True)[:3]


def test_errors_surface_as_the_openai_clients_exceptions(client, server):
    with pytest.raises(openai.NotFoundError, match="served models are: lm, classifier"):
        client.completions.create(model="gpt-4", prompt="x")
    with pytest.raises(openai.BadRequestError, match="temperature") as raised:
        client.completions.create(model="lm", prompt="x", temperature=-0.5)
    assert raised.value.param == "temperature"
    with pytest.raises(openai.BadRequestError, match="/v1/classify"):
        client.completions.create(model="classifier", prompt="x")
    wrong = openai.OpenAI(base_url=server.url + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.completions.create(model="lm", prompt="x")


def test_the_llm_command_completes_through_extra_openai_models(server, tmp_path):
    llm = shutil.which("llm", path=str(Path(sys.executable).parent)) or shutil.which("llm")
    if llm is None:
        pytest.skip("the llm command is not installed (bin/test installs it)")
    config = tmp_path / "llm"
    config.mkdir()
    (config / "extra-openai-models.yaml").write_text(
        "- model_id: charnn-lm\n"
        "  model_name: lm\n"
        f"  api_base: {server.url}/v1\n"
        "  api_key_name: charnn\n"
        "  completion: true\n",
        encoding="utf-8",
    )
    (config / "keys.json").write_text('{"charnn": "k3y"}', encoding="utf-8")
    env = {**os.environ, "LLM_USER_PATH": str(config)}
    for stream in ([], ["--no-stream"]):
        result = subprocess.run(
            [llm, "-m", "charnn-lm", "The ", "-o", "max_tokens", "40", "-o", "temperature", "0", *stream],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.rstrip("\n")) >= 30
    greedy = openai.OpenAI(base_url=server.url + "/v1", api_key="k3y").completions.create(
        model="lm", prompt="The ", max_tokens=40, temperature=0
    )
    assert result.stdout.rstrip("\n") == greedy.choices[0].text.rstrip("\n")
