from __future__ import annotations

import os
from pathlib import Path

# Tiny models run fastest on one thread, and the suite then leaves the other core to
# whatever else the machine runs (oversubscribed threads slow torch down several-fold).
# Set before torch is imported so that the charnn processes tests start inherit it too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
from hypothesis import settings

# CI (`.ci/run`) draws the property tests' examples from a fixed seed, so that a landing is judged on
# the same examples every time; elsewhere each run draws new ones, and finds what CI would not.
settings.register_profile("ci", derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

ROOT = Path(__file__).resolve().parents[1]
CORPORA = ROOT / "corpora"
SHARED = Path(os.environ.get("CHARNN_SHARED", ROOT.parent / "shared"))
"""The team's shared folder beside the repo (../shared): real corpora, their upstream mirror and
benchmark data sets. It is not in the repo; the tests that need it skip, saying so, without it.
CHARNN_SHARED points elsewhere (a missing folder shows which tests skip and why)."""
SHARED_CORPORA = SHARED / "corpora"
SHARED_DATASETS = SHARED / "datasets"


def needs_shared(path: Path, what: str) -> pytest.MarkDecorator:
    """Skip the test with a visible reason (bin/test lists it) where ``path`` under ../shared is absent.

    @needs_shared(SHARED_DATASETS / "sentiment-mr", "the sentiment-mr benchmark data")
    """
    if not SHARED.is_dir():
        missing = f"../shared is absent ({SHARED})"
    else:
        missing = f"../shared has no {path.relative_to(SHARED) if path.is_relative_to(SHARED) else path}"
    return pytest.mark.skipif(
        not path.exists(), reason=f"{missing}: this test needs {what}; it is the team's folder beside the repo"
    )


TINY_MODEL = dict(cell="lstm", layers=2, hidden=32, embed=16)


def tiny_train_config(**overrides):
    from charnn.config import TrainConfig

    settings = dict(
        seq_len=32, batch_size=4, steps=30, eval_every=10, log_every=5, seed=7, device="cpu", precision="fp32"
    )
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(scope="session")
def fantasy_text() -> str:
    return (CORPORA / "fantasy.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def small_text(fantasy_text: str) -> str:
    """About 6,000 characters of prose: enough for tiny models to learn something."""
    return fantasy_text[:6000]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, small_text: str) -> Path:
    """A tiny LSTM run folder trained for 30 steps; treat it as read-only."""
    from charnn.tasks.lm.prepare import train
    from charnn.text.corpus import Corpus

    folder = tmp_path_factory.mktemp("runs") / "tiny"
    corpus = Corpus(text=small_text, name="tiny", sources=("tiny.txt",))
    train(corpus, folder, TINY_MODEL, tiny_train_config())
    return folder


@pytest.fixture(scope="session")
def bpe_run(tmp_path_factory: pytest.TempPathFactory, fantasy_text: str) -> Path:
    """A tiny LSTM over a 400-piece BPE vocabulary, trained for 20 steps; read-only."""
    from charnn.tasks.lm.prepare import train
    from charnn.text.corpus import Corpus

    folder = tmp_path_factory.mktemp("runs") / "bpe"
    corpus = Corpus(text=fantasy_text, name="bpe", sources=("fantasy.txt",))
    config = tiny_train_config(steps=20, eval_every=20)
    train(corpus, folder, TINY_MODEL, config, tokenizer_kind="bpe", tokenizer_options={"vocab_size": 400})
    return folder


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run `charnn ARGS` in process; returns (exit code, stdout, stderr)."""
    import io
    import sys

    from charnn.cli import main

    def run(*args: str, stdin: bytes = b"") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


class StreamDecoder:
    """Decodes generated ids one at a time, as sampling does, from each token's bytes."""

    def __init__(self, tokenizer) -> None:
        import codecs

        self._bytes = tokenizer.token_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._decoder.decode(self._bytes(token_id))

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)
