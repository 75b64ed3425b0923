import pytest
import torch

from charnn.config import SampleConfig
from charnn.errors import ConfigError
from charnn.tasks import load_run
from charnn.tasks.lm.sample import StopScanner, generate_text, heal_prime, sample_next, stream


def test_temperature_zero_is_argmax():
    logits = torch.randn(16, 50)
    assert torch.equal(sample_next(logits, temperature=0.0), logits.argmax(-1))


def test_low_temperature_approaches_argmax():
    logits = torch.randn(64, 30)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(sample_next(logits, temperature=1e-4, generator=g), logits.argmax(-1))


def test_a_temperature_too_small_for_float32_is_argmax_not_nan():
    logits = torch.randn(64, 30) * 20
    g = torch.Generator().manual_seed(0)
    assert torch.equal(sample_next(logits, temperature=1e-40, generator=g), logits.argmax(-1))


def test_top_k_never_leaves_the_k_most_likely():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 40)
    allowed = torch.topk(logits, 5, dim=-1).indices
    for _ in range(200):
        picked = sample_next(logits, temperature=2.0, top_k=5, generator=g)
        assert torch.all((allowed == picked[:, None]).any(-1))


def test_top_p_never_leaves_the_nucleus():
    g = torch.Generator().manual_seed(0)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.1, 0.06, 0.04]]))
    seen = set()
    for _ in range(500):
        seen.add(int(sample_next(logits, temperature=1.0, top_p=0.75, generator=g)))
    assert seen == {0, 1}  # 0.5 alone < 0.75; 0.5 + 0.3 reaches it


def test_top_p_keeps_the_best_token_even_when_tiny_p():
    logits = torch.randn(4, 10)
    g = torch.Generator().manual_seed(1)
    assert torch.equal(sample_next(logits, temperature=1.0, top_p=1e-6, generator=g), logits.argmax(-1))


def test_same_seed_same_sample(trained_run):
    run = load_run(trained_run)
    a = generate_text(run, prime="The ", length=80, seed=3, num_samples=2)
    b = generate_text(run, prime="The ", length=80, seed=3, num_samples=2)
    c = generate_text(run, prime="The ", length=80, seed=4, num_samples=2)
    assert a == b
    assert a != c
    assert all(len(t) == 80 for t in a)


def test_greedy_sample_follows_the_fused_model(trained_run):
    run = load_run(trained_run)
    prime = "The queen "
    text = generate_text(run, prime=prime, length=20, temperature=0.0)[0]
    # Re-derive greedily with full passes: each next char is the argmax after the whole prefix.
    current = prime
    for _ in range(20):
        ids = torch.from_numpy(run.tokenizer.encode(current).astype("int64"))[None]
        with torch.no_grad():
            logits, _ = run.model(ids)
        logits[0, -1, 0] = float("-inf")  # the unknown token is never sampled
        current += run.tokenizer.decode([int(logits[0, -1].argmax())])
    assert prime + text == current


def test_generation_is_one_step_per_token(trained_run, monkeypatch):
    run = load_run(trained_run)
    calls = {"forward": 0, "step": 0}
    forward, make_stepper = run.model.forward, run.model.stepper

    def count_forward(*a, **k):
        calls["forward"] += 1
        return forward(*a, **k)

    def counting_stepper(dtype=None):
        step = make_stepper(dtype)

        def count_step(*a, **k):
            calls["step"] += 1
            return step(*a, **k)

        return count_step

    monkeypatch.setattr(run.model, "forward", count_forward)
    monkeypatch.setattr(run.model, "stepper", counting_stepper)
    generate_text(run, prime="A long prime text", length=150, seed=0)
    assert calls == {"forward": 1, "step": 150}


def test_stop_string_cuts_at_the_exact_character():
    scanner = StopScanner(("END",))
    released = "".join(scanner.push(p) for p in ["abc E", "N", "xyzEN", "Dmore"]) + scanner.flush()
    assert released == "abc ENxyz"
    assert scanner.stopped


