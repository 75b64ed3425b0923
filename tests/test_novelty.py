import pytest

from charnn.tasks import load_run
from charnn.tasks.lm.novelty import NoveltyChecker, longest_shared_span, training_text


@pytest.mark.parametrize(
    ("sample", "text", "expected"),
    [
        ("hello world", "say hello there", (6, "hello ")),
        ("xyz", "abc", (0, "")),
        ("abcabc", "zzabcabczz", (6, "abcabc")),
        ("", "abc", (0, "")),
        ("aXbcdYbcdeZ", "bcde bcd", (4, "bcde")),
    ],
)
def test_longest_shared_span(sample, text, expected):
    assert longest_shared_span(sample, text) == expected


def test_longest_shared_span_matches_brute_force():
    import random

    rng = random.Random(0)
    for _ in range(200):
        text = "".join(rng.choice("abc") for _ in range(rng.randint(0, 30)))
        sample = "".join(rng.choice("abcd") for _ in range(rng.randint(0, 12)))
        brute = max(
            (j - i for i in range(len(sample) + 1) for j in range(i, len(sample) + 1) if sample[i:j] in text),
            default=0,
        )
        assert longest_shared_span(sample, text)[0] == brute


def test_line_records_are_copies_only_when_whole():
    checker = NoveltyChecker("Quiet Fog 1 2 3\nDeep Sea 4 5 6\n", stops=("\n",))
    assert checker.is_copy("Deep Sea 4 5 6")
    assert not checker.is_copy("Deep Sea 4 5 7")
    assert not checker.is_copy("Deep Sea")
    overlap = checker.check("Deep Sea 9 9 9")
    assert overlap.novel and overlap.longest_shared_span == len("Deep Sea ")


def test_without_stop_a_copy_is_any_verbatim_stretch():
    checker = NoveltyChecker("once upon a time there was")
    assert checker.is_copy("upon a time")
    assert not checker.is_copy("upon a tide")


def test_training_text_round_trips_the_training_split(trained_run, small_text):
    run = load_run(trained_run)
    assert small_text.startswith(training_text(run))
    assert len(training_text(run)) == run.config["data"]["train_chars"]
