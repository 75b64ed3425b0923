"""Record corpora: records split, held out, shuffled, learnt from their start, sampled and scored whole."""

from __future__ import annotations

import hashlib
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from charnn.config import ModelConfig
from charnn.errors import ConfigError, CorpusError
from charnn.model import RecurrentLM
from charnn.tasks import load_run
from charnn.text import records
from tests.conftest import CORPORA, TINY_MODEL, tiny_train_config
from tests.run_kinds import NAMES


@pytest.fixture
def cli(run_cli):
    def run(args: list[str]) -> SimpleNamespace:
        code, out, err = run_cli(*args)
        return SimpleNamespace(exit_code=code, stdout=out, stderr=err, output=out + err)

    return run


# -- formats and splitting -------------------------------------------------------------------


def split(text: str, spec: str) -> list[str]:
    return records.split(text, records.parse_format(spec), "t.txt")


def test_line_records_drop_the_last_newline_and_carriage_returns():
    assert split("Red 1 2 3\nBlue 4 5 6\n", "line") == ["Red 1 2 3", "Blue 4 5 6"]
    assert split("Red 1 2 3\r\nBlue 4 5 6\r\n", "line") == ["Red 1 2 3", "Blue 4 5 6"]


def test_blank_records_are_blocks_and_keep_their_lines():
    text = "Title: A\nYield: 2\n\nTitle: B\nYield: 4\n \n\nTitle: C\n"
    assert split(text, "blank") == ["Title: A\nYield: 2", "Title: B\nYield: 4", "Title: C"]


def test_a_regex_separates_recipes_that_hold_single_blank_lines():
    beeton = "Title: A\n\nMethod a.\n\n\nTitle: B\n\nMethod b.\n\n\n\nTitle: C\n\nMethod c.\n"
    fmt = records.with_joiner(records.parse_format("\\n{3,}"), beeton)
    expected = ["Title: A\n\nMethod a.", "Title: B\n\nMethod b.", "Title: C\n\nMethod c."]
    assert records.split(beeton, fmt, "b.txt") == expected
    assert fmt.joiner == "\n\n\n"  # the commonest separator: records print as in the corpus


