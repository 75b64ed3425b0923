"""`charnn serve` under load: a real uvicorn server on localhost, clients with httpx.

Trained here first: a 2x512 LSTM language model (embed 64) on tinyshakespeare's first 200,000
characters, and a small classifier (sentiment-mr) and tagger (ner-wnut17, ../shared/datasets)
for the mixed load. One `charnn serve LM CLASSIFIER TAGGER --port 0` then answers, in one run:

- one streaming client at temperature 0.8: chars/s after its first event, against `charnn sample`'s
  marginal rate (`--length L+1` minus `--length 1`: start-up cancels out) on the same model, the
  two alternating so both see the same machine (target: >= 0.8x);
- 64 concurrent streams of 500 characters, distinct prompts: all characters / wall time to the
  last stream's end (target >= 6x one stream), time to first character (target p99 < 0.5 s);
- 2,000 requests from 64 clients, a seeded mix: completions of 1-400 characters (streamed or not,
  some n=2 or two prompts), echo scoring of 200-2,000 characters, classify of 1-8 texts, tag of
  1-4 sentences; each answer checked against what was asked, the server's RSS read after every
  100 (targets: no error, none lost or wrong, memory flat: no drift beyond FLAT_MB); SIGTERM: exit 0.

    python -m bench serve [--hidden 512] [--length 4000] [--clients 64] [--stream-length 500]
        [--requests 2000] [--repeat 3] [--quick: 2x128, 16 clients, 200 requests; printed, not recorded]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.common import ROOT, corpus, machine
from bench.sampling import cli_rate

DATASETS = Path(os.environ.get("CHARNN_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
FULL = {"hidden": 512, "length": 4000, "clients": 64, "stream_length": 500, "requests": 2000, "repeat": 3}
QUICK = {"hidden": 128, "length": 1000, "clients": 16, "stream_length": 200, "requests": 200, "repeat": 1}
LM_STEPS = 100
TEMP = ["--temp", "0.8"]
FLAT_MB = 10.0
"""Memory is flat when the median of the last five readings is at most this far above the median of
the five after the first hundred requests (readings 100-500). A single reading moves by +-20 MB with
what the 64 requests in flight hold at that instant; a leak shows as a drift of the medians."""
ENDPOINTS = {"completion": "completions", "score": "completions", "classify": "classify", "tag": "tag"}
ENCODER_OPTIONS = ["--hidden", "64", "--embed", "32", "--steps", "40", "--batch-size", "16", "--eval-every", "40"]


def dataset(*parts: str) -> Path:
    if not (path := DATASETS.joinpath(*parts)).is_file():
        sys.exit(f"bench: {path} not found; set CHARNN_SHARED_DATASETS to the folder holding {parts[0]}/")
    return path


def train_runs(tmp: Path, text: str, hidden: int) -> list[Path]:
    """The language model, the classifier and the tagger the server answers with, in that order."""
    from charnn.config import TrainConfig
    from charnn.tasks.lm.prepare import train
    from charnn.text.corpus import Corpus

    lm, classifier, tagger = tmp / "shakespeare", tmp / "sentiment", tmp / "ner"
    config = TrainConfig(steps=LM_STEPS, batch_size=32, eval_every=LM_STEPS, device="cpu")
    train(Corpus(text, "bench", ("bench",)), lm, {"hidden": hidden, "cell": "lstm"}, config)
    encoders = [
        ("classify", "sentiment-mr", "train.tsv", classifier),
        ("tag", "ner-wnut17", "wnut17train.conll", tagger),
    ]
    for task, folder, name, out in encoders:  # fmt: skip
        cmd = [sys.executable, "-m", "charnn", task, "train", str(dataset(folder, name)), "--out", str(out)]
        cmd += [*ENCODER_OPTIONS, "--tokenizer", "char", "--device", "cpu"]
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if done.returncode:
            sys.exit(f"bench: {' '.join(cmd)} failed:\n{done.stderr}")
    return [lm, classifier, tagger]


class Server:
    """`charnn serve RUN... --port 0` in a subprocess: its URL once it listens, its RSS, SIGTERM."""

    def __init__(self, runs: list[Path]) -> None:
        self.command = [sys.executable, "-m", "charnn", "serve", *map(str, runs), "--port", "0"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        pipes = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
        self.process = subprocess.Popen(self.command, **pipes, text=True, env=env)
        self.lines: list[str] = []
        self.url = None
        for line in self.process.stderr:
            self.lines.append(line)
            if "listening on " in line:
                self.url = line.split("listening on ", 1)[1].strip()
            if "models:" in line and self.url:
                break
        else:
            sys.exit("bench: charnn serve ended before it listened:\n" + "".join(self.lines))
        self.ready_lines = len(self.lines)
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.process.stderr), daemon=True)
        self.reader.start()

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(status.split("VmRSS:")[1].split()[0]) / 1024  # kB

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self.reader.join(timeout=5)
        return code


def client(n: int) -> httpx.AsyncClient:
    """Keeps a connection per client alive; no proxy from the environment."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    return httpx.AsyncClient(timeout=600.0, limits=limits, trust_env=False)


