"""Word taggers: CoNLL-U and two-column input, the word vectors and padding, BIO entities as
conlleval counts them, well-formed decoding, the commands, run kinds, and bad input in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from charnn.config import ModelConfig
from charnn.errors import ConfigError, CorpusError
from charnn.model import WordTagger
from charnn.tasks.tag.task import decode, encode_sentence, entity_scores, pad
from charnn.text.tagged import Tagged, entities, is_bio, read_tagged, split_sentences, tag_column
from tests.conftest import ROOT
from tests.run_kinds import KINDS, _tagged

TAGGER_KIND = next(kind for kind in KINDS if kind.name == "tagger")
CONLLU = (
    "# sent_id = 1\n"
    "# text = Don't go.\n"
    "1-2\tDon't\t_\t_\t_\t_\t_\t_\t_\t_\n"
    "1\tDo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_\n"
    "2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_\n"
    "3\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_\n"
    "3.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t3:x\t_\n"
    "4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_\n"
    "\n"
    "1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_\n"
)


@pytest.fixture(scope="module")
def tagger_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs") / "tagger"
    TAGGER_KIND.start(folder)
    return folder


# -- input ---------------------------------------------------------------------------------


def test_conllu_skips_comments_multiword_tokens_and_empty_nodes(tmp_path):
    (tmp_path / "d.conllu").write_text(CONLLU)
    data = read_tagged([tmp_path / "d.conllu"])
    assert data.sentences == (("Do", "n't", "go", "."), ("Hi",))
    assert data.tags == (("AUX", "PART", "VERB", "PUNCT"), ("INTJ",))
    xpos = read_tagged([tmp_path / "d.conllu"], column="xpos")
    assert xpos.tags == (("VBP", "RB", "VB", "."), ("UH",))
    assert read_tagged([tmp_path / "d.conllu"], column="5").tags == xpos.tags
    assert read_tagged([tmp_path / "d.conllu"], fmt="conllu") == data
    (tmp_path / "bad.conllu").write_text(CONLLU.replace("\tPART\t", "\tPA RT\t"))  # a FORM may hold a space, a tag not
    with pytest.raises(CorpusError, match=r"bad.conllu, line 5: the tag 'PA RT' holds whitespace; fix the line"):
        read_tagged([tmp_path / "bad.conllu"])


def test_two_columns_split_sentences_at_empty_or_whitespace_only_lines(tmp_path):
    # WNUT-17's training file ends most sentences with a line holding only a tab; '#' is a token here.
    (tmp_path / "d.conll").write_text("#\tO\nEmpire\tB-location\nState\tI-location\n\t\nHi\tO\r\n \n\nyo\tO\n")
    data = read_tagged([tmp_path / "d.conll"])
    assert data.sentences == (("#", "Empire", "State"), ("Hi",), ("yo",))
    assert data.tags[0] == ("O", "B-location", "I-location")
    back = tmp_path / "again.tags"
    back.write_text(data.to_text())
    assert read_tagged([back]).sentences == data.sentences


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1\tDo\tdo\tAUX\n", "line 1: 4 tab-separated columns; tagged data is CoNLL-U (10 columns), token<TAB>tag (2)"),
        (CONLLU + "2\tthere\tthere\n", "line 11: a CoNLL-U line has 10 tab-separated columns, this one has 3"),
        (CONLLU + "\nthere\tADV\n", "line 12: a CoNLL-U line has 10 tab-separated columns, this one has 2 (a token"),
        (
            "a\tO\nb\tO\n\n" + CONLLU.split("\n", 4)[4],
            "line 4: a token<TAB>tag line has 2 tab-separated columns, this one has 10 (a",
        ),
        ("a\tO\n\tO\n", "line 2: empty token"),
        ("# only a comment\n\n", "holds no tagged tokens"),
        ("justoneword\n", "line 1: 1 tab-separated columns"),
        (
            "EU NNP B-NP B-ORG\nrejects VBZ O\n",
            "line 2: 3 space-separated columns where the file's first token line has 4; fix the line",
        ),
        (
            "the cat sat on the mat and then it left\nit was a good day for a walk\n",
            "line 2: 8 space-separated columns where the file's first token line has 10; fix the line (it reads like "
            "plain text, a sentence a line: tagged data is CoNLL-U",
        ),
    ],
)
def test_bad_tagged_files_are_named_with_the_line(content, message, tmp_path):
    (tmp_path / "d.txt").write_text(content)
    with pytest.raises(CorpusError, match="d.txt") as caught:
        read_tagged([tmp_path / "d.txt"])
    assert message in str(caught.value)


CONLL2003 = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

-DOCSTART- -X- -X- O
BRUSSELS NNP B-NP B-LOC
1996-08-22 CD I-NP O
"""


