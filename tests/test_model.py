import pytest
import torch

from charnn.config import ModelConfig
from charnn.errors import ConfigError
from charnn.model import RecurrentLM, count_parameters, detach_state

VOCAB = 23
KINDS = [
    dict(cell="lstm", layers=2),
    dict(cell="gru", layers=3),
    dict(cell="rnn", layers=1),
    dict(cell="lstm", layers=2, residual=False),
    dict(cell="gru", layers=2, tie_weights=True),
    dict(cell="lstm", layers=2, tie_weights=True, embed=24, hidden=24),
]


def make(**options) -> RecurrentLM:
    torch.manual_seed(0)
    settings = dict(vocab_size=VOCAB, hidden=24, embed=12) | options
    return RecurrentLM(ModelConfig(**settings)).eval()


@pytest.mark.parametrize("options", KINDS)
def test_three_windows_with_carried_state_equal_one_pass(options):
    model = make(**options)
    tokens = torch.randint(0, VOCAB, (3, 30))
    with torch.no_grad():
        full, full_state = model(tokens)
        state = None
        parts = []
        for chunk in tokens.split([7, 13, 10], dim=1):
            logits, state = model(chunk, state)
            parts.append(logits)
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)
    for a, b in zip(state, full_state):
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("options", KINDS)
def test_step_matches_the_fused_forward(options):
    model = make(**options)
    tokens = torch.randint(0, VOCAB, (2, 12))
    with torch.no_grad():
        full, _ = model(tokens)
    state = model.initial_state(2)
    step = model.stepper()
    for t in range(tokens.shape[1]):
        logits, state = step(tokens[:, t], state)
        torch.testing.assert_close(logits, full[:, t], rtol=1e-4, atol=1e-5)


def test_shapes_and_state_layout():
    model = make(cell="lstm", layers=2)
    logits, state = model(torch.zeros(4, 9, dtype=torch.long))
    assert logits.shape == (4, 9, VOCAB)
    assert len(state) == 2 and all(len(layer) == 2 for layer in state)
    assert state[0][0].shape == (1, 4, 24)
    _, gru_state = make(cell="gru")(torch.zeros(4, 9, dtype=torch.long))
    assert all(len(layer) == 1 for layer in gru_state)


def test_residual_defaults_follow_layer_count():
    assert ModelConfig(vocab_size=5, layers=1).residual is False
    assert ModelConfig(vocab_size=5, layers=2).residual is True
    assert ModelConfig(vocab_size=5, layers=2, residual=False).residual is False


def test_residual_changes_the_function():
    torch.manual_seed(0)
    tokens = torch.randint(0, VOCAB, (1, 8))
    with_res = make(layers=2, residual=True)
    without = make(layers=2, residual=False)
    without.load_state_dict(with_res.state_dict())
    assert not torch.allclose(with_res(tokens)[0], without(tokens)[0])


def test_tied_weights_share_the_embedding():
    model = make(tie_weights=True)
    names = dict(model.named_parameters())
    assert "head.weight" not in names
    untied = make(tie_weights=False)
    assert count_parameters(model) < count_parameters(untied)
    model.embed.weight.data.zero_()
    model.head_bias.data.zero_()
    logits, _ = model(torch.zeros(1, 3, dtype=torch.long))
    assert torch.count_nonzero(logits) == 0


def test_lstm_forget_bias_starts_at_one():
    model = make(cell="lstm")
    h = 24
    total = model.rnns[0].bias_ih_l0[h : 2 * h] + model.rnns[0].bias_hh_l0[h : 2 * h]
    assert torch.all(total == 1.0)


def test_detach_cuts_the_graph_but_keeps_values():
    model = make().train()
    _, state = model(torch.zeros(1, 4, dtype=torch.long))
    detached = detach_state(state)
    assert state[0][0].requires_grad and not detached[0][0].requires_grad
    assert torch.equal(state[0][0], detached[0][0])


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        (dict(cell="transformer"), "--cell"),
        (dict(layers=0), "--layers"),
        (dict(hidden=-5), "--hidden"),
        (dict(dropout=1.0), "--dropout"),
    ],
)
def test_bad_model_settings_name_the_flag(options, flag):
    with pytest.raises(ConfigError, match=flag):
        ModelConfig(vocab_size=10, **options)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_weight_drop_masks_recurrent_weights_in_training_only(cell):
    torch.manual_seed(0)
    plain = RecurrentLM(ModelConfig(vocab_size=20, cell=cell, hidden=32, embed=8, dropout=0.0))
    dropped = RecurrentLM(ModelConfig(vocab_size=20, cell=cell, hidden=32, embed=8, dropout=0.0, weight_drop=0.5))
    dropped.load_state_dict(plain.state_dict())
    tokens = torch.randint(0, 20, (3, 12))
    plain.eval(), dropped.eval()
    assert torch.equal(plain(tokens)[0], dropped(tokens)[0])  # evaluation and sampling see every weight
    dropped.train()
    first, second = dropped(tokens)[0], dropped(tokens)[0]
    assert not torch.allclose(first, second)  # a fresh mask each window
    # One mask for the whole window: each layer reads its masked matrix at every step, so the
    # window's output equals the plain model's with that matrix put in place.
    torch.manual_seed(5)
    out = dropped(tokens)[0]
    torch.manual_seed(5)
    masked = [torch.nn.functional.dropout(rnn.weight_hh_l0, 0.5, training=True) for rnn in dropped.rnns]
    with torch.no_grad():
        for rnn, weight in zip(plain.rnns, masked, strict=True):
            rnn.weight_hh_l0.copy_(weight)
    plain.train()
    assert torch.allclose(out, plain(tokens)[0], atol=1e-6)
    out.sum().backward()
    assert all(rnn.weight_hh_l0.grad is not None and rnn.weight_hh_l0.grad.abs().sum() > 0 for rnn in dropped.rnns)


def test_weight_drop_is_checked():
    with pytest.raises(ConfigError, match="--weight-drop must be in"):
        ModelConfig(vocab_size=5, weight_drop=1.0)
