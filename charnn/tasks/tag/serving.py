"""A tagger under `charnn serve`: POST /v1/tag answers what `charnn tag predict --json` prints.

``input`` is a sentence or a list of sentences; a sentence is a string (split on whitespace, as
a line of `tag predict`) or a list of its tokens (as `tag predict --tokens` reads them).
"""

from __future__ import annotations

import warnings
from typing import Any

from charnn.tasks.encoders.serving import EncoderService
from charnn.tasks.tag.tagger import LongSentenceWarning, tag_sentences


class TagService(EncoderService):
    names_key = "tags"
    input_noun = "a sentence or a non-empty list of sentences (a sentence: a string, or a list of its tokens)"

    def one_input(self, value: Any) -> bool:
        return isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(t, str) and t.strip() for t in value)
        )

    def answer(self, inputs: list[Any], options: dict[str, bool]) -> list[dict[str, Any]]:
        sentences = [text.split() if isinstance(text, str) else list(text) for text in inputs]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LongSentenceWarning)  # long sentences are tagged in pieces, as in the CLI
            tagged = list(tag_sentences(self.run, sentences))
        return [{"tokens": words, "tags": tags, "probabilities": probs} for words, tags, probs in tagged]
