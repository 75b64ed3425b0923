"""`charnn serve` over raw HTTP (httpx): the protocol, bad requests, isolation under load, shutdown.

Every test talks to a real uvicorn server started as `charnn serve` on a free localhost port."""

from __future__ import annotations

import asyncio
import functools
import json
import math
import shutil
import time
from pathlib import Path

import httpx
import pytest

from tests.serving import Server, copied_runs

KINDS = ("lm", "records", "styles", "classifier", "tagger")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return copied_runs(tmp_path_factory.mktemp("served"), *KINDS)


@pytest.fixture(scope="module")
def server(runs):
    served = Server(*runs)
    yield served
    assert served.stop() == 0


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60, trust_env=False) as c:
        yield c


def complete(client, **body):
    response = client.post("/v1/completions", json={"model": "lm", **body})
    assert response.status_code == 200, response.text
    return response.json()


def stream_texts(client, **body) -> tuple[list[str], list[dict]]:
    """The text of each event of a streamed completion, and the events."""
    events = []
    with client.stream("POST", "/v1/completions", json={"model": "lm", "stream": True, **body}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        assert line.startswith("data: ")
        events.append(json.loads(line[6:]))
    return ["".join(c["text"] for c in e["choices"]) for e in events], events


def test_models_lists_each_run_with_its_kind_and_what_it_predicts(client):
    data = client.get("/v1/models").json()
    assert data["object"] == "list"
    models = {m["id"]: m for m in data["data"]}
    assert set(models) == set(KINDS)
    assert all(m["object"] == "model" and m["owned_by"] == "charnn" for m in models.values())
    assert models["lm"]["kind"] == "lm" and models["lm"]["endpoint"] == "/v1/completions"
    assert models["styles"]["styles"] == ["prose", "names"]
    assert models["styles"]["style_records"] == [  # what each style reads: the page counts a score by it
        {"records": None, "separator": None},
        {"records": "one record a line", "separator": models["records"]["separator"]},
    ]
    assert models["styles"]["records"] is None and models["lm"]["style_records"] is None
    assert models["records"]["records"] == "one record a line"
    assert models["classifier"]["labels"] == ["recipe", "story"]
    assert models["tagger"]["tags"] == ["B-name", "O", "I-name"]
    assert client.get("/v1/models/tagger").json()["tags"] == ["B-name", "O", "I-name"]
    assert client.get("/health").json()["status"] == "ok"


def test_a_completion_counts_characters_and_tokens(client):
    out = complete(client, prompt="The ", max_tokens=37, seed=3)
    (choice,) = out["choices"]
    assert len(choice["text"]) == 37 and choice["finish_reason"] == "length"
    assert out["object"] == "text_completion" and out["model"] == "lm" and out["id"].startswith("cmpl-")
    assert out["usage"] == {"prompt_tokens": 4, "completion_tokens": 37, "total_tokens": 41}


def test_a_seeded_request_gives_the_same_text_and_its_stream_the_same_text(client):
    body = dict(prompt="She said ", max_tokens=300, temperature=0.9, top_p=0.95, top_k=20, seed=11)
    first, second = complete(client, **body), complete(client, **body)
    assert first["choices"][0]["text"] == second["choices"][0]["text"]
    assert complete(client, **{**body, "seed": 12})["choices"][0]["text"] != first["choices"][0]["text"]
    pieces, events = stream_texts(client, **body)
    assert "".join(pieces) == first["choices"][0]["text"]
    assert events[-1]["choices"][0]["finish_reason"] == "length"
    assert len(events) < 300 / 2  # an event carries what was written since the last, not one character
    # streamed logprobs carry the offsets the whole response gives (echo included)
    logged = {**body, "logprobs": 1, "echo": True, "max_tokens": 60}
    whole = complete(client, **logged)["choices"][0]["logprobs"]["text_offset"]
    _, chunks = stream_texts(client, **logged)
    streamed = [o for e in chunks for c in e["choices"] if c["logprobs"] for o in c["logprobs"]["text_offset"]]
    assert streamed == whole and whole[:3] == [0, 1, 2]


def test_n_and_a_list_of_prompts_give_every_choice_in_order(client):
    out = complete(client, prompt=["A", "B"], n=3, max_tokens=20, seed=1)
    assert [c["index"] for c in out["choices"]] == list(range(6))
    assert all(len(c["text"]) == 20 for c in out["choices"])
    assert len({c["text"] for c in out["choices"]}) == 6
    assert out["usage"]["completion_tokens"] == 120


def test_stop_strings_cut_before_the_stop(client):
    text = complete(client, prompt="The ", max_tokens=400, seed=2)["choices"][0]["text"]
    stop = text[50:52]
    cut = complete(client, prompt="The ", max_tokens=400, seed=2, stop=[stop, "never here"])["choices"][0]
    assert cut["text"] == text[: text.index(stop)] and cut["finish_reason"] == "stop"


def test_echo_scoring_gives_the_figures_charnn_eval_gives(client, runs):
    from charnn.tasks import load_run
    from charnn.tasks.lm.evaluate import evaluate_text

    text = "The old wizard looked at the door, and the door looked back at him.\n"
    out = complete(client, prompt=text, max_tokens=0, echo=True, logprobs=3)
    (choice,) = out["choices"]
    logprobs = choice["logprobs"]
    assert choice["text"] == text and "".join(logprobs["tokens"]) == text
    assert logprobs["token_logprobs"][0] is None  # the first character is only context, as in charnn eval
    nll = -sum(logprobs["token_logprobs"][1:])
    metrics = evaluate_text(load_run(runs[0]), text)
    assert nll / math.log(2) / metrics.chars == pytest.approx(metrics.bits_per_char, rel=1e-5)
    for top, lp in zip(logprobs["top_logprobs"][1:], logprobs["token_logprobs"][1:]):
        assert len(top) == 3 and max(top.values()) >= lp - 1e-6
        assert sum(math.exp(v) for v in top.values()) <= 1 + 1e-6
    assert logprobs["text_offset"][:3] == [0, 1, 2]
    # a character the run never saw is read as the unknown token, and still spelt as itself
    odd = complete(client, prompt="It \U0001f600 rained", max_tokens=3, echo=True, logprobs=1, seed=1)["choices"][0]
    assert odd["logprobs"]["tokens"][3] == "\U0001f600" and "".join(odd["logprobs"]["tokens"]) == odd["text"]


def test_echo_scoring_and_cells_read_a_record_runs_text_as_charnn_eval_reads_its_records(client, runs):
    import numpy as np

    from charnn.tasks import load_run
    from charnn.tasks.lm.evaluate import evaluate_text

    text = "Crimson Dawn\nBlue Sky\n"  # two line records, each ending at its separator
    out = complete(client, model="records", prompt=text, max_tokens=0, echo=True, logprobs=2)
    logprobs = out["choices"][0]["logprobs"]
    assert out["choices"][0]["text"] == text and "".join(logprobs["tokens"]) == text
    assert None not in logprobs["token_logprobs"]  # every record is read from the boundary: all scored
    nll = -sum(logprobs["token_logprobs"])
    metrics = evaluate_text(load_run(runs[1]), text)  # each separator: the record's end, one character
    assert metrics.chars == len(text)
    assert nll / math.log(2) / metrics.chars == pytest.approx(metrics.bits_per_char, rel=1e-5)
    # the second record is read from the boundary, not after the first: as it is scored alone
    alone = complete(client, model="records", prompt="Blue Sky\n", max_tokens=0, echo=True, logprobs=2)
    second = logprobs["token_logprobs"][len("Crimson Dawn\n") :]
    assert second == pytest.approx(alone["choices"][0]["logprobs"]["token_logprobs"], abs=1e-5)
    # the cells restart there too; the separator is shown as itself
    both = client.post("/v1/cells", json={"model": "records", "input": text}).json()
    one = client.post("/v1/cells", json={"model": "records", "input": "Blue Sky\n"}).json()
    assert "".join(both["tokens"]) == text and both["tokens"][12] == "\n"
    assert np.asarray(both["values"][13:]) == pytest.approx(np.asarray(one["values"]), abs=1e-4)
    # a prompt to complete still begins one record
    refused = client.post("/v1/completions", json={"model": "records", "prompt": text, "max_tokens": 5})
    assert refused.status_code == 400 and "single record" in refused.json()["error"]["message"]
    # a separator the text begins with bounds no record: eval trims it, echo shows it unscored (it scored it)
    lead = complete(client, model="records", prompt="\n" + text, max_tokens=0, echo=True, logprobs=2)
    lead_logprobs = lead["choices"][0]["logprobs"]
    assert "".join(lead_logprobs["tokens"]) == "\n" + text and lead_logprobs["token_logprobs"][0] is None
    assert lead_logprobs["token_logprobs"][1:] == pytest.approx(logprobs["token_logprobs"], abs=1e-5)
    # what charnn eval (and charnn show) refuse, the server refuses too (it scored an empty record, unasked)
    gap = "Crimson Dawn\n\nBlue Sky\n"
    for path, key in (("/v1/completions", "prompt"), ("/v1/cells", "input")):
        body = {"model": "records", key: gap, **({"max_tokens": 0, "echo": True} if key == "prompt" else {})}
        error = client.post(path, json=body)
        assert error.status_code == 400 and error.json()["error"]["param"] == key, error.text
        assert "the record at line 2 is empty; remove it: this run reads one record a line" in error.text


def test_any_64_bit_seed_and_any_top_k_are_answered_and_half_a_surrogate_pair_is_refused(client):
    first, again = (complete(client, prompt="The", max_tokens=12, seed=-1) for _ in range(2))
    assert first["choices"][0]["text"] == again["choices"][0]["text"]  # negative seeds repeat, as in the CLI
    wide, none = (complete(client, prompt="The", max_tokens=12, seed=3, top_k=k) for k in (10**30, 0))
    assert wide["choices"][0]["text"] == none["choices"][0]["text"]  # a top_k past the vocabulary cuts nothing
    bodies = {
        "completions": '{"model": "lm", "prompt": "a\\ud800b", "max_tokens": 3, "echo": true}',
        "classify": '{"model": "classifier", "input": "\\ud800"}',
        "tag": '{"model": "tagger", "input": "\\udc00 x"}',
    }
    for endpoint, body in bodies.items():
        response = client.post(f"/v1/{endpoint}", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, (body, response.text)
        assert "half of a surrogate pair" in response.json()["error"]["message"]


def test_a_temperature_too_small_for_floats_draws_the_greedy_text(client):
    greedy = complete(client, prompt="The", max_tokens=20, temperature=0)["choices"][0]["text"]
    for tiny in (1e-40, 1e-310):  # logits / 1e-310 overflow even float64
        assert complete(client, prompt="The", max_tokens=20, temperature=tiny, seed=1)["choices"][0]["text"] == greedy


def test_generated_logprobs_give_each_character_and_its_alternatives(client):
    choice = complete(client, prompt="It ", max_tokens=30, logprobs=5, seed=4)["choices"][0]
    logprobs = choice["logprobs"]
    assert "".join(logprobs["tokens"]) == choice["text"]
    assert len(logprobs["token_logprobs"]) == 30 and all(lp <= 0 for lp in logprobs["token_logprobs"])
    assert all(len(top) == 5 and sum(math.exp(v) for v in top.values()) <= 1 + 1e-6 for top in logprobs["top_logprobs"])
    # the model's own figures: those echo scoring (and charnn eval) gives the same characters, nothing banned first
    scored = complete(client, prompt="It " + choice["text"], max_tokens=0, echo=True, logprobs=1)["choices"][0]
    gaps = [a - b for a, b in zip(logprobs["token_logprobs"], scored["logprobs"]["token_logprobs"][-30:])]
    assert max(map(abs, gaps)) < 0.05 and abs(sum(gaps) / len(gaps)) < 0.005, gaps  # int8 steps round; no offset


def test_a_record_run_answers_with_whole_records(client):
    out = complete(client, model="records", n=8, seed=5, max_tokens=500)
    for choice in out["choices"]:
        assert choice["finish_reason"] == "stop" and "\n" not in choice["text"] and choice["text"]


def test_a_style_run_writes_in_the_style_asked_for(client):
    names = complete(client, model="styles", style="names", n=4, seed=6, max_tokens=200)["choices"]
    assert all("\n" not in c["text"] and c["finish_reason"] == "stop" for c in names)  # names are line records
    blend = complete(client, model="styles", style="prose=0.5,names=0.5", seed=6, max_tokens=50)["choices"][0]
    assert blend["text"]


def test_classify_and_tag_answer_what_predict_json_prints(client, runs):
    from charnn.tasks import load_run
    from charnn.tasks.classify.classifier import predict_lines
    from charnn.tasks.tag.tagger import tag_sentences

    texts = ["Stir the flour into the butter.", "The dragon slept."]
    data = client.post("/v1/classify", json={"model": "classifier", "input": texts}).json()["data"]
    expected = list(predict_lines(load_run(runs[3]), texts))
    assert [(d["label"], d["probabilities"]) for d in data] == [(label, pytest.approx(p)) for label, p in expected]
    one = client.post("/v1/classify", json={"model": "classifier", "input": texts[0]}).json()["data"]
    assert len(one) == 1 and one[0]["label"] == expected[0][0]
    sentences = ["Mara walked to Dunmore", ["Mara", "slept"]]
    data = client.post("/v1/tag", json={"model": "tagger", "input": sentences}).json()["data"]
    tagged = list(tag_sentences(load_run(runs[4]), [sentences[0].split(), sentences[1]]))
    assert [(d["tokens"], d["tags"]) for d in data] == [(w, t) for w, t, _ in tagged]
    assert [d["probabilities"] for d in data] == [pytest.approx(p) for _, _, p in tagged]


def test_cells_give_a_layers_values_after_each_character(client, runs):
    import numpy as np

    from charnn.tasks import load_run

    text = 'He said "go".'
    out = client.post("/v1/cells", json={"model": "lm", "input": text, "layer": 0, "state": "cell"}).json()
    assert out["tokens"] == list(text) and out["layer"] == 0 and out["state"] == "cell"
    nulls = client.post("/v1/cells", json={"model": "lm", "input": text, "layer": None, "state": None}).json()
    assert (nulls["layer"], nulls["state"]) == (1, "hidden")  # null is the default, as elsewhere in the API
    assert all(len(repr(float(v)).partition(".")[2]) <= 4 for row in out["values"] for v in row)  # 4 places, as said
    values = np.asarray(out["values"])
    run = load_run(runs[0])
    assert values.shape == (len(text), run.model.config.hidden) == (len(text), out["units"])
    # the same figures as the model's own fused layer reading the text from the zero state
    ids = run.tokenizer.encode(text)
    import torch

    with torch.no_grad():
        _, (h, c) = run.model.rnns[0](run.model.embed(torch.as_tensor(ids, dtype=torch.long)[None, :]))
    assert values[-1] == pytest.approx(c[0, 0].numpy(), abs=2e-4)
    top = client.post("/v1/cells", json={"model": "lm", "input": text}).json()
    assert top["layer"] == run.model.config.layers - 1 and top["state"] == "hidden"


def test_classify_says_what_the_attention_pooling_weighed(client):
    out = client.post("/v1/classify", json={"model": "classifier", "input": "Bake it", "attention": True}).json()
    (result,) = out["data"]
    assert "".join(result["tokens"]).replace("▁", " ").strip() == "Bake it"
    assert len(result["attention"]) == len(result["tokens"]) and sum(result["attention"]) == pytest.approx(1, abs=1e-5)
    # characters the vocabulary lacks are read as bytes, each character spelt by the byte that completes it
    text = "naïve 🐉 日本"
    out = client.post("/v1/classify", json={"model": "classifier", "input": text, "attention": True}).json()
    tokens = out["data"][0]["tokens"]
    assert "".join(tokens).replace("▁", " ") == text and "\ufffd" not in "".join(tokens)
    assert "" in tokens and len(out["data"][0]["attention"]) == len(tokens)


BAD = [
    ({"model": "lm", "temperature": -1}, 400, "temperature"),
    ({"model": "lm", "temperature": "hot"}, 400, "temperature"),
    ({"model": "lm", "temperature": 101}, 400, "temperature"),  # as charnn sample --temp
    ({"model": "lm", "stream": True, "stream_options": {"include_usage": "yes"}}, 400, "stream_options"),
    ({"model": "lm", "top_p": 0}, 400, "top_p"),
    ({"model": "lm", "top_p": 1.5}, 400, "top_p"),
    ({"model": "lm", "max_tokens": 4097}, 400, "max_tokens"),
    ({"model": "lm", "max_tokens": -1}, 400, "max_tokens"),
    ({"model": "lm", "max_tokens": "5"}, 400, "max_tokens"),
    ({"model": "lm", "n": 17}, 400, "n"),
    ({"model": "lm", "n": 4, "prompt": ["a"] * 5}, 400, "n"),
    ({"model": "lm", "prompt": "x" * 20_001}, 400, "prompt"),
    ({"model": "lm", "prompt": [1, 2, 3]}, 400, "prompt"),
    ({"model": "lm", "stop": ""}, 400, "stop"),
    ({"model": "lm", "logprobs": 6}, 400, "logprobs"),
    ({"model": "lm", "stream": "yes"}, 400, "stream"),
    ({"model": "lm", "temprature": 0.5}, 400, "temprature"),
    ({"model": "lm", "presence_penalty": 1}, 400, "presence_penalty"),
    ({"model": "lm", "style": "prose"}, 400, "style"),
    ({"model": "styles", "style": "poetry"}, 400, "style"),
    ({"model": "styles", "style": "prose=-1"}, 400, "style"),
    ({"model": "styles", "style": ""}, 400, "style"),  # not the style drawn when style is left out
    ({"model": "records", "prompt": "one\ntwo"}, 400, "prompt"),
    ({"model": "lm", "seed": 2**64}, 400, "seed"),
    ({"model": "nope"}, 404, "model"),
    ({"model": "../../etc/passwd"}, 404, "model"),
    ({"model": "/etc/passwd"}, 404, "model"),
    ({"model": 3}, 400, "model"),
    ({}, 400, "model"),
    ({"model": "classifier", "prompt": "hi"}, 400, "model"),
    ({"model": "classifier", "input": 5}, 400, "input"),
    ({"model": "classifier", "input": []}, 400, "input"),
    ({"model": "classifier", "input": ["x"] * 257}, 400, "input"),
    ({"model": "classifier", "input": "hi", "stream": True}, 400, "stream"),
    ({"model": "classifier", "input": "hi", "attention": "yes"}, 400, "attention"),
    ({"model": "tagger", "input": [["  "]]}, 400, "input"),  # a token of whitespace alone, as [[""]]
    ({"model": "lm", "input": "x" * 4001, "cells": True}, 400, "input"),
    ({"model": "lm", "input": "abc", "layer": 9, "cells": True}, 400, "layer"),
    ({"model": "lm", "input": "abc", "state": "gate", "cells": True}, 400, "state"),
    ({"model": "lm", "input": "abc", "state": "", "cells": True}, 400, "state"),
    ({"model": "lm", "input": "abc", "colour": "red", "cells": True}, 400, "colour"),
    ({"model": "lm", "input": "", "cells": True}, 400, "input"),
    ({"model": "tagger", "input": "abc", "cells": True}, 400, "model"),
]


def _endpoint(body: dict) -> str:
    if body.pop("cells", False):
        return "/v1/cells"
    if "input" in body:
        return "/v1/tag" if body.get("model") == "tagger" else "/v1/classify"
    return "/v1/completions"


@pytest.mark.parametrize(("body", "status", "param"), BAD, ids=[f"{b.get('model')}-{p}" for b, _, p in BAD])
def test_a_bad_request_gets_openais_error_object_naming_the_parameter(client, body, status, param):
    body = dict(body)
    response = client.post(_endpoint(body), json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert "\n" not in error["message"] and len(error["message"]) < 300


def test_what_the_messages_say(client):
    def message(path, body):
        return client.post(path, json=body).json()["error"]["message"]

    assert "served models are: lm, records, styles, classifier, tagger" in message("/v1/completions", {"model": "x"})
    assert "POST /v1/classify" in message("/v1/completions", {"model": "classifier"})
    assert "POST /v1/completions" in message("/v1/tag", {"model": "lm", "input": "a b"})
    assert "--max-tokens allows at most 4096" in message("/v1/completions", {"model": "lm", "max_tokens": 5000})
    assert "this run's styles are: prose, names" in message("/v1/completions", {"model": "styles", "style": "x"})
    # a value is quoted as the request's JSON spelled it, not as Python would
    nan = client.post("/v1/completions", content=b'{"model": "lm", "temperature": NaN}').json()["error"]["message"]
    assert nan == "temperature must be a finite number, got NaN"
    assert message("/v1/completions", {"model": "lm", "max_tokens": True}).endswith("got true")
    assert message("/v1/completions", {"model": "lm", "stream": "yes"}).endswith('got "yes"')
    assert message("/v1/completions", {"model": "lm", "temperature": -1}).endswith("got -1")
    assert message("/v1/completions", {"model": "lm", "top_p": 1.5}).endswith("got 1.5")
    assert message("/v1/cells", {"model": "lm", "input": "ab", "layer": [0]}).endswith("got [0]")


def test_bodies_that_are_not_requests_and_paths_that_are_not_served(client):
    deep = b'{"model": "lm", "prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for raw, status in [(b"{not json", 400), (b"[1, 2]", 400), (b"\xff\xfe", 400), (b"", 400), (deep, 400)]:
        response = client.post("/v1/completions", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == status and "error" in response.json()
    chat = client.post("/v1/chat/completions", json={"model": "lm", "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 404 and "POST /v1/completions with a prompt" in chat.json()["error"]["message"]
    big = client.post("/v1/completions", content=b"{" + b" " * (1 << 20) + b"}")
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    for method, path in [("POST", "/v1/chat/completions"), ("GET", "/v2"), ("POST", "/v1/embeddings")]:
        response = client.request(method, path, json={"model": "lm"})
        assert response.status_code == 404 and "charnn serves" in response.json()["error"]["message"]
    assert client.get("/v1/models/nope").status_code == 404
    assert client.get("/").headers["content-type"].startswith("text/html")
    for path in ["/", "/health", "/v1/models", "/v1/models/lm", "/static/page.js"]:  # what GET answers, HEAD does
        head = client.head(path)
        assert head.status_code == 200 and head.content == b"", path
    assert client.get("/static/page.js").status_code == 200
    for path in ["/static/..%2f..%2fapp.py", "/static/../app.py", "/static/%2e%2e/runs.py", "/static/x.js"]:
        assert client.get(path).status_code == 404
    assert client.get("/v1/completions").status_code == 405
    assert client.get("/v1/nope").status_code == 404  # no such path, whatever the method
    gone = client.delete("/v1/models/lm")
    assert gone.status_code == 405 and "GET /v1/models/NAME" in gone.json()["error"]["message"]
    slash = client.post("/v1/completions/", json={"model": "lm"})
    assert slash.status_code == 404 and "charnn serves" in slash.json()["error"]["message"]  # not an empty 307
    wrong = client.post("/v1/models", json={})
    assert wrong.status_code == 405 and "GET it" in wrong.json()["error"]["message"]
    for method in ("DELETE", "PUT", "PATCH"):  # the list is there, to GET
        listed = client.request(method, "/v1/models")
        assert listed.status_code == 405 and listed.headers["allow"] == "GET, HEAD", method
        assert f"{method} is not allowed on /v1/models" in listed.json()["error"]["message"]


def test_a_client_gone_before_its_body_is_read_logs_no_traceback(server, client):
    import socket

    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    before = len(server.stderr)
    for _ in range(3):  # a body of 100 bytes announced, 13 sent, then the connection closed
        with socket.create_connection((host, int(port))) as s:
            s.sendall(b'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"model":"lm"')
            time.sleep(0.3)
    assert len(complete(client, prompt="The ", max_tokens=20, seed=1)["choices"][0]["text"]) == 20
    time.sleep(0.5)
    logged = "".join(server.stderr[before:])
    assert "Traceback" not in logged and "Exception" not in logged, logged


def test_hundreds_of_bad_requests_change_nothing(client):
    before = complete(client, prompt="The ", max_tokens=60, seed=9)
    for _ in range(8):
        for body, status, _ in BAD:
            body = dict(body)
            assert client.post(_endpoint(body), json=body).status_code == status
    after = complete(client, prompt="The ", max_tokens=60, seed=9)
    assert after["choices"] == before["choices"]
    assert client.get("/health").json()["models"]["lm"]["active"] == 0


async def _greedy(url: str, prompts: list[str], others: int) -> list[str]:
    async with httpx.AsyncClient(base_url=url, timeout=120, trust_env=False) as c:

        async def one(prompt: str) -> str:
            body = {"model": "lm", "prompt": prompt, "max_tokens": 200, "temperature": 0, "stream": True}
            text = ""
            async with c.stream("POST", "/v1/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: {"):
                        text += "".join(ch["text"] for ch in json.loads(line[6:])["choices"])
            return text

        crowd = [f"{i} then {i * 7 % 13}, " for i in range(others)]
        return (await asyncio.gather(*(one(p) for p in prompts + crowd)))[: len(prompts)]


def test_under_load_no_request_sees_another(server):
    prompts = ["The king ", "Once upon ", '"Where', "In the morning the", "she ran", "Dragons", "A", "and then"]
    alone = [asyncio.run(_greedy(server.url, [p], 0))[0] for p in prompts]
    assert len(set(alone)) > 1
    crowded = asyncio.run(_greedy(server.url, prompts, 56))
    assert crowded == alone


async def _seeded(url: str, prompts: list[tuple[str, int]], others: int) -> list[tuple[str, list[float]]]:
    """Each (prompt, seed)'s sampled text and its tokens' logprobs, streamed among ``others``."""
    async with httpx.AsyncClient(base_url=url, timeout=120, trust_env=False) as c:

        async def one(prompt: str, seed: int, cut: dict | None = None) -> tuple[str, list[float]]:
            body = {"model": "lm", "prompt": prompt, "max_tokens": 120, "temperature": 1.0, "seed": seed, **(cut or {})}
            text, logprobs = "", []
            async with c.stream("POST", "/v1/completions", json={**body, "logprobs": 1, "stream": True}) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: {"):
                        for choice in json.loads(line[6:])["choices"]:
                            text += choice["text"]
                            logprobs += (choice.get("logprobs") or {}).get("token_logprobs") or []
            return text, logprobs

        cuts = [{}, {"top_p": 0.8}, {"top_k": 5}]  # a neighbour that cuts changes no other row's draw
        crowd = [(f"{i} and {i * 5 % 11}: ", i, cuts[i % 3]) for i in range(others)]
        return (await asyncio.gather(*(one(*p) for p in prompts + crowd)))[: len(prompts)]


def test_a_seeded_sample_and_its_logprobs_are_the_same_alone_and_in_a_crowd(server):
    """Where the server steps with exact int8 rows (CPUs with bf16 units), to the last bit."""
    import torch

    from charnn.tasks.lm.batcher import serving_dtype

    prompts = [("The king ", 1), ('"Where', 2), ("she ran", 3), ("A", 4)]
    alone = [asyncio.run(_seeded(server.url, [p], 0))[0] for p in prompts]
    crowded = asyncio.run(_seeded(server.url, prompts, 40))
    assert all(len(lp) == 120 for _, lp in alone) and len({t for t, _ in alone}) == len(prompts)
    assert [t for t, _ in crowded] == [t for t, _ in alone]
    if serving_dtype(torch.device("cpu")) == torch.int8:
        assert [lp for _, lp in crowded] == [lp for _, lp in alone]
    else:  # fp32 gemms round a row by its batch
        for (_, a), (_, b) in zip(crowded, alone):
            assert a == pytest.approx(b, rel=1e-4, abs=1e-5)


async def _drop(url: str, count: int) -> float:
    """Open ``count`` long streams, read a little of each, close them all: seconds until the batch is empty."""
    async with httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as c:
        body = {"model": "lm", "max_tokens": 10_000_000, "stream": True}
        contexts = [c.stream("POST", "/v1/completions", json={**body, "prompt": f"{i} "}) for i in range(count)]
        responses = [await ctx.__aenter__() for ctx in contexts]
        lines = [response.aiter_lines() for response in responses]  # kept: a dropped iterator closes its stream
        for each in lines:
            await each.__anext__()
        assert (await c.get("/health")).json()["models"]["lm"]["active"] == count
        for ctx in contexts:
            await ctx.__aexit__(None, None, None)
        start = time.monotonic()
        while (await c.get("/health")).json()["models"]["lm"]["active"]:
            if time.monotonic() - start > 5:
                break
            await asyncio.sleep(0.02)
        return time.monotonic() - start


def test_streams_that_are_dropped_leave_the_batch_at_once(tmp_path):
    server = Server(*copied_runs(tmp_path, "lm"), "--max-tokens", "10000000")
    try:
        assert asyncio.run(_drop(server.url, 32)) < 1.0
        # a request that is not streamed, whose client gives up while its rows still step
        with httpx.Client(base_url=server.url, timeout=60, trust_env=False) as c:
            body = {"model": "lm", "prompt": "a", "max_tokens": 10_000_000, "n": 16}
            with pytest.raises(httpx.ReadTimeout):
                c.post("/v1/completions", json=body, timeout=0.5)
            start = time.monotonic()
            while c.get("/health").json()["models"]["lm"]["active"] and time.monotonic() - start < 10:
                time.sleep(0.02)
            assert time.monotonic() - start < 1.0
    finally:
        assert server.stop() == 0


def test_a_run_folder_that_disappears_while_served_does_not_stop_the_server(client, runs):
    shutil.rmtree(runs[0])
    assert len(complete(client, prompt="x", max_tokens=10)["choices"][0]["text"]) == 10
    assert client.get("/v1/models").status_code == 200


def test_generated_logprobs_are_the_models_own_and_the_default_length_keeps_to_max_tokens(tmp_path):
    from safetensors.torch import load_file, save_file

    run = Path(copied_runs(tmp_path, "lm")[0])
    weights = load_file(run / "model.safetensors")
    weights["head.bias"][0] += 4.0  # the unknown token (id 0, never drawn) now holds much of the mass
    save_file(weights, run / "model.safetensors", metadata={"format": "pt"})
    server = Server(str(run), "--max-tokens", "50")
    try:
        with httpx.Client(base_url=server.url, timeout=60, trust_env=False) as c:
            choice = complete(c, prompt="It ", max_tokens=20, logprobs=1, seed=4)["choices"][0]
            scored = complete(c, prompt="It " + choice["text"], max_tokens=0, echo=True, logprobs=1)["choices"][0]
            capped = complete(c, prompt="a", n=4, seed=1)  # the default is 256, past this server's cap
    finally:
        assert server.stop() == 0
    assert [len(c["text"]) for c in capped["choices"]] == [50] * 4
    assert {c["finish_reason"] for c in capped["choices"]} == {"length"}
    drawn, own = choice["logprobs"]["token_logprobs"], scored["logprobs"]["token_logprobs"][-20:]
    gaps = [a - b for a, b in zip(drawn, own, strict=True)]
    assert max(map(abs, gaps)) < 0.05, gaps  # int8 steps round a little; no offset of the banned token's mass


def streaming_gaps(server: Server, gaps: list[float], stop) -> None:  # noqa: ANN001
    """Stream a long completion from ``server`` until ``stop`` is set, the seconds between its events in ``gaps``."""
    with httpx.Client(base_url=server.url, timeout=120, trust_env=False) as c:
        body = {"model": "lm", "prompt": "The ", "max_tokens": 100_000, "stream": True}
        with c.stream("POST", "/v1/completions", json=body) as response:
            last = time.monotonic()
            for _ in response.iter_lines():
                gaps.append(time.monotonic() - last)
                last = time.monotonic()
                if stop.is_set():
                    break


HEAVY = {  # each took a stream's events away for 3-30 s when it was answered whole
    "completions": {"model": "lm", "prompt": ["the knight rode on. " * 1000] * 8, "max_tokens": 0, "echo": True,
                    "logprobs": 5},
    "classify": {"model": "classifier", "input": ["a gripping and funny film " * 150] * 256},
    "tag": {"model": "tagger", "input": ["Paris is in France and Bob lives there " * 100] * 64},
    "cells": {"model": "lm", "input": "the knight rode on. " * 3000},
}  # fmt: skip


@pytest.mark.parametrize("endpoint", list(HEAVY))
def test_scoring_classify_tag_and_cells_answer_a_chunk_at_a_time_while_streams_go_on(tmp_path, endpoint):
    import threading

    caps = ("--max-tokens", "100000", "--max-cells", "60000")
    server = Server(*copied_runs(tmp_path, "lm", "classifier", "tagger"), *caps)
    gaps, stop, active = [], threading.Event(), []
    reader = threading.Thread(target=streaming_gaps, args=(server, gaps, stop))
    reader.start()

    def watch() -> None:  # /health while the request is answered
        with httpx.Client(base_url=server.url, timeout=60, trust_env=False) as c:
            while not stop.is_set():
                active.append(c.get("/health").json()["models"][HEAVY[endpoint]["model"]]["active"])
                time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    try:
        time.sleep(1)
        with httpx.Client(base_url=server.url, timeout=300, trust_env=False) as c:
            watcher.start()
            started = time.monotonic()
            answer = c.post(f"/v1/{endpoint}", json=HEAVY[endpoint])
            took = time.monotonic() - started
        stop.set()
        reader.join(timeout=60)
        watcher.join(timeout=60)
    finally:
        assert server.stop() == 0
    # the request counts as one in /health's "active" while it is answered (besides the lm's stream)
    assert max(active) == (2 if HEAVY[endpoint]["model"] == "lm" else 1), active
    assert answer.status_code == 200, answer.text
    body = answer.json()
    if endpoint == "completions":
        assert len(body["choices"]) == 8 and len(body["choices"][0]["logprobs"]["tokens"]) == 20_000
    elif endpoint == "cells":
        assert len(body["values"]) == 60_000
    else:
        assert len(body["data"]) == len(HEAVY[endpoint]["input"])
    assert took > 2.0, took  # heavy enough that answering it whole stops the stream that long
    assert len(gaps) > 10 and max(gaps[5:]) < took / 3, (max(gaps), took)  # a fraction of it: chunk by chunk


def test_a_request_error_raised_in_a_chore_keeps_its_param():
    from charnn.errors import RequestError
    from charnn.tasks.base import Chunked, InFlight

    def steps():
        yield
        raise RequestError("input holds nothing to read", param="input")

    job, counted = Chunked(lambda: None), InFlight()
    chore = counted.around(job.work(steps()))
    next(chore)  # primed, as the worker begins it
    assert counted.count == 1
    for _ in chore:
        pass
    error = job.failure()
    assert (str(error), error.param, error.status) == ("input holds nothing to read", "input", 400)
    assert counted.count == 0


def test_sigterm_while_scoring_answers_503_and_exits_at_once(tmp_path):
    import threading

    server = Server(*copied_runs(tmp_path, "lm"))
    answers = []

    def score() -> None:
        with httpx.Client(base_url=server.url, timeout=120, trust_env=False) as c:
            answers.append(c.post("/v1/completions", json={**HEAVY["completions"], "prompt": ["a tale. " * 2500] * 16}))

    thread = threading.Thread(target=score)
    thread.start()
    time.sleep(1.5)
    started = time.monotonic()
    code = server.stop()
    took = time.monotonic() - started
    thread.join(timeout=60)
    assert code == 0 and took < 5, took  # answered whole, the request held the exit for about a minute
    assert answers[0].status_code == 503, answers[0].text
    assert answers[0].json()["error"]["message"] == "the server is stopping; send the request again once it runs"
    assert "Traceback" not in "".join(server.stderr)


def test_long_prompts_are_read_a_chunk_a_turn_while_other_streams_go_on(tmp_path):
    import threading

    server = Server(*copied_runs(tmp_path, "lm"), "--max-tokens", "100000")
    gaps, stop = [], threading.Event()
    reader = threading.Thread(target=streaming_gaps, args=(server, gaps, stop))  # streaming when the prompts arrive
    reader.start()
    try:
        time.sleep(1)
        with httpx.Client(base_url=server.url, timeout=120, trust_env=False) as c:
            long = complete(c, prompt=["the knight rode on. " * 1000] * 4, max_tokens=8, temperature=0)  # 80,000 chars
        stop.set()
        reader.join(timeout=60)
    finally:
        assert server.stop() == 0
    assert len({choice["text"] for choice in long["choices"]}) == 1  # the same prompt read the same way, chunk by chunk
    assert max(gaps[5:]) < 1.0, max(gaps)  # read whole, the four prompts stopped the stream for 2.9 s


def test_sigterm_ends_the_streams_in_flight_and_exits_0(tmp_path):
    server = Server(*copied_runs(tmp_path, "lm"))
    with httpx.Client(base_url=server.url, timeout=60, trust_env=False) as c:
        body = {"model": "lm", "max_tokens": 4096, "stream": True}
        with c.stream("POST", "/v1/completions", json=body) as response:
            lines = response.iter_lines()
            next(lines)
            code = server.stop()
            rest = [line for line in lines if line]
    assert code == 0
    assert rest[-1] == "data: [DONE]"
    assert json.loads(rest[-2][6:])["choices"][0]["finish_reason"] == "stop"
    assert "stopped" in "".join(server.stderr) and "Traceback" not in "".join(server.stderr)


def test_an_api_key_is_required_when_set_and_a_public_address_without_one_is_warned(tmp_path):
    runs = copied_runs(tmp_path, "lm")
    server = Server(*runs, env={"CHARNN_API_KEY": "sesame"})
    try:
        with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as c:
            denied = c.post("/v1/completions", json={"model": "lm", "max_tokens": 5})
            assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_api_key"
            wrong = c.get("/v1/models", headers={"Authorization": "Bearer wrong"})
            assert wrong.status_code == 401 and "the API key sent is not this server's" in wrong.text
            allowed = c.get("/v1/models", headers={"Authorization": "Bearer sesame"})
            assert allowed.status_code == 200 and allowed.json()["data"][0]["id"] == "lm"
            assert c.get("/health").json() == {"status": "ok"}
    finally:
        assert server.stop() == 0
    public = Server(*runs, "--host", "0.0.0.0")
    try:
        assert any("without --api-key" in line for line in public.stderr)
    finally:
        assert public.stop() == 0


def test_the_cli_refuses_what_it_cannot_serve_in_one_line(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("serve")
    assert code == 2 and "no run to serve" in err and "Traceback" not in err
    code, _, err = run_cli("serve", str(tmp_path / "missing"))
    assert code != 0 and len(err.strip().splitlines()) == 1
    lm = copied_runs(tmp_path, "lm")
    code, _, err = run_cli("serve", *lm, "--max-n", "0")
    assert code == 2 and "--max-n must be at least 1" in err
    code, _, err = run_cli("serve", *lm, "--api-key", " ")
    assert code == 2 and "--api-key is empty" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("serve", *lm, "--api-key", "clé")  # no client could send it: every request a 401
    assert code == 2 and "--api-key holds 'é', which an HTTP header cannot carry" in err


def test_subword_tokens_spell_the_text_scored_stopped_or_read(bpe_run):
    from charnn.tasks import load_run
    from charnn.tasks.lm.show import show_data

    text = "Café naïve 中文 — the king 😀."  # characters outside the vocabulary are read as their bytes
    data = show_data(load_run(bpe_run), text, None, "hidden")
    assert "".join(e["text"] for e in data["score"]) == text  # was one U+FFFD a byte
    assert "".join(data["cells"]["tokens"]) == text
    server = Server(str(bpe_run))
    try:
        with httpx.Client(base_url=server.url, timeout=60, trust_env=False) as c:
            body = {"model": "bpe", "max_tokens": 0, "echo": True, "logprobs": 1}
            echoed = c.post("/v1/completions", json={**body, "prompt": text}).json()["choices"][0]["logprobs"]
            cut = 0
            for seed in range(12):
                whole = complete(c, model="bpe", prompt="The", max_tokens=60, seed=seed, logprobs=1)["choices"][0]
                stop = whole["text"][7:9]  # two characters, often inside one token
                choice = complete(c, model="bpe", prompt="The", max_tokens=60, seed=seed, logprobs=1, stop=stop)
                choice = choice["choices"][0]
                assert "".join(choice["logprobs"]["tokens"]) == choice["text"], (stop, choice)
                cut += choice["logprobs"]["tokens"] != whole["logprobs"]["tokens"][: len(choice["logprobs"]["tokens"])]
    finally:
        assert server.stop() == 0
    assert "".join(echoed["tokens"]) == text
    assert echoed["text_offset"][-1] == len(text) - len(echoed["tokens"][-1])
    assert cut > 0  # some stops began inside a token, whose entry is then cut to the part kept


def test_a_right_to_left_run_is_refused_by_name_and_wrong_methods_say_what_is_allowed(tmp_path, run_cli):
    lm, backward = copied_runs(tmp_path, "lm") + [str(tmp_path / "backward")]
    shutil.copytree(lm, backward)
    config = json.loads((Path(backward) / "config.json").read_text())
    config["task"] = {**(config.get("task") or {}), "reverse": True}
    (Path(backward) / "config.json").write_text(json.dumps(config))
    server = Server(lm, backward)
    try:
        with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as c:
            scored = c.post("/v1/completions", json={"model": "backward", "prompt": "ab", "max_tokens": 0, "echo": True,
                                                     "logprobs": 1})  # fmt: skip
            cells = c.post("/v1/cells", json={"model": "backward", "input": "a tale"})
            put = c.put("/v1/completions", json={})
            posted = c.post("/v1/models", json={})
            neutral = {"model": "lm", "prompt": "x", "max_tokens": 1, "best_of": 1, "n": None}
            best = c.post("/v1/completions", json=neutral)
    finally:
        assert server.stop() == 0
    for refused in (scored, cells):  # both read the text left to right: the figures were not the run's
        assert refused.status_code == 400 and "charnn eval -m RUN" in refused.json()["error"]["message"]
    assert any("backward (a language model, right to left: refused" in line for line in server.stderr)
    assert put.status_code == 405 and put.headers["allow"] == "POST"
    assert posted.status_code == 405 and posted.headers["allow"] == "GET, HEAD"
    assert best.status_code == 200, best.text  # best_of equal to n (null: 1) is neutral
    code, _, err = run_cli("show", "-m", backward, "-", "-o", str(tmp_path / "page.html"), stdin=b"a tale of two")
    assert code == 2 and "reads right to left" in err and not (tmp_path / "page.html").exists()


def test_each_prompt_scored_is_a_turn_of_its_own_and_large_answers_are_json_as_before():
    from charnn.tasks import load_run
    from charnn.tasks.base import Limits
    from charnn.tasks.lm.serving import CompletionService
    from charnn.tasks.worker import Worker
    from tests.serving import PINNED_RUNS

    worker = Worker()
    service = CompletionService(load_run(PINNED_RUNS / "lm"), Limits(), "lm", worker)
    body = {"model": "lm", "prompt": ["a tale of the moon"] * 4, "max_tokens": 0, "echo": True, "logprobs": 1}
    job = service.submit(body, lambda: None)
    turns = 0
    with pytest.raises(StopIteration):
        while True:
            next(worker.chores[0])
            turns += 1
    assert turns == 3 and job.done  # four prompts, a turn each: a batch step may come between two
    choices = job.response()["choices"]
    assert [c["text"] for c in choices] == ["a tale of the moon"] * 4
    from charnn.serve.app import _encoded

    answer = {"id": "x", "choices": choices, "usage": {"total_tokens": 1}}
    assert json.loads(_encoded(answer)) == answer
    with pytest.raises(ValueError):  # as JSONResponse: no NaN in JSON
        _encoded({"choices": [{"logprob": math.nan}, {}]})
    whole = functools.partial(json.dumps, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    cells = {"object": "cells", "tokens": ["é"] * 600, "values": [[i / 7, -0.5] for i in range(600)]}  # 3 pieces
    for answer in (cells, {**cells, "values": []}, {"object": "list", "data": [{"label": "x"}] * 3}, {"a": [1]}):
        assert _encoded(answer) == whole(answer).encode()
    with pytest.raises(ValueError):
        _encoded({**cells, "values": [[0.0]] * 300 + [[math.inf]]})
