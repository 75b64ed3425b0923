"""The classifier's n-gram part (charnn.tasks.classify.ngrams): stable ids and a fit that learns a cue word."""

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from charnn.tasks.classify.ngrams import bag, fit, ngram_ids, ngram_ids_many


def test_ids_are_sorted_distinct_lower_cased_and_the_same_in_every_process():
    ids = ngram_ids("Not funny at all.", 1 << 20)
    assert list(ids) == sorted(set(ids.tolist()))
    assert np.array_equal(ids, ngram_ids("not FUNNY at all.", 1 << 20))
    # No per-process hash salt: a run predicts alike anywhere, and a run made before "apart" as it was fitted.
    assert ngram_ids("Not funny at all.", 1 << 20, ("skip", "negation"), (3, 5))[:3].tolist() == [18515, 23730, 35606]
    assert ngram_ids("Not funny at all.")[:3].tolist() == [18515, 35606, 71105]
    assert len(ngram_ids("", 1 << 20)) == 0


def test_a_fit_learns_the_word_that_decides_the_label():
    rng = np.random.default_rng(0)
    filler = ["the", "film", "was", "a", "story", "of", "it"]
    texts, labels = [], []
    for i in range(200):
        words = list(rng.choice(filler, 5)) + ["great" if i % 2 else "awful"]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(i % 2)
    ids = [ngram_ids(t, 4096) for t in texts]
    fitted = fit(ids[:160], np.array(labels[:160]), 2, ids[160:], np.array(labels[160:]), buckets=4096)
    assert fitted.heldout_accuracy == 1.0
    ids, offsets = bag([ngram_ids("great story", 4096), ngram_ids("awful story", 4096)])
    logits = F.embedding_bag(ids, fitted.weight, offsets, mode="sum") + fitted.bias
    assert torch.equal(logits.argmax(1), torch.tensor([1, 0]))


def test_skip_pairs_and_negated_words_are_read_beside_the_words_unless_a_run_predates_them():
    EXTRAS = ("skip", "negation")  # noqa: N806
    with_extras, words_only = ngram_ids("not very funny", 1 << 20, EXTRAS), ngram_ids("not very funny", 1 << 20, ())
    assert set(words_only) < set(with_extras)
    assert len(with_extras) - len(words_only) == 3  # "not _ funny", and "very" and "funny" negated
    # Punctuation ends a negation: in "not good . funny" only "good" is negated; the pairs one word
    # apart are "not _ ." and "good _ funny".
    assert len(ngram_ids("not good . funny", 1 << 20, EXTRAS)) - len(ngram_ids("not good . funny", 1 << 20, ())) == 3
    # "isn't" splits as isn ' t: the "t" opens the negation, so "funny" there is the negated one...
    negated = lambda text: set(ngram_ids(text, 1 << 20, EXTRAS)) - set(ngram_ids(text, 1 << 20, ("skip",)))  # noqa: E731
    negated_funny = negated("isn't funny")
    assert negated_funny == negated("not funny")
    assert len(negated_funny) == 1
    # ... and not the plain word: "funny" alone has none of the extras' ids.
    assert not negated_funny & set(ngram_ids("funny", 1 << 20, EXTRAS))


def test_apart_the_words_and_the_characters_fill_a_half_each_and_are_fitted_alone_each_with_its_own_penalty():
    from charnn.tasks.classify.ngrams import PENALTIES

    half = 2048
    words = ngram_ids("not very funny", 2 * half, (), (3, 6))
    apart = ngram_ids("not very funny", 2 * half, ("apart",), (3, 6))
    # 3 words + 2 pairs below the half; the characters' n-grams of " not very funny " above it.
    assert (apart < half).sum() == 5 and (apart >= half).sum() == len(words) - 5 and apart.max() < 2 * half
    assert len(ngram_ids("not very funny", 2 * half, ("apart",), (3, 5))) < len(apart)  # 6-grams read too
    rng = np.random.default_rng(1)  # a cue word for the words' half, a cue suffix for the characters'
    texts, labels = [], []
    for i in range(200):
        cue = ("good" if i % 2 else "bad") if rng.random() < 0.8 else ("bad" if i % 2 else "good")
        tail = ("ish" if i % 3 else "ly") if rng.random() < 0.7 else ("ly" if i % 3 else "ish")
        texts.append(f"w{rng.integers(40)} {cue} w{rng.integers(40)}{tail}")
        labels.append(i % 2)
    ids, y = [ngram_ids(t, 2 * half) for t in texts], np.array(labels)
    both = fit(ids[:150], y[:150], 2, ids[150:], y[150:], 2 * half, apart=True)
    low = [x[x < half] for x in ids]
    high = [x[x >= half] for x in ids]
    word_part = fit(low[:150], y[:150], 2, low[150:], y[150:], 2 * half)
    char_part = fit(high[:150], y[:150], 2, high[150:], y[150:], 2 * half)
    assert both.penalties == word_part.penalties + char_part.penalties and set(both.penalties) <= set(PENALTIES)
    assert torch.equal(both.weight, word_part.weight + char_part.weight)  # rows of one half only in each
    assert not (word_part.weight[half:].any() or char_part.weight[:half].any())
    assert torch.equal(both.heldout_logits, word_part.heldout_logits + char_part.heldout_logits)
    assert both.seen == word_part.seen + char_part.seen
    flat, offsets = bag(ids[150:])  # the kept table read as the model reads it gives the same logits
    table = F.embedding_bag(flat, both.weight, offsets, mode="sum") + both.bias
    assert torch.allclose(table, both.heldout_logits, atol=1e-5)
    expected = float((both.heldout_logits.argmax(1) == torch.from_numpy(y[150:])).float().mean())
    assert both.heldout_accuracy == expected > 0.6
    # The C each part chose, given back, fits the same model with no held-out texts (up to where L-BFGS
    # stops: the search above started each C from the last one's weights, this one from zeros).
    again = fit(ids[:150], y[:150], 2, [], y[:0], 2 * half, apart=True, chosen=both.penalties)
    assert torch.allclose(again.weight, both.weight, atol=1e-3) and again.penalties == both.penalties


