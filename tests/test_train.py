import json
import math

import pytest
import torch
from safetensors.torch import load_file

from charnn.config import TrainConfig, parse_duration
from charnn.errors import ConfigError, CorpusError, RunFolderError
from charnn.events import Evaluated, Finished, Progress, Started
from charnn.tasks.lm.prepare import train
from charnn.text.corpus import Corpus
from charnn.training.optim import lr_at
from tests.conftest import TINY_MODEL, tiny_train_config


def corpus(text: str) -> Corpus:
    return Corpus(text=text, name="t", sources=("t.txt",))


def test_training_lowers_the_validation_loss(trained_run):
    records = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    evals = [r["val_loss"] for r in records if r["event"] == "eval"]
    assert len(evals) >= 3
    assert evals[-1] < evals[0] - 0.3
    assert evals[0] < math.log(60) + 0.5  # starts near uniform over the vocabulary


def test_metrics_log_has_pre_clip_norms_and_results(trained_run):
    records = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r["event"] == "train"]
    assert [r["step"] for r in train_records] == [5, 10, 15, 20, 25, 30]
    assert all(r["grad_norm"] > 0 and r["grad_norm_max"] >= r["grad_norm"] for r in train_records)
    assert records[-1]["event"] == "end"
    config = json.loads((trained_run / "config.json").read_text())
    assert config["results"]["steps"] == 30
    assert config["results"]["val_exact"] is True


def test_same_seed_same_weights(tmp_path, small_text):
    def weights(folder):
        train(corpus(small_text), folder, TINY_MODEL, tiny_train_config(steps=12, eval_every=100))
        return load_file(folder / "model.safetensors")

    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_events_arrive_in_order(tmp_path, small_text):
    events = []
    result = train(corpus(small_text), tmp_path / "r", TINY_MODEL, tiny_train_config(steps=10), on_event=events.append)
    assert isinstance(events[0], Started)
    assert isinstance(result, Finished) and result.reason == "budget" and result.steps == 10
    assert any(isinstance(e, Progress) for e in events)
    assert isinstance(events[-1], Evaluated)


def test_best_model_is_kept_by_validation_loss(tmp_path, small_text):
    events = []
    # A huge learning rate makes later evaluations worse than the first.
    config = tiny_train_config(steps=20, eval_every=5, lr=1.0, warmup_steps=0, clip=0.0)
    train(corpus(small_text), tmp_path / "r", TINY_MODEL, config, on_event=events.append)
    evals = [e for e in events if isinstance(e, Evaluated)]
    best = min(evals, key=lambda e: e.val_loss)
    saved = json.loads((tmp_path / "r" / "config.json").read_text())["results"]
    assert saved["best_step"] == best.step
    assert [e.best for e in evals].count(True) >= 1


def test_interrupt_keeps_the_best_model(tmp_path, small_text):
    def interrupt_at_step_8(event):
        if isinstance(event, Progress) and event.step == 10:
            raise KeyboardInterrupt

    result = train(
        corpus(small_text),
        tmp_path / "r",
        TINY_MODEL,
        tiny_train_config(steps=100, eval_every=5),
        on_event=interrupt_at_step_8,
    )
    assert result.reason == "interrupted"
    assert result.steps == 10
    assert (tmp_path / "r" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "r" / "config.json").read_text())["results"]["stopped"] == "interrupted"


def test_non_finite_steps_never_reach_the_weights(tmp_path, small_text, monkeypatch):
    real = torch.nn.utils.clip_grad_norm_
    calls = {"n": 0}

    def poisoned(params, max_norm):
        calls["n"] += 1
        norm = real(params, max_norm)
        return torch.tensor(float("nan")) if calls["n"] == 3 else norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", poisoned)
    events = []
    train(
        corpus(small_text), tmp_path / "r", TINY_MODEL, tiny_train_config(steps=5, log_every=5), on_event=events.append
    )
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[0].skipped == 1
    weights = load_file(tmp_path / "r" / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())


def test_schedule_warms_up_then_decays():
    config = TrainConfig(steps=100, lr=1e-2, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, 0.0, config) == pytest.approx(1e-3)
    assert lr_at(9, 0.09, config) == pytest.approx(1e-2)
    assert lr_at(10, 0.0, config) == pytest.approx(1e-2)
    assert lr_at(50, 0.5, config) == pytest.approx(0.55e-2)
    assert lr_at(100, 1.0, config) == pytest.approx(1e-3)


