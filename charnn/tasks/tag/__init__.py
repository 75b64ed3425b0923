"""Word taggers: a bidirectional encoder read at each word, one tag a word (BIO entities decoded whole).

task.py    the training task: padded sentences, accuracy (or entity F1) picks the model
tagger.py  a new run from tagged sentences (``train_tagger``), tagging, evaluation
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from charnn.tasks.encoders.kind import EncoderTask


class Tagger(EncoderTask):
    kind = "tag"
    noun = "a tagger"
    run_noun = "tagger run"
    use_with = "charnn tag predict / eval"
    train_command = "charnn tag train"
    names_key = "tags"
    start_hint = "pass the tagged data to start it: charnn tag train DATA"

    @classmethod
    def build_model(cls, run_config: dict[str, Any], model_config: Any) -> Any:
        from charnn.model import WordTagger

        task = run_config["task"]
        return WordTagger(model_config, len(task["tags"]), int(task.get("word_layers", 1)))

    @classmethod
    def session(cls, folder: Path, run_config: dict[str, Any], model: Any, config: Any, world: Any, device: Any) -> Any:
        from charnn.tasks.tag.task import TagTask

        return TagTask.from_folder(folder, run_config, model, config, world, device)