def test_stop_scanner_releases_everything_without_a_match():
    scanner = StopScanner(("\n\n", "##"))
    pieces = ["a", "#", "b", "\n", "c"]
    assert "".join(scanner.push(p) for p in pieces) + scanner.flush() == "a#b\nc"


def test_stream_stops_each_sample_at_its_stop(trained_run):
    run = load_run(trained_run)
    texts = generate_text(run, prime="The", length=400, seed=5, num_samples=4, stop=(" ",))
    assert all(" " not in t for t in texts)
    assert any(len(t) < 400 for t in texts)


def test_each_sample_ends_once(trained_run):
    run = load_run(trained_run)
    pieces = list(stream(run, SampleConfig(length=30, num_samples=3, seed=1, stop=("e",))))
    done = [p.sample for p in pieces if p.done]
    assert sorted(done) == [0, 1, 2]


def test_unknown_prime_characters_do_not_crash(trained_run):
    run = load_run(trained_run)
    with pytest.warns(UserWarning, match="never saw"):
        text = generate_text(run, prime="日本語 🌍", length=10, seed=0)[0]
    assert len(text) == 10 and "\ufffd" not in text


@pytest.mark.parametrize(
    ("options", "flag"),
    [
        (dict(temperature=-1), "--temp"),
        (dict(temperature=float("nan")), "--temp"),
        (dict(top_p=0), "--top-p"),
        (dict(top_p=1.5), "--top-p"),
        (dict(top_k=-3), "--top-k"),
        (dict(length=0), "--length"),
    ],
)
def test_bad_sample_settings_name_the_flag(options, flag):
    with pytest.raises(ConfigError, match=flag):
        SampleConfig(**options)


# -- subword models: stops, primes and bytes work on text, not token boundaries ----------


def record_tokens(monkeypatch):
    """Collect the ids stream() samples, one (n,) tensor per step (the batch kept whole)."""
    import charnn.tasks.lm.sample

    monkeypatch.setattr(charnn.tasks.lm.sample, "COMPACT_AT", 0.0)
    steps = []
    original = charnn.tasks.lm.sample.sample_next

    def recording(*args, **kwargs):
        token = original(*args, **kwargs)
        steps.append(token.clone())
        return token

    monkeypatch.setattr(charnn.tasks.lm.sample, "sample_next", recording)
    return steps


def test_a_stop_inside_a_subword_token_cuts_at_the_exact_character(bpe_run, monkeypatch, run_cli):
    run = load_run(bpe_run)
    prime = "Alice\n"  # a newline is a token nothing extends: the prime is read as it is
    steps = record_tokens(monkeypatch)
    full = generate_text(run, prime=prime, length=300, seed=2)[0]
    pieces = [run.tokenizer.token_bytes(int(t[0])) for t in steps]
    # A stop string that starts inside a multi-character token, at its first occurrence.
    spelled, offset, stop = b"", 0, None
    for piece in pieces:
        if len(piece.decode("utf-8", "replace")) >= 3:
            offset = len(spelled.decode("utf-8"))  # a piece of several characters starts between characters
            if full.find(piece.decode()[1:3]) == offset + 1:
                stop = piece.decode()[1:3]
                break
        spelled += piece
    assert stop is not None, "no multi-character token to cut inside"
    cut = generate_text(run, prime=prime, length=300, seed=2, stop=(stop,))[0]
    assert cut == full[: offset + 1]
    code, out, _ = run_cli("sample", "-m", bpe_run, "--prime", prime, "--seed", "2", "-l", "300", "--stop", stop)
    assert code == 0
    assert out == prime + cut + "\n"


def test_a_char_prime_is_never_healed(trained_run):
    run = load_run(trained_run)
    token_bytes = [run.tokenizer.token_bytes(i) for i in range(run.tokenizer.vocab_size)]
    ids = run.tokenizer.encode("The queen said")
    assert heal_prime(ids, token_bytes) == (ids.tolist(), b"")