def test_clipping_fires_and_is_counted(tmp_path, small_text):
    events = []
    config = tiny_train_config(steps=10, clip=1e-3, log_every=10)
    train(corpus(small_text), tmp_path / "r", TINY_MODEL, config, on_event=events.append)
    (progress,) = [e for e in events if isinstance(e, Progress)]
    assert progress.clipped == 10
    assert progress.grad_norm > 1e-3  # the logged norm is the one before clipping


def test_validation_too_small_is_refused_before_the_folder_is_made(tmp_path):
    with pytest.raises(CorpusError, match="validation split has 1 token"):
        train(corpus("abcdefghij" * 30), tmp_path / "r", TINY_MODEL, tiny_train_config(val_fraction=0.003))
    assert not (tmp_path / "r").exists()


def test_corpus_shorter_than_a_window_is_refused(tmp_path):
    with pytest.raises(CorpusError, match="too few"):
        train(corpus("short text " * 5), tmp_path / "r", TINY_MODEL, tiny_train_config())
    assert not (tmp_path / "r").exists()


def test_existing_run_is_not_clobbered(trained_run, small_text):
    before = (trained_run / "model.safetensors").read_bytes()
    with pytest.raises(RunFolderError, match="--overwrite"):
        train(corpus(small_text), trained_run, TINY_MODEL, tiny_train_config(steps=2))
    assert (trained_run / "model.safetensors").read_bytes() == before


def test_separate_validation_text(tmp_path, small_text, fantasy_text):
    train(corpus(small_text), tmp_path / "r", TINY_MODEL, tiny_train_config(steps=3), val_text=fantasy_text[-500:])
    assert (tmp_path / "r" / "validation.txt").read_text() == fantasy_text[-500:]
    assert json.loads((tmp_path / "r" / "config.json").read_text())["data"]["train_chars"] == len(small_text)


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("5m", 300), ("1h30m", 5400), ("1.5h", 5400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5x", "-5m", "0"])
def test_bad_durations(text):
    with pytest.raises(ConfigError, match="--time"):
        parse_duration(text)


def test_default_budget_is_time():
    assert TrainConfig().time_budget == 300
    assert TrainConfig(steps=10).time_budget is None


def test_init_from_starts_at_the_source_weights(trained_run, tmp_path, small_text):
    from charnn.tasks import load_run

    source = load_run(trained_run)
    text = small_text[3000:] + small_text[:3000]
    events = []
    config = tiny_train_config(steps=1, eval_every=1, lr=1e-9, warmup_steps=0)
    train(corpus(text), tmp_path / "ft", None, config, init_from=trained_run, on_event=events.append)
    tuned = load_run(tmp_path / "ft")
    assert tuned.model.config == source.model.config
    assert tuned.tokenizer.chars == source.tokenizer.chars
    for name, tensor in source.model.state_dict().items():
        torch.testing.assert_close(tuned.model.state_dict()[name], tensor, rtol=0, atol=1e-6)
    saved = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert saved["init_from"] == str(trained_run)


def test_init_from_refuses_a_corpus_the_vocabulary_lacks(trained_run, tmp_path, small_text):
    with pytest.raises(CorpusError, match=r"60 character\(s\) that .* vocabulary lacks \(e\.g\. '5:€'\)"):
        train(
            corpus(small_text + " price: 5€ " * 20), tmp_path / "ft", None, tiny_train_config(), init_from=trained_run
        )
    assert not (tmp_path / "ft").exists()


def test_init_from_refuses_a_tokenizer_from_it_would_ignore(trained_run, tmp_path, small_text):
    with pytest.raises(ConfigError, match="--tokenizer-from and --init-from do not go together"):
        train(corpus(small_text), tmp_path / "ft", None, tiny_train_config(steps=2), init_from=trained_run,
              tokenizer_from=trained_run)  # fmt: skip
    assert not (tmp_path / "ft").exists()


def test_a_val_file_too_short_is_told_as_the_val_file(tmp_path, small_text):
    with pytest.raises(CorpusError, match=r"^the --val file has 1 token\(s\), too few to measure") as refused:
        train(corpus(small_text), tmp_path / "r", TINY_MODEL, tiny_train_config(steps=2), val_text="a")
    assert "--val-fraction" not in str(refused.value)  # it splits no corpus when --val is given
    assert not (tmp_path / "r").exists()