def test_conll2003_space_separated_columns_give_the_token_and_the_last_column(tmp_path, run_cli, tagger_run):
    (tmp_path / "eng.train").write_text(CONLL2003)
    data = read_tagged([tmp_path / "eng.train"])
    assert data.sentences == (
        ("EU", "rejects", "German", "call", "."),
        ("Peter", "Blackburn"),
        ("BRUSSELS", "1996-08-22"),
    )
    assert data.tags == (("B-ORG", "O", "B-MISC", "O", "O"), ("B-PER", "I-PER"), ("B-LOC", "O"))
    assert read_tagged([tmp_path / "eng.train"], fmt="spaces") == data
    code, out, err = run_cli("tag", "predict", "-m", tagger_run, "--tokens", stdin=CONLL2003.encode())
    assert code == 0 and "first column" in err
    assert [line.split("\t")[0] for line in out.split("\n") if line] == [w for s in data.sentences for w in s]
    assert out.count("\n\n") == 3  # three sentences: a -DOCSTART- line ends one too


def test_tag_columns_and_formats_are_checked():
    assert tag_column("UPOS") == 3 and tag_column("deprel") == 7 and tag_column("10") == 9
    for bad in ("form", "2", "nope"):
        with pytest.raises(ConfigError, match="not a CoNLL-U tag column"):
            tag_column(bad)
    with pytest.raises(ConfigError, match="unknown --format 'csv'"):
        read_tagged(["x"], fmt="csv")


def test_the_held_out_sentences_are_a_seeded_random_sample():
    data = _tagged()
    train, val = split_sentences(data, 0.25, seed=3)
    assert len(val) == 10 and len(train) == 30
    assert sorted(train.sentences + val.sentences) == sorted(data.sentences)
    assert split_sentences(data, 0.25, seed=3) == (train, val) != split_sentences(data, 0.25, seed=4)
    assert val.sentences != data.sentences[-10:]  # not the tail


# -- BIO -----------------------------------------------------------------------------------


def test_entities_are_counted_as_conlleval_counts_them():
    tags = ["B-per", "I-per", "O", "I-loc", "I-loc", "B-loc", "I-per", "B-org", "B-org"]
    # an I- after O starts an entity; an I- of another type starts one too
    assert entities(tags) == [(0, 2, "per"), (3, 5, "loc"), (5, 6, "loc"), (6, 7, "per"), (7, 8, "org"), (8, 9, "org")]
    assert entities(["O", "O"]) == [] and entities(["I-x"]) == [(0, 1, "x")]
    assert is_bio(["O", "B-x", "I-x"]) and not is_bio(["NOUN", "VERB"]) and not is_bio(["O"]) and not is_bio(["B-"])


