"""Sentence classifiers: input formats, the bidirectional encoder and its pooling, warm starts,
run kinds and old runs, and every bad input named in one line."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from charnn.config import ModelConfig, TrainConfig
from charnn.errors import CheckpointError, ConfigError, CorpusError
from charnn.model import POOLS, SentenceClassifier
from charnn.text.labelled import check_labels, parse_label_files, read_labelled, stratified_split
from tests.conftest import ROOT
from tests.run_kinds import KINDS, TEXT

V1_RUN = ROOT / "tests" / "data" / "v1-run"
CLASSIFIER_KIND = next(kind for kind in KINDS if kind.name == "classifier")
LM_KIND = next(kind for kind in KINDS if kind.name == "language-model")


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs") / "clf"
    CLASSIFIER_KIND.start(folder)
    return folder


# -- input ---------------------------------------------------------------------------------


def test_tsv_and_one_file_per_label_read_alike(tmp_path):
    (tmp_path / "d.tsv").write_text("pos\tgood film\nneg\tbad film\r\n\npos\tfine\tfun\n")
    (tmp_path / "good.txt").write_text("good film\nfine\tfun\n")
    (tmp_path / "bad.txt").write_text("bad film\n")
    tsv = read_labelled([tmp_path / "d.tsv"])
    assert tsv.texts == ("good film", "bad film", "fine\tfun") and tsv.labels == ("pos", "neg", "pos")
    files = read_labelled([], parse_label_files([f"pos={tmp_path / 'good.txt'}", f"neg={tmp_path / 'bad.txt'}"]))
    assert sorted(zip(files.labels, files.texts)) == sorted(zip(tsv.labels, tsv.texts))


def test_a_text_may_hold_line_separators_that_are_not_newlines(tmp_path):
    # U+0085 (what Latin-1 makes of CP1252's ellipsis) and U+2028 must not split a row.
    (tmp_path / "d.tsv").write_text("pos\tit goes on\u0085 and on\u2028still\nneg\tno\n", encoding="utf-8")
    assert len(read_labelled([tmp_path / "d.tsv"])) == 2


def test_stratified_split_holds_out_each_label_alike():
    from charnn.text.labelled import Labelled

    data = Labelled(tuple(f"t{i}" for i in range(100)), tuple("a" * 80 + "b" * 20), ("x",))
    train, val = stratified_split(data, 0.1, seed=1)
    assert val.labels.count("a") == 8 and val.labels.count("b") == 2
    assert sorted(train.texts + val.texts) == sorted(data.texts)
    assert stratified_split(data, 0.1, seed=1) == (train, val)


# -- the encoder ---------------------------------------------------------------------------


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("bidirectional", [True, False])
def test_more_padding_never_changes_a_prediction(pool, bidirectional):
    torch.manual_seed(0)
    model = SentenceClassifier(
        ModelConfig(vocab_size=20, layers=2, hidden=8, embed=6, bidirectional=bidirectional), 3, pool
    )
    model.eval()
    tokens = torch.randint(1, 20, (3, 7))
    lengths = torch.tensor([7, 4, 1])
    padded = torch.cat([tokens, torch.randint(1, 20, (3, 5))], dim=1)  # more (and noisy) padding
    short = tokens.clone()
    short[1, 4:] = 0
    short[2, 1:] = 0
    expected = model(tokens, lengths)
    assert torch.allclose(model(padded, lengths), expected, atol=1e-6)
    assert torch.allclose(model(short, lengths), expected, atol=1e-6)
    alone = model(tokens[1:2, :4], lengths[1:2])  # the text by itself, unpadded
    assert torch.allclose(alone, expected[1:2], atol=1e-5)


def test_the_backward_direction_reads_right_to_left():
    torch.manual_seed(0)
    model = SentenceClassifier(ModelConfig(vocab_size=20, layers=2, hidden=8, embed=6, bidirectional=True), 2)
    model.eval()
    tokens, lengths = torch.randint(1, 20, (1, 6)), torch.tensor([6])
    states = model.states(tokens, lengths)  # (1, 6, 16)
    # The backward half at position i has read t5 .. ti: it is what a forward pass of the
    # reverse stack over the reversed text gives at position 5 - i.
    from charnn.model import run_stack, zero_state

    x = model.embed_reverse(tokens.flip(1))  # each direction has its own embedding
    ref, _ = run_stack(model.rnns_reverse, x, zero_state(model.config, 2, 1, None), model.config, model.drop)
    assert torch.allclose(states[0, :, 8:], ref[0].flip(0), atol=1e-6)
    changed = tokens.clone()
    changed[0, 0] = (tokens[0, 0] % 19) + 1
    after = model.states(changed, lengths)
    assert torch.allclose(after[0, 1:, 8:], states[0, 1:, 8:])  # positions 1.. have not read t0 backwards
    assert not torch.allclose(after[0, 1:, :8], states[0, 1:, :8])  # but forwards they have


# -- warm start ----------------------------------------------------------------------------


def test_warm_start_copies_the_language_models_into_both_directions(tmp_path):
    from safetensors.torch import load_file

    from charnn.tasks.classify.classifier import train_classifier
    from charnn.tasks.lm.prepare import train
    from charnn.text.corpus import Corpus
    from tests.conftest import TINY_MODEL, tiny_train_config
    from tests.run_kinds import _labelled

    texts = _labelled()
    corpus = Corpus(text="\n".join(texts.texts) + "\n", name="u", sources=("u.txt",))
    lm = dict(TINY_MODEL, layers=1)
    config = tiny_train_config(steps=10, eval_every=10)
    train(corpus, tmp_path / "fwd", lm, config)
    train(corpus, tmp_path / "bwd", lm, config, reverse=True, tokenizer_from=tmp_path / "fwd")
    assert (tmp_path / "bwd" / "tokenizer.json").read_bytes() == (tmp_path / "fwd" / "tokenizer.json").read_bytes()
    import threading

    stopped = threading.Event()
    stopped.set()  # stop before the first step: the resume state holds the starting weights
    train_classifier(
        texts, tmp_path / "clf", {"dropout": 0.2, "bidirectional": True}, tiny_train_config(steps=5, batch_size=8),
        init_from=[tmp_path / "bwd", tmp_path / "fwd"], stop=stopped,
    )  # fmt: skip
    start = {k[6:]: v for k, v in load_file(tmp_path / "clf" / "resume.safetensors").items() if k.startswith("model.")}
    fwd, bwd = load_file(tmp_path / "fwd" / "model.safetensors"), load_file(tmp_path / "bwd" / "model.safetensors")
    assert torch.equal(start["embed.weight"], fwd["embed.weight"])
    assert torch.equal(start["rnns.0.weight_hh_l0"], fwd["rnns.0.weight_hh_l0"])
    assert torch.equal(start["rnns_reverse.0.weight_hh_l0"], bwd["rnns.0.weight_hh_l0"])
    # the reverse stack reads the embedding it was trained with, not the forward one
    assert torch.equal(start["embed_reverse.weight"], bwd["embed.weight"])
    assert not torch.equal(fwd["embed.weight"], bwd["embed.weight"])
    config_json = json.loads((tmp_path / "clf" / "config.json").read_text())
    assert config_json["model"]["hidden"] == TINY_MODEL["hidden"] and config_json["model"]["dropout"] == 0.2


def test_a_warm_started_encoder_learns_at_its_fraction_of_the_rate(tmp_path, run_cli):
    import threading

    from safetensors.torch import load_file

    from charnn.tasks.classify.classifier import train_classifier
    from charnn.tasks.lm.prepare import train
    from charnn.text.corpus import Corpus
    from tests.conftest import TINY_MODEL, tiny_train_config
    from tests.run_kinds import _labelled

    texts = _labelled()
    corpus = Corpus(text="\n".join(texts.texts) + "\n", name="u", sources=("u.txt",))
    train(corpus, tmp_path / "fwd", dict(TINY_MODEL, layers=1), tiny_train_config(steps=10, eval_every=10))
    fwd = load_file(tmp_path / "fwd" / "model.safetensors")

    def final(scale: float, name: str, stop: threading.Event | None = None) -> dict:
        config = tiny_train_config(steps=5, batch_size=8, encoder_lr_scale=scale)
        train_classifier(texts, tmp_path / name, {}, config, init_from=[tmp_path / "fwd"], stop=stop)
        saved = load_file(tmp_path / name / "resume.safetensors")
        return {k[6:]: v for k, v in saved.items() if k.startswith("model.")}

    stopped = threading.Event()
    stopped.set()  # stopped before the first step: the starting weights
    start, frozen, slow = final(0.0, "start", stopped), final(0.0, "frozen"), final(0.5, "slow")
    for name in ("embed.weight", "rnns.0.weight_hh_l0", "rnns.0.bias_ih_l0"):
        assert torch.equal(frozen[name], fwd[name])  # rate 0: not a bit moved, weight decay included
        assert not torch.equal(slow[name], fwd[name])
    head = [k for k in start if not k.startswith(("embed", "rnns", "ngram"))]  # the n-gram part is fitted, not learnt
    assert head and all(not torch.equal(frozen[k], start[k]) for k in head)  # the head learns at the full rate

    data = tmp_path / "few.tsv"
    data.write_text(texts.to_tsv(), encoding="utf-8")
    common = ("--steps", "2", "--batch-size", "8", "--embed", "16", "--hidden", "32", "--device", "cpu")  # the LM's
    for extra, scale in [(("--init-from", tmp_path / "fwd"), 0.1), ((), 1.0), (("--encoder-lr-scale", "0.3"), 0.3)]:
        out = tmp_path / f"cli-{scale}"
        code, _, err = run_cli("classify", "train", data, "--out", out, *common, *extra)
        assert code == 0, err
        assert json.loads((out / "config.json").read_text())["training"]["encoder_lr_scale"] == scale
    code, _, err = run_cli("classify", "train", data, "--out", tmp_path / "bad", "--encoder-lr-scale", "2")
    assert code == 2 and "--encoder-lr-scale must be between 0 (frozen) and 1, got 2.0" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()
    code, _, err = run_cli(
        "classify", "train", data, "--out", tmp_path / "bad", "--tokenizer", "char", "--vocab-size", "50"
    )
    assert code == 2 and "--vocab-size applies to subword tokenizers" in err and not (tmp_path / "bad").exists()
    code, _, err = run_cli("classify", "train", data, "--out", tmp_path / "bad", "--seed", "-1")
    assert code == 2 and "--seed must be from 0 to 2**63-1, got -1" in err and not (tmp_path / "bad").exists()


def test_the_optimizer_gives_the_encoder_its_rate_and_every_parameter_one_group():
    from charnn.config import TrainConfig
    from charnn.training.optim import make_optimizer

    model = SentenceClassifier(ModelConfig(vocab_size=20, embed=8, hidden=8, layers=1, bidirectional=True), 2)
    names = {id(p): n for n, p in model.named_parameters()}
    for scale in (1.0, 0.1):
        groups = make_optimizer(model, TrainConfig(steps=1, encoder_lr_scale=scale)).param_groups
        seen = [names[id(p)] for g in groups for p in g["params"]]
        assert sorted(seen) == sorted(names.values())  # each parameter once
        for g in groups:
            for p in g["params"]:
                encoder = names[id(p)].startswith(("embed", "rnns"))
                assert g["lr_scale"] == (scale if encoder else 1.0)
                assert g["weight_decay"] == (0.01 if p.dim() >= 2 else 0.0)
    assert len(make_optimizer(model, TrainConfig(steps=1)).param_groups) == 2  # one rate: the two groups of old


# -- run kinds and old runs ----------------------------------------------------------------


def test_a_format_1_run_loads_samples_evaluates_and_resumes(run_cli, tmp_path):
    run = tmp_path / "v1-run"
    shutil.copytree(V1_RUN, run)
    assert json.loads((run / "config.json").read_text())["format_version"] == 1
    code, out, err = run_cli("sample", "-m", run, "--length", "40", "--seed", "1", "--temp", "0")
    assert code == 0 and len(out) >= 40, err
    code, out, err = run_cli("eval", "-m", run, "--json")
    assert code == 0 and json.loads(out)["bits_per_char"] > 0, err
    code, out, err = run_cli("train", "--resume", run, "--steps", "30")
    assert code == 0 and "resuming" in err and "at step 20" in err, err
    assert json.loads((run / "config.json").read_text())["results"]["steps"] == 30


def test_each_command_defaults_to_the_newest_run_of_its_kind(
    run_cli, tmp_path, monkeypatch, classifier_run, trained_run
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHARNN_MODEL", raising=False)
    (tmp_path / "runs").mkdir()
    shutil.copytree(trained_run, tmp_path / "runs" / "lm")
    shutil.copytree(classifier_run, tmp_path / "runs" / "clf")  # the newer
    code, out, err = run_cli("sample", "--length", "5")
    assert code == 0 and "using run runs/lm (the newest language-model run" in err
    code, out, err = run_cli("classify", "predict", stdin=b"a line of text\n")
    assert code == 0 and out.strip() in ("lower", "upper") and "using run runs/clf" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sample", "-m", "CLF"], "is a classifier, not a language model; use it with charnn classify predict"),
        (["eval", "-m", "CLF"], "is a classifier, not a language model"),
        (["grads", "-m", "CLF"], "is a classifier, not a language model"),
        (["classify", "predict", "-m", "LM"], "is a language model, not a classifier; use it with charnn sample"),
        (["classify", "eval", "DATA", "-m", "LM"], "is a language model, not a classifier"),
    ],
)
def test_a_run_of_the_wrong_kind_is_refused_in_one_line(args, message, run_cli, tmp_path, classifier_run, trained_run):
    (tmp_path / "d.tsv").write_text("lower\tsome text\n")
    names = {"CLF": str(classifier_run), "LM": str(trained_run), "DATA": str(tmp_path / "d.tsv")}
    code, out, err = run_cli(*[names.get(a, a) for a in args], stdin=b"text\n")
    assert code == 2 and message in err and err.count("\n") == 1 and out == ""


def test_predict_streams_labels_probabilities_and_json(run_cli, tmp_path, classifier_run):
    lines = b"the wizard\nTHE WIZARD\n"
    code, out, err = run_cli("classify", "predict", "-m", classifier_run, stdin=lines)
    assert code == 0 and len(out.splitlines()) == 2
    code, out, _ = run_cli("classify", "predict", "-m", classifier_run, "--probs", stdin=lines)
    label, prob = out.splitlines()[0].split("\t")
    assert label in ("lower", "upper") and 0.5 <= float(prob) <= 1
    code, out, _ = run_cli("classify", "predict", "-m", classifier_run, "--json", stdin=lines)
    rows = [json.loads(line) for line in out.splitlines()]
    assert [set(r["probabilities"]) for r in rows] == [{"lower", "upper"}] * 2
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-5 for r in rows)
    code, out, err = run_cli("classify", "predict", "-m", classifier_run, stdin=b"upper\tthe wizard\n")
    assert code == 0 and "reading them as label<TAB>text" in err and len(out.splitlines()) == 1


def test_eval_reports_accuracy_f1_confusion_and_unknown_labels(run_cli, tmp_path, classifier_run):
    (tmp_path / "d.tsv").write_text("lower\tthe wizard\nupper\tTHE WIZARD\nmystery\tthe owl\n")
    code, out, err = run_cli("classify", "eval", tmp_path / "d.tsv", "-m", classifier_run, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["labels"] == ["lower", "upper", "mystery"] and report["texts"] == 3
    assert sum(map(sum, report["confusion"])) == 3 and report["support"] == [1, 1, 1]
    assert report["accuracy"] <= 2 / 3  # the unknown label is an error
    assert "labels the run never saw, counted as errors: mystery" in err
    code, out, _ = run_cli("classify", "eval", tmp_path / "d.tsv", "-m", classifier_run)
    assert out.startswith("accuracy ") and "confusion" in out


def test_info_shows_the_task_labels_and_accuracy(run_cli, classifier_run):
    code, out, _ = run_cli("info", classifier_run, "--json")
    info = json.loads(out)
    assert info["task"] == "classify" and info["labels"] == ["lower", "upper"]
    assert 0 <= info["best_val_accuracy"] <= 1


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"pos\tfine\nno tab here\n", "line 2: no tab; each line is label<TAB>text"),
        (b"pos\tfine\nneg\t   \n", "line 2: empty text"),
        (b"pos\ta\npos\tb\nneg\tc\n", "label 'neg' has 1 text in the labelled data"),
        (
            b"label\ttext\npos\ta\npos\tb\nneg\tc\nneg\td\n",
            "the first line's ('label\\ttext'); if that line is a header",
        ),
        (b"pos\ta\npos\tb\npos\tc\n", "has one label, 'pos'; a classifier needs texts of at least two labels"),
        (b"pos\tit goes on\x85 and on\nneg\tno\n", "iconv -f CP1252 -t UTF-8"),
    ],
)
def test_bad_labelled_data_gets_one_line_and_nothing_is_written(content, message, run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.tsv").write_bytes(content)
    code, out, err = run_cli("classify", "train", "d.tsv", "--steps", "1")
    assert code == 1 and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.tsv"]


def test_eval_of_a_file_without_tabs_does_not_offer_an_option_eval_lacks(run_cli, classifier_run, tmp_path):
    (tmp_path / "plain.txt").write_text("just a sentence\n")
    code, out, err = run_cli("classify", "eval", tmp_path / "plain.txt", "-m", classifier_run)
    assert code == 1 and "line 1: no tab; each line is label<TAB>text" in err and "--label" not in err
    code, out, err = run_cli("classify", "train", tmp_path / "plain.txt", "--steps", "1", "--out", tmp_path / "r")
    assert code == 1 and "--label NAME=FILE" in err  # train takes one file per label


def test_a_bidirectional_language_model_is_refused(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.txt").write_text(TEXT)
    code, out, err = run_cli("train", "t.txt", "--bidirectional")
    assert code == 2 and "a language model reads left to right and cannot be --bidirectional" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]


def test_a_reverse_run_is_scored_but_not_sampled(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.txt").write_text(TEXT)
    args = ["--steps", "5", "--hidden", "16", "--embed", "8", "--batch-size", "4", "--seq-len", "16", "--device", "cpu"]
    assert run_cli("train", "t.txt", "--reverse", "--out", "runs/bwd", *args)[0] == 0
    code, out, err = run_cli("sample", "-m", "runs/bwd")
    assert code == 2 and "reads right to left" in err
    code, out, err = run_cli("eval", "-m", "runs/bwd", "--json")
    assert code == 0 and json.loads(out)["bits_per_char"] > 0


def test_label_options_are_checked():
    with pytest.raises(ConfigError, match="is not NAME=FILE"):
        parse_label_files(["pos"])
    with pytest.raises(CorpusError, match="has one label"):
        from charnn.text.labelled import Labelled

        check_labels(Labelled(("a", "b"), ("x", "x"), ("s",)))


def test_the_shared_benchmark_data_reads_cleanly():
    data = ROOT.parent / "shared" / "datasets" / "sentiment-mr" / "train.tsv"
    if not data.is_file():
        pytest.skip("../shared/datasets is absent")
    labelled = read_labelled([data])
    assert (labelled.labels.count("pos"), labelled.labels.count("neg")) == (4264, 4264)  # README: 8,528 rows, 80%
    assert all(text.strip() == text and text for text in labelled.texts)  # no empty or padded text
    assert len(set(labelled.texts)) == len(labelled.texts)
    # Windows-1252 read as Latin-1 turns an ellipsis into U+0085, a line break to str.splitlines (README)
    assert not any("\x85" in text for text in labelled.texts)
    assert sum("\u2026" in text for text in labelled.texts) > 0


def test_plot_draws_a_classifiers_loss_and_accuracy(run_cli, classifier_run, tmp_path):
    code, out, err = run_cli("plot", classifier_run, "--png", tmp_path / "c.png")
    assert code == 0, err
    assert "best validation accuracy" in out and "validation accuracy" in out and "nats per text" in out
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_predict_gives_one_label_per_input_line_blank_ones_too(run_cli, tmp_path, classifier_run):
    (tmp_path / "in.txt").write_text("the wizard\n\nTHE OWL\n")
    code, out, err = run_cli("classify", "predict", tmp_path / "in.txt", "-m", classifier_run)
    assert code == 0 and len(out.splitlines()) == 3, err
    code, out, err = run_cli("classify", "predict", "-m", classifier_run, stdin=b"one\n\n\nfour\n")
    assert code == 0 and len(out.splitlines()) == 4, err


def test_predict_on_an_empty_file_or_a_closed_stdin(run_cli, tmp_path, classifier_run, monkeypatch):
    (tmp_path / "empty.txt").write_text("")
    code, out, err = run_cli("classify", "predict", tmp_path / "empty.txt", "-m", classifier_run)
    assert (code, out) == (0, "")
    from charnn.cli import main

    monkeypatch.setattr("sys.stdin", None)
    assert main(["classify", "predict", str(tmp_path / "empty.txt"), "-m", str(classifier_run)]) == 0
    assert main(["classify", "predict", "-m", str(classifier_run)]) == 2


def test_a_label_with_two_texts_keeps_one_to_learn_from(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = [f"lower\tsome text {i}" for i in range(20)] + ["rare\tonly two", "rare\ttexts here"]
    (tmp_path / "d.tsv").write_text("\n".join(rows) + "\n")
    args = ["--steps", "2", "--batch-size", "2", "--hidden", "8", "--embed", "4", "--tokenizer", "char"]
    code, out, err = run_cli("classify", "train", "d.tsv", "--val-fraction", "0.9", *args)
    assert code == 0, err
    kept = read_labelled([tmp_path / "runs" / "d" / "train.tsv"])
    held = read_labelled([tmp_path / "runs" / "d" / "validation.tsv"])
    assert kept.labels.count("rare") == 1 and held.labels.count("rare") == 1  # one to learn, one to check
    assert sorted(kept.texts + held.texts) == sorted(row.split("\t")[1] for row in rows)


def test_a_handful_of_texts_trains_on_a_batch_of_them_all_and_resumes(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = [f"{label}\t{label} text number {i}" for label in ("lower", "upper") for i in range(5)]
    (tmp_path / "d.tsv").write_text("\n".join(rows) + "\n")
    args = ["classify", "train", "d.tsv", "--out", "runs/few", "--hidden", "8", "--embed", "4", "--tokenizer", "char"]
    code, out, err = run_cli(*args, "--steps", "2", "--eval-every", "2")  # --batch-size left at 32
    assert code == 0, err
    config = json.loads((tmp_path / "runs" / "few" / "config.json").read_text())
    assert (config["data"]["train_texts"], config["data"]["val_texts"]) == (8, 2)
    assert config["training"]["batch_size"] == 8  # what the run used, not what was asked
    assert "8 training texts are fewer than --batch-size 32: each step reads 8" in err
    code, out, err = run_cli(*args, "--steps", "4", "--eval-every", "2", "--resume", "runs/few")
    assert code == 0, err
    assert "resuming runs/few at step 2" in err and "goes on with the settings" not in err  # the same request
    again = json.loads((tmp_path / "runs" / "few" / "config.json").read_text())
    assert again["created"] == config["created"] and again["training"]["batch_size"] == 8
    logged = [json.loads(line) for line in (tmp_path / "runs" / "few" / "metrics.jsonl").open()]
    assert [record["step"] for record in logged if record["event"] == "eval"] == [2, 4]


@pytest.fixture(scope="module")
def char_lm(tmp_path_factory):
    """A left-to-right language model: lstm, 1 layer, hidden 32, embed 16, no residual, char tokenizer."""
    from charnn.tasks.lm.prepare import train
    from charnn.text.corpus import Corpus
    from tests.conftest import TINY_MODEL, tiny_train_config
    from tests.run_kinds import _labelled

    folder = tmp_path_factory.mktemp("warm") / "fwd"
    corpus = Corpus(text="\n".join(_labelled().texts) + "\n", name="u", sources=("u.txt",))
    train(corpus, folder, dict(TINY_MODEL, layers=1), tiny_train_config(steps=2, eval_every=2))
    return folder


@pytest.mark.parametrize(
    ("given", "said"),
    [
        (["--hidden", "64"], "--hidden 64 does not fit --init-from LM (it was trained with --hidden 32)"),
        (["--embed", "8"], "--embed 8 does not fit --init-from LM (it was trained with --embed 16)"),
        (["--layers", "2"], "--layers 2 does not fit --init-from LM (it was trained with --layers 1)"),
        (["--cell", "gru"], "--cell gru does not fit --init-from LM (it was trained with --cell lstm)"),
        (["--residual"], "--residual does not fit --init-from LM (it was trained with --no-residual)"),
        (["--tokenizer", "bpe"], "--tokenizer bpe does not fit --init-from LM (it was trained with --tokenizer char)"),
        (["--vocab-size", "300"], "--vocab-size 300 does not fit --init-from LM (its tokenizer is char, which has no"),
    ],
)
def test_init_from_refuses_a_shape_or_tokenizer_given_that_the_language_model_lacks(
    given, said, char_lm, run_cli, tmp_path
):
    from tests.run_kinds import _labelled

    (tmp_path / "d.tsv").write_text(_labelled().to_tsv(), encoding="utf-8")
    out = tmp_path / "clf"
    code, _, err = run_cli("classify", "train", tmp_path / "d.tsv", "--init-from", char_lm, "--out", out, *given)
    assert code == 2 and err.startswith("error: " + said.replace("LM", str(char_lm)))
    assert err.endswith(f"drop {given[0]}\n") and err.count("\n") == 1
    assert not out.exists()


def test_init_from_takes_a_shape_and_tokenizer_given_that_agree_with_the_language_model(char_lm, run_cli, tmp_path):
    from tests.run_kinds import _labelled

    (tmp_path / "d.tsv").write_text(_labelled().to_tsv(), encoding="utf-8")
    out = tmp_path / "clf"
    same = [
        "--cell",
        "lstm",
        "--layers",
        "1",
        "--hidden",
        "32",
        "--embed",
        "16",
        "--no-residual",
        "--tokenizer",
        "char",
    ]
    args = ["--init-from", char_lm, "--out", out, "--steps", "1", "--batch-size", "8", *same]
    code, _, err = run_cli("classify", "train", tmp_path / "d.tsv", *args)
    assert code == 0, err
    model = json.loads((out / "config.json").read_text())["model"]
    assert (model["hidden"], model["embed"], model["layers"], model["residual"]) == (32, 16, 1, False)


def test_resume_refuses_a_run_of_the_other_kind(run_cli, classifier_run, trained_run, tmp_path):
    code, out, err = run_cli("train", "--resume", classifier_run)
    assert code == 2 and "is a classifier, not a language model" in err
    code, out, err = run_cli("classify", "train", "--resume", trained_run)
    assert code == 2 and "is a language model, not a classifier" in err
    code, out, err = run_cli("classify", "train", "--resume", tmp_path / "nothing")
    assert code == 2 and "pass the labelled data to start it: charnn classify train DATA" in err


def test_resume_refuses_shape_options_it_would_ignore_and_leaves_the_run_as_it_was(run_cli, classifier_run):
    before = {path.name: path.read_bytes() for path in classifier_run.iterdir() if path.is_file()}
    code, _, err = run_cli("classify", "train", "--resume", classifier_run, "--hidden", "64", "--cell", "gru")
    assert code == 2
    assert err.strip().splitlines() == [
        "error: --cell and --hidden are fixed when a run starts; drop them to resume the run as it is"
    ]
    code, _, err = run_cli("tag", "train", "--resume", classifier_run, "--layers", "3")
    assert code == 2 and "--layers is fixed when a run starts; drop it" in err
    # Every option a resume would not read is refused, training settings too, not only the shape.
    code, _, err = run_cli(
        "classify", "train", "--resume", classifier_run, "--pool", "max", "--batch-size", "8", "--steps", "3"
    )
    assert code == 2 and "--pool and --batch-size are fixed when a run starts; drop them" in err
    code, _, err = run_cli("tag", "train", "--resume", classifier_run, "--dropout", "0.5", "--device", "cpu")
    assert code == 2 and "--dropout is fixed when a run starts; drop it" in err
    assert {path.name: path.read_bytes() for path in classifier_run.iterdir() if path.is_file()} == before


def test_predict_answers_each_line_of_a_slow_pipe_at_once(classifier_run):
    import os
    import select
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "charnn", "classify", "predict", "-m", str(classifier_run)]
    proc = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        proc.stdin.write("the wizard\n")
        proc.stdin.flush()
        assert select.select([proc.stdout], [], [], 60)[0], "no answer while the pipe stays open"
        assert proc.stdout.readline().strip() in ("lower", "upper")
        proc.stdin.write("THE OWL\n")
        proc.stdin.close()
        assert proc.stdout.readline().strip() in ("lower", "upper")
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()


def test_every_logged_validation_is_strict_json(classifier_run, run_cli):
    def strict(constant):
        raise AssertionError(f"metrics.jsonl holds {constant}, which strict JSON readers refuse")

    for line in (classifier_run / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=strict)  # a classifier's bits per character was NaN
    code, out, err = run_cli("plot", classifier_run)
    assert code == 0 and "best validation accuracy" in out, err


def test_a_classifier_stopped_before_its_first_validation_names_the_command_that_continues_it(
    classifier_run, run_cli, tmp_path
):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(classifier_run, copy)
    (copy / "model.safetensors").unlink()
    config = json.loads((copy / "config.json").read_text())
    del config["results"]  # killed before its first validation: no model, no results
    (copy / "config.json").write_text(json.dumps(config))
    code, out, err = run_cli("classify", "predict", "-m", copy, stdin=b"the owl\n")
    assert code == 1 and f"continue it with `charnn classify train --resume {copy}`" in err, err


def test_a_bad_line_piped_to_predict_is_named_by_its_number(classifier_run, run_cli):
    code, out, err = run_cli("classify", "predict", "-m", classifier_run, stdin=b"the owl\nxx a\x00b\n")
    assert code == 1 and "standard input, line 2, holds a NUL byte at offset 4" in err, err
    code, out, err = run_cli("classify", "predict", "-m", classifier_run, stdin=b"the owl\nok\nnot \xff ok\n")
    assert code == 1 and "standard input, line 3, is not valid UTF-8: byte offset 4 (ff" in err, err


def test_a_reader_that_goes_away_while_the_pipe_in_stays_open_ends_predict_quietly(classifier_run):
    import os
    import select
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "charnn", "classify", "predict", "-m", str(classifier_run)]
    proc = subprocess.Popen(
        command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        proc.stdin.write("the wizard\n")
        proc.stdin.flush()
        assert select.select([proc.stdout], [], [], 60)[0], "no answer while the pipe stays open"
        proc.stdout.close()  # `| head -1`: the reader has what it wanted
        proc.stdin.write("THE OWL\n")  # its answer meets the closed pipe while the input is still open
        proc.stdin.flush()
        assert proc.wait(timeout=60) == 0  # was 134: a reading thread inside stdin's lock at exit
        assert "Fatal Python error" not in proc.stderr.read()
    finally:
        proc.kill()


def test_the_probe_benchmarks_word_vectors_group_words_that_share_sentences():
    from bench.probe import _cooccurrence_vectors, _mean_vectors

    texts = ["good fun great film", "great fun good cast", "bad dull awful film", "awful dull bad cast"] * 5
    index, vectors = _cooccurrence_vectors(texts, rank=2)  # two kinds of sentence: two dimensions
    assert set(index) == {"good", "fun", "great", "film", "cast", "bad", "dull", "awful"}
    similar = vectors @ vectors.T
    good, great, bad, awful = (index[w] for w in ("good", "great", "bad", "awful"))
    assert similar[good, great] > 0.99 and similar[bad, awful] > 0.99
    assert abs(similar[good, bad]) < 0.1  # never in one sentence
    means = _mean_vectors(["good great", "unknown words only", "bad"], index, vectors)
    assert torch.allclose(means[0], (vectors[good] + vectors[great]) / 2)
    assert torch.equal(means[1], torch.zeros(2))  # no known word: the zero vector, not a division by zero
    assert torch.allclose(means[2], vectors[bad])


def test_the_bag_of_words_baseline_scores_dev_with_the_c_best_on_held_out_rows():
    from bench.bow import choose_c

    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1, 0, 1])
    xs = {"train": x, "held": x, "dev": x}
    best = choose_c(xs, {"train": y, "held": y, "dev": 1 - y}, 2, (0.1, 10.0))
    # every C fits these rows: a tie keeps the first C, and dev is scored with it
    assert best == {"C": 0.1, "heldout_accuracy": 1.0, "dev_accuracy": 0.0}
    best = choose_c(xs, {"train": y, "held": 1 - y, "dev": y}, 2, (0.1, 10.0))
    assert best == {"C": 0.1, "heldout_accuracy": 0.0, "dev_accuracy": 1.0}


def test_tokenizer_from_lends_a_runs_tokenizer_to_a_classifier_from_scratch(char_lm, run_cli, tmp_path):
    """The warm-start comparison's middle arm: from scratch, but reading text as the language model does."""
    from tests.run_kinds import _labelled

    (tmp_path / "d.tsv").write_text(_labelled().to_tsv(), encoding="utf-8")
    out = tmp_path / "clf"
    args = ["--tokenizer-from", char_lm, "--out", out, "--steps", "1", "--batch-size", "8", "--hidden", "8"]
    code, _, err = run_cli("classify", "train", tmp_path / "d.tsv", *args)
    assert code == 0, err
    lent = json.loads((char_lm / "config.json").read_text())["tokenizer"]["file"]
    assert (out / lent).read_bytes() == (char_lm / lent).read_bytes()
    assert json.loads((out / "config.json").read_text())["model"]["hidden"] == 8  # its own shape: not a warm start
    assert "init_from" not in json.loads((out / "config.json").read_text())


