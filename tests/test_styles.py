"""One model, many styles: parsing, the conditional model, training lanes, sampling, scoring, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from charnn.config import ModelConfig
from charnn.errors import ConfigError
from charnn.model import RecurrentLM
from charnn.tasks.lm import styles
from tests.conftest import TINY_MODEL, tiny_train_config

LETTERS = " ".join("abc cab bca acb" for _ in range(600)) + "\n"
"""Style 'letters': lowercase words, a stream."""
DIGITS = "".join(f"{i % 97} {i * 7 % 89} {i * 13 % 83}\n" for i in range(400))
"""Style 'digits': three numbers a line, one record a line."""


def _styled_run(folder: Path, steps: int = 120, init_from: Path | None = None, extra: list | None = None):
    from charnn.tasks.lm.style_runs import StyleData, train_styles
    from charnn.text.corpus import Corpus

    data = [
        StyleData("letters", Corpus(text=LETTERS, name="l", sources=("l.txt",))),
        StyleData("digits", Corpus(text=DIGITS, name="d", sources=("d.txt",)), records="line"),
        *(extra or []),
    ]
    config = tiny_train_config(steps=steps, eval_every=steps, lr=1e-2)
    return train_styles(data, folder, TINY_MODEL, config, init_from=init_from)


@pytest.fixture(scope="module")
def styled(tmp_path_factory) -> Path:
    """A tiny model of two styles far apart: letters (a stream) and digits (line records); read-only."""
    folder = tmp_path_factory.mktemp("runs") / "styled"
    _styled_run(folder)
    return folder


# -- parsing -------------------------------------------------------------------------------------


def test_styles_keep_their_order_and_a_name_may_take_several_files(tmp_path):
    parsed = styles.parse_styles([f"b={tmp_path}/1.txt", f"a={tmp_path}/2.txt", f"b={tmp_path}/3.txt"])
    assert [(s.name, len(s.files)) for s in parsed] == [("b", 2), ("a", 1)]
    assert [s.name for s in styles.styles_per_file(["x/fantasy.txt", "recipes.txt"])] == ["fantasy", "recipes"]


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["recipes.txt"], "has no '='"),
        (["=recipes.txt"], "empty style name"),
        (["recipes="], "names no file"),
        (["a b=x.txt"], "may hold only letters"),
        (["a=x.txt", "b=x.txt"], "is given under two styles (a and b)"),
    ],
)
def test_bad_style_options_are_refused_with_what_to_write(specs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        styles.parse_styles(specs)


def test_a_blend_is_normalised_and_its_heaviest_style_is_the_main_one():
    choice = styles.parse_choice("a=1,c=3", ["a", "b", "c"])
    assert choice.weights == (0.25, 0.0, 0.75) and choice.main == 2 and choice.label == "a=0.25,c=0.75"
    assert styles.parse_choice("b", ["a", "b"]).weights == (0.0, 1.0)
    assert styles.parse_choice("a=1e308,b=1e308", ["a", "b"]).weights == (0.5, 0.5)  # the sum overflowed: no style


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", "unknown style 'nope'; this run's styles are: a, b"),
        ("a=x", "the weight of a is 'x', not a number"),
        ("a=0,b=0", "the weights sum to 0"),
        ("a=-1,b=2", "must be a finite number 0 or more, got -1"),
        ("a=inf", "must be a finite number 0 or more, got inf"),
        ("a=1,", "does not parse"),
        ("a=1,a=0", "names a twice; give each style one weight"),
    ],
)
def test_bad_blends_are_refused(spec, message):
    with pytest.raises(ConfigError, match=message):
        styles.parse_choice(spec, ["a", "b"])


def test_rows_are_shared_as_evenly_as_they_divide():
    assert styles.rows_per_style(32, 4) == [8, 8, 8, 8]
    assert styles.rows_per_style(10, 4) == [3, 3, 2, 2]
    with pytest.raises(ConfigError, match="--batch-size 3 gives fewer rows than there are styles"):
        styles.rows_per_style(3, 4)


# -- the model -----------------------------------------------------------------------------------


def _model(styles_count: int = 3) -> RecurrentLM:
    torch.manual_seed(0)
    model = RecurrentLM(ModelConfig(vocab_size=11, styles=styles_count, **TINY_MODEL)).eval()
    with torch.no_grad():
        model.style_vectors.normal_()
    return model


def test_each_style_changes_what_the_model_predicts_and_a_blend_mixes_their_vectors():
    model = _model()
    tokens = torch.randint(0, 11, (2, 9))
    a, _ = model(tokens, style=torch.tensor([0, 0]))
    b, _ = model(tokens, style=torch.tensor([1, 1]))
    assert not torch.allclose(a, b, atol=1e-3)
    half = torch.tensor([0.5, 0.5, 0.0])
    mixed = 0.5 * model.style_vectors[0] + 0.5 * model.style_vectors[1]
    with torch.no_grad():
        blended, _ = model(tokens, style=half)
        model.style_vectors[2] = mixed  # the blend is the model with the mixed vector as a style
        third, _ = model(tokens, style=torch.tensor([2, 2]))
    torch.testing.assert_close(blended, third)


def test_zero_style_vectors_leave_the_unconditional_model_as_it_was():
    torch.manual_seed(0)
    plain = RecurrentLM(ModelConfig(vocab_size=11, **TINY_MODEL)).eval()
    torch.manual_seed(0)
    styled = RecurrentLM(ModelConfig(vocab_size=11, styles=2, **TINY_MODEL)).eval()
    styled.load_state_dict({**plain.state_dict(), "style_vectors": torch.zeros(2, styled.style_vectors.shape[1])})
    tokens = torch.randint(0, 11, (2, 9))
    torch.testing.assert_close(plain(tokens)[0], styled(tokens, style=torch.tensor([1, 0]))[0])


def test_the_stepper_follows_the_style_the_model_is_set_to():
    model = _model()
    model.use_style(torch.tensor([0.0, 1.0, 0.0]))
    tokens = torch.randint(0, 11, (3, 7))
    expected, _ = model(tokens)
    step, state = model.stepper(), model.initial_state(3)
    for t in range(7):
        logits, state = step(tokens[:, t], state)
        torch.testing.assert_close(logits, expected[:, t], atol=1e-5, rtol=1e-4)


def test_a_conditional_model_asked_for_no_style_says_so():
    with pytest.raises(ValueError, match="needs a style"):
        _model()(torch.zeros(1, 3, dtype=torch.long))


# -- training ------------------------------------------------------------------------------------


def test_each_style_keeps_its_own_split_rows_and_validation(styled):
    config = json.loads((styled / "config.json").read_text(encoding="utf-8"))
    letters, digits = config["task"]["styles"]
    assert (letters["rows"], digits["rows"]) == (2, 2)  # batch 4, two styles
    assert letters["records"] is None and digits["records"]["spec"] == "line"
    kept = (styled / "validation.txt").read_text(encoding="utf-8")
    cut = len(LETTERS) - round(len(LETTERS) * 0.1)
    assert kept[slice(*letters["validation_span"])] == LETTERS[cut:]  # the stream's last tenth
    held = kept[slice(*digits["validation_span"])].splitlines()
    assert len(held) == 40 and all(line in DIGITS.splitlines() for line in held)  # a tenth of the records
    assert held != DIGITS.splitlines()[-40:]  # drawn at random, not the tail
    figures = config["results"]["val_styles"]
    assert set(figures) == {"letters", "digits"}
    assert config["results"]["val_loss"] == pytest.approx(
        (figures["letters"]["val_loss"] + figures["digits"]["val_loss"]) / 2
    )


def test_each_row_of_the_batch_reads_its_own_styles_text(styled):
    from charnn import tasks
    from charnn.config import TrainConfig
    from charnn.training.distributed import init_world

    config = json.loads((styled / "config.json").read_text(encoding="utf-8"))
    model = tasks.build_model(config, ModelConfig.from_dict(config["model"]))
    world, _ = init_world(torch.device("cpu"))
    task = tasks.make_task(config, styled, model, TrainConfig.from_dict(config["training"]), world, "cpu")
    run = tasks.load_run(styled)
    assert task.styles.tolist() == [0, 0, 1, 1]
    letters = run.tokenizer.decode(task.lanes[0].local[:, :40].reshape(-1).numpy())
    digits = task.lanes[1].local[:, :40]
    assert set(letters) <= set("abc \n")
    assert set(run.tokenizer.decode(digits[digits != model.boundary].numpy())) <= set("0123456789 \n")


def test_a_new_style_joins_a_trained_model_and_the_old_ones_keep_their_vectors(styled, tmp_path):
    from charnn.tasks import load_run
    from charnn.tasks.lm.style_runs import StyleData
    from charnn.text.corpus import Corpus

    shouting = StyleData("shouting", Corpus(text=LETTERS.replace("a", "  "), name="s", sources=("s.txt",)))
    _styled_run(tmp_path / "more", steps=1, init_from=styled, extra=[shouting])
    before, after = load_run(styled).model, load_run(tmp_path / "more").model
    # One step of AdamW moves every weight by about the learning rate at most.
    assert torch.allclose(after.style_vectors[:2], before.style_vectors, atol=0.05)
    assert after.style_vectors[2].abs().max() < 0.05  # the new style starts at zero


# -- the command line ----------------------------------------------------------------------------


def test_sample_writes_in_the_style_asked_for(styled, run_cli):
    code, out, err = run_cli("sample", "-m", styled, "--style", "digits", "-n", "5", "--seed", "1", "--temp", "0.5")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 5 and all(line and set(line) <= set("0123456789 ") for line in lines)  # whole records
    # A prose style read from the zero state, as a tiny model of 120 steps saw only digits do: primed instead.
    args = ["--style", "letters", "-l", "60", "--seed", "1", "--temp", "0.5", "--prime", "abc ", "--no-echo"]
    code, out, err = run_cli("sample", "-m", styled, *args)
    assert code == 0 and set(out.strip()) <= set("abc \n") and len(out.strip()) >= 50


def test_sample_without_a_style_draws_one_and_names_it(styled, run_cli):
    code, out, err = run_cli("sample", "-m", styled, "--seed", "3", "-l", "40", "--json")
    assert code == 0, err
    drawn = json.loads(out)["style"]
    assert drawn in ("letters", "digits") and f"style: {drawn} (drawn by the training mixture" in err
    names = {
        json.loads(run_cli("sample", "-m", styled, "--seed", str(s), "-l", "5", "--json")[1])["style"]
        for s in range(12)
    }
    assert names == {"letters", "digits"}  # the mixture is half and half


def test_a_blend_samples_and_an_unknown_style_lists_the_known_ones(styled, run_cli):
    code, out, err = run_cli("sample", "-m", styled, "--style", "letters=0.5,digits=0.5", "-l", "30", "--seed", "1")
    assert code == 0, err
    code, out, err = run_cli("sample", "-m", styled, "--style", "poems")
    assert code == 2 and "unknown style 'poems'; this run's styles are: letters, digits" in err
    assert "Traceback" not in err


def test_eval_all_styles_names_the_most_likely(styled, run_cli, tmp_path):
    numbers = tmp_path / "n.txt"
    numbers.write_text("12 40 7\n33 2 81\n5 66 19\n", encoding="utf-8")
    words = tmp_path / "w.txt"
    words.write_text("cab abc bca acb cab abc\n", encoding="utf-8")
    for file, expected in ((numbers, "digits"), (words, "letters")):
        code, out, err = run_cli("eval", file, "-m", styled, "--all-styles", "--json")
        assert code == 0, err
        result = json.loads(out)
        assert result["most_likely"] == expected
        figures = {name: m["bits_per_char"] for name, m in result["styles"].items()}
        assert min(figures, key=figures.get) == expected


def test_eval_with_a_style_scores_its_held_out_text_as_training_did(styled, run_cli):
    config = json.loads((styled / "config.json").read_text(encoding="utf-8"))
    code, out, err = run_cli("eval", "-m", styled, "--style", "digits", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["records"] == 40
    assert result["bits_per_char"] == pytest.approx(config["results"]["val_styles"]["digits"]["val_bits_per_char"])


def test_info_lists_the_styles(styled, run_cli):
    code, out, err = run_cli("info", styled)
    assert code == 0, err
    assert "2 styles: letters, digits" in out and "style digits" in out and "one record a line" in out
    info = json.loads(run_cli("info", styled, "--json")[1])
    assert [s["name"] for s in info["styles"]] == ["letters", "digits"]


def test_style_options_on_a_run_without_styles_are_refused(trained_run, run_cli):
    code, out, err = run_cli("sample", "-m", trained_run, "--style", "a")
    assert code == 2 and "was trained without styles" in err
    code, out, err = run_cli("eval", "-m", trained_run, "--all-styles")
    assert code == 2 and "was trained without styles" in err


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["--style", "letters"], "has no '='", 2),
        (["--style", "=l.txt"], "empty style name", 2),
        (["--style", "a=l.txt", "--style", "b=l.txt"], "is given under two styles", 2),
        (["--style", "a=l.txt", "--style", "b=empty.txt"], "style b: the corpus (empty.txt) holds no text", 1),
        (["--style", "a=l.txt", "--style", "b=nope.txt"], "style b: nope.txt: no such file", 1),
        (["l.txt", "--style", "a=l.txt"], "corpus files and --style do not mix", 2),
        (["--style", "a=l.txt", "--style", "b=d.txt", "--val", "l.txt"], "--val NAME=FILE", 2),
        (["--style", "a=l.txt", "--style", "b=d.txt", "--val", "c=l.txt"], "unknown style 'c'", 2),
        (["--style", "a=l.txt", "--style", "b=d.txt", "--records", "b=("], "not a valid regular expression", 2),
        (["--style", "a=l.txt", "--style", "b=d.txt", "--records", "zz=line"], "unknown style 'zz'; the styles", 2),
        (["l.txt", "--records", "zz=line"], "sets style zz's records, and this run has no --style", 2),
        (["--style", "a=l.txt", "--style", "b=d.txt", "--reverse"], "--reverse does not read styles", 2),
    ],
)
def test_bad_style_training_is_refused_in_one_line_and_writes_nothing(
    run_cli, tmp_path, monkeypatch, args, message, code
):
    monkeypatch.chdir(tmp_path)
    Path("l.txt").write_text(LETTERS, encoding="utf-8")
    Path("d.txt").write_text(DIGITS, encoding="utf-8")
    Path("empty.txt").write_text("  \n", encoding="utf-8")
    got, out, err = run_cli("train", *args, "--steps", "2")
    assert got == code, err  # 2 for options that do not go together, 1 for a text that is missing or empty
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not Path("runs").exists()


def test_train_on_styles_names_the_run_after_them_and_resumes(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("letters.txt").write_text(LETTERS, encoding="utf-8")
    Path("digits.txt").write_text(DIGITS, encoding="utf-8")
    args = ["--style-per-file", "--records", "digits=line", "--hidden", "16", "--embed", "8", "--batch-size", "4"]
    code, out, err = run_cli("train", "letters.txt", "digits.txt", *args, "--steps", "4", "--seq-len", "16")
    assert code == 0, err
    assert out.strip() == "runs/letters+digits" and "bits/char: letters " in err
    code, out, err = run_cli("train", "--resume", "runs/letters+digits", "--steps", "6")
    assert code == 0, err
    assert json.loads(Path("runs/letters+digits/config.json").read_text())["results"]["steps"] == 6


def test_a_style_runs_default_folder_name_fits_a_file_name():
    from charnn.tasks.lm.styles import FOLDER_NAME_BYTES, styles_folder_name

    assert styles_folder_name(["poems", "letters"]) == "poems+letters"
    many = styles_folder_name([f"style_number_{i}" for i in range(100)])  # before: 1,500 bytes, refused
    assert many == "style_number_0+style_number_1+style_number_2+style_number_3+96-more"
    assert len(many) <= FOLDER_NAME_BYTES and styles_folder_name(["é" * 200, "y"]) == "2-styles"
