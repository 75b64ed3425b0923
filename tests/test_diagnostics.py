import io
import json
import math
import struct
import sys

import pytest
import torch
import torch.nn.functional as F

from charnn.diagnostics.gradients import (
    FreshModel,
    GradFlowConfig,
    build_fresh_model,
    fit_decay,
    gradient_norms,
    make_curve,
    measure_fresh,
    text_windows,
    vanishing_distance,
)
from charnn.diagnostics.plots import GRADS_PNG_SIZE, HISTORY_PNG_SIZE, PlotUnavailableError, require_matplotlib
from charnn.diagnostics.reports import read_history
from charnn.errors import ConfigError, CorpusError

SMALL = dict(layers=1, hidden=48, embed=16)


def png_size(path):
    """Width and height from a PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_tanh_rnn_with_spectral_radius_below_one_vanishes_geometrically(small_text):
    curve = measure_fresh(FreshModel(cell="rnn", **SMALL), small_text, GradFlowConfig(length=40, samples=16))
    (radius,) = curve.settings["spectral_radius"]
    assert radius < 1
    fit = fit_decay(curve.norms, 1, 40)
    assert fit.slope < 0 and fit.r_squared > 0.9  # a straight line, going down, on a log scale
    assert all(later < earlier for earlier, later in zip(curve.norms, curve.norms[1:]))
    assert curve.norms[39] < 1e-6 * curve.norms[0]
    # |tanh'| <= 1, so the signal shrinks at least as fast as the recurrent matrix alone would shrink it
    assert curve.decay_per_step < radius * 1.05
    assert curve.vanishes_at is not None and curve.vanishes_at < 40


def test_linear_rnn_scaled_above_one_explodes_at_the_spectral_radius(small_text):
    spec = FreshModel(cell="rnn", init_scale=3.0, activation="linear", **SMALL)
    curve = measure_fresh(spec, small_text, GradFlowConfig(length=30, samples=8))
    (radius,) = curve.settings["spectral_radius"]
    assert radius > 1.3
    assert curve.decay_per_step > 1 and curve.norms[-1] > 1e3 * curve.norms[0]
    assert curve.vanishes_at is None
    # For h(s+1) = W h(s) + ..., the gradient is (W^T)^l g: it grows like the spectral radius to the l.
    late = fit_decay(curve.norms, 10, 30)
    assert late.factor == pytest.approx(radius, rel=0.05)


def test_lstm_with_forget_bias_keeps_more_gradient_at_50_than_a_vanilla_rnn(small_text):
    config = GradFlowConfig(length=50, samples=16)
    lstm_spec = FreshModel(cell="lstm", **SMALL)
    model = build_fresh_model(lstm_spec, vocab_size=40, seed=config.seed)
    h = SMALL["hidden"]
    assert torch.all(model.rnns[0].bias_hh_l0[h : 2 * h] + model.rnns[0].bias_ih_l0[h : 2 * h] > 0)
    rnn = measure_fresh(FreshModel(cell="rnn", **SMALL), small_text, config)
    lstm = measure_fresh(lstm_spec, small_text, config)
    assert lstm.norms[49] > 100 * rnn.norms[49]
    assert lstm.norms[49] / lstm.norms[0] > 100 * rnn.norms[49] / rnn.norms[0]
    assert lstm.decay_per_step > rnn.decay_per_step


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_norms_match_a_reference_through_the_fused_forward(cell, small_text):
    """‖∂J(t)/∂h(t−ℓ)‖ again, with h(t−ℓ) made a leaf and the model's own forward run from there."""
    from charnn.tokenizers import build_tokenizer

    config = GradFlowConfig(length=12, samples=5, seed=3)
    tokenizer = build_tokenizer("char", small_text)
    windows, burn_in = text_windows(tokenizer.encode(small_text), config)
    model = build_fresh_model(FreshModel(cell=cell, layers=2, hidden=16, embed=8), tokenizer.vocab_size, seed=5)
    norms, layer_norms = gradient_norms(model, windows, burn_in)
    assert len(norms) == 12 and len(layer_norms) == 2
    model = model.double()
    tokens = torch.from_numpy(windows)  # (S, burn_in + L + 2)
    n = 2 if cell == "lstm" else 1
    zero = [tuple(torch.zeros(1, len(tokens), 16, dtype=torch.float64) for _ in range(n)) for _ in range(2)]
    for ell in (1, 4, 12):
        split = burn_in + config.length - ell + 1  # tokens read up to and including position t−ℓ
        with torch.no_grad():
            _, state = model(tokens[:, :split], zero)
        leaves = [layer[0].clone().requires_grad_(True) for layer in state]
        start = [(leaf, *layer[1:]) for leaf, layer in zip(leaves, state)]
        logits, _ = model(tokens[:, split:-1], start)  # (S, ℓ, V)
        loss = F.cross_entropy(logits[:, -1], tokens[:, -1], reduction="sum")
        grads = torch.autograd.grad(loss, leaves)
        joined = torch.sqrt(sum(g[0].pow(2).sum(-1) for g in grads)).mean()
        assert norms[ell - 1] == pytest.approx(float(joined), rel=1e-9)
        for layer, g in enumerate(grads):
            assert layer_norms[layer][ell - 1] == pytest.approx(float(g[0].norm(dim=-1).mean()), rel=1e-9)