@pytest.mark.parametrize(
    ("given", "said"),
    [
        (["--init-from", "LM"], "--tokenizer-from and --init-from do not go together"),
        (["--tokenizer", "bpe"], "--tokenizer is a tokenizer's, and --tokenizer-from LM lends one; drop --tokenizer"),
        (["--vocab-size", "300"], "--vocab-size is a tokenizer's, and --tokenizer-from LM lends one"),
    ],
)
def test_tokenizer_from_refuses_what_contradicts_it(given, said, char_lm, run_cli, tmp_path):
    from tests.run_kinds import _labelled

    (tmp_path / "d.tsv").write_text(_labelled().to_tsv(), encoding="utf-8")
    out = tmp_path / "clf"
    given = [str(char_lm) if arg == "LM" else arg for arg in given]
    code, _, err = run_cli("classify", "train", tmp_path / "d.tsv", "--tokenizer-from", char_lm, "--out", out, *given)
    assert code == 2 and err.startswith("error: " + said.replace("LM", str(char_lm))) and err.count("\n") == 1
    assert not out.exists()


def test_many_labels_get_a_table_of_at_most_64_mb_and_the_fit_is_said(run_cli, tmp_path, monkeypatch):
    """300 labels took the n-gram fit past 12 GB of memory (L-BFGS kept 100 past steps of 300 x 2M weights) and
    would have written 5 GB of run folder, without a word on stderr."""
    from safetensors import safe_open

    from charnn.tasks.classify.ngrams import BUCKETS, MIN_BUCKETS, TABLE_ENTRIES, buckets_for

    assert buckets_for(2) == buckets_for(8) == BUCKETS and buckets_for(9) == BUCKETS // 2
    assert all(buckets_for(n) * n <= TABLE_ENTRIES for n in range(2, 257)) and buckets_for(10_000) == MIN_BUCKETS
    monkeypatch.chdir(tmp_path)
    words = ["red", "green", "blue", "gold", "grey", "pink", "teal", "rust", "sand", "plum", "jade", "navy"]
    rows = [f"{w}\tthe {w} one, {w} again number {i}" for w in words for i in range(4)]
    (tmp_path / "d.tsv").write_text("\n".join(rows) + "\n")
    tiny = ["--hidden", "8", "--embed", "4", "--tokenizer", "char", "--steps", "2", "--eval-every", "2"]
    code, _, err = run_cli("classify", "train", "d.tsv", "--out", "runs/many", *tiny)
    assert code == 0, err
    assert "fitting the n-gram part: 48 texts, 12 labels, 1,048,576 buckets (--no-ngrams leaves it out)" in err
    ngrams = json.loads((tmp_path / "runs/many/config.json").read_text())["task"]["ngrams"]
    assert ngrams["buckets"] == buckets_for(12) == 1 << 20
    with safe_open(tmp_path / "runs/many/model.safetensors", "pt") as saved:
        assert saved.get_slice("ngram_weight").get_shape() == [1 << 20, 12]
    code, out, err = run_cli("classify", "predict", "-m", "runs/many", stdin=b"the teal one\nplum again\n")
    assert code == 0 and out.split() == ["teal", "plum"], err