@pytest.mark.parametrize(
    ("text", "spec", "error", "message"),
    [
        ("a\nb", "(", ConfigError, "not a valid regular expression"),
        ("a\nb", "x*", ConfigError, "matches the empty string"),
        ("a\nb\n", "zzz", CorpusError, "finds one record (the separator matches nothing"),
        ("a\n\nb\n", "line", CorpusError, "the record at line 2 is empty; delete empty lines, or use --records blank"),
        ("a\n   \nb\n", "line", CorpusError, "the record at line 2 is empty"),
        ("a---" + "x" * (records.MAX_RECORD_CHARS + 1), "---", CorpusError, "characters long"),
    ],
)
def test_bad_record_formats_say_what_is_wrong(text, spec, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(")):
        split(text, spec)


def test_held_out_records_are_a_seeded_random_sample_not_the_tail():
    chosen = records.held_out(1000, 0.1, seed=7)
    assert len(chosen) == 100 and list(chosen) == sorted(set(chosen.tolist()))
    assert np.array_equal(chosen, records.held_out(1000, 0.1, seed=7))
    assert not np.array_equal(chosen, records.held_out(1000, 0.1, seed=8))
    assert chosen.min() < 100 and chosen.max() >= 900  # spread over the whole corpus
    assert len(records.held_out(3, 0.01, seed=1)) == 1 and len(records.held_out(2, 0.9, seed=1)) == 1


def test_each_pass_lays_the_records_out_in_a_fresh_order():
    # Records [9 1 2] [9 3] [9 4 5 6], then the closing boundary.
    tokens = np.array([9, 1, 2, 9, 3, 9, 4, 5, 6, 9])
    starts = np.array([0, 3, 5, 9])
    assert records.layout(tokens, starts, np.array([2, 0, 1])).tolist() == [9, 4, 5, 6, 9, 1, 2, 9, 3, 9]
    orders = {tuple(records.epoch_order(50, seed=7, epoch=e)) for e in range(5)}
    assert len(orders) == 5
    assert np.array_equal(records.epoch_order(50, 7, 3), records.epoch_order(50, 7, 3))


def record_text(lengths: list[int], boundary: int = 99) -> tuple[np.ndarray, np.ndarray]:
    """A record text whose record i (counting its boundary) is ``lengths[i]`` tokens, each token
    naming its record and place (1000 + 16 * i + position, for records of up to 16), and the
    offsets of its boundaries."""
    tokens, starts = [], []
    for i, n in enumerate(lengths):
        starts.append(len(tokens))
        tokens += [boundary] + [(1000 + 16 * i + p) % 60000 for p in range(1, n)]
    starts.append(len(tokens))
    return np.array(tokens + [boundary], dtype=np.uint16), np.array(starts)


def read_columns(inputs: np.ndarray, targets: np.ndarray, boundary: int = 99) -> list[list[int]]:
    """The records a column layout teaches, each as its learnt inputs, then the boundary its last predicts."""
    seen = []
    for row_in, row_out in zip(inputs, targets):
        learnt = np.flatnonzero(row_out != -100)
        for piece in np.split(learnt, np.flatnonzero(row_in[learnt] == boundary)[1:]):
            if len(piece):
                seen.append(row_in[piece].tolist() + [int(row_out[piece[-1]])])
    return seen


def test_columns_teach_every_record_whole_and_restart_all_rows_together():
    lengths = [5, 3, 5, 7, 3, 5, 4, 3, 5, 7, 6, 3] * 4  # 48 records, four rows
    tokens, starts = record_text(lengths)
    inputs, targets = records.columns(tokens, starts, rows=4, length=200, seed=7, epoch=0)
    assert inputs.shape == targets.shape == (4, 200) and inputs.dtype == np.uint16 and targets.dtype == np.int32
    expected = sorted(tokens[s : e + 1].tolist() for s, e in zip(starts, starts[1:]))
    assert sorted(read_columns(inputs, targets)) == expected  # each record once, its end learnt as the boundary
    assert (targets != -100).sum() == sum(lengths)  # padding is never learnt
    # Records of one length share a column: every row restarts at the same positions.
    restarts = [set(np.flatnonzero(row == 99).tolist()) for row in inputs]
    assert restarts[0] == restarts[1] == restarts[2] == restarts[3] and len(restarts[0]) == 12
    # Within a row, where a target is learnt it is the next input unless a record ends there.
    learnt = (targets[:, :-1] != -100) & (inputs[:, 1:] != 99) & (targets[:, :-1] != 99)
    assert (targets[:, :-1][learnt] == inputs[:, 1:][learnt]).all()


def test_columns_are_seeded_fresh_each_pass_and_fill_the_rows_exactly():
    lengths = [2 + (7 * i) % 11 for i in range(101)]  # 101 records of 2-12 tokens, three rows
    tokens, starts = record_text(lengths)
    length = (len(tokens) // 3 - 1) // 16 * 16  # what the stream layout's windows cover
    one = records.columns(tokens, starts, rows=3, length=length, seed=7, epoch=1)
    assert all(np.array_equal(a, b) for a, b in zip(one, records.columns(tokens, starts, 3, length, 7, 1)))
    other = records.columns(tokens, starts, rows=3, length=length, seed=7, epoch=2)
    assert not np.array_equal(one[0], other[0])
    for inputs, targets in (one, other):
        assert inputs.shape == (3, length)
        taught = read_columns(inputs, targets)
        assert len({t[1] for t in taught}) == len(taught)  # no record twice (each names its own tokens)
        whole = [t for t in taught if t[-1] == 99]
        assert len(whole) >= len(taught) - 3  # only the last column of a row is cut short
        assert (targets != -100).mean() >= 0.97  # what does not fit waits: the rows are full, not padded


def test_columns_are_used_where_they_pad_little():
    assert records.column_padding(np.array([0, 4, 8, 12, 16]), rows=2) == 0.0
    assert records.column_padding(np.array([0, 4, 6]), rows=2) == 0.25  # a 2 beside a 4
    assert records.column_padding(np.array([0, 4, 8, 10]), rows=2) == pytest.approx(1 / 6)  # a row left empty
    names = (CORPORA / "paint-names.txt").read_text(encoding="utf-8").splitlines()
    _, starts = record_text([len(n) + 1 for n in names])
    assert records.column_padding(starts, 32) <= records.MAX_COLUMN_PADDING
    _, starts = record_text([300 + 997 * i % 1500 for i in range(200)])  # 200 recipes of 300-1800 tokens
    assert records.column_padding(starts, 32) > records.MAX_COLUMN_PADDING


def test_records_are_suggested_for_record_corpora_only():
    assert records.suggest((CORPORA / "paint-names.txt").read_text(encoding="utf-8")) == "line"
    assert records.suggest((CORPORA / "recipes.txt").read_text(encoding="utf-8")) == "blank"
    beeton = "\n\n\n".join(f"Title: R{i}\n\nTake {i} eggs.\n\nBeat them." for i in range(30))
    assert records.suggest(beeton) == "\\n{3,}"
    assert records.suggest((CORPORA / "fantasy.txt").read_text(encoding="utf-8")) is None


# -- the model restarts at a boundary --------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_a_record_is_read_from_the_zero_state_wherever_it_sits_in_a_window(cell):
    torch.manual_seed(0)
    model = RecurrentLM(ModelConfig(vocab_size=12, cell=cell, layers=2, hidden=8, embed=4, records=True)).eval()
    b = model.boundary
    assert b == 11
    stream = torch.tensor([[3, 4, b, 5, 6, 7, b, 8], [b, 1, 2, 3, b, 4, b, 9]])  # (2, 8)
    carried = model.initial_state(2)
    carried = [tuple(torch.randn_like(s) for s in layer) for layer in carried]  # a state from earlier windows
    logits, _ = model(stream, carried)
    for row, start, end in [(0, 2, 6), (0, 6, 8), (1, 0, 4), (1, 4, 6), (1, 6, 8)]:
        alone, _ = model(stream[row : row + 1, start:end])  # the record by itself, from zeros
        assert torch.allclose(logits[row, start:end], alone[0], atol=1e-6)
    # Before its first boundary, row 0 still continues the carried state.
    assert not torch.allclose(logits[0, :2], model(stream[:1, :2])[0][0], atol=1e-4)
    # The stepper restarts at a boundary too: stepping gives what the window gave.
    step, state = model.stepper(), [tuple(s.clone() for s in layer) for layer in carried]
    for t in range(stream.shape[1]):
        out, state = step(stream[:, t], state)
        assert torch.allclose(out, logits[:, t], atol=1e-5)


# -- training --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def record_run(tmp_path_factory):
    from charnn.tasks.lm.prepare import train
    from charnn.text.corpus import Corpus

    folder = tmp_path_factory.mktemp("records") / "run"
    text = (CORPORA / "paint-names.txt").read_text(encoding="utf-8")
    corpus = Corpus(text=text, name="n", sources=("n.txt",))
    model = dict(TINY_MODEL, layers=1, hidden=64)
    config = tiny_train_config(steps=300, eval_every=100, batch_size=16, seq_len=64)
    train(corpus, folder, model, config, records="line")
    return folder


def test_a_record_run_holds_out_random_records_and_keeps_them_as_in_the_corpus(record_run):
    corpus = (CORPORA / "paint-names.txt").read_text(encoding="utf-8").splitlines()
    config = json.loads((record_run / "config.json").read_text())
    data = config["data"]
    assert config["task"]["records"] == {"spec": "line", "pattern": "\\r?\\n", "joiner": "\n"}
    assert config["model"]["records"] is True
    assert data["train_records"] + data["val_records"] == len(corpus)
    assert data["val_records"] == round(0.1 * len(corpus))
    held = (record_run / "validation.txt").read_text(encoding="utf-8").splitlines()
    assert len(held) == data["val_records"]
    positions = [corpus.index(line) for line in held]
    assert positions == sorted(positions) and positions[0] < len(corpus) // 3  # not the alphabetical tail
    tokens = np.fromfile(record_run / "train.tokens", dtype=data["token_dtype"])
    starts = np.fromfile(record_run / "train.records", dtype=np.int64)
    boundary = config["model"]["vocab_size"] - 1
    assert len(starts) == data["train_records"] + 1 and (tokens[starts] == boundary).all()
    assert (tokens == boundary).sum() == data["train_records"] + 1


def test_a_record_run_samples_whole_records_separated_as_in_the_corpus(record_run, cli):
    result = cli(["sample", "-m", str(record_run), "-n", "20", "--seed", "3", "--temp", "0.5"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.split("\n")
    assert len(lines) == 21 and lines[-1] == ""  # twenty records, one a line, each ended by the model
    assert all(line.strip() for line in lines[:-1])
    well_formed = [line for line in lines[:-1] if records_rgb(line)]
    assert len(well_formed) >= 10, lines  # 300 tiny steps already end most names with three numbers


def test_the_old_incantation_still_gives_whole_records(record_run, cli):
    args = ["sample", "-m", str(record_run), "-n", "5", "--seed", "3", "--prime", "\\n", "--stop", "\\n", "--no-echo"]
    result = cli(args)
    assert "the line-break prime is not needed" in result.stderr
    assert result.stdout == cli(["sample", "-m", str(record_run), "-n", "5", "--seed", "3"]).stdout
    assert len(result.stdout.splitlines()) == 5


def test_a_prime_holding_a_separator_is_refused(record_run, cli):
    result = cli(["sample", "-m", str(record_run), "--prime", "Deep\\nSea", "--seed", "1"])
    assert result.exit_code == 2 and "a prime begins one record" in result.stderr and not result.stdout


def test_a_piped_prime_ends_with_a_line_end_and_every_sample_still_continues_it(record_run, run_cli):
    args = ("sample", "-m", record_run, "-n", "3", "--seed", "4", "-l", "20")
    code, piped, err = run_cli(*args, stdin=b"Deep\n")  # what `echo Deep | charnn sample` gives
    assert code == 0, err
    assert len(piped.splitlines()) == 3 and all(line.startswith("Deep") for line in piped.splitlines())
    assert run_cli(*args, "--prime", "Deep")[1] == piped


def test_separators_around_a_records_start_are_trimmed_and_inside_it_kept():
    line, blank = records.parse_format("line"), records.parse_format("blank")
    assert records.trim_separators("Red\n", line) == "Red"
    assert records.trim_separators("\r\nRed Fox\r\n\n", line) == "Red Fox"
    assert records.trim_separators("Soup\n", blank) == "Soup\n"  # a block's next line, not its end
    assert records.trim_separators("Soup\n\n \n", blank) == "Soup"
    assert records.cut("a\nb\n", line) == [("a", "\n"), ("b", "\n"), ("", None)]


def test_a_crlf_line_corpus_never_samples_a_carriage_return(tmp_path, cli):
    names = tmp_path / "crlf.txt"
    names.write_bytes(NAMES.replace("\n", "\r\n").encode("utf-8"))
    small = ["--steps", "3", "--batch-size", "4", "--seq-len", "16", "--hidden", "16", "--embed", "8"]
    assert cli(["train", str(names), "--records", "line", *small, "--out", str(tmp_path / "r")]).exit_code == 0
    result = cli(["sample", "-m", str(tmp_path / "r"), "-n", "40", "--temp", "1.5", "--seed", "1"])
    assert "\r" not in result.stdout and len(result.stdout.splitlines()) == 40
    again = cli(["train", "--resume", str(tmp_path / "r"), "--records", "blank"])
    assert again.exit_code == 2 and "fixed when a run starts" in again.stderr


def records_rgb(line: str) -> bool:
    import re

    match = re.fullmatch(r"(.*\S) (\d{1,3}) (\d{1,3}) (\d{1,3})", line)
    return bool(match) and all(int(v) <= 255 for v in match.groups()[1:])


def test_a_prime_begins_a_record_and_the_cap_is_the_only_length(record_run, cli):
    result = cli(["sample", "-m", str(record_run), "--prime", "Deep", "-n", "3", "--seed", "1", "--json"])
    samples = json.loads(result.stdout)["samples"]
    assert all(s["text"].startswith("Deep") and "\n" not in s["text"] for s in samples)
    capped = cli(["sample", "-m", str(record_run), "--length", "3", "-n", "4", "--seed", "1", "--no-echo"])
    assert all(len(line) <= 3 for line in capped.stdout.splitlines())


def test_novelty_is_checked_per_record_without_a_stop_string(record_run, cli):
    from charnn.tasks import load_run
    from charnn.tasks.lm.novelty import NoveltyChecker, training_records, training_text

    run = load_run(record_run)
    names = training_records(run)
    assert len(names) == json.loads((record_run / "config.json").read_text())["data"]["train_records"]
    checker = NoveltyChecker(training_text(run), (), names)
    assert not checker.check(names[5]).novel
    assert checker.check(names[5][:-1]).novel  # a prefix of a record is a new record
    result = cli(["sample", "-m", str(record_run), "-n", "30", "--seed", "2", "--temp", "0.3", "--novel", "--json"])
    assert result.exit_code == 0
    assert all(s["text"].strip() not in set(names) for s in json.loads(result.stdout)["samples"])


def test_info_shows_the_record_format_and_counts(record_run, cli):
    config = json.loads((record_run / "config.json").read_text())
    out = cli(["info", str(record_run)]).stdout
    assert f"one record a line: {config['data']['train_records']:,} for training" in out
    assert "and a record boundary" in out


def test_eval_scores_records_as_samples_are_made_and_says_so(record_run, cli):
    config = json.loads((record_run / "config.json").read_text())
    result = cli(["eval", "-m", str(record_run), "--json"])
    metrics = json.loads(result.stdout)
    assert metrics["records"] == config["data"]["val_records"]
    assert metrics["chars"] == len((record_run / "validation.txt").read_text(encoding="utf-8"))
    assert metrics["nll_per_token"] == pytest.approx(config["results"]["val_loss"], rel=1e-5)
    assert metrics["bits_per_char"] == pytest.approx(config["results"]["val_bits_per_char"], rel=1e-5)
    table = cli(["eval", "-m", str(record_run)])
    assert "each from its start as a sample is" in table.stdout


def test_a_new_record_run_trains_in_columns_and_an_older_one_keeps_its_layout(record_run):
    from charnn.config import TrainConfig
    from charnn.tasks import make_task
    from charnn.training.distributed import World

    run = load_run(record_run)
    config = TrainConfig(**{**run.config["training"], "device": "cpu"})
    assert run.config["task"]["record_layout"] == "columns"
    lane = make_task(run.config, record_run, run.model, config, World(), torch.device("cpu")).lanes[0]
    assert lane.columns and lane.targets.shape == lane.local.shape
    starts = (lane.local == run.model.boundary).any(dim=0).sum()  # positions where some row restarts
    assert starts < lane.local.shape[1] / 10  # every row restarts at the same few positions
    older = {**run.config, "task": {k: v for k, v in run.config["task"].items() if k != "record_layout"}}
    lane = make_task(older, record_run, run.model, config, World(), torch.device("cpu")).lanes[0]
    assert not lane.columns and lane.targets is None
    assert (lane.local == run.model.boundary).any(dim=0).sum() > lane.local.shape[1] / 3  # end to end: cut often


def test_a_reverse_record_run_reads_each_record_right_to_left(tmp_path, cli):
    from charnn.tasks import make_task
    from charnn.tasks.lm.evaluate import evaluate_text
    from charnn.tasks.lm.prepare import train
    from charnn.text.corpus import Corpus
    from charnn.training.distributed import World

    text = (CORPORA / "paint-names.txt").read_text(encoding="utf-8")
    corpus = Corpus(text=text, name="n", sources=("n.txt",))
    config = tiny_train_config(steps=20, eval_every=10, batch_size=8, seq_len=32)
    train(corpus, tmp_path / "bwd", dict(TINY_MODEL, layers=1), config, records="line", reverse=True)
    run = load_run(tmp_path / "bwd")
    assert run.config["task"]["reverse"] is True and run.config["task"]["records"]["spec"] == "line"
    forward = np.fromfile(tmp_path / "bwd" / "train.tokens", dtype=run.config["data"]["token_dtype"])
    forward_starts = np.fromfile(tmp_path / "bwd" / "train.records", dtype=np.int64)
    lane = make_task(run.config, tmp_path / "bwd", run.model, config, World(), torch.device("cpu")).lanes[0]
    boundary = run.model.boundary
    assert (lane.tokens[lane.starts] == boundary).all() and lane.tokens[-1] == boundary
    read = sorted(lane.tokens[a + 1 : b].tolist() for a, b in zip(lane.starts, lane.starts[1:]))
    assert read == sorted(forward[a + 1 : b][::-1].tolist() for a, b in zip(forward_starts, forward_starts[1:]))
    # `charnn eval` scores each held-out record right to left: the figure training kept.
    metrics = evaluate_text(run, (tmp_path / "bwd" / "validation.txt").read_text(encoding="utf-8"))
    assert metrics.records == run.config["data"]["val_records"]
    assert metrics.nll_per_token == pytest.approx(run.config["results"]["val_loss"], rel=1e-5)
    refused = cli(["sample", "-m", str(tmp_path / "bwd")])
    assert refused.exit_code == 2 and "reads right to left" in refused.stderr


def test_a_prepared_corpus_declares_its_records(tmp_path, cli):
    text = (CORPORA / "paint-names.txt").read_text(encoding="utf-8")
    path = tmp_path / "paint-names.txt"
    path.write_text(text, encoding="utf-8")
    record = {"corpus": "paint-names", "sha256": hashlib.sha256(text.encode()).hexdigest()}
    path.with_suffix(".json").write_text(json.dumps(record), encoding="utf-8")
    args = ["train", str(path), "--steps", "2", "--hidden", "8", "--embed", "4", "--batch-size", "2"]
    result = cli([*args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "one record a line, as its catalogue entry says; training on whole records" in result.stderr
    assert json.loads((tmp_path / "run" / "config.json").read_text())["task"]["records"]["spec"] == "line"
    plain = cli([*args, "--out", str(tmp_path / "plain"), "--records", "none"])
    assert "records" not in json.loads((tmp_path / "plain" / "config.json").read_text())["task"]
    path.write_text(text + "Extra 1 2 3\n", encoding="utf-8")  # no longer the prepared text
    other = cli([*args, "--out", str(tmp_path / "other")])
    assert "hint: " in other.stderr and "--records line" in other.stderr
    assert "records" not in json.loads((tmp_path / "other" / "config.json").read_text())["task"]
    assert plain.exit_code == 0


def test_fine_tuning_keeps_the_boundary_and_a_stream_run_cannot_start_records(record_run, tmp_path, cli):
    names = tmp_path / "more.txt"
    names.write_text("".join(f"Shade {i} {i} {i} {i}\n" for i in range(60)), encoding="utf-8")
    small = ["--steps", "3", "--batch-size", "4", "--seq-len", "16"]
    tuned = cli(["train", str(names), "--init-from", str(record_run), *small, "--out", str(tmp_path / "t")])
    assert tuned.exit_code == 0, tuned.output
    assert "was trained on records (one record a line); fine-tuning on records" in tuned.stderr
    assert json.loads((tmp_path / "t" / "config.json").read_text())["task"]["records"]["spec"] == "line"
    stream = cli(["train", str(names), *small, "--hidden", "8", "--out", str(tmp_path / "s")])
    refused = cli(["train", str(names), "--records", "line", "--init-from", str(tmp_path / "s"), *small])
    assert refused.exit_code == 2 and "was not trained on records" in refused.stderr
    assert stream.exit_code == 0
    again = cli(["train", str(names), "--records", "none", "--init-from", str(record_run), *small])
    assert again.exit_code == 2 and "was trained on records (one record a line)" in again.stderr


def test_nothing_is_written_for_a_bad_record_corpus(tmp_path, cli):
    corpus = tmp_path / "c.txt"
    corpus.write_text("a\nb\n\nc\n", encoding="utf-8")
    for spec, code in [("line", 1), ("(", 2), ("zzz", 1)]:
        result = cli(["train", str(corpus), "--records", spec, "--steps", "2", "--out", str(tmp_path / "r")])
        assert result.exit_code == code, result.output
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
        assert not (tmp_path / "r").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["c.txt"]


@pytest.mark.filterwarnings("ignore::charnn.tokenizers.base.UnknownTextWarning")  # the names have no commas
def test_a_classifier_warm_starts_from_a_record_run(record_run, tmp_path):
    import threading

    from safetensors.torch import load_file

    from charnn.tasks.classify.classifier import train_classifier
    from tests.run_kinds import _labelled

    stopped = threading.Event()
    stopped.set()  # stop before the first step: the resume state holds the starting weights
    train_classifier(
        _labelled(), tmp_path / "clf", {"bidirectional": False}, tiny_train_config(steps=5, batch_size=8),
        init_from=[record_run], stop=stopped,
    )  # fmt: skip
    start = load_file(tmp_path / "clf" / "resume.safetensors")
    lm = load_file(record_run / "model.safetensors")
    vocab = json.loads((record_run / "config.json").read_text())["model"]["vocab_size"] - 1  # less the boundary
    assert start["model.embed.weight"].shape[0] == vocab
    assert torch.equal(start["model.embed.weight"], lm["embed.weight"][:vocab])
    assert torch.equal(start["model.rnns.0.weight_hh_l0"], lm["rnns.0.weight_hh_l0"])


def test_records_drawn_ahead_as_on_a_gpu_end_at_their_boundary(record_run, monkeypatch):
    import charnn.tasks.lm.sample as sample_module
    from charnn.config import SampleConfig
    from charnn.tasks import load_run
    from charnn.tasks.lm.sample import stream

    run = load_run(record_run)
    monkeypatch.setattr(sample_module, "_steps_ahead", lambda device: 32)
    texts, done = [""] * 50, [0] * 50
    for piece in stream(run, SampleConfig(length=200, num_samples=50, seed=2)):
        texts[piece.sample] += piece.text
        done[piece.sample] += piece.done
    assert done == [1] * 50
    assert all(text and "\n" not in text and len(text) < 200 for text in texts)
    assert sum(bool(re.fullmatch(r".+ \d{1,3} \d{1,3} \d{1,3}", t)) for t in texts) >= 25


def test_eval_of_a_text_without_records_says_so_without_training_advice(record_run, run_cli, tmp_path):
    (tmp_path / "blank.txt").write_text("\n\n")
    code, out, err = run_cli("eval", tmp_path / "blank.txt", "-m", record_run)
    assert code == 1 and "holds no record" in err and "--records" not in err and "Traceback" not in err


@pytest.mark.parametrize("separator", ["(?=A)", r"\b", "(?<=a)", "(?m)$", "(a|)"])
def test_a_separator_that_can_match_nothing_is_refused(separator):
    # '' and '^' were refused, but a zero-width match inside a text ('(?=A)' before each A) was let through
    with pytest.raises(ConfigError, match="matches the empty string.*at least one character"):
        records.parse_format(separator)