def test_fit_and_vanishing_distance_on_an_exact_geometric_curve():
    norms = [0.5**ell for ell in range(1, 31)]
    fit = fit_decay(norms)
    assert fit.factor == pytest.approx(0.5) and fit.r_squared == pytest.approx(1.0)
    assert vanishing_distance(norms) == 11  # 0.5**10 < 1e-3 <= 0.5**9
    assert vanishing_distance([1.0] * 30) is None
    curve = make_curve("x", {}, [1.0, math.inf, 0.25, 0.0])
    assert curve.to_dict()["norms"] == [1.0, None, 0.25, 0.0]
    assert json.loads(json.dumps(curve.to_dict()))["decay_per_step"] == pytest.approx(0.5)  # two usable points


def test_settings_are_checked_with_the_flag_names():
    with pytest.raises(ConfigError, match="--length"):
        GradFlowConfig(length=1)
    with pytest.raises(ConfigError, match="--samples"):
        GradFlowConfig(samples=0)
    with pytest.raises(ConfigError, match="--init-scale"):
        FreshModel(init_scale=0)
    with pytest.raises(ConfigError, match="--cell rnn only"):
        FreshModel(cell="gru", activation="linear")
    with pytest.raises(ConfigError, match="--hidden"):
        FreshModel(hidden=0)
    with pytest.raises(CorpusError, match="lower --length"):
        measure_fresh(FreshModel(cell="rnn", **SMALL), "too short a text", GradFlowConfig(length=50))


def test_clipping_a_synthetic_gradient_through_the_training_code_path():
    from charnn.training.optim import clip_gradients

    weight = torch.nn.Parameter(torch.zeros(2))
    weight.grad = torch.tensor([2.0, 2.0])
    before = clip_gradients([weight], max_norm=2.0)
    assert float(before) == pytest.approx(math.sqrt(8))
    assert weight.grad.tolist() == pytest.approx([math.sqrt(2), math.sqrt(2)])
    weight.grad = torch.tensor([2.0, 2.0])
    clip_gradients([weight], max_norm=0.0)  # 0: off
    assert weight.grad.tolist() == [2.0, 2.0]


def test_training_logs_the_norm_before_clipping_from_clip_gradients(tmp_path, small_text, monkeypatch):
    import charnn.tasks.lm.prepare
    import charnn.training.loop
    import charnn.training.optim
    from charnn.text.corpus import Corpus
    from tests.conftest import TINY_MODEL, tiny_train_config

    returned = []
    original = charnn.training.optim.clip_gradients

    def spy(parameters, max_norm):
        norm = original(parameters, max_norm)
        returned.append(float(norm))
        return norm

    monkeypatch.setattr(charnn.training.loop, "clip_gradients", spy)
    folder = tmp_path / "run"
    config = tiny_train_config(steps=4, log_every=2, eval_every=4, clip=0.05)
    charnn.tasks.lm.prepare.train(Corpus(small_text, "t", ("t",)), folder, TINY_MODEL, config)
    assert len(returned) == 4
    history = read_history(folder)
    assert history.grad_norm == pytest.approx([sum(returned[:2]) / 2, sum(returned[2:]) / 2])
    assert history.grad_norm_max == pytest.approx([max(returned[:2]), max(returned[2:])])
    assert history.clipped == sum(norm > 0.05 for norm in returned) == 4


def test_history_reports_losses_in_bits_per_char(trained_run):
    history = read_history(trained_run)
    records = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["event"] == "train"]
    assert history.train_steps == (5, 10, 15, 20, 25, 30)
    assert history.train_bits_per_char == pytest.approx([r["loss"] / math.log(2) for r in train])  # one char a token
    assert history.val_steps == (10, 20, 30)
    assert history.clip == 1.0 and history.clipped == sum(r["clipped"] for r in train)


def test_pngs_are_real_images_of_the_stated_size(tmp_path, trained_run):
    pytest.importorskip("matplotlib")
    from charnn.diagnostics.plots import gradient_flow_png, history_png

    curves = [
        make_curve("a", {}, [0.5**ell for ell in range(1, 21)]),
        make_curve("b", {}, [0.9**ell for ell in range(1, 21)]),
    ]
    assert png_size(gradient_flow_png(curves, tmp_path / "g.png")) == GRADS_PNG_SIZE
    assert png_size(history_png(read_history(trained_run), tmp_path / "h.png")) == HISTORY_PNG_SIZE
    assert "matplotlib.pyplot" not in sys.modules  # the Figure API only: no global backend


def test_without_matplotlib_png_asks_for_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotUnavailableError, match=r"pip install charnn\[plot\]") as caught:
        require_matplotlib()
    assert "\n" not in str(caught.value)


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_terminal_chart_has_no_escape_codes_unless_a_colour_terminal(monkeypatch):
    from charnn.cli.plot import Series, print_chart, render_chart

    lines = render_chart(
        [Series("down", range(1, 41), [0.5**i for i in range(40)]), Series("flat", [1, 40], [0.1, 0.1])],
        title="norms",
        x_label="l",
        log_y=True,
        width=40,
        height=10,
    )
    monkeypatch.setenv("NO_COLOR", "1")
    for stream in (io.StringIO(), FakeTerminal()):
        print_chart(lines, stream)
        text = stream.getvalue()
        assert "\x1b" not in text
        rows = text.splitlines()
        top, bottom = rows[1].split("|", 1)[1], rows[10].split("|", 1)[1]
        assert (
            top.startswith("*") and len(bottom) == 40 and bottom.endswith("*")
        )  # largest top left, least bottom right
        assert "* down" in rows[-1] and "o flat" in rows[-1]
    monkeypatch.delenv("NO_COLOR")
    plain, coloured = io.StringIO(), FakeTerminal()
    print_chart(lines, plain)
    print_chart(lines, coloured)
    assert "\x1b" not in plain.getvalue() and "\x1b[" in coloured.getvalue()