def test_the_ngram_part_is_fitted_saved_mixed_in_and_can_be_left_out(run_cli, tmp_path, monkeypatch):
    from safetensors import safe_open

    monkeypatch.chdir(tmp_path)
    filler = ["the", "film", "was", "a", "story", "of", "it", "and", "then"]
    rows = [
        f"{'pos' if i % 2 else 'neg'}\t{' '.join(filler[(i * 7 + j) % 9] for j in range(4))} "
        f"{'splendid' if i % 2 else 'dreadful'} {filler[i % 9]}"
        for i in range(120)
    ]
    (tmp_path / "d.tsv").write_text("\n".join(rows) + "\n")
    tiny = ["--hidden", "8", "--embed", "4", "--tokenizer", "char", "--steps", "2", "--eval-every", "2"]
    code, _, err = run_cli("classify", "train", "d.tsv", "--out", "runs/on", *tiny)
    assert code == 0, err
    ngrams = json.loads((tmp_path / "runs/on/config.json").read_text())["task"]["ngrams"]
    assert ngrams["buckets"] == 1 << 21 and ngrams["chars"] == [3, 6] and ngrams["heldout_accuracy"] == 1.0
    assert len(ngrams["C"]) == 2 and set(ngrams["C"]) <= {0.03, 0.1, 0.3, 1.0}  # the words' C, the characters'
    assert ngrams["ngrams_seen"] > 0
    logged = [json.loads(line) for line in (tmp_path / "runs/on/metrics.jsonl").open()]
    end = logged[-1]
    assert end["val_ngram_accuracy"] == 1.0 and end["val_accuracy"] == 1.0 and end["ngram_share"] > 0
    (validation,) = [r for r in logged if r["event"] == "eval"]  # each validation logs the parts too (it did not)
    assert validation["val_ngram_accuracy"] == 1.0 and validation["ngram_share"] == end["ngram_share"]
    assert 0 <= validation["val_encoder_accuracy"] <= 1
    with safe_open(tmp_path / "runs/on/model.safetensors", "pt") as saved:
        assert saved.get_tensor("ngram_weight").abs().sum() > 0  # the fitted table travels with the weights
    # Two steps of an 8-wide encoder know nothing: the cue words are read by the n-gram part.
    code, out, err = run_cli("classify", "predict", "-m", "runs/on", stdin=b"a story splendid\ndreadful film it\n")
    assert code == 0 and out.split() == ["pos", "neg"], err
    code, out, _ = run_cli("classify", "eval", "d.tsv", "-m", "runs/on", "--json")
    assert json.loads(out)["accuracy"] == 1.0
    # The run names what its n-grams read; runs made before the extras, or before "apart" (one table of 1M
    # buckets for words and characters, characters 3-5), read their texts as they were fitted.
    import numpy as np
    from safetensors.torch import load_file, save_file

    from charnn.tasks.classify.classifier import load_classifier
    from charnn.tasks.classify.ngrams import ngram_ids
    from charnn.tasks.classify.task import text_ngrams

    assert ngrams["extras"] == ["skip", "negation", "apart"]
    on = load_classifier(tmp_path / "runs/on").model
    assert on.ngram_extras == ("skip", "negation", "apart") and on.ngram_chars == (3, 6)
    assert np.array_equal(text_ngrams(on, ["not a story"])[0], ngram_ids("not a story"))
    config = json.loads((tmp_path / "runs/on/config.json").read_text())
    for name, extras in ("before", None), ("one-table", ["skip", "negation"]):
        shutil.copytree(tmp_path / "runs/on", tmp_path / "runs" / name)
        old = json.loads(json.dumps(config))
        old["task"]["ngrams"].update(buckets=1 << 20, chars=[3, 5], C=0.1)
        if extras is None:
            del old["task"]["ngrams"]["extras"]
        else:
            old["task"]["ngrams"]["extras"] = extras
        (tmp_path / "runs" / name / "config.json").write_text(json.dumps(old))
        weights = load_file(tmp_path / "runs" / name / "model.safetensors")
        weights["ngram_weight"] = weights["ngram_weight"][: 1 << 20].clone()
        save_file(weights, tmp_path / "runs" / name / "model.safetensors")
        model = load_classifier(tmp_path / "runs" / name).model
        assert model.ngram_extras == tuple(extras or ()) and model.ngram_chars == (3, 5)
        expected = ngram_ids("not a story", 1 << 20, tuple(extras or ()), (3, 5))
        assert np.array_equal(text_ngrams(model, ["not a story"])[0], expected)
        assert expected.max() < 1 << 20 and not np.array_equal(expected, ngram_ids("not a story", 1 << 20))
    # A run whose n-grams read something this charnn does not know is refused, not misread.
    shutil.copytree(tmp_path / "runs/on", tmp_path / "runs/future")
    config["task"]["ngrams"]["extras"] = ["skip", "emoji"]
    (tmp_path / "runs/future/config.json").write_text(json.dumps(config))
    code, out, err = run_cli("classify", "predict", "-m", "runs/future", stdin=b"a story\n")
    assert code == 1 and out == "" and err.count("\n") == 1
    assert "n-grams read 'emoji', unknown here; a newer charnn may read it" in err
    code, _, err = run_cli("classify", "train", "--resume", "runs/on", "--no-ngrams")
    assert code == 2 and "--no-ngrams is fixed when a run starts; drop it" in err
    code, _, err = run_cli("classify", "train", "d.tsv", "--out", "runs/off", "--no-ngrams", *tiny)
    assert code == 0, err
    assert "ngrams" not in json.loads((tmp_path / "runs/off/config.json").read_text())["task"]
    with safe_open(tmp_path / "runs/off/model.safetensors", "pt") as saved:
        assert "ngram_weight" not in saved.keys()


