"""A classifier under `charnn serve`: POST /v1/classify answers what `charnn classify predict --json` prints."""

from __future__ import annotations

from typing import Any

from charnn.tasks.classify.classifier import predict_lines
from charnn.tasks.encoders.serving import EncoderService


class ClassifyService(EncoderService):
    names_key = "labels"

    def answer(self, inputs: list[Any]) -> list[dict[str, Any]]:
        texts = [text.strip() for text in inputs]
        return [{"label": label, "probabilities": probs} for label, probs in predict_lines(self.run, texts)]