def test_entity_f1_needs_both_span_and_type():
    tags = ["O", "B-per", "I-per", "B-loc"]
    gold = [np.array([1, 2, 0, 3])]  # per [0,2), loc [3,4)
    guess = [np.array([1, 0, 0, 1])]  # per [0,1): wrong span; per [3,4): wrong type
    figures = entity_scores(gold, guess, tags)
    assert (figures["entity_precision"], figures["entity_recall"], figures["entity_f1"]) == (0.0, 0.0, 0.0)
    half = entity_scores(gold, [np.array([1, 2, 0, 0])], tags)
    assert (
        half["entity_precision"] == 1.0 and half["entity_recall"] == 0.5 and half["entity_f1"] == pytest.approx(2 / 3)
    )
    assert half["entity_types"]["loc"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_bio_decoding_never_starts_an_entity_with_an_inside_tag():
    tags = ["O", "B-per", "I-per", "I-loc", "B-loc"]
    probs = torch.tensor(
        [[0.1, 0.1, 0.6, 0.1, 0.1], [0.5, 0.1, 0.1, 0.2, 0.1], [0.1, 0.05, 0.05, 0.6, 0.2]]
    )  # argmax: I-per, O, I-loc: two fragments
    assert probs.argmax(1).tolist() == [2, 0, 3]
    import itertools

    def well_formed(path):  # noqa: ANN001, ANN202
        return all(not tags[b].startswith("I-") or tags[a][2:] == tags[b][2:] for a, b in zip((0, *path), path))

    def score(path):  # noqa: ANN001, ANN202
        return float(probs[torch.arange(3), torch.tensor(path)].log().sum())

    best = max((p for p in itertools.product(range(5), repeat=3) if well_formed(p)), key=score)
    assert decode(probs, tags).tolist() == list(best) == [4, 3, 3]  # B-loc I-loc I-loc: the best well-formed path
    plain = ["NOUN", "VERB", "ADJ", "DET", "X"]
    assert decode(probs, plain).tolist() == [2, 0, 3]  # other tag sets: each word's most probable


# -- the model -----------------------------------------------------------------------------


def test_words_are_read_at_their_spans():
    from charnn.tokenizers import build_tokenizer

    tokenizer = build_tokenizer("char", "Th ecatsa")
    x = encode_sentence(tokenizer, ["The", "cat", "sat"])
    assert tokenizer.decode(x.ids) == "The cat sat"
    assert x.starts.tolist() == [0, 4, 8] and x.ends.tolist() == [3, 7, 11]


@pytest.mark.parametrize("word_layers", [0, 1, 2])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_more_padding_never_changes_a_tag(word_layers, bidirectional):
    from charnn.tasks.tag.task import Encoded

    torch.manual_seed(0)
    config = ModelConfig(vocab_size=20, layers=2, hidden=8, embed=6, bidirectional=bidirectional)
    model = WordTagger(config, 5, word_layers).eval()
    rng = np.random.default_rng(0)
    sentences = [
        Encoded(rng.integers(1, 20, n).astype(np.int64), np.array(starts), np.array(ends))
        for n, starts, ends in [(9, [0, 3, 6], [2, 5, 9]), (4, [0, 2], [1, 4]), (1, [0], [1])]
    ]
    together = model(*pad(sentences, torch.device("cpu")))  # (3, 3, 5)
    for i, sentence in enumerate(sentences):
        alone = model(*pad([sentence], torch.device("cpu")))[0]  # (W, 5)
        assert torch.allclose(alone, together[i, : len(sentence.starts)], atol=1e-5)
    # Noise in the padding changes nothing either.
    inputs = list(pad(sentences, torch.device("cpu")))
    inputs[0] = torch.where(inputs[0] == 0, torch.randint(1, 20, inputs[0].shape), inputs[0])
    noisy = model(*inputs)
    assert torch.allclose(noisy[1, :2], together[1, :2], atol=1e-5) and torch.allclose(noisy[2, :1], together[2, :1])


def test_a_word_is_tagged_from_both_sides():
    from charnn.tasks.tag.task import Encoded

    torch.manual_seed(0)
    model = WordTagger(ModelConfig(vocab_size=20, layers=1, hidden=8, embed=6, bidirectional=True), 3, 0).eval()
    base = np.array([1, 2, 3, 4, 5, 6, 7], dtype=np.int64)
    spans = (np.array([0, 3, 5]), np.array([2, 4, 7]))
    before = model(*pad([Encoded(base, *spans)], torch.device("cpu")))[0]
    for position in (0, 6):  # a letter of the first word, then of the last
        changed = base.copy()
        changed[position] = 9
        after = model(*pad([Encoded(changed, *spans)], torch.device("cpu")))[0]
        assert not torch.allclose(after[1], before[1])  # the middle word sees both


# -- the commands --------------------------------------------------------------------------


def test_training_learns_the_tags_and_keeps_the_best_by_entity_f1(tagger_run):
    config = json.loads((tagger_run / "config.json").read_text())
    assert config["task"]["kind"] == "tag" and config["task"]["bio"] is True
    assert set(config["task"]["tags"]) == {"O", "B-name", "I-name"}
    results = config["results"]
    assert 0 <= results["val_f1"] <= 1 and results["val_accuracy"] > 0.5
    evals = [json.loads(line) for line in (tagger_run / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in evals if e.get("event") == "eval"]
    best = max(evals, key=lambda e: (e["val_f1"], -e["val_loss"]))
    assert results["best_step"] == best["step"]


def test_predict_prints_token_tag_lines_and_json(run_cli, tagger_run, tmp_path):
    code, out, err = run_cli("tag", "predict", "-m", tagger_run, stdin=b"The Dark Lord  rose\n\nagain\n")
    assert code == 0, err
    # four tagged words and an empty line; the blank input line's empty sentence; one word
    assert [len(line.split("\t")) for line in out.split("\n")] == [2, 2, 2, 2, 1, 1, 2, 1, 1]
    assert out.startswith("The\t") and "\nrose\t" in out
    for line in out.splitlines():
        if line:
            word, tag = line.split("\t")
            assert tag in ("O", "B-name", "I-name")
    code, out, _ = run_cli("tag", "predict", "-m", tagger_run, "--json", stdin=b"The Dark Lord\n")
    row = json.loads(out)
    assert row["tokens"] == ["The", "Dark", "Lord"] and len(row["tags"]) == 3
    assert all(0 < p <= 1 for p in row["probabilities"])
    assert not any(t.startswith("I-") and p == "O" for p, t in zip(["O", *row["tags"]], row["tags"]))
    code, out, err = run_cli("tag", "predict", "-m", tagger_run, "--tokens", stdin=b"The\tB-x\nOwl\tI-x\n\t\nflew\n")
    assert code == 0 and "first column" in err
    assert [line.split("\t")[0] for line in out.split("\n")] == ["The", "Owl", "", "flew", "", ""]
    code, out, err = run_cli("tag", "predict", "-m", tagger_run, "--tokens", stdin=CONLLU.encode())
    assert code == 0 and [line.split("\t")[0] for line in out.split("\n")] == ["Do", "n't", "go", ".", "", "Hi", "", ""]
    code, out, err = run_cli("tag", "predict", "-m", tagger_run, "--tokens", stdin=b"I\nlove\nNew York\n")
    assert code == 1 and "standard input, line 3: holds columns (or a space), but the lines before hold one" in err
    assert "York" not in out  # was: "New" tagged, "York" read as its tag and lost


def test_predict_tags_a_sentence_too_long_to_read_at_once_in_pieces(run_cli, tagger_run, monkeypatch):
    from charnn.tasks.tag import task as tag_task

    monkeypatch.setattr(tag_task, "MAX_TOKENS", 20)  # the tagger is char level: 20 characters at once
    words = "The Dark Lord rose again and the owl flew over the castle at night".split()
    text = f"Harry ran\n{' '.join(words)}\n{' '.join(words[:4])}\nHarry ran\n".encode()
    code, out, err = run_cli("tag", "predict", "-m", tagger_run, "--json", stdin=text)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["tokens"] for r in rows] == [["Harry", "ran"], words, words[:4], ["Harry", "ran"]]  # the stream goes on
    assert len(rows[1]["tags"]) == len(rows[1]["probabilities"]) == len(words)
    assert err.count("tokens long, more than a tagger reads at once (20): tagged in pieces of whole words") == 1
    assert "sentence 2 of the input is 66 tokens long" in err
    # Each piece is tagged as a sentence of its own: pieces of at most 20 characters, whole words.
    pieces = [["The", "Dark", "Lord", "rose"], ["again", "and", "the", "owl"], ["flew", "over", "the", "castle"]]
    pieces.append(["at", "night"])
    assert sum(pieces, []) == words and all(len(" ".join(p)) <= 20 for p in pieces)
    one_by_one = b"".join(" ".join(p).encode() + b"\n" for p in pieces)
    code, out, _ = run_cli("tag", "predict", "-m", tagger_run, "--json", stdin=one_by_one)
    assert sum((json.loads(line)["tags"] for line in out.splitlines()), []) == rows[1]["tags"]
    code, out, err = run_cli("tag", "predict", "-m", tagger_run, stdin=b"ok\n" + b"x" * 25 + b" y\nafter\n")
    assert code == 0 and "word 1 of sentence 2 of the input is 25 characters long, more than a tagger reads" in err
    assert [line.split("\t")[0] for line in out.splitlines()] == ["ok", "", "x" * 25, "y", "", "after", ""]  # was: none


def test_eval_reports_accuracy_per_tag_and_entities(run_cli, tagger_run, tmp_path):
    (tmp_path / "d.conll").write_text(
        "The\tB-name\nowl\tO\nflew\tO\n\nHarry\tB-name\nPotter\tI-name\nran\tO\nx\tB-mystery\n"
    )
    code, out, err = run_cli("tag", "eval", tmp_path / "d.conll", "-m", tagger_run, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["sentences"] == 2 and report["words"] == 7 and report["entities"] == 3
    assert report["tags"][-1] == "B-mystery" and report["unknown_tags"] == ["B-mystery"]
    assert report["accuracy"] <= 6 / 7 and "tags the run never saw, counted as errors: B-mystery" in err
    assert set(report["entity_types"]) <= {"name", "mystery"} and 0 <= report["entity_f1"] <= 1
    code, out, _ = run_cli("tag", "eval", tmp_path / "d.conll", "-m", tagger_run)
    assert out.startswith("token accuracy ") and "entities: precision" in out


def test_a_loose_inside_tag_is_said_once(run_cli, tagger_run, tmp_path):
    (tmp_path / "d.conll").write_text("the\tI-name\nOwl\tI-name\n\nan\tO\nOwl\tI-name\n")
    code, out, err = run_cli("tag", "eval", tmp_path / "d.conll", "-m", tagger_run, "--json")
    assert code == 0 and err.count("follow no entity of their type") == 1 and "2 I- tag(s)" in err
    assert json.loads(out)["entities"] == 2
    rows = "New\tI-location\nYork\tI-location\nis\tO\nbig\tO\n\nI\tO\nlove\tO\nParis\tI-location\n\n" * 5
    (tmp_path / "t.conll").write_text(rows)
    tiny = ["--steps", "2", "--hidden", "8", "--embed", "4", "--layers", "1", "--device", "cpu"]
    code, _, err = run_cli("tag", "train", tmp_path / "t.conll", "--out", tmp_path / "run", *tiny)
    assert code == 0 and err.count("follow no entity of their type") == 1, err  # not again for the run's copies
    assert f"10 I- tag(s) in {tmp_path / 't.conll'} follow" in err


def test_info_and_plot_know_a_tagger(run_cli, tagger_run, tmp_path):
    code, out, _ = run_cli("info", tagger_run, "--json")
    info = json.loads(out)
    assert info["task"] == "tag" and set(info["labels"]) == {"O", "B-name", "I-name"}
    assert 0 <= info["best_val_f1"] <= 1
    code, out, _ = run_cli("info", tagger_run)
    assert "tagger:" in out and "entity F1" in out
    code, out, err = run_cli("plot", tagger_run, "--png", tmp_path / "t.png")
    assert code == 0 and "validation accuracy" in out, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sample", "-m", "TAG"], "is a tagger, not a language model; use it with charnn tag predict"),
        (["eval", "-m", "TAG"], "is a tagger, not a language model"),
        (["grads", "-m", "TAG"], "is a tagger, not a language model"),
        (["classify", "predict", "-m", "TAG"], "is a tagger, not a classifier"),
        (["tag", "predict", "-m", "LM"], "is a language model, not a tagger; use it with charnn sample"),
        (["tag", "eval", "DATA", "-m", "LM"], "is a language model, not a tagger"),
        (["tag", "train", "--resume", "LM"], "is a language model, not a tagger"),
        (["train", "--resume", "TAG"], "is a tagger, not a language model"),
    ],
)
def test_a_run_of_the_wrong_kind_is_refused_in_one_line(args, message, run_cli, tmp_path, tagger_run, trained_run):
    (tmp_path / "d.conll").write_text("a\tO\n")
    names = {"TAG": str(tagger_run), "LM": str(trained_run), "DATA": str(tmp_path / "d.conll")}
    code, out, err = run_cli(*[names.get(a, a) for a in args], stdin=b"text\n")
    assert code == 2 and message in err and err.count("\n") == 1 and out == ""