def test_heal_prime_takes_back_the_longest_tail_a_token_extends():
    vocab = [b"", b"T", b"he", b" ", b"q", b"u", b"e", b"n", b" qu", b" queen", b"\xf0", b"\x9f", b"\x8c", b"\x8d"]
    ids = {b: i for i, b in enumerate(vocab)}
    prime = [ids[b] for b in (b"T", b"he", b" ", b"q", b"u", b"e")]  # "The que"
    assert heal_prime(prime, vocab) == (prime[:2], b" que")
    assert heal_prime(prime[:3], vocab) == (prime[:2], b" ")
    emoji = [ids[b"he"], ids[b"\xf0"], ids[b"\x9f"], ids[b"\x8c"], ids[b"\x8d"]]
    assert heal_prime(emoji, vocab) == (emoji, b"")  # whole characters no token extends
    assert heal_prime(prime[:1], vocab) == (prime[:1], b"")


@pytest.mark.parametrize(
    ("prime", "healed"),
    [("Alice was beginn", True), ("The Rabbit ", True), ("Th", True), (" ", True), ("she said 'Oh dear\n", False)],
)
def test_a_prime_that_ends_mid_token_is_continued_exactly(bpe_run, monkeypatch, prime, healed):
    run = load_run(bpe_run)
    tok = run.tokenizer
    token_bytes = [tok.token_bytes(i) for i in range(tok.vocab_size)]
    context, owed = heal_prime(tok.encode(prime), token_bytes)
    assert bool(owed) == healed and prime.encode().endswith(owed)
    steps = record_tokens(monkeypatch)
    texts = generate_text(run, prime=prime, length=60, seed=3, num_samples=3, temperature=1.0)
    head = tok.decode(context) if context else "\n"  # an all-healed prime is read after a newline
    assert head + owed.decode() == (prime if context else "\n" + prime)
    for row, text in enumerate(texts):
        generated = [int(t[row]) for t in steps]
        spelled = tok.decode(list(context) + generated) if context else tok.decode([*tok.start_ids(), *generated])
        # The tokens spell the whole prime, then exactly the printed text: nothing repeated or lost.
        assert spelled.startswith(head + owed.decode() + text)
        assert len(text) == 60


def test_greedy_healing_picks_the_best_token_that_spells_the_tail(bpe_run, monkeypatch):
    run = load_run(bpe_run)
    tok = run.tokenizer
    prime = "Alice was beginn"
    token_bytes = [tok.token_bytes(i) for i in range(tok.vocab_size)]
    context, owed = heal_prime(tok.encode(prime), token_bytes)
    steps = record_tokens(monkeypatch)
    generate_text(run, prime=prime, length=5, temperature=0.0)
    with torch.no_grad():
        logits, _ = run.model(torch.tensor([context], dtype=torch.long))
    allowed = [i for i, b in enumerate(token_bytes) if b and (b.startswith(owed) or owed.startswith(b))]
    best = max(allowed, key=lambda i: float(logits[0, -1, i]))
    assert int(steps[0][0]) == best


def test_sampled_subword_text_is_always_valid_utf8(bpe_run):
    run = load_run(bpe_run)
    tok = run.tokenizer
    high_bytes = [i for i in range(tok.vocab_size) if len(tok.token_bytes(i)) == 1 and tok.token_bytes(i)[0] >= 0x80]
    assert len(high_bytes) == 128
    with torch.no_grad():  # make the byte-fallback pieces likely, stray continuation bytes included
        run.model.head.bias[high_bytes] += 6.0
    texts = generate_text(run, prime="Alice", length=200, seed=0, num_samples=4, temperature=1.5)
    assert all(len(t) == 200 and "\ufffd" not in t for t in texts)
    assert any(ord(c) > 127 for t in texts for c in t)  # bytes were sampled, and spelled characters


