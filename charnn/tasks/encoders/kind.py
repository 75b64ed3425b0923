"""What a classifier and a tagger are alike as kinds of run: accuracy picks the model and is plotted,
and `charnn info` shows their labels (a tagger's tags) and figures the same way."""

from __future__ import annotations

from typing import Any, ClassVar

from charnn.tasks.base import Summary, Task
from charnn.tasks.encoders import figures


class EncoderTask(Task):
    """A kind whose commands are `charnn KIND train | predict | eval`: its messages' names follow
    from ``kind``, ``head`` and ``data_noun``."""

    plotted = ("val_accuracy", "accuracy")
    loss_per = "text"
    names_key: ClassVar[str]
    """The task section's list of what it predicts: 'labels', 'tags'."""
    head: ClassVar[str]
    """What a run of it is, in a word: 'classifier'."""
    data_noun: ClassVar[str]
    """What it learns from: 'labelled data'."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if "kind" in cls.__dict__:
            cls.noun, cls.run_noun = f"a {cls.head}", f"{cls.head} run"
            cls.use_with, cls.train_command = f"charnn {cls.kind} predict / eval", f"charnn {cls.kind} train"
            cls.start_hint = f"pass the {cls.data_noun} to start it: {cls.train_command} DATA"
        super().__init_subclass__(**kwargs)

    @classmethod
    def summary(cls, run_config: dict[str, Any], results: dict[str, Any]) -> Summary:
        names = run_config["task"].get(cls.names_key)
        return Summary(
            fields={
                "labels": names,
                "best_val_accuracy": results.get("val_accuracy"),
                "best_val_macro_f1": results.get("val_macro_f1"),
                "best_val_f1": results.get("val_f1"),
            },
            task=cls.head + (f": {', '.join(names)}" if names else ""),
            best=figures.info_best(results),
        )