@dataclass
class Streamed:
    """One streamed completion as the client saw it."""

    status: int = 0
    sent: float = 0.0
    first: float | None = None  # when the first non-empty text arrived
    events: list[tuple[float, int]] = field(default_factory=list)  # (time, characters) of each event with text
    texts: dict[int, str] = field(default_factory=dict)
    finish: dict[int, str | None] = field(default_factory=dict)
    done: bool = False  # the stream ended with `data: [DONE]`
    error: str | None = None
    end: float = 0.0

    @property
    def chars(self) -> int:
        return sum(len(t) for t in self.texts.values())


async def stream(http: httpx.AsyncClient, url: str, body: dict) -> Streamed:
    got = Streamed(sent=time.perf_counter())
    async with http.stream("POST", f"{url}/v1/completions", json={**body, "stream": True}) as response:
        got.status = response.status_code
        if response.status_code != 200:
            got.error = f"{response.status_code} {(await response.aread())[:200]!r}"
            return got
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            now = time.perf_counter()
            if line == "data: [DONE]":
                got.done = True
                break
            chunk = json.loads(line[6:])
            if "error" in chunk:
                got.error = str(chunk["error"])
            size = 0
            for choice in chunk.get("choices", []):
                got.texts[choice["index"]] = got.texts.get(choice["index"], "") + choice["text"]
                got.finish[choice["index"]] = choice["finish_reason"] or got.finish.get(choice["index"])
                size += len(choice["text"])
            if size:
                got.events.append((now, size))
                got.first = got.first or now
    got.end = time.perf_counter()
    return got


def completion(model: str, prompt: str, length: int, seed: int) -> dict:
    return {"model": model, "prompt": prompt, "max_tokens": length, "temperature": 0.8, "seed": seed}


async def single_rate(url: str, model: str, prompt: str, length: int, seed: int) -> float:
    """Characters per second of one stream after its first event (its start-up does not count)."""
    async with client(1) as http:
        got = await stream(http, url, completion(model, prompt, length, seed))
    if not got.done or got.error or len(got.events) < 2:
        sys.exit(f"bench: the single stream failed: {got.error or 'it ended without [DONE]'}")
    return sum(size for _, size in got.events[1:]) / (got.events[-1][0] - got.events[0][0])


async def many_streams(url: str, model: str, prompts: list[str], length: int, seed: int) -> dict:
    """All the clients at once: aggregate chars/s, each one's time to first character."""
    async with client(len(prompts)) as http:
        start = time.perf_counter()
        bodies = [completion(model, p, length, seed + i) for i, p in enumerate(prompts)]
        answers = await asyncio.gather(*(stream(http, url, body) for body in bodies), return_exceptions=True)
    results = [r for r in answers if isinstance(r, Streamed)]
    failed = len(answers) - len(results) + sum(bool(r.error) or not r.done or r.chars != length for r in results)
    first = sorted(r.first - r.sent for r in results if r.first is not None) or [float("nan")] * 2
    wall = max(r.end for r in results) - start
    return {
        "aggregate": sum(r.chars for r in results) / wall, "failed": failed,
        "ttfc_p50": statistics.median(first), "ttfc_p99": statistics.quantiles(first, n=100, method="inclusive")[98],
    }  # fmt: skip


