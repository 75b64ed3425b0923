"""A classifier under `charnn serve`: POST /v1/classify answers what `charnn classify predict --json`
prints; with ``"attention": true``, also each text's tokens and the weight the attention pooling
gave each (a classifier trained with another pooling answers ``null``)."""

from __future__ import annotations

from typing import Any

import torch

from charnn.tasks.classify.classifier import predict_lines
from charnn.tasks.classify.task import encode_texts, pad
from charnn.tasks.encoders.serving import EncoderService
from charnn.tokenizers.base import spelled


class ClassifyService(EncoderService):
    names_key = "labels"
    options = ("attention",)

    def answer(self, inputs: list[Any], options: dict[str, bool]) -> list[dict[str, Any]]:
        texts = [text.strip() for text in inputs]
        results = [{"label": label, "probabilities": probs} for label, probs in predict_lines(self.run, texts)]
        if options["attention"]:
            for result, (tokens, weights) in zip(results, self.attention(texts), strict=True):
                result.update(tokens=tokens, attention=weights)
        return results

    @torch.inference_mode()
    def attention(self, texts: list[str]) -> list[tuple[list[str], list[float] | None]]:
        """Each text's tokens as the classifier reads them, and the pooling's weight on each."""
        model, tokenizer = self.run.model, self.run.tokenizer
        device = next(model.parameters()).device
        out = []
        for ids in encode_texts(tokenizer, [t if t else " " for t in texts]):
            tokens = spelled([tokenizer.token_bytes(int(i)) for i in ids])  # as /v1/completions spells them
            weights = model.attention_weights(*pad([ids], device))
            out.append((tokens, None if weights is None else weights[0].float().cpu().tolist()))
        return out