def test_the_held_out_log_loss_chooses_the_penalty_where_accuracy_would_choose_another():
    from charnn.tasks.classify.ngrams import PENALTIES

    rng = np.random.default_rng(0)  # words at random and a cue that tells the label 60% of the time
    vocab = [f"w{i}" for i in range(60)]
    texts, labels = [], []
    for i in range(160):
        cue = ("good" if i % 2 else "bad") if rng.random() < 0.6 else ("bad" if i % 2 else "good")
        texts.append(" ".join([*rng.choice(vocab, 6), cue]))
        labels.append(i % 2)
    ids, y = [ngram_ids(t, 4096) for t in texts], np.array(labels)
    alone = {c: fit(ids[:120], y[:120], 2, ids[120:], y[120:], buckets=4096, penalties=(c,)) for c in PENALTIES}
    losses = {c: float(F.cross_entropy(f.heldout_logits, torch.from_numpy(y[120:]))) for c, f in alone.items()}
    by_accuracy = max(PENALTIES, key=lambda c: (alone[c].heldout_accuracy, -losses[c]))
    by_loss = min(PENALTIES, key=losses.__getitem__)
    assert (by_accuracy, by_loss) == (0.1, 0.03)  # the two rules disagree here
    assert fit(ids[:120], y[:120], 2, ids[120:], y[120:], buckets=4096).penalties == (by_loss,)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=40) | st.sampled_from(["", "not", "isn't it , no", "a b c"]), max_size=6))
def test_a_batch_of_texts_gets_each_text_s_own_ids_as_if_read_alone(texts):
    # No word pair or character n-gram runs from one text into the next.
    together = ngram_ids_many(texts, 4096)
    assert len(together) == len(texts)
    for text, ids in zip(texts, together, strict=True):
        assert np.array_equal(ids, ngram_ids(text, 4096))
        assert ids.dtype == np.int64 and list(ids) == sorted(set(ids.tolist()))


def test_a_long_list_of_texts_is_hashed_a_chunk_at_a_time_with_the_same_ids(monkeypatch):
    import charnn.tasks.classify.ngrams as ngrams

    texts = [f"text {i} is not {'good' if i % 3 else 'bad'} at all" for i in range(25)]
    whole = ngram_ids_many(texts, 4096)
    monkeypatch.setattr(ngrams, "CHUNK", 4)
    chunked = ngram_ids_many(texts, 4096)
    assert len(chunked) == 25 and all(np.array_equal(a, b) for a, b in zip(whole, chunked, strict=True))


def test_the_ids_of_a_text_with_a_negation_are_pinned():
    import hashlib
    import json

    # The ids of the per-text hashing that runs were first fitted with (86 of them), and of new runs' ("apart",
    # characters 3-6); a change here would make every run predict from other buckets than it was fitted on.
    ids = ngram_ids("isn't funny , not bad", 1 << 20, ("skip", "negation"), (3, 5))
    assert len(ids) == 86 and ids[:3].tolist() == [4744, 12831, 15226]
    assert hashlib.sha256(json.dumps(ids.tolist()).encode()).hexdigest()[:16] == "aed66cecddd2776e"
    ids = ngram_ids("isn't funny , not bad")
    assert len(ids) == 106 and ids[:3].tolist() == [4744, 42001, 82245]
    assert hashlib.sha256(json.dumps(ids.tolist()).encode()).hexdigest()[:16] == "5a7fe9797fb79390"