def test_the_held_out_texts_judge_an_ngram_model_fitted_without_them_and_the_kept_table_is_refitted_on_all(tmp_path):
    import numpy as np
    from safetensors.torch import load_file

    from charnn.runs.names import VAL_NGRAMS_FILE
    from charnn.tasks.classify.classifier import train_classifier
    from charnn.tasks.classify.ngrams import bag, fit, ngram_ids, parse_logits
    from charnn.text.labelled import read_labelled

    words = ["plot", "cast", "score", "scene", "ending", "pace", "script", "music"]
    rows = [
        f"{'pos' if i % 2 else 'neg'}\t{words[i % 8]} {words[(i * 3) % 8]} {'good' if i % 2 else 'bad'}"
        for i in range(80)
    ]
    rows += [f"{'pos' if i % 3 else 'neg'}\t{words[i % 8]} {words[(i * 5) % 8]} so so" for i in range(40)]
    (tmp_path / "d.tsv").write_text("\n".join(rows) + "\n")
    config = TrainConfig(steps=2, eval_every=2, batch_size=8, seed=3)
    train_classifier(read_labelled([tmp_path / "d.tsv"]), tmp_path / "run", {"hidden": 8, "embed": 4}, config)
    folder = tmp_path / "run"
    task = json.loads((folder / "config.json").read_text())["task"]
    labels = task["labels"]
    train, val = read_labelled([folder / "train.tsv"]), read_labelled([folder / "validation.tsv"])
    index = {label: i for i, label in enumerate(labels)}
    ids = lambda texts: [ngram_ids(t) for t in texts]  # noqa: E731
    ys = lambda part: np.asarray([index[x] for x in part.labels])  # noqa: E731
    # Validation reads the logits of a model of the training texts alone, its C chosen on the held-out ones...
    alone = fit(ids(train.texts), ys(train), 2, ids(val.texts), ys(val), apart=True)
    saved_logits = parse_logits((folder / VAL_NGRAMS_FILE).read_text(), 2)
    assert saved_logits.shape == (len(val), 2)
    assert torch.equal(saved_logits, alone.heldout_logits)
    flat, offsets = bag(ids(val.texts))  # the same logits as the fitted table's, read as the model reads it
    table = F.embedding_bag(flat, alone.weight, offsets, mode="sum") + alone.bias
    assert torch.allclose(saved_logits, table, atol=1e-5)
    assert task["ngrams"]["C"] == list(alone.penalties) and task["ngrams"]["heldout_accuracy"] == alone.heldout_accuracy
    # ... while the table the run keeps was fitted with that C on every text, held-out ones included.
    every = fit(
        ids(train.texts + val.texts),
        np.concatenate([ys(train), ys(val)]),
        2,
        [],
        ys(val)[:0],
        apart=True,
        chosen=alone.penalties,
    )
    kept = load_file(folder / "model.safetensors")
    assert torch.equal(kept["ngram_weight"], every.weight) and torch.equal(kept["ngram_bias"], every.bias)
    assert not torch.equal(kept["ngram_weight"], alone.weight)
    assert task["ngrams"]["fitted_on"] == "train+validation"
    # A --val file is the user's own held-out data: the n-grams never learn from it.
    train_classifier(train, tmp_path / "given", {"hidden": 8, "embed": 4}, config, val=val)
    given = json.loads((tmp_path / "given/config.json").read_text())["task"]["ngrams"]
    assert given["fitted_on"] == "train" and given["C"] == list(alone.penalties)
    assert torch.equal(load_file(tmp_path / "given/model.safetensors")["ngram_weight"], alone.weight)
    # A damaged file stops a resume with one line, before any step.
    (folder / VAL_NGRAMS_FILE).write_text("1.0\tnot a number\n")
    with pytest.raises(CheckpointError, match=r"validation\.ngrams is damaged .*train the run again"):
        more = TrainConfig(steps=4, eval_every=2, batch_size=8, seed=3)
        train_classifier(read_labelled([tmp_path / "d.tsv"]), folder, {"hidden": 8, "embed": 4}, more, resume=True)


