import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CORPORA, ROOT

CHARNN = [sys.executable, "-m", "charnn"]
TINY = ["--hidden", "32", "--embed", "16", "--seq-len", "32", "--batch-size", "4", "--precision", "fp32"]


def shell(args, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*CHARNN, *args], capture_output=True, text=True, env=env, **kwargs)


def test_help_and_version_do_not_import_torch():
    code = (
        "import sys; from charnn.cli import main\n"
        "for args in (['--help'], ['--version'], ['train', '--help'], ['sample', '--help'], ['eval', '--help'],\n"
        "             ['grads', '--help'], ['plot', '--help'], ['info', '--help'], ['corpus', '--help']):\n"
        "    try: main(args)\n"
        "    except SystemExit: pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'numpy' not in sys.modules, 'numpy was imported'\n"
        "assert 'matplotlib' not in sys.modules and 'sentencepiece' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "charnn 0.1.0" in result.stdout
    assert result.stdout.count("Examples") >= 7


def test_every_help_reflows_its_prose_and_keeps_its_examples_indented():
    # typer keeps a docstring's line breaks after the first paragraph: wrapped at 100 columns in the
    # source, they left a lone word on a line in an 80-column terminal ("records" under sample's).
    commands = [[c] for c in ("train", "sample", "eval", "grads", "plot", "info", "serve", "show")]
    commands += [[g, c] for g in ("classify", "tag") for c in ("train", "predict", "eval")]
    commands += [["corpus", c] for c in ("list", "info", "get")] + [[]]
    code = (
        "import sys; from charnn.cli import main\n"
        f"for args in {commands!r}:\n"
        "    print('=== ' + ' '.join(args)); main([*args, '--help'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env={**os.environ, "COLUMNS": "80"}
    )
    assert result.returncode == 0, result.stderr
    pages = result.stdout.split("=== ")[1:]
    assert len(pages) == len(commands)
    for page in pages:
        name, _, text = page.partition("\n")
        assert "…" not in text, f"charnn {name} --help cuts something short at 80 columns"  # --no-style-per-fi…
        prose = text.split("╭")[0].split(" Examples")[0]  # the description, before its examples and boxes
        paragraphs = "\n".join(line.rstrip() for line in prose.splitlines()).split("\n\n")
        for lines in (p.strip("\n").splitlines() for p in paragraphs):
            # a line ends early when the next line's first word would have fitted on it
            short = [a for a, b in zip(lines, lines[1:]) if len(a) + 1 + len(b.split()[0]) < 79]
            assert not short, f"charnn {name} --help breaks a line early: {short}"
        if " Examples" in text:
            examples = text.split(" Examples")[1].split("╭")[0]
            assert any(line.startswith("   charnn") for line in examples.splitlines()), f"charnn {name}: {examples}"


def test_resuming_a_run_that_spent_its_budget_trains_nothing_and_says_so(tmp_path, run_cli):
    folder = tmp_path / "done"
    code, out, err = run_cli(
        "train", CORPORA / "fantasy.txt", "--steps", "10", "--eval-every", "10", "--out", folder, *TINY
    )
    assert code == 0, err
    model = (folder / "model.safetensors").stat().st_mtime_ns
    code, out, err = run_cli("train", "--resume", folder, "--steps", "10")  # the same total budget: nothing left
    assert code == 0 and "already finished its budget at step 10; nothing to do" in err, err
    assert f"the model is in {folder}" in err and "model saved" not in err  # it saved nothing
    assert (folder / "model.safetensors").stat().st_mtime_ns == model


def test_train_sample_eval_loop(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHARNN_MODEL", raising=False)
    code, out, err = run_cli("train", CORPORA / "fantasy.txt", "--steps", "20", "--eval-every", "10", *TINY)
    assert code == 0, err
    assert out.strip() == str(Path("runs") / "fantasy")
    assert "validation" in err and "model saved in" in err

    code, out, err = run_cli("sample", "--prime", "The ", "--length", "50", "--seed", "1")
    assert code == 0, err
    assert out.startswith("The ") and len(out) == len("The ") + 50 + 1 and out.endswith("\n")
    assert "using run runs/fantasy" in err
    assert "using run" not in out

    code, out, err = run_cli("eval", "--json")
    assert code == 0, err
    result = json.loads(out)
    for key in ("tokens", "chars", "bytes", "nll_per_token", "perplexity", "bits_per_char", "bits_per_byte"):
        assert key in result
    assert result["tokens"] == result["chars"] > 1000

    code, out, err = run_cli("eval", "-", stdin=b"a tale of the moon and the stars")
    assert code == 0, err
    assert "bits per char" in out and "perplexity" in out


def test_sample_reads_the_prime_from_stdin(trained_run, run_cli):
    code, out, _ = run_cli("sample", "-m", trained_run, "--length", "20", "--seed", "2", stdin=b"Once upon")
    assert code == 0
    assert out.startswith("Once upon") and len(out) == len("Once upon") + 20 + 1
    code, out2, _ = run_cli(
        "sample", "-m", trained_run, "--length", "20", "--seed", "2", "--no-echo", stdin=b"Once upon"
    )
    assert out2 == out[len("Once upon") :]


def test_several_samples_one_record_per_line(trained_run, run_cli):
    code, out, err = run_cli(
        "sample", "-m", trained_run, "-n", "5", "--stop", "\\n", "--prime", "\\n", "--no-echo", "--seed", "3"
    )
    assert code == 0, err
    lines = out.split("\n")
    assert len(lines) == 6 and lines[-1] == ""


def test_charnn_model_environment_variable(trained_run, run_cli, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHARNN_MODEL", str(trained_run))
    code, _, err = run_cli("sample", "--length", "5", "--seed", "0")
    assert code == 0
    assert f"using run {trained_run} ($CHARNN_MODEL" in err


def test_closed_stdout_ends_quietly(trained_run):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = f"{sys.executable} -m charnn sample -m {trained_run} --length 200000 --seed 0 | head -c 20"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) == 20
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["train", "missing.txt"], 1, "missing.txt: no such file"),
        (["train", "shakespeare"], 1, 'shakespeare is a named corpus: charnn train "$(charnn corpus get shakespeare)"'),
        (
            ["train", "CORPUS", "--cell", "transformer"],
            2,
            "unknown --cell 'transformer'; choose one of: rnn, lstm, gru",
        ),
        (["train", "CORPUS", "--hidden", "-1"], 2, "--hidden must be between"),
        (["train", "CORPUS", "--device", "tpu"], 2, "unknown --device 'tpu'; choose one of: auto, cpu, cuda, mps"),
        (["train", "CORPUS", "--time", "soon"], 2, "--time 'soon' is not a duration"),
        (["train", "CORPUS", "--time", "0s"], 2, "--time '0s' is no time at all; give a positive duration"),
        (["train", "CORPUS", "--seed", "-1"], 2, "--seed must be from 0 to 2**63-1, got -1"),
        (["train", "CORPUS", "--tokenizer", "foo"], 2, "unknown --tokenizer 'foo'; choose one of: bpe, char"),
        (["train", "CORPUS", "--init-from", "RUN", "--hidden", "7"], 2, "--hidden 7 does not fit --init-from"),
        (["train", "CORPUS", "--init-from", "RUN", "--tokenizer", "bpe"], 2, "which has --tokenizer char: fine-tuning"),
        (["train", "CORPUS", "--init-from", "RUN", "--vocab-size", "50"], 2, "a character tokenizer (no vocabulary"),
        (["train", "CORPUS", "--init-from", "RUN", "--reverse"], 2, "reads left to right, and this run would read"),
        (["train", "CORPUS", "--vocab-size", "100"], 2, "--vocab-size applies to subword tokenizers"),
        (["train", "CORPUS", "--tokenizer", "bpe", "--vocab-size", "9000"], 2, "--vocab-size 9000 is too large"),
        (["train", "CORPUS", "--tokenizer", "bpe", "--vocab-size", "100"], 2, "--vocab-size 100 is too small"),
        (["train", "CORPUS", "--seed", str(10**23)], 2, "--seed must be from 0 to 2**63-1"),
        (["grads", "CORPUS", "-m", "RUN", "--seed", "-1"], 2, "--seed must be from 0 to 2**63-1, got -1"),
        (["grads", "CORPUS", "--compare-residual", "--layers", "1"], 2, "give --layers 2 or more"),
        (["sample", "-m", "nowhere"], 1, "run folder nowhere does not exist; train one with `charnn train CORPUS`"),
        (["classify", "predict", "-m", "nowhere"], 1, "does not exist; train one with `charnn classify train DATA`"),
        (["tag", "eval", "x", "-m", "nowhere"], 1, "does not exist; train one with `charnn tag train DATA`"),
        (["info"], 1, "no trained run found under runs; name a run folder: charnn info RUN, set CHARNN_MODEL"),
        (["plot"], 1, "no trained run found under runs; name a run folder: charnn plot RUN, set CHARNN_MODEL"),
        (["sample", "-m", "RUN", "--temp", "-1"], 2, "--temp must be between 0"),
        (["sample", "-m", "RUN", "--top-p", "0"], 2, "--top-p must be in (0, 1]"),
        (["sample", "-m", "RUN", "--top-p", "1.5"], 2, "--top-p must be in (0, 1]"),
        (["sample", "-m", "RUN", "--top-k", "-1"], 2, "--top-k must be 0 (off) or more"),
        (["sample", "-m", "RUN", "--length", "0"], 2, "--length must be between 1"),
        (["sample", "-m", "RUN", "--temp", "1e9"], 2, "--temp must be between 0"),
        (["sample", "-m", "RUN", "--seed", str(10**23)], 2, "--seed must fit 64 bits"),
        (["sample", "-m", "RUN", "--device", "foo"], 2, "unknown --device 'foo'; choose one of: auto, cpu, cuda"),
        (["sample", "-m", "RUN", "--device", "cuda:x"], 2, "unknown --device 'cuda:x'"),
        (["sample", "-m", "corpus.txt"], 1, "never unpickles"),
        (["train", "--resume", "nowhere"], 2, "run folder nowhere does not exist; pass the corpus to start it"),
        (["train", "--resume", "RUN", "--out", "elsewhere"], 2, "name different folders"),
        (
            ["train", "--resume", "RUN", "--hidden", "64", "--cell", "gru"],
            2,
            "--cell and --hidden are fixed when a run starts; drop them to resume the run as it is",
        ),
        (["train", "--resume", "RUN", "--vocab-size", "300"], 2, "--vocab-size is fixed when a run starts; drop it"),
        (
            ["train", "--resume", "RUN", "--lr", "0.01", "--no-residual", "--steps", "5", "--device", "cpu"],
            2,
            "--no-residual and --lr are fixed when a run starts; drop them to resume the run as it is",
        ),
        (["train", "--resume", "RUN", "--seq-len", "64"], 2, "--seq-len is fixed when a run starts; drop it"),
        (["eval", "-m", "RUN", "missing.txt"], 1, "missing.txt: no such file"),
        (["train"], 2, "name a corpus to train on"),
        (["train", "CORPUS", "./corpus.txt"], 2, "./corpus.txt is named twice; name each corpus file once"),
        (["train", "CORPUS", "--val", "corpus.txt"], 2, "--val corpus.txt is also a training file"),
        (["train", "CORPUS", "--hidden", "abc"], 2, "error: Invalid value for '--hidden'"),  # Click's, in one line
        (["train", "CORPUS", "--bogus"], 2, "error: No such option: --bogus"),
        (["sampel"], 2, "error: No such command 'sampel'. Did you mean 'sample'? (see `charnn -h`)"),
        (["sample", "--temp"], 2, "error: Option '--temp' requires an argument."),
    ],
)
def test_bad_input_gets_one_line_and_the_right_code(args, code, message, run_cli, trained_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_text("some text " * 200)
    args = [str(trained_run) if a == "RUN" else "corpus.txt" if a == "CORPUS" else a for a in args]
    exit_code, out, err = run_cli(*args)
    assert exit_code == code
    assert message in err and err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt"]  # nothing written


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (None, [], "is a folder, not a text file"),
        (b"", [], "holds no text, only whitespace"),
        (b"  \n\t \n", [], "holds no text, only whitespace"),
        (b"\x7fELF\x02\x01\x00\x00binary", [], "NUL byte at offset 6: it looks like a binary file"),
        ("some text".encode("utf-16"), [], "looks like UTF-16 text; convert it to UTF-8"),
        (b"just a few words of text", [], "too few for 32 rows of windows of 64"),
        (b"word " * 2000, ["--val-fraction", "0.0001", *TINY], "validation split has 1 token(s), too few"),
        (b"word " * 2000, ["--val-fraction", "0.9999", *TINY], "or a smaller --val-fraction (0.9999 holds most of it"),
        (b"word " * 2000, ["--out", "corpus.txt/run", *TINY], "cannot write to --out corpus.txt/run"),
    ],
)
def test_bad_corpus_gets_one_line_and_nothing_is_written(content, extra, message, run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "corpus.txt"
    if content is None:
        target.mkdir()
    else:
        target.write_bytes(content)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, out, err = run_cli("train", "corpus.txt", *extra)
    assert code in (1, 2)
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert out == ""
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_invalid_utf8_names_file_and_offset(run_cli, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"hello \xff world" * 50)
    code, _, err = run_cli("train", bad, "--out", tmp_path / "r")
    assert code == 1
    assert err.strip() == (
        f"error: {bad} is not valid UTF-8: byte offset 6 (ff 20 77 6f); "
        "convert it first (e.g. iconv -f CP1252 -t UTF-8, for text from Windows)"
    )
    assert not (tmp_path / "r").exists()


def test_existing_run_needs_overwrite(run_cli, trained_run):
    before = (trained_run / "model.safetensors").read_bytes()
    code, _, err = run_cli("train", CORPORA / "fantasy.txt", "--out", trained_run, "--steps", "2", *TINY)
    assert code == 2
    assert "already holds a run; pass --overwrite" in err
    assert (trained_run / "model.safetensors").read_bytes() == before


def test_ctrl_c_stops_training_resumably_and_keeps_the_best_model(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["train", str(CORPORA / "fantasy.txt"), "--out", str(tmp_path / "r"), "--steps", "100000"]
    args += ["--eval-every", "5", *TINY]
    proc = subprocess.Popen([*CHARNN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stderr:
        if "validation" in line:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert f"continue with: charnn train --resume {tmp_path / 'r'}" in err and "Traceback" not in err
    assert out.strip() == str(tmp_path / "r")
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["results"]["stopped"] == "stopped"
    assert (tmp_path / "r" / "resume.safetensors").is_file()
    assert (tmp_path / "r" / "model.safetensors").is_file()


def test_subprocess_keeps_streams_apart(trained_run):
    result = shell(["sample", "-m", str(trained_run), "--length", "30", "--seed", "9"], stdin=subprocess.DEVNULL)
    assert result.returncode == 0
    assert len(result.stdout) == 31 and result.stderr == ""


def test_sample_json_reports_novelty_and_shared_span(trained_run, run_cli):
    code, out, err = run_cli(
        "sample", "-m", trained_run, "-n", "4", "--stop", "\\n", "--prime", "\\n", "--no-echo", "--json", "--seed", "1"
    )
    assert code == 0, err
    result = json.loads(out)
    assert len(result["samples"]) == 4
    for sample in result["samples"]:
        assert sample["longest_shared_span"] == len(sample["longest_shared_text"])
        assert sample["longest_shared_text"] in sample["text"]
        assert isinstance(sample["novel"], bool)


def test_novel_rejects_copies(trained_run, run_cli, small_text):
    # Greedy sampling from a fixed prime gives the same sample every round; make every
    # record a "copy" by priming with training text and stopping at the first space.
    code, out, err = run_cli(
        "sample", "-m", trained_run, "-n", "3", "--stop", " ", "--prime", " ", "--no-echo", "--novel", "--seed", "2"
    )
    assert code == 0, err
    train_chars = json.loads((trained_run / "config.json").read_text())["data"]["train_chars"]
    records = {r.strip() for r in small_text[:train_chars].split(" ")}
    samples = [chunk.strip() for chunk in out.split("\n\n")]
    assert len(samples) == 3 and not any(s in records for s in samples)


def test_novel_with_nothing_novel_is_an_error_not_silence(trained_run, run_cli, monkeypatch, small_text):
    import charnn.tasks.lm.sample

    first_word = small_text.split(" ")[1]  # a training record: every round draws the same copy, as --temp 0 does
    monkeypatch.setattr(charnn.tasks.lm.sample, "generate_text", lambda run, prime, **kw: [first_word] * 3)
    code, out, err = run_cli("sample", "-m", trained_run, "-n", "3", "--stop", " ", "--temp", "0", "--novel")
    assert code == 1 and out == "" and "no sample was novel after 20 rounds" in err and "give a --temp above 0" in err


def test_novel_draws_copies_again(trained_run, run_cli, monkeypatch, small_text):
    import charnn.tasks.lm.sample

    first_word = small_text.split(" ")[1]
    draws = iter([[first_word, "Zqxv"], ["Wzyq"]])
    monkeypatch.setattr(charnn.tasks.lm.sample, "generate_text", lambda run, prime, **kw: next(draws))
    code, out, err = run_cli("sample", "-m", trained_run, "-n", "2", "--stop", " ", "--novel", "--seed", "1")
    assert code == 0, err
    assert out.split() == ["Zqxv", "Wzyq"]
    assert "1 sample(s) copied a training record and were drawn again" in err


def test_swatch_for_paint_lines_only_on_a_terminal(monkeypatch):
    import io

    from charnn.cli.sample import _Printer
    from charnn.config import SampleConfig

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    term = Terminal()
    _Printer(SampleConfig(stop=("\n",)), term).print("Quiet Harbour Fog 182 190 196")
    assert "\x1b[" in term.getvalue() and "Quiet Harbour Fog 182 190 196" in term.getvalue()
    plain = io.StringIO()
    _Printer(SampleConfig(stop=("\n",)), plain).print("Quiet Harbour Fog 182 190 196")
    assert plain.getvalue() == "Quiet Harbour Fog 182 190 196\n"


def test_samples_are_one_a_line_when_they_stop_at_a_lines_end_and_blocks_apart_when_they_may_hold_lines():
    import io

    from charnn.cli.sample import _Printer
    from charnn.config import SampleConfig

    printed = {}
    for stop in (("\n",), ("e ", "\n"), ("\n\n",), ()):
        out = io.StringIO()
        printer = _Printer(SampleConfig(stop=stop), out)
        for text in ("Thou art\nhere", "and there"):
            printer.print(text if "\n" not in stop else text.replace("\n", " "))
        printed[stop] = out.getvalue()
    assert printed[("\n",)] == printed[("e ", "\n")] == "Thou art here\nand there\n"
    # paragraphs (--stop '\n\n') hold lines of their own: before, nothing told where the next one began
    assert printed[("\n\n",)] == printed[()] == "Thou art\nhere\n\nand there\n"


def test_cuda_defaults_are_larger_and_a_small_corpus_keeps_the_cpu_batch():
    from charnn.config import CUDA_DEFAULTS, TrainConfig
    from charnn.device import device_settings, fit_small_corpus

    unset = dict.fromkeys(("layers", "hidden", "dropout", "batch_size", "seq_len", "lr"))
    assert device_settings("cpu", unset) == (
        {"layers": 2, "hidden": 384, "dropout": 0.1} | {"batch_size": 32, "seq_len": 64, "lr": 5e-3},
        None,
    )
    assert device_settings("cpu", {**unset, "hidden": 99})[0]["hidden"] == 99
    on_gpu = TrainConfig(batch_size=CUDA_DEFAULTS["batch_size"], seq_len=CUDA_DEFAULTS["seq_len"])
    assert fit_small_corpus(on_gpu, unset, 1_115_394) == (on_gpu, None)  # tinyshakespeare keeps 128 x 128
    small, note = fit_small_corpus(on_gpu, unset, 100_000)
    assert (small.batch_size, small.seq_len) == (32, 64)
    assert note == "the corpus is small for CUDA's batch and window: --batch-size 32 --seq-len 64"
    assert fit_small_corpus(on_gpu, {**unset, "batch_size": 128}, 100_000) == (on_gpu, None)  # given: kept


@pytest.fixture(scope="module")
def runs_of_each_kind(tmp_path_factory, trained_run):
    """A language model, a classifier and a tagger, made whole but stopped before their first step."""
    import threading

    from charnn.tasks.classify.classifier import train_classifier
    from charnn.tasks.tag.tagger import train_tagger
    from tests.conftest import tiny_train_config
    from tests.run_kinds import CLASSIFIER, TAGGER, _labelled, _tagged

    folder = tmp_path_factory.mktemp("kinds")
    stop = threading.Event()
    stop.set()
    config = tiny_train_config(batch_size=4)
    train_classifier(_labelled(), folder / "clf", CLASSIFIER, config, tokenizer_kind="char", stop=stop)
    train_tagger(_tagged(), folder / "tagger", TAGGER, config, tokenizer_kind="char", stop=stop)
    return {"lm": trained_run, "classifier": folder / "clf", "tagger": folder / "tagger"}


@pytest.mark.parametrize(
    ("command", "found", "noun", "continued_with"),
    [
        (["train", "corpus.txt", *TINY], "classifier", "a classifier, not a language model", "charnn classify train"),
        (["train", "corpus.txt", *TINY], "tagger", "a tagger, not a language model", "charnn tag train"),
        (
            ["classify", "train", "d.tsv", "--tokenizer", "char"],
            "lm",
            "a language model, not a classifier",
            "charnn train",
        ),
        (
            ["classify", "train", "d.tsv", "--tokenizer", "char"],
            "tagger",
            "a tagger, not a classifier",
            "charnn tag train",
        ),
        (["tag", "train", "d.tags"], "lm", "a language model, not a tagger", "charnn train"),
        (["tag", "train", "d.tags"], "classifier", "a classifier, not a tagger", "charnn classify train"),
    ],
    ids=[
        "lm-on-classifier",
        "lm-on-tagger",
        "classifier-on-lm",
        "classifier-on-tagger",
        "tag-on-lm",
        "tag-on-classifier",
    ],
)
def test_data_and_resume_of_a_run_of_another_kind_names_the_command_that_continues_it(
    command, found, noun, continued_with, runs_of_each_kind, run_cli, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_text("some text " * 200)
    (tmp_path / "d.tsv").write_text("".join(f"{label}\tsome {label} text {i}\n" for label in "ab" for i in range(6)))
    (tmp_path / "d.tags").write_text("".join(f"word{i}\tX\nother\tY\n\n" for i in range(8)))
    run = runs_of_each_kind[found]
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code, out, err = run_cli(*command, "--resume", run)
    assert code == 2 and out == ""
    assert err == f"error: {run} is {noun}; continue it with `{continued_with} --resume {run}`\n"
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # nothing touched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "d.tags", "d.tsv"]  # nothing written


@pytest.mark.skipif(not Path("/dev/full").is_char_device(), reason="needs /dev/full, a device whose writes fail")
def test_output_that_cannot_be_written_is_one_line_and_exit_1(trained_run):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for args in (["sample", "-m", str(trained_run), "-l", "50"], ["info", str(trained_run), "--json"]):
        with open("/dev/full", "w") as full:
            result = subprocess.run(
                [sys.executable, "-m", "charnn", *args], stdout=full, stderr=subprocess.PIPE, text=True, env=env
            )
        assert result.returncode == 1, result.stderr
        assert "error: cannot write the output: No space left on device" in result.stderr
        assert "Traceback" not in result.stderr


def test_eval_without_dash_says_it_does_not_read_the_pipe(trained_run):
    piped = shell(["eval", "-m", str(trained_run), "--json"], input="a tale of the moon and the stars")
    assert piped.returncode == 0, piped.stderr
    assert "standard input is read only when named: charnn eval -" in piped.stderr
    assert json.loads(piped.stdout)["chars"] > 500  # the held-out text, not the 32 piped characters
    quiet = shell(["eval", "-m", str(trained_run), "--json"], stdin=subprocess.DEVNULL)
    assert quiet.returncode == 0, quiet.stderr
    assert "standard input" not in quiet.stderr


def test_a_reader_that_goes_away_stops_training_resumably_with_exit_141(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [*CHARNN, "train", str(CORPORA / "fantasy.txt"), *TINY, "--steps", "5000", "--eval-every", "10"]
    proc = subprocess.Popen([*args, "--out", str(run)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        assert proc.stdout.readline()  # `2>&1 | head -1`: the reader has its line and goes away
        proc.stdout.close()
        assert proc.wait(timeout=120) == 141  # was 0: a run stopped half-way looked like a success
    finally:
        proc.kill()
    results = json.loads((run / "config.json").read_text())["results"]
    assert results["stopped"] == "stopped" and results["steps"] < 5000  # stopped as Ctrl-C stops it
    assert (run / "resume.safetensors").is_file() and (run / "model.safetensors").is_file()
    resumed = shell(["train", "--resume", str(run), "--steps", str(results["steps"] + 10)])
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {run} at step {results['steps']}" in resumed.stderr


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (["--tokenizer", "bpe"], "--tokenizer is a tokenizer's, and --tokenizer-from RUN lends one; drop --tokenizer"),
        (["--tokenizer", "char"], "--tokenizer is a tokenizer's, and --tokenizer-from RUN lends one; drop --tokenizer"),
        (["--vocab-size", "300"], "--vocab-size is a tokenizer's, and --tokenizer-from RUN lends one"),
        (["--init-from", "RUN"], "--tokenizer-from and --init-from do not go together"),
    ],
)
def test_tokenizer_from_refuses_what_it_would_override(given, message, run_cli, trained_run, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text((CORPORA / "fantasy.txt").read_text(encoding="utf-8")[:6000], encoding="utf-8")
    given = [str(trained_run) if a == "RUN" else a for a in given]
    args = ["train", corpus, "--tokenizer-from", trained_run, *given, *TINY, "--steps", "2", "--out", tmp_path / "r"]
    code, _, err = run_cli(*args)
    assert code == 2 and message.replace("RUN", str(trained_run)) in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()


def test_tokenizer_from_alone_and_val_alone_are_not_refused(run_cli, trained_run, tmp_path):
    text = (CORPORA / "fantasy.txt").read_text(encoding="utf-8")
    (tmp_path / "corpus.txt").write_text(text[:6000], encoding="utf-8")
    (tmp_path / "val.txt").write_text(text[6000:7000], encoding="utf-8")
    args = ["train", tmp_path / "corpus.txt", "--tokenizer-from", trained_run, "--val", tmp_path / "val.txt"]
    code, _, err = run_cli(*args, *TINY, "--steps", "2", "--eval-every", "2", "--out", tmp_path / "r")
    assert code == 0, err  # the options' defaults (--tokenizer char, --val-fraction 0.1) are not "given"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["CORPUS", "--val", "VAL", "--val-fraction", "0.5"], "--val-fraction splits the corpus when no --val file"),
        (["CORPUS", "--val", "VAL", "--val-fraction", "0.1"], "--val-fraction splits the corpus when no --val file"),
        (["--style", "a=CORPUS", "--val", "a=VAL", "--val-fraction", "0.5"], "--val-fraction splits a style's text"),
        (["CORPUS", "--tokenizer-from", "CORPUS", "--init-from", "CORPUS"], "--tokenizer-from and --init-from do not"),
        (["--style", "a=CORPUS", "--tokenizer-from", "CORPUS"], "--tokenizer-from does not lend to styles"),
        (["-", "--val", "-"], "standard input can be read only once"),
        (["-", "-"], "standard input can be read only once"),
        (["--style", "a=-", "--val", "a=-"], "standard input can be read only once"),
        (["missing.txt", "--time", ""], "--time '' is not a duration"),
        (["--overwrite", "--resume", "CORPUS"], "--overwrite --resume replaces a run with a new one"),
    ],
)
def test_options_one_would_override_are_refused_up_front(args, message, run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_text("some text " * 200)
    (tmp_path / "val.txt").write_text("other text " * 20)
    args = [a.replace("CORPUS", "corpus.txt").replace("VAL", "val.txt") for a in args]
    code, out, err = run_cli("train", *args, *TINY, "--steps", "2", stdin=b"text from a pipe " * 100)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "val.txt"]  # nothing written


@pytest.mark.parametrize(
    ("val", "extra", "message"),
    [
        ("", [], "the --val file val.txt is empty"),
        ("a", [], "the --val file val.txt holds 1 character(s)"),
        ("", ["--style", "a=corpus.txt"], "style a's --val file val.txt is empty"),
        ("a", ["--style", "a=corpus.txt"], "style a's --val file val.txt holds 1 character(s)"),
        (
            "so",
            ["--style", "a=corpus.txt", "--tokenizer", "bpe", "--vocab-size", "275"],
            "style a: its --val file has 1 token(s), too few to measure; give a longer --val a=FILE",
        ),  # one BPE piece
    ],
)
def test_a_val_file_too_short_is_named(val, extra, message, run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_text("some text " * 200)
    (tmp_path / "val.txt").write_text(val)
    given = [*extra, "--val", "a=val.txt"] if extra else ["corpus.txt", "--val", "val.txt"]
    code, _, err = run_cli("train", *given, *TINY, "--steps", "2")
    assert code == 1 and message in err and "raise --val-fraction" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "val.txt"]


def test_the_live_progress_line_keeps_the_time_left_in_an_80_column_terminal(tmp_path):
    import pty
    import re

    primary, secondary = pty.openpty()  # stderr a terminal: the live progress bar, not plain lines
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "80", "TERM": "xterm"}
    args = [*CHARNN, "train", str(CORPORA / "fantasy.txt"), *TINY, "--time", "4s", "--out", str(tmp_path / "run")]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=secondary, env=env)
    os.close(secondary)
    shown = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the process has closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(primary)
    assert proc.wait(timeout=120) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.decode("utf-8", "replace"))
    lines = [line for line in re.split(r"[\r\n]", text) if re.match(r"step \d+ ", line)]  # not "step 250: validation"
    assert lines and all(len(line.rstrip()) <= 80 for line in lines), lines
    # before: "loss 3.955 ... lr 2.0e-03 0:0… eta 0:0…", the figures pushing the times off the line
    bad = [line for line in lines if not re.search(r"\d:\d\d:\d\d eta (\d:\d\d:\d\d|-:--:--)$", line.rstrip())]
    assert not bad, bad


def test_an_out_under_a_file_says_it_is_a_file(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_text("some text " * 200)
    (tmp_path / "empty.txt").write_text("")
    code, _, err = run_cli("train", "corpus.txt", "--out", "empty.txt/sub", *TINY, "--steps", "2")
    assert code in (1, 2) and "empty.txt is a file, not a folder" in err and "File exists" not in err, err


def test_a_reader_that_goes_away_stops_a_classifier_too_with_exit_141(tmp_path):
    data = tmp_path / "moods.tsv"
    data.write_text("".join(f"pos\tgood film number {i}\nneg\tbad film number {i}\n" for i in range(100)))
    run, env = tmp_path / "run", {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [*CHARNN, "classify", "train", str(data), "--hidden", "16", "--embed", "8", "--batch-size", "8"]
    args += ["--tokenizer", "char", "--steps", "100000", "--eval-every", "5", "--no-ngrams", "--out", str(run)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        assert proc.stdout.readline()
        proc.stdout.close()
        assert proc.wait(timeout=120) == 141  # was 0, as for charnn train
    finally:
        proc.kill()
    assert (run / "resume.safetensors").is_file()
    assert json.loads((run / "config.json").read_text())["results"]["steps"] < 100000


def test_a_run_folder_inside_another_is_refused(run_cli, trained_run, tmp_path, monkeypatch):
    """It would be a stranger's file to the outer run, whose --overwrite then refuses."""
    import shutil

    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_text("some text " * 200)
    shutil.copytree(trained_run, tmp_path / "outer")
    code, out, err = run_cli("train", "corpus.txt", "--out", "outer/inner/deeper", "--steps", "2")
    assert (code, out) == (2, "") and err.startswith("error: --out outer/inner/deeper is inside the run folder ")
    assert err.endswith("outer; choose a folder outside it\n") and not (tmp_path / "outer" / "inner").exists()


def test_resuming_an_empty_folder_says_it_is_empty(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli("train", "--resume", "empty")
    assert code == 2 and err.startswith("error: run folder empty is empty: it holds no run to resume; pass the corpus")
    assert list((tmp_path / "empty").iterdir()) == []


@pytest.mark.parametrize("group", ["classify", "tag", "corpus"])
def test_a_group_named_alone_prints_its_help_and_no_empty_error(group, run_cli):
    code, out, err = run_cli(group)
    assert code == 2 and "Usage" in out + err and "error:" not in err