def test_tag_predict_defaults_to_the_newest_tagger(run_cli, tmp_path, monkeypatch, tagger_run, trained_run):
    import shutil

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHARNN_MODEL", raising=False)
    (tmp_path / "runs").mkdir()
    shutil.copytree(tagger_run, tmp_path / "runs" / "tagger")
    shutil.copytree(trained_run, tmp_path / "runs" / "lm")  # the newer
    code, out, err = run_cli("tag", "predict", stdin=b"the Owl\n")
    assert code == 0 and "using run runs/tagger (the newest tagger run" in err and out.count("\t") == 2


@pytest.mark.parametrize(
    ("content", "args", "message", "code"),
    [
        ("a\tO\n\n" + "1\tb\tb\tX\tX\t_\t0\troot\t_\t_\n", [], "the file mixes the two formats", 1),
        (
            "".join(f"w{i}\tO\n" for i in range(1200)) + "\nb\tX\nc\tO\n\nd\tX\ne\tO\n",
            [],
            "a tagger reads at most 4,096 at once",
            1,
        ),
        ("a\tO\n\nb\tO\n", ["--word-layers", "-1"], "--word-layers must be >= 0", 2),
        ("a\tO\n\nb\tO\n", [], "d.conll has one tag, 'O', on every word; a tagger needs words of at least two", 1),
        ("a\tO\n\nb\tO\n", ["--column", "lemmas"], "not a CoNLL-U tag column", 2),
        ("a\tO\n\nb\tO\n", ["--format", "conllu"], "--format conllu, but d.conll holds token<TAB>tag lines", 2),
        ("a\tO\n\nb\tO\n", ["--column", "xpos"], "whose tag is the last column; leave --column out", 2),
    ],
)
def test_bad_tagged_data_gets_one_line_and_nothing_is_written(
    content, args, message, code, run_cli, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.conll").write_text(content)
    got, out, err = run_cli("tag", "train", "d.conll", "--steps", "1", "--batch-size", "1", *args)
    assert got == code and message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.conll"]


def test_a_sentence_too_long_to_score_is_refused_in_one_line(run_cli, tagger_run, tmp_path):
    (tmp_path / "d.conll").write_text("Hi\tO\n\n" + "word\tO\n" * 1000)  # 4,999 characters in one sentence
    code, out, err = run_cli("tag", "eval", tmp_path / "d.conll", "-m", tagger_run)
    assert code == 1 and "sentence 2 of" in err and "split it into sentences" in err and out == ""


def test_the_shared_benchmark_data_reads_cleanly():
    datasets = ROOT.parent / "shared" / "datasets"
    if not (datasets / "pos-ewt").is_dir():
        pytest.skip("../shared/datasets is absent")
    ewt = read_tagged([datasets / "pos-ewt" / "en_ewt-ud-train.conllu"])
    assert (len(ewt), ewt.words, len(ewt.tag_set())) == (12544, 204577, 17)
    wnut = read_tagged([datasets / "ner-wnut17" / "wnut17train.conll"])
    assert len(wnut) == 3394 and is_bio(wnut.tag_set()) and len(wnut.tag_set()) == 13


def test_warm_start_copies_the_language_models_into_both_directions(tmp_path):
    import threading

    from safetensors.torch import load_file

    from charnn.tasks.lm.prepare import train
    from charnn.tasks.tag.tagger import train_tagger
    from charnn.text.corpus import Corpus
    from tests.conftest import TINY_MODEL, tiny_train_config

    tagged = _tagged()
    corpus = Corpus(text="\n".join(" ".join(s) for s in tagged.sentences) + "\n", name="u", sources=("u.txt",))
    lm = dict(TINY_MODEL, layers=1)
    config = tiny_train_config(steps=10, eval_every=10)
    train(corpus, tmp_path / "fwd", lm, config)
    train(corpus, tmp_path / "bwd", lm, config, reverse=True, tokenizer_from=tmp_path / "fwd")
    stopped = threading.Event()
    stopped.set()  # stop before the first step: the resume state holds the starting weights
    train_tagger(
        tagged, tmp_path / "tag", {"dropout": 0.2, "bidirectional": True}, tiny_train_config(steps=5, batch_size=4),
        init_from=[tmp_path / "fwd", tmp_path / "bwd"], stop=stopped,
    )  # fmt: skip
    start = {k[6:]: v for k, v in load_file(tmp_path / "tag" / "resume.safetensors").items() if k.startswith("model.")}
    fwd, bwd = load_file(tmp_path / "fwd" / "model.safetensors"), load_file(tmp_path / "bwd" / "model.safetensors")
    assert torch.equal(start["embed.weight"], fwd["embed.weight"])
    assert torch.equal(start["rnns.0.weight_ih_l0"], fwd["rnns.0.weight_ih_l0"])
    assert torch.equal(start["embed_reverse.weight"], bwd["embed.weight"])
    assert torch.equal(start["rnns_reverse.0.weight_hh_l0"], bwd["rnns.0.weight_hh_l0"])
    config_json = json.loads((tmp_path / "tag" / "config.json").read_text())
    assert config_json["model"]["hidden"] == TINY_MODEL["hidden"] and len(config_json["init_from"]) == 2
    assert (tmp_path / "tag" / "tokenizer.json").read_bytes() == (tmp_path / "fwd" / "tokenizer.json").read_bytes()


def test_predict_answers_each_sentence_of_a_slow_pipe_at_once(tagger_run):
    import os
    import select
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "charnn", "tag", "predict", "-m", str(tagger_run)]
    proc = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        proc.stdin.write("the Owl\n")
        proc.stdin.flush()
        assert select.select([proc.stdout], [], [], 60)[0], "no answer while the pipe stays open"
        assert [proc.stdout.readline().split("\t")[0] for _ in range(3)] == ["the", "Owl", "\n"]
        proc.stdin.write("flew\n")
        proc.stdin.close()
        assert proc.stdout.readline().startswith("flew\t")
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()