def test_bf16_and_int8_stepping_keep_the_held_out_loss_within_half_a_percent(trained_run):
    """int8 as charnn sample steps one sample (fp32 head), and as a server steps (int8 head too)."""
    from charnn.tasks.lm.sample import stepped_nll

    run = load_run(trained_run)
    tokens = run.tokenizer.encode(run.validation_path.read_text(encoding="utf-8"))
    exact = stepped_nll(run.model, tokens, rows=16)
    assert stepped_nll(run.model, tokens, torch.bfloat16, rows=16) == pytest.approx(exact, rel=0.005)
    assert stepped_nll(run.model, tokens, torch.int8, rows=16) == pytest.approx(exact, rel=0.005)
    served = stepped_nll(run.model, tokens, torch.int8, rows=16, exact_rows=True)
    assert served == pytest.approx(exact, rel=0.005) and served != stepped_nll(run.model, tokens, torch.int8, rows=16)
    # the fp32 stepper is the fused model: the same cut scored by the model's forward
    length = (len(tokens) - 1) // 16
    ids = torch.from_numpy(tokens[: 16 * length + 1].astype("int64"))
    with torch.no_grad():
        logits, _ = run.model(ids[:-1].view(16, length))
    fused = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[1:].view(16, length).flatten())
    assert exact == pytest.approx(float(fused), rel=1e-5)


def test_finished_rows_stop_costing_compute_and_change_no_text(trained_run, monkeypatch):
    import charnn.tasks.lm.sample

    run = load_run(trained_run)
    sizes = []
    make_stepper = run.model.stepper

    def sized_stepper(dtype=None):
        step = make_stepper(dtype)

        def sized(token, state):
            sizes.append(len(token))
            return step(token, state)

        return sized

    monkeypatch.setattr(run.model, "stepper", sized_stepper)
    # Each row starts from its own state, so that greedy samples differ and end at different steps.
    zeros = run.model.initial_state
    noise = [
        tuple(torch.randn_like(s, generator=torch.Generator().manual_seed(1)) for s in layer) for layer in zeros(12)
    ]
    monkeypatch.setattr(
        run.model, "initial_state", lambda n, device=None: [tuple(s.clone() for s in ly) for ly in noise]
    )
    stops = ("e", "a", " ")
    shrunk = generate_text(run, prime="The", length=80, temperature=0, num_samples=12, stop=stops)
    assert len(set(shrunk)) > 3
    assert sizes[0] == 12 and sizes[-1] < 12 and sizes == sorted(sizes, reverse=True)
    steps_shrunk = sum(sizes)
    sizes.clear()
    monkeypatch.setattr(charnn.tasks.lm.sample, "COMPACT_AT", 0.0)
    whole = generate_text(run, prime="The", length=80, temperature=0, num_samples=12, stop=stops)
    assert shrunk == whole and set(sizes) == {12} and steps_shrunk < sum(sizes)


@pytest.mark.parametrize(
    ("cell", "hidden", "embed"),
    [("lstm", 64, 16), ("gru", 64, 16), ("rnn", 64, 16), ("lstm", 20, 8), ("gru", 40, 24)],  # odd widths: fp32
)
def test_the_int8_stepper_follows_the_model_for_every_cell(cell, hidden, embed):
    from charnn.config import ModelConfig
    from charnn.model import RecurrentLM

    torch.manual_seed(0)
    model = RecurrentLM(ModelConfig(vocab_size=30, cell=cell, layers=2, hidden=hidden, embed=embed)).eval()
    tokens = torch.randint(0, 30, (3, 20))
    with torch.no_grad():
        full, _ = model(tokens)
    step, state = model.stepper(torch.int8), model.initial_state(3)
    for t in range(tokens.shape[1]):
        logits, state = step(tokens[:, t], state)
        torch.testing.assert_close(logits, full[:, t], rtol=0.05, atol=0.02)


