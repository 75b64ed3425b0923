"""Sentence classifiers: a bidirectional encoder and a pooled head, one label a text.

task.py        the training task: padded batches of whole texts, accuracy picks the model
ngrams.py      the n-gram part beside the encoder: hashed n-grams, a naive-Bayes-weighted regression
classifier.py  a new run from labelled texts (``train_classifier``), prediction, evaluation
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from charnn.tasks.encoders.kind import EncoderTask


class Classifier(EncoderTask):
    kind = "classify"
    head = "classifier"
    names_key = "labels"
    data_noun = "labelled data"
    endpoint = "classify"

    @classmethod
    def service(cls, run: Any, limits: Any, worker: Any) -> Any:
        from charnn.tasks.classify.serving import ClassifyService

        return ClassifyService(run, limits, cls.kind, worker)

    @classmethod
    def build_model(cls, run_config: dict[str, Any], model_config: Any) -> Any:
        from charnn.model import SentenceClassifier

        task = run_config["task"]
        from charnn.errors import CheckpointError
        from charnn.tasks.classify.ngrams import EXTRAS, OLD_CHAR_GRAMS

        ngrams = task.get("ngrams") or {}
        unknown = sorted(set(ngrams.get("extras", ())) - set(EXTRAS))
        if unknown:  # reading its texts without them would predict from other buckets than it was fitted on
            raise CheckpointError(
                f"config.json's n-grams read {unknown[0]!r}, unknown here; a newer charnn may read it"
            )
        return SentenceClassifier(
            model_config, len(task["labels"]), task.get("pool", "attention"), ngrams.get("buckets", 0),
            tuple(ngrams.get("extras", ())),  # a run made before the extras reads without them
            tuple(ngrams.get("chars", OLD_CHAR_GRAMS)),
        )  # fmt: skip

    @classmethod
    def session(cls, folder: Path, run_config: dict[str, Any], model: Any, config: Any, world: Any, device: Any) -> Any:
        from charnn.tasks.classify.task import ClassifyTask

        return ClassifyTask.from_folder(folder, run_config, model, config, world, device)
