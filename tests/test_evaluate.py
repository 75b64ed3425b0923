import math

import numpy as np
import torch
import torch.nn.functional as F

from charnn.checkpoint import load_run
from charnn.evaluate import evaluate_text, total_nll


def by_hand(model, tokens: np.ndarray) -> float:
    ids = torch.from_numpy(tokens.astype(np.int64))[None]
    with torch.no_grad():
        logits, _ = model(ids[:, :-1])
    return float(F.cross_entropy(logits[0].double(), ids[0, 1:], reduction="sum"))


def test_eval_equals_exp_mean_nll_by_hand(trained_run, fantasy_text):
    run = load_run(trained_run)
    text = fantasy_text[7000:9000]
    metrics = evaluate_text(run, text)
    expected = by_hand(run.model, run.tokenizer.encode(text))
    assert metrics.tokens == len(text) - 1
    assert metrics.chars == len(text) - 1
    assert math.isclose(metrics.nll_per_token * metrics.tokens, expected, rel_tol=1e-5)
    assert math.isclose(metrics.perplexity, math.exp(expected / (len(text) - 1)), rel_tol=1e-5)
    assert math.isclose(metrics.bits_per_char, expected / math.log(2) / (len(text) - 1), rel_tol=1e-5)


def test_bits_per_byte_counts_utf8_bytes(trained_run):
    run = load_run(trained_run)
    text = "the queen said é and then the king"
    metrics = evaluate_text(run, text)
    scored = text[1:]
    assert metrics.bytes == len(scored.encode("utf-8")) == metrics.chars + 1
    assert math.isclose(metrics.bits_per_byte * metrics.bytes, metrics.bits_per_char * metrics.chars)


def test_chunking_does_not_change_the_total(trained_run, fantasy_text):
    run = load_run(trained_run)
    tokens = run.tokenizer.encode(fantasy_text[:3000])
    whole = total_nll(run.model, tokens, chunk=100_000)
    chunked = total_nll(run.model, tokens, chunk=97)
    assert math.isclose(whole, chunked, rel_tol=1e-6)


def test_rows_with_burn_in_approximate_the_exact_total(trained_run, fantasy_text):
    run = load_run(trained_run)
    tokens = run.tokenizer.encode(fantasy_text[:12000])
    exact = total_nll(run.model, tokens)
    fast = total_nll(run.model, tokens, rows=4, burn_in=256)
    no_burn_in = total_nll(run.model, tokens, rows=4, burn_in=0)
    assert exact != fast
    assert abs(fast - exact) / exact < 1e-3
    assert abs(fast - exact) <= abs(no_burn_in - exact)