@pytest.mark.parametrize(
    "options",
    [
        dict(cell="lstm", hidden=512, embed=64),
        dict(cell="gru", hidden=64, embed=16, tie_weights=True),  # a projection before the tied head
        dict(cell="rnn", hidden=32, embed=32, tie_weights=True),
    ],
)
def test_an_exact_rows_stepper_gives_each_row_the_same_bits_in_any_company(options):
    """The server's promise: a row's logits alone and among 1-66 others are equal to the last bit."""
    from charnn.config import ModelConfig
    from charnn.model import RecurrentLM

    torch.manual_seed(0)
    model = RecurrentLM(ModelConfig(vocab_size=97, layers=2, **options)).eval()
    step = model.stepper(torch.int8, exact_rows=True)
    assert step.exact
    tokens = torch.randint(0, 97, (67, 6))

    def run(rows: list[int]) -> torch.Tensor:
        state, out = model.initial_state(len(rows)), []
        for t in range(tokens.shape[1]):
            logits, state = step(tokens[rows, t], state)
            out.append(logits)
        return torch.stack(out, dim=1)  # (B, T, V)

    alone = torch.cat([run([i]) for i in range(67)])
    for size in (2, 5, 16, 17, 64, 67):
        rows = torch.randperm(67)[:size].tolist()
        assert torch.equal(run(rows), alone[rows]), f"a batch of {size} changed a row's logits"
    assert not model.stepper(None, exact_rows=True).exact  # fp32 gemms promise no such thing


def test_drawing_tokens_ahead_as_on_a_gpu_gives_the_same_text(trained_run, monkeypatch):
    """A GPU draws a chunk of tokens before the host reads them; lengths and stops still cut exactly."""
    import charnn.tasks.lm.sample as sample_module

    run = load_run(trained_run)
    cases = [
        dict(length=300, seed=3),
        dict(length=7, seed=3),
        dict(length=400, seed=5, stop=("e ",)),
        dict(length=150, seed=8, num_samples=4),  # no row ends early: the batch never shrinks
    ]
    one_at_a_time = [generate_text(run, prime="The ", **case) for case in cases]
    monkeypatch.setattr(sample_module, "_steps_ahead", lambda device: 32)
    ahead = [generate_text(run, prime="The ", **case) for case in cases]
    assert ahead == one_at_a_time
    assert len(ahead[1][0]) == 7 and "e " not in ahead[2][0] and len(ahead[2][0]) < 400


@pytest.mark.parametrize("path", ["host", "device"])
def test_a_served_rows_draw_is_its_own_whatever_its_neighbours_cut(path):
    """The server's batch draws each row with its own settings and random stream: a row that cuts
    nothing draws the same tokens alone and beside rows that cut (top-k, top-p), and those keep to their cut.
    ``device``: the arithmetic a GPU runs, here on the CPU."""
    from types import SimpleNamespace

    import numpy as np

    from charnn.config import ModelConfig
    from charnn.model import RecurrentLM
    from charnn.tasks.lm.batcher import Batcher

    vocab = 60
    batcher = Batcher(RecurrentLM(ModelConfig(vocab_size=vocab, layers=1, hidden=16, embed=8)).eval())
    logits = torch.randn(4, vocab, generator=torch.Generator().manual_seed(0)) * 2
    settings = [(1.0, 0, 1.0), (0.8, 5, 1.0), (1.2, 0, 0.6), (1.0, 3, 0.9)]  # temperature, top_k, top_p

    def draws(rows: list[int]) -> np.ndarray:
        batcher.rows = [
            SimpleNamespace(
                temperature=settings[i][0],
                top_k=settings[i][1],
                top_p=settings[i][2],
                rng=np.random.default_rng([7, i]),
                banned=torch.zeros(vocab, dtype=torch.bool),
                utf8=SimpleNamespace(enabled=False),
                healing=SimpleNamespace(active=lambda: False),
                top_logprobs=None,
                biases=None,
            )  # fmt: skip
            for i in rows
        ]
        batcher._settings()
        draw = batcher._draw_on_host if path == "host" else batcher._draw_on_device
        return np.array(
            [np.asarray(draw(logits[rows].numpy() if path == "host" else logits[rows])) for _ in range(300)]
        )

    together = draws([0, 1, 2, 3])
    for i in range(4):
        assert (draws([i])[:, 0] == together[:, i]).all(), f"row {i} drew otherwise beside the others"
    assert len(set(together[:, 0])) > 10  # the uncut row reaches far down its distribution
    assert set(together[:, 1]) <= set(torch.topk(logits[1], 5).indices.tolist())
    assert set(together[:, 3]) <= set(torch.topk(logits[3], 3).indices.tolist())
    assert len(set(together[:, 2])) < len(set(together[:, 0]))
