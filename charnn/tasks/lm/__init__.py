"""Language models: stream, record and style runs (ways to lay text out), their sampling and evaluation.

prepare.py   a new stream or record run from a corpus (``train``)
styles.py    style runs: one conditional model on several styles (``train_styles``)
task.py      the training task: TBPTT windows over laid-out text, bits per character
sample.py    streamed sampling; evaluate.py scoring a text; novelty.py copies of training text
serving.py   `charnn serve`'s completions: requests (request.py) stepped together (batcher.py)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from charnn.tasks.base import Summary, Task


class LanguageModel(Task):
    kind = "lm"
    noun = "a language model"
    run_noun = "language-model run"
    use_with = "charnn sample / charnn eval"
    train_command = "charnn train"
    start_hint = "pass the corpus to start it: charnn train CORPUS"
    endpoint = "completions"
    more_endpoints = ("cells",)

    @classmethod
    def service(cls, run: Any, limits: Any, worker: Any) -> Any:
        from charnn.tasks.lm.serving import CompletionService

        return CompletionService(run, limits, cls.kind, worker)

    @classmethod
    def build_model(cls, run_config: dict[str, Any], model_config: Any) -> Any:
        from charnn.model import RecurrentLM

        return RecurrentLM(model_config)

    @classmethod
    def session(cls, folder: Path, run_config: dict[str, Any], model: Any, config: Any, world: Any, device: Any) -> Any:
        from charnn.tasks.lm.task import LanguageModelTask

        return LanguageModelTask.from_folder(folder, run_config, model, config, world, device)

    @classmethod
    def summary(cls, run_config: dict[str, Any], results: dict[str, Any]) -> Summary:
        from charnn.tasks.lm.styles import style_rows, summary_styles
        from charnn.text.records import RecordFormat

        task = run_config.get("task") or {}
        data = run_config.get("data", {})
        styles = summary_styles(task, results)
        rows = []
        if task.get("records"):
            described = RecordFormat.from_dict(task["records"]).describe()
            counts = data.get("train_records"), data.get("val_records")
            shown = (
                f"{described}: {counts[0]:,} for training, {counts[1]:,} held out" if None not in counts else described
            )
            rows.append(("records", shown))
        rows += style_rows(styles or [])
        return Summary(
            fields={
                "reverse": bool(task.get("reverse")),
                "best_val_bits_per_char": results.get("val_bits_per_char"),
                "records": task.get("records"),
                "styles": styles,
            },
            task="language model" + (" (right to left)" if task.get("reverse") else ""),
            best=_best(results),
            rows=tuple(rows),
            trained_on=f"{len(styles)} styles: {', '.join(s['name'] for s in styles)}" if styles else None,
            tokenizer_note=" and a record boundary" if task.get("records") else "",
            reads_windows=True,
        )


def _best(results: dict[str, Any]) -> str | None:
    if results.get("val_bits_per_char") is None:
        return None
    nats = f"{results['val_loss']:.4f} nats/token, " if results.get("val_loss") is not None else ""
    step = f" (step {results['best_step']})" if results.get("best_step") is not None else ""
    return f"{nats}{results['val_bits_per_char']:.4f} bits/char{step}"
