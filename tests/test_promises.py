"""What the docs promise and no other test checks: caps on what is read, and CPU bf16 autocast."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from charnn.tasks import load_run
from tests.conftest import CORPORA, ROOT, TINY_MODEL, tiny_train_config

PINNED_CLASSIFIER = ROOT / "tests" / "data" / "pinned" / "runs" / "classifier"


# ---- docs/classifying.md: "texts over 1,024 tokens are cut" -----------------------------------


def _long_text_and_its_cut(run, cap: int) -> tuple[str, str]:
    """A text of well over ``cap`` tokens, and the text of its first ``cap`` tokens (which encodes
    back to exactly those tokens)."""
    long = (CORPORA / "fantasy.txt").read_text(encoding="utf-8")[:40_000]
    ids = run.tokenizer.encode(long)
    assert len(ids) > cap + 500, "the text is not long enough to be cut"
    for end in range(cap, cap - 20, -1):  # a piece boundary where the prefix re-encodes alike
        prefix = run.tokenizer.decode(ids[:end])
        if list(run.tokenizer.encode(prefix)) == list(ids[:cap]):
            return long, prefix
    pytest.fail("no prefix of the text encodes to its first tokens")


def test_a_classifiers_long_text_is_read_as_its_first_1024_tokens(monkeypatch):
    from charnn.tasks.classify import task as classify_task
    from charnn.tasks.classify.classifier import predict_lines

    assert classify_task.MAX_TOKENS == 1024
    run = load_run(PINNED_CLASSIFIER)
    long, prefix = _long_text_and_its_cut(run, 1024)
    (_, whole), (_, cut) = predict_lines(run, [long, prefix])
    assert whole == cut  # the same probabilities, exactly: the tokens past 1,024 are never read
    # With a higher cap the rest of the text is read, and the answer moves: the cut is what made them equal.
    monkeypatch.setattr(classify_task, "MAX_TOKENS", 4096)
    (_, uncut), _ = predict_lines(run, [long, prefix])
    assert uncut != cut


# ---- charnn.tasks.lm.cooccurrence: MAX_TOKENS and MAX_VOCAB ------------------------------------


def _embedding(ids: np.ndarray, vocab: int = 40, dim: int = 8) -> tuple[torch.Tensor, int]:
    torch.manual_seed(0)
    start = torch.randn(vocab, dim)
    from charnn.tasks.lm.cooccurrence import cooccurrence_embedding

    torch.manual_seed(1)  # the randomised SVD draws from the global generator
    rows = cooccurrence_embedding(ids, start, breaks=(0,))
    return start, rows


def _zipf_stream(n: int, vocab: int = 40, seed: int = 0) -> np.ndarray:
    """Ids 1..vocab-1 drawn with Zipf-like frequencies (id 1 the most frequent), lines ended by 0."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, vocab)
    ids = rng.choice(np.arange(1, vocab), size=n, p=weights / weights.sum())
    ids[rng.random(n) < 0.1] = 0
    return ids


def test_cooccurrence_counts_only_the_first_max_tokens(monkeypatch):
    from charnn.tasks.lm import cooccurrence

    monkeypatch.setattr(cooccurrence, "MAX_TOKENS", 3000)
    head = _zipf_stream(3000)
    tail = _zipf_stream(3000, seed=1)[::-1].copy()  # other counts entirely
    capped, capped_rows = _embedding(np.concatenate([head, tail]))
    alone, alone_rows = _embedding(head)
    assert capped_rows == alone_rows > 0
    assert torch.equal(capped, alone)  # the tokens after the cap changed nothing
    monkeypatch.setattr(cooccurrence, "MAX_TOKENS", 6000)
    counted, _ = _embedding(np.concatenate([head, tail]))
    assert not torch.equal(counted, alone)  # below the cap, the same tail does change it


def test_cooccurrence_gives_rows_to_the_max_vocab_most_frequent_tokens_alone(monkeypatch):
    from charnn.tasks.lm import cooccurrence

    monkeypatch.setattr(cooccurrence, "MAX_VOCAB", 10)
    ids = _zipf_stream(20_000)
    torch.manual_seed(0)
    untouched = torch.randn(40, 8)
    embedding, rows = _embedding(ids)
    counts = np.bincount(ids[ids != 0], minlength=40)
    most_frequent = set(np.argsort(-counts, kind="stable")[:10].tolist())
    changed = {i for i in range(40) if not torch.equal(embedding[i], untouched[i])}
    assert 0 < rows == len(changed) <= 10
    assert changed <= most_frequent  # every other token keeps its random start
    assert (
        len(most_frequent) == 10
        and counts[sorted(most_frequent)].min() > counts[sorted(set(range(1, 40)) - most_frequent)].max()
    )


# ---- docs/training.md: bf16 autocast on CPUs with native bf16 ----------------------------------


def test_precision_auto_on_the_cpu_uses_bf16_autocast_where_the_cpu_has_it(tmp_path, small_text):
    from charnn.device import fast_bf16
    from charnn.events import Progress, Started
    from charnn.tasks.lm.prepare import train
    from charnn.text.corpus import Corpus

    events = []
    config = tiny_train_config(steps=6, eval_every=6, log_every=2, precision="auto")
    corpus = Corpus(text=small_text, name="t", sources=("t.txt",))
    train(corpus, tmp_path / "run", TINY_MODEL, config, on_event=events.append)
    (started,) = [e for e in events if isinstance(e, Started)]
    assert started.bf16 == fast_bf16(torch.device("cpu"))
    losses = [e.loss for e in events if isinstance(e, Progress)]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)


def test_the_cli_says_which_precision_auto_chose_on_the_cpu(tmp_path, small_text, run_cli):
    from charnn.device import fast_bf16

    (tmp_path / "t.txt").write_text(small_text, encoding="utf-8")
    code, _, err = run_cli(
        *("train", tmp_path / "t.txt", "--out", tmp_path / "run", "--device", "cpu", "--precision", "auto"),
        *("--steps", "4", "--eval-every", "4", "--hidden", "32", "--embed", "16", "--seq-len", "32"),
    )
    assert code == 0, err
    said = "(bf16 autocast)" if fast_bf16(torch.device("cpu")) else "(fp32)"
    assert f"on cpu {said}" in err


# ---- tests/conftest.py: tests that need ../shared skip and say why -----------------------------


def test_a_test_that_needs_a_missing_shared_path_skips_and_says_why(tmp_path, monkeypatch):
    from tests import conftest

    monkeypatch.setattr(conftest, "SHARED", tmp_path / "shared")
    absent = conftest.needs_shared(tmp_path / "shared" / "datasets" / "x", "the x data")
    assert absent.args == (True,)
    assert absent.kwargs["reason"].startswith(
        f"../shared is absent ({tmp_path / 'shared'}): this test needs the x data"
    )
    (tmp_path / "shared" / "datasets").mkdir(parents=True)
    lacking = conftest.needs_shared(tmp_path / "shared" / "datasets" / "x", "the x data")
    assert lacking.args == (True,) and lacking.kwargs["reason"].startswith("../shared has no datasets/x: ")
    (tmp_path / "shared" / "datasets" / "x").mkdir()
    assert conftest.needs_shared(tmp_path / "shared" / "datasets" / "x", "the x data").args == (False,)