def test_eval_of_texts_with_none_of_the_runs_labels_is_refused(run_cli, classifier_run, tmp_path):
    (tmp_path / "other.tsv").write_text("spam\tbuy now\nham\thello\n")
    code, out, err = run_cli("classify", "eval", tmp_path / "other.tsv", "-m", classifier_run)
    assert code == 1 and "none of the labels in" in err and "ham, spam" in err and out == ""


def test_options_that_would_be_ignored_or_break_the_run_are_refused_up_front(char_lm, run_cli, tmp_path):
    from tests.run_kinds import _labelled

    data = tmp_path / "d.tsv"
    data.write_text(_labelled().to_tsv(), encoding="utf-8")
    (tmp_path / "good.txt").write_text("good film\n" * 10)
    (tmp_path / "bad.txt").write_text("bad film\n" * 10)
    out = tmp_path / "clf"
    cases = [  # each was accepted: a second LM unused but recorded, a fraction unused but recorded, a broken run
        (["--init-from", char_lm, "--init-from", char_lm, "--no-bidirectional"],
         "a second --init-from starts the right-to-left direction, which --no-bidirectional leaves out"),
        (["--val", data, "--val-fraction", "0.5"], "--val-fraction holds out part of the data when no --val file"),
    ]  # fmt: skip
    for extra, said in cases:
        code, _, err = run_cli("classify", "train", data, "--out", out, *extra)
        assert code == 2 and said in err and err.count("\n") == 1, err
        assert not out.exists()
    code, _, err = run_cli(
        "classify", "train", "--label", f"very\tgood={tmp_path / 'good.txt'}", "--label", f"bad={tmp_path / 'bad.txt'}",
        "--out", out,
    )  # fmt: skip
    assert code == 2 and "a label's name cannot hold a tab or a line break" in err and not out.exists()
