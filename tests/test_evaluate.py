import json
import math

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from charnn.tasks import load_run
from charnn.tasks.lm.evaluate import covered_by_predictions, evaluate_text, total_nll


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


# -- subword tokenizers: the same measures, over the same characters and bytes -----------


def covered_by_brute_force(tokenizer, tokens, text):
    """Count each character for the token that holds its last byte; keep those of tokens 1..N-1."""
    ends = np.cumsum([len(tokenizer.token_bytes(int(t))) for t in tokens])  # byte offset where token i ends
    chars = n_bytes = 0
    position = 0
    for ch in text:
        position += len(ch.encode("utf-8"))
        owner = int(np.searchsorted(ends, position))  # first token ending at or after the character's last byte
        chars += owner >= 1
    n_bytes = int(ends[-1] - ends[0])
    return chars, n_bytes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(min_size=2, max_size=60))
@example(text="🌍 is first")
@example(text="e\u0301\u0301")
@example(text="你好")
def test_a_character_counts_for_the_token_that_completes_it(bpe_run, text):
    tok = load_run(bpe_run).tokenizer
    tokens = tok.encode(text)
    assume(len(tokens) >= 2)
    assert covered_by_predictions(tok, tokens, text) == covered_by_brute_force(tok, tokens, text)


def test_a_first_token_that_splits_a_character_leaves_it_to_be_counted(bpe_run):
    tok = load_run(bpe_run).tokenizer
    text = "🌍 then words"
    tokens = tok.encode(text)
    assert tok.token_bytes(int(tokens[0])) == "🌍".encode()[:1]  # byte fallback: the first token is one byte
    assert covered_by_predictions(tok, tokens, text) == (len(text), len(text.encode()) - 1)


def test_bpe_eval_equals_the_sum_by_hand_and_names_the_tokenizer(bpe_run, fantasy_text):
    run = load_run(bpe_run)
    text = fantasy_text[7000:9000]
    metrics = evaluate_text(run, text)
    tokens = run.tokenizer.encode(text)
    expected = by_hand(run.model, tokens)
    first = run.tokenizer.decode(tokens[:1])
    assert metrics.tokenizer == "bpe"
    assert metrics.tokens == len(tokens) - 1 < len(text) * 0.7  # subwords: fewer tokens than characters
    assert metrics.chars == len(text) - len(first) and metrics.bytes == len(text.encode()) - len(first.encode())
    assert math.isclose(metrics.nll_per_token * metrics.tokens, expected, rel_tol=1e-5)
    assert math.isclose(metrics.bits_per_char, expected / math.log(2) / metrics.chars, rel_tol=1e-5)
    assert math.isclose(metrics.bits_per_byte * metrics.bytes, metrics.bits_per_char * metrics.chars)


def test_char_and_bpe_runs_are_scored_over_the_same_text(trained_run, bpe_run, fantasy_text):
    text = fantasy_text[7000:9000]
    char = evaluate_text(load_run(trained_run), text)
    bpe = evaluate_text(load_run(bpe_run), text)
    # Only the unpredicted first token differs: one character, or one subword.
    assert char.chars == len(text) - 1
    assert 0 <= char.chars - bpe.chars < 8
    assert char.bytes - bpe.bytes == char.chars - bpe.chars  # ASCII text


def test_eval_json_names_the_subword_tokenizer(bpe_run, run_cli):
    code, out, _ = run_cli("eval", "--json", "-m", bpe_run)
    assert code == 0
    result = json.loads(out)
    assert result["tokenizer"] == "bpe"
    assert {"bits_per_char", "bits_per_byte", "perplexity", "nll_per_token"} <= set(result)
