"""What a classifier and a tagger are alike as kinds of run: accuracy picks the model and is plotted,
and `charnn info` shows their labels (a tagger's tags) and figures the same way."""

from __future__ import annotations

from typing import Any, ClassVar

from charnn.tasks.base import Summary, Task
from charnn.tasks.encoders import figures


class EncoderTask(Task):
    plotted = ("val_accuracy", "accuracy")
    names_key: ClassVar[str]
    """The task section's list of what it predicts: 'labels', 'tags'."""

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
            task=cls.run_noun.split()[0] + (f": {', '.join(names)}" if names else ""),
            best=figures.info_best(results),
        )