def snippet(rng: random.Random, text: str, low: int, high: int) -> str:
    size = rng.randint(low, high)
    start = rng.randrange(len(text) - size)
    return text[start : start + size]


def mixed_plan(rng: random.Random, count: int, names: list[str], material: dict) -> list[tuple[str, dict]]:
    """(kind, body) of each request: completions, echo scoring, classify and tag, in a seeded mix."""
    lm, classifier, tagger = names
    text, plan = material["text"], []
    for kind in rng.choices(["completion", "score", "classify", "tag"], weights=[45, 20, 20, 15], k=count):
        if kind == "completion":
            body = completion(lm, snippet(rng, text, 5, 80), rng.randint(1, 400), rng.randrange(1 << 30))
            body["stream"] = rng.random() < 0.5
            if (shape := rng.random()) < 0.2:
                body["n"] = 2
            elif shape < 0.35:
                body["prompt"] = [body["prompt"], snippet(rng, text, 5, 80)]
        elif kind == "score":
            body = {"model": lm, "prompt": snippet(rng, text, 200, 2000), "echo": True, "max_tokens": 0, "logprobs": 1}
        elif kind == "classify":
            body = {"model": classifier, "input": rng.sample(material["reviews"], rng.randint(1, 8))}
        else:
            body = {"model": tagger, "input": rng.sample(material["sentences"], rng.randint(1, 4))}
        plan.append((kind, body))
    return plan


def check(kind: str, body: dict, answer: dict) -> str | None:
    """What is wrong with a 200 answer, or None."""
    if kind == "completion":
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        choices = answer.get("choices") or []
        if len(choices) != len(prompts) * body.get("n", 1):
            return f"{len(choices)} choices for {len(prompts)} prompts x n={body.get('n', 1)}"
        short = [(len(c["text"]), c["finish_reason"]) for c in choices if len(c["text"]) != body["max_tokens"]]
        return f"asked {body['max_tokens']} characters, got {short}" if short else None
    if kind == "score":
        choice = (answer.get("choices") or [{}])[0]
        scores = (choice.get("logprobs") or {}).get("token_logprobs") or []
        if choice.get("text") != body["prompt"] or len(scores) != len(body["prompt"]):
            return f"echo of {len(body['prompt'])} characters: {len(choice.get('text', ''))} back, {len(scores)} scores"
        return None if all(s is None or s <= 0 for s in scores) else "a positive log-probability"
    data = answer.get("data") or []
    if len(data) != len(body["input"]):
        return f"{len(data)} results for {len(body['input'])} inputs"
    if kind == "tag":
        bad = [s for d, s in zip(data, body["input"]) if d["tokens"] != s.split() or len(d["tags"]) != len(s.split())]
        return f"tokens or tags do not match the sentence {bad[0]!r}" if bad else None
    return None if all("label" in d for d in data) else "a result without a label"


async def send(http: httpx.AsyncClient, url: str, kind: str, body: dict) -> tuple[str, str | None]:
    """'ok', 'error' (not 2xx, or an error event), 'lost' (no whole answer) or 'wrong', and why."""
    try:
        if body.get("stream"):
            got = await stream(http, url, body)
            if got.status != 200 or got.error:
                return "error", got.error
            if not got.done:
                return "lost", "the stream ended without [DONE]"
            answer = {"choices": [{"text": got.texts[i], "finish_reason": got.finish[i]} for i in sorted(got.texts)]}
        else:
            response = await http.post(f"{url}/v1/{ENDPOINTS[kind]}", json=body)
            if not 200 <= response.status_code < 300:
                return "error", f"{response.status_code} {response.text[:200]}"
            answer = response.json()
    except (httpx.HTTPError, ValueError, KeyError) as error:
        return "lost", repr(error)
    problem = check(kind, body, answer)
    return ("wrong", f"{kind}: {problem}") if problem else ("ok", None)


