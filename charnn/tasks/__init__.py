"""Tasks: what one kind of run trains. The loop (charnn.loop) asks a task for each step's
loss and for validation figures, and knows nothing else of it.

A task object is made for one training session, with its data loaded, and gives:

    kind              the name in config.json's "task" section ('lm', 'classify', 'tag')
    chars_per_step    characters of text one optimizer step reads (for chars/s)
    initial_carry()   this process's state carried into the next step ([] when none is)
    carry_template()  the whole batch's carried state, zeros: the shape the resume file holds
    own_rows(carry)   this process's part of a whole batch's carried state
    loss(net, step, carry, autocast) -> (loss, carry)
                      the mean loss of step ``step``'s batch; the batch is a function of
                      the step alone, so a resumed run reads what an uninterrupted one reads
    evaluate(model, final) -> (score, metrics)
                      validation figures; a lower score is a better model (the one kept)
"""

from __future__ import annotations

from typing import Any

from charnn.errors import CheckpointError

TASK_KINDS = ("lm", "classify", "tag")
TASK_NAMES = {"lm": "a language model", "classify": "a classifier", "tag": "a tagger"}
"""How messages name a run of each kind."""


def task_kind(run_config: dict[str, Any]) -> str:
    """The kind of run a config.json describes; a folder with no task (format 1) is a language model."""
    task = run_config.get("task")
    if task is None:
        return "lm"
    kind = task.get("kind") if isinstance(task, dict) else None
    if kind not in TASK_KINDS:
        raise CheckpointError(f"config.json names an unknown task {kind!r}; a newer charnn may read it")
    return kind


def build_model(run_config: dict[str, Any], model_config: Any) -> Any:
    """The untrained network of a run's kind, shaped by its config.json."""
    if task_kind(run_config) == "classify":
        from charnn.model import SentenceClassifier

        task = run_config["task"]
        return SentenceClassifier(model_config, len(task["labels"]), task.get("pool", "attention"))
    if task_kind(run_config) == "tag":
        from charnn.model import WordTagger

        task = run_config["task"]
        return WordTagger(model_config, len(task["tags"]), int(task.get("word_layers", 1)))
    from charnn.model import RecurrentLM

    return RecurrentLM(model_config)


def make_task(run_config: dict[str, Any], folder: Any, model: Any, config: Any, world: Any, device: Any) -> Any:
    """The task of a run folder for one training session, with its data loaded."""
    if task_kind(run_config) == "classify":
        from charnn.tasks.classify import ClassifyTask

        return ClassifyTask.from_folder(folder, run_config, model, config, world, device)
    if task_kind(run_config) == "tag":
        from charnn.tasks.tag import TagTask

        return TagTask.from_folder(folder, run_config, model, config, world, device)
    from charnn.tasks.lm import LanguageModelTask

    return LanguageModelTask.from_folder(folder, run_config, model, config, world, device)