def test_iob1_tags_that_start_entities_with_inside_tags_are_decoded_as_they_come():
    from charnn.tasks.tag.task import strict_bio
    from charnn.text.tagged import Tagged

    tags = ["O", "I-PER"]
    probs = torch.tensor([[0.05, 0.95], [0.9, 0.1]])
    assert decode(probs, tags).tolist() == [0, 0]  # held to IOB2, an I- cannot start a sentence
    assert decode(probs, tags, strict=False).tolist() == [1, 0]
    iob1 = Tagged((("Ann", "ran"),), (("I-PER", "O"),), ("x",))
    iob2 = Tagged((("Ann", "ran"),), (("B-PER", "O"),), ("x",))
    assert not strict_bio(iob1) and strict_bio(iob2)


def test_the_automatic_split_never_holds_out_a_tag_whole():
    from charnn.tasks.tag.tagger import _keep_every_tag
    from charnn.text.tagged import Tagged

    data = _tagged()
    rare = (("B-rare",) * len(data.sentences[0]),)
    train = data.subset(range(1, 30))
    val = Tagged(data.sentences[:1] + data.sentences[30:], rare + data.tags[30:], data.sources)
    kept, held = _keep_every_tag(train, val)
    assert "B-rare" in kept.tag_set() and "B-rare" not in held.tag_set()
    assert len(kept) == 30 and held.sentences == data.sentences[30:]