async def mixed_load(server: Server, plan: list[tuple[str, dict]], clients: int) -> dict:
    """The plan's requests from ``clients`` concurrent clients; the server's RSS every 100 answers."""
    waiting = iter(plan)  # shared by the clients: each takes the next request when it is free
    counts = {"ok": 0, "error": 0, "lost": 0, "wrong": 0}
    problems, rss = [], []  # what was wrong (the first ten); (requests answered, server RSS in MB)

    async def one_client(http: httpx.AsyncClient) -> None:
        for kind, body in waiting:
            outcome, why = await send(http, server.url, kind, body)
            counts[outcome] += 1
            if why is not None and len(problems) < 10:
                problems.append(why)
            answered = sum(counts.values())
            if answered % 100 == 0:
                rss.append((answered, server.rss_mb()))

    start = time.perf_counter()
    async with client(clients) as http:
        await asyncio.gather(*(one_client(http) for _ in range(clients)))
        wall = time.perf_counter() - start
        active = (await http.get(f"{server.url}/health")).json()["models"]
    base = rss[0][1] if rss else float("nan")
    rise = max((mb - base for _, mb in rss), default=float("nan"))
    readings = [mb for _, mb in rss]
    drift = statistics.median(readings[-5:]) - statistics.median(readings[:5]) if len(readings) >= 5 else float("nan")
    return {
        **counts, "problems": problems, "wall_seconds": wall, "requests_per_second": len(plan) / wall,
        "rss_mb": rss, "rss_after_100_mb": base, "rss_end_mb": server.rss_mb(), "rss_rise_mb": rise,
        "rss_drift_mb": drift, "active_after": sum(m["active"] for m in active.values()),
    }  # fmt: skip


def material(text: str) -> dict:
    rows = dataset("sentiment-mr", "dev.tsv").read_text().splitlines()
    reviews = [line.split("\t", 1)[1] for line in rows if "\t" in line]
    blocks = dataset("ner-wnut17", "emerging.dev.conll").read_text().split("\n\n")
    sentences = [" ".join(w.split("\t")[0] for w in b.splitlines() if w.strip()) for b in blocks]
    return {"text": text, "reviews": reviews, "sentences": [s for s in sentences if s.strip()]}


def measure(args: argparse.Namespace, runs: list[Path], text: str) -> dict:
    names, rng, server = [run.name for run in runs], random.Random(1), Server(runs)
    print(f"server: {' '.join(server.command[1:])} -> {server.url}", flush=True)
    asyncio.run(many_streams(server.url, names[0], ["ROMEO:"] * 4, 100, 0))  # warm up one and batched steps
    cli, one = [], []
    for i in range(args.repeat):
        cli.append(cli_rate(runs[0], ["--length", str(args.length + 1), *TEMP], ["--length", "1", *TEMP]))
        one.append(asyncio.run(single_rate(server.url, names[0], "ROMEO:", args.length, i)))
    single = statistics.median(one)
    many = []
    for i in range(args.repeat):
        prompts = [snippet(rng, text, 10, 60) for _ in range(args.clients)]
        many.append(asyncio.run(many_streams(server.url, names[0], prompts, args.stream_length, 1000 * i)))
    rss_before, plan = server.rss_mb(), mixed_plan(rng, args.requests, names, material(text))
    mixed, exit_code = asyncio.run(mixed_load(server, plan, args.clients)), server.stop()
    return {
        "cli_rate": statistics.median(cli), "cli_rates": cli, "stream_rate": single, "stream_rates": one,
        "stream_ratio": single / statistics.median(cli),
        **{f"many_{key}": statistics.median(m[key] for m in many) for key in many[0]},
        "many_ratio": statistics.median(m["aggregate"] for m in many) / single,
        "mixed": {**mixed, "rss_before_mb": rss_before, "kinds": {k: [p[0] for p in plan].count(k) for k in ENDPOINTS}},
        "server_exit_code": exit_code, "server_stderr": [line.rstrip() for line in server.lines[server.ready_lines :]],
    }  # fmt: skip


