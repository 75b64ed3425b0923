"""Word taggers: a bidirectional encoder read at each word, one tag a word (BIO entities decoded whole).

task.py    the training task: padded sentences, accuracy (or entity F1) picks the model
tagger.py  a new run from tagged sentences (``train_tagger``), tagging, evaluation
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from charnn.tasks.encoders.kind import EncoderTask

MAX_WORD_LAYERS = 16
"""More word-level layers than this in a config.json is damage, not a tagger (the CLI's default is 1)."""


class Tagger(EncoderTask):
    kind = "tag"
    head = "tagger"
    names_key = "tags"
    data_noun = "tagged data"
    endpoint = "tag"
    loss_per = "word"

    @classmethod
    def service(cls, run: Any, limits: Any, worker: Any) -> Any:
        from charnn.tasks.tag.serving import TagService

        return TagService(run, limits, cls.kind, worker)

    @classmethod
    def build_model(cls, run_config: dict[str, Any], model_config: Any) -> Any:
        from charnn.model import WordTagger

        task = run_config["task"]
        word_layers = task.get("word_layers", 1)
        if not isinstance(word_layers, int) or not 0 <= word_layers <= MAX_WORD_LAYERS:
            raise ValueError(
                f"task.word_layers must be a whole number from 0 to {MAX_WORD_LAYERS}, not {word_layers!r}"
            )
        return WordTagger(model_config, len(task["tags"]), word_layers)

    @classmethod
    def session(cls, folder: Path, run_config: dict[str, Any], model: Any, config: Any, world: Any, device: Any) -> Any:
        from charnn.tasks.tag.task import TagTask

        return TagTask.from_folder(folder, run_config, model, config, world, device)