def test_subword_words_are_read_with_the_spaces_between_them():
    from charnn.tokenizers import build_tokenizer

    text = "\n".join(" ".join(s) for s in _tagged().sentences) * 4
    tokenizer = build_tokenizer("bpe", text, vocab_size=400)
    x = encode_sentence(tokenizer, ["The", "Dark", "Lord"])
    assert tokenizer.decode(x.ids) == "The Dark Lord"
    assert [tokenizer.decode(x.ids[a:b]) for a, b in zip(x.starts, x.ends)] == ["The", "Dark", "Lord"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("pos\ta gripping, funny film\nneg\tdull\n", "line 1: the tag 'a gripping, funny film' holds whitespace"),
        ("New\tB-loc\nNew York\tI-loc\n", "line 2: the token 'New York' holds whitespace"),
        ("a\tO\nb\tO\u00a0X\n", "line 2: the tag 'O\\xa0X' holds whitespace"),
    ],
    ids=["label-text", "spaced-token", "no-break-space"],
)
@pytest.mark.parametrize("command", ["train", "eval"])
def test_a_two_column_line_with_whitespace_inside_is_refused_naming_the_file_and_line(
    content, message, command, run_cli, tmp_path, monkeypatch, tagger_run
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.tsv").write_text(content)
    more = ["-m", tagger_run] if command == "eval" else ["--steps", "1"]
    code, out, err = run_cli("tag", command, "d.tsv", *more)
    assert code == 1 and out == "" and err.startswith(f"error: d.tsv, {message}") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.tsv"]  # nothing written


def test_a_conllu_form_may_hold_a_space_and_a_run_folder_keeps_it(tmp_path):
    # UD allows words with spaces in FORM (e.g. Vietnamese); its tags hold none.
    (tmp_path / "d.conllu").write_text(
        "1\tở trong\tở trong\tADP\t_\t_\t0\troot\t_\t_\n2\tnhà\tnhà\tNOUN\t_\t_\t1\tobj\t_\t_\n"
    )
    data = read_tagged([tmp_path / "d.conllu"])
    assert data.sentences == (("ở trong", "nhà"),) and data.tags == (("ADP", "NOUN"),)
    (tmp_path / "train.tags").write_text(data.to_text())  # how a run folder keeps it
    assert read_tagged([tmp_path / "train.tags"], "columns", spaced=True) == Tagged(
        data.sentences, data.tags, (str(tmp_path / "train.tags"),)
    )
    with pytest.raises(CorpusError, match="line 1: the token 'ở trong' holds whitespace"):
        read_tagged([tmp_path / "train.tags"])  # a user's two-column file may not


def test_a_handful_of_sentences_trains_on_a_batch_of_them_all_and_resumes(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.tags").write_text("".join(f"Word{i}\tB-x\nword\tO\n\n" for i in range(6)))
    args = ["tag", "train", "d.tags", "--out", "runs/few", "--hidden", "8", "--embed", "4", "--eval-every", "2"]
    code, out, err = run_cli(*args, "--steps", "2")  # --batch-size left at 32
    assert code == 0, err
    config = json.loads((tmp_path / "runs" / "few" / "config.json").read_text())
    assert (config["data"]["train_sentences"], config["data"]["val_sentences"]) == (5, 1)
    assert config["training"]["batch_size"] == 5  # what the run used, not what was asked
    assert "5 training sentences are fewer than --batch-size 32: each step reads 5" in err
    code, out, err = run_cli(*args, "--steps", "4", "--resume", "runs/few")
    assert code == 0, err
    assert "resuming runs/few at step 2" in err and "goes on with the settings" not in err  # the same request
    assert json.loads((tmp_path / "runs" / "few" / "config.json").read_text())["training"]["batch_size"] == 5


@pytest.mark.parametrize(
    ("given", "said"),
    [
        (["--hidden", "64"], "--hidden 64 does not fit --init-from LM (it was trained with --hidden 32)"),
        (["--layers", "3"], "--layers 3 does not fit --init-from LM (it was trained with --layers 1)"),
        (
            ["--tokenizer", "unigram"],
            "--tokenizer unigram does not fit --init-from LM (it was trained with --tokenizer char",
        ),
        (["--vocab-size", "500"], "--vocab-size 500 does not fit --init-from LM (its tokenizer is char"),
    ],
)
def test_init_from_refuses_a_shape_or_tokenizer_given_that_the_language_model_lacks(given, said, run_cli, tmp_path):
    from charnn.tasks.lm.prepare import train
    from charnn.text.corpus import Corpus
    from tests.conftest import TINY_MODEL, tiny_train_config

    tagged = _tagged()
    corpus = Corpus(text="\n".join(" ".join(s) for s in tagged.sentences) + "\n", name="u", sources=("u.txt",))
    train(corpus, tmp_path / "fwd", dict(TINY_MODEL, layers=1), tiny_train_config(steps=1, eval_every=1))
    (tmp_path / "d.tags").write_text(tagged.to_text())
    code, out, err = run_cli("tag", "train", tmp_path / "d.tags", "--init-from", tmp_path / "fwd", "--out",
                             tmp_path / "tagger", *given)  # fmt: skip
    assert code == 2 and out == "" and err.startswith("error: " + said.replace("LM", str(tmp_path / "fwd")))
    assert err.endswith(f"drop {given[0]}\n") and err.count("\n") == 1
    assert not (tmp_path / "tagger").exists()


def test_eval_of_text_that_is_not_tagged_as_the_run_was_is_refused(run_cli, tagger_run, tmp_path):
    (tmp_path / "plain.txt").write_text("hello world\n")
    code, out, err = run_cli("tag", "eval", tmp_path / "plain.txt", "-m", tagger_run)
    assert code == 1 and "none of the tags in" in err and "is one this run knows" in err and out == ""
