"""`charnn train --embed-init cooccurrence`: embeddings that start from which tokens share a line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from charnn.tasks import load_run
from charnn.tasks.lm.cooccurrence import SCALE, cooccurrence_embedding

NEWLINE = 11


def _two_topics(lines: int = 200) -> np.ndarray:
    """Lines of four tokens, alternately from {0..4} and from {5..9}, each ended by NEWLINE."""
    rng = np.random.default_rng(0)
    drawn = [rng.choice(np.arange(5) + 5 * (i % 2), 4, replace=False) for i in range(lines)]
    return np.asarray([t for line in drawn for t in (*line, NEWLINE)])


def _cosines(e: torch.Tensor) -> torch.Tensor:
    unit = torch.nn.functional.normalize(e, dim=1)
    return unit @ unit.T


def test_tokens_that_share_lines_start_alike_and_others_apart():
    torch.manual_seed(0)
    embedding = torch.randn(14, 2)  # 10 tokens into 2 dimensions, as a vocabulary into an embedding
    untouched = embedding[10:].clone()
    assert cooccurrence_embedding(_two_topics(), embedding, breaks=(NEWLINE,)) == 10
    cos = _cosines(embedding[:10])
    assert cos[:5, :5].min() > 0.95 and cos[5:, 5:].min() > 0.95  # a topic's tokens: one direction
    assert cos[:5, 5:].abs().max() < 0.1  # never on one line: unrelated
    assert torch.equal(embedding[10:], untouched)  # never in the text (or a break): their random start stays
    rms = embedding[:10].pow(2).mean(1).sqrt()
    assert torch.allclose(rms, torch.full((10,), SCALE), atol=1e-5)  # the scale of a trained embedding


def test_a_context_never_reaches_across_a_line_break():
    bounded, unbounded = torch.zeros(14, 2), torch.zeros(14, 2)
    cooccurrence_embedding(_two_topics(), bounded, breaks=(NEWLINE,))
    cooccurrence_embedding(_two_topics(), unbounded)  # no breaks: each line's neighbours count too
    assert _cosines(bounded[:10])[:5, 5:].abs().max() < 0.1
    assert _cosines(unbounded[:10])[:5, 5:].abs().max() > 0.5


def test_a_vocabulary_narrower_than_the_embedding_fills_what_it_can():
    narrow = torch.ones(14, 32)  # 10 tokens, 32 dimensions: at most 10 used, the rest zero
    assert cooccurrence_embedding(_two_topics(), narrow, (NEWLINE,)) == 10
    assert torch.all(narrow[:10, 10:] == 0) and torch.all(narrow[10:] == 1)
    assert cooccurrence_embedding(np.asarray([4, 4, 4]), torch.zeros(12, 3)) == 0  # one token: nothing to compare


def _cosine(e: torch.Tensor, a: int, b: int) -> float:
    return torch.nn.functional.cosine_similarity(e[a], e[b], dim=0).item()


LINES = "\n".join(
    ["the brave knight rode on", "on rode the brave knight", "a quiet owl sang low", "low sang a quiet owl"]
)


def _train(run_cli, tmp_path, *extra):
    tmp_path.mkdir(exist_ok=True)
    corpus = tmp_path / "lines.txt"
    corpus.write_text((LINES + "\n") * 60, encoding="utf-8")
    out = tmp_path / "run"
    code, _, err = run_cli(
        "train", corpus, "--out", out, "--steps", "1", "--lr", "1e-6", "--embed", "16", "--hidden", "16",
        "--layers", "1", "--batch-size", "4", "--seq-len", "16", "--device", "cpu", *extra,
    )  # fmt: skip
    assert code == 0, err
    return out


def test_train_starts_the_embedding_from_the_corpus_and_records_it(run_cli, tmp_path):
    out = _train(run_cli, tmp_path, "--embed-init", "cooccurrence")
    assert json.loads((out / "config.json").read_text())["training"]["embed_init"] == "cooccurrence"
    embedding = load_file(out / "model.safetensors")["embed.weight"]

    encode = load_run(out).tokenizer.encode
    k, o, b = (int(encode(c)[0]) for c in "kob")
    # one step at lr 1e-6 barely moves it: 'k' shares lines with 'b' (knight, brave), 'o' with 'w' (owl, low)
    assert _cosine(embedding, k, b) > _cosine(embedding, k, int(encode("w")[0])) + 0.3
    again = _train(run_cli, tmp_path / "again", "--embed-init", "cooccurrence")
    assert torch.equal(load_file(again / "model.safetensors")["embed.weight"], embedding)  # seeded: repeatable
    random_start = load_file(_train(run_cli, tmp_path / "random") / "model.safetensors")["embed.weight"]
    assert not torch.allclose(random_start, embedding)


def test_a_run_that_leaves_the_embedding_random_keeps_the_request_digest_older_versions_gave():
    import dataclasses
    import hashlib

    from charnn.config import TrainConfig
    from charnn.training.start import request_digest

    config = TrainConfig(steps=5)  # what a run that leaves both later settings alone asks for
    left_out = ("steps", "time_budget", "device", "embed_init", "encoder_lr_scale")
    before = {k: v for k, v in config.to_dict().items() if k not in left_out}
    older = hashlib.sha256(json.dumps({"corpus": "x", "training": before}, sort_keys=True).encode()).hexdigest()
    assert request_digest(training=config, corpus="x") == older  # resuming an older run: no "settings differ"
    for later in (dict(embed_init="cooccurrence"), dict(encoder_lr_scale=0.1)):
        assert request_digest(training=dataclasses.replace(config, **later), corpus="x") != older


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--embed-init", "glove"], "unknown --embed-init 'glove'; choose one of: random, cooccurrence"),
        (["--embed-init", "cooccurrence", "--init-from", "{run}"], "drop one of them"),
    ],
)
def test_bad_embed_init_settings_are_refused_in_one_line(run_cli, tmp_path, trained_run, extra, message):
    corpus = tmp_path / "c.txt"
    corpus.write_text(LINES * 40, encoding="utf-8")
    extra = [e.replace("{run}", str(trained_run)) for e in extra]
    code, out, err = run_cli("train", corpus, "--out", tmp_path / "run", "--steps", "1", *extra)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()