def verdicts(r: dict) -> dict:
    m = r["mixed"]
    return {
        "one_stream": r["stream_ratio"] >= 0.8, "memory_flat": m["rss_drift_mb"] <= FLAT_MB,
        "many_streams": r["many_ratio"] >= 6 and r["many_ttfc_p99"] < 0.5 and r["many_failed"] == 0,
        "mixed": m["error"] == 0 and m["lost"] == 0 and m["wrong"] == 0 and m["active_after"] == 0,
        "clean_exit": r["server_exit_code"] == 0,
    }  # fmt: skip


def report(r: dict, ok: dict, args: argparse.Namespace, lm: str) -> None:
    m, mark = r["mixed"], {True: "PASS", False: "FAIL"}
    print(
        f"one stream of {args.length:,} chars: server {r['stream_rate']:,.0f} chars/s, "
        f"`charnn sample -m {lm} --length {args.length + 1} --temp 0.8 --seed 1 --device cpu` (marginal) "
        f"{r['cli_rate']:,.0f} chars/s: {r['stream_ratio']:.2f}x (target >= 0.8x) {mark[ok['one_stream']]}"
    )
    print(
        f"{args.clients} streams of {args.stream_length} chars: {r['many_aggregate']:,.0f} chars/s in all, "
        f"{r['many_ratio']:.1f}x one stream (target >= 6x); time to first character p50 {r['many_ttfc_p50']:.3f} s, "
        f"p99 {r['many_ttfc_p99']:.3f} s (target < 0.5 s); {r['many_failed']} failed {mark[ok['many_streams']]}"
    )
    print(
        f"{args.requests:,} mixed requests ({', '.join(f'{n} {k}' for k, n in m['kinds'].items())}) from "
        f"{args.clients} clients in {m['wall_seconds']:.1f} s ({m['requests_per_second']:.1f}/s): {m['ok']} ok, "
        f"{m['error']} errors, {m['lost']} lost, {m['wrong']} wrong; rows still active after: {m['active_after']} "
        f"{mark[ok['mixed']]}"
    )
    print("".join(f"  {problem}\n" for problem in m["problems"]), end="")
    print(
        f"server RSS: {m['rss_before_mb']:.0f} MB before the mix, {m['rss_after_100_mb']:.0f} MB after request 100, "
        f"{m['rss_end_mb']:.0f} MB at the end; largest rise after 100 {m['rss_rise_mb']:+.1f} MB; drift "
        f"{m['rss_drift_mb']:+.1f} MB (median of the last five readings minus that of readings 100-500; flat: at "
        f"most {FLAT_MB:.0f} MB) {mark[ok['memory_flat']]}"
    )
    print("server RSS after every 100 requests (MB): " + ", ".join(f"{mb:.0f}" for _, mb in m["rss_mb"]))
    print(f"server exit code after SIGTERM: {r['server_exit_code']} {mark[ok['clean_exit']]}; its stderr once ready:")
    print("".join(f"  {line}\n" for line in r["server_stderr"][-20:]), end="")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench serve")
    for name, value in FULL.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None, help=f"default {value}")
    parser.add_argument("--quick", action="store_true", help="small and fast; prints, records nothing")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        setattr(args, name, value if getattr(args, name) is None else getattr(args, name))
    text = corpus("tinyshakespeare.txt").read_text(encoding="utf-8")[:200_000]
    print(f"machine: {machine()}")
    print(f"settings: LSTM 2x{args.hidden}, embed 64, {LM_STEPS} steps; temperature 0.8; median of {args.repeat}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        runs = train_runs(Path(tmp), text, args.hidden)
        print(f"trained the runs in {time.perf_counter() - started:.0f} s", flush=True)
        result = measure(args, runs, text)
    ok = verdicts(result)
    report(result, ok, args, runs[0].name)
    print(f"wall time {time.perf_counter() - started:.0f} s")
    if args.quick:
        return
    settings = {k: getattr(args, k) for k in FULL} | {"lm_steps": LM_STEPS, "device": "cpu"}
    date = time.strftime("%Y-%m-%d", time.gmtime())
    entry = {"benchmark": "serve", "date": date, "machine": machine(), "settings": settings, **result, "passed": ok}
    with open(ROOT / "bench" / "results" / "serve.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")
