"""Conditional language models: one model trained on several styles, asked for one (or a blend).

A style is a name and its corpus files (``--style recipes=FILE``). Each style keeps its own
split (its record format, its held-out text or records), and training reads all of them
at once: the batch's rows are shared out among the styles, each row reading its own
style's text as a TBPTT stream (records in a fresh seeded order each pass), with the
style's learned vectors added to every layer's input at every step (charnn.model)::

    rows 0-7:   fantasy text ...      style 0
    rows 8-15:  recipes ...           style 1      (batch 32, four styles: 8 rows each)
    rows 16-23: paint names ...       style 2
    rows 24-31: shakespeare ...       style 3

So each style is read as fast as it would be alone with its share of the rows, and a
model trained for the sum of four single-style runs' steps has read as much of each
style as each of them. Sampling asks for one style (or weights over several: their
vectors are mixed); scoring a text under each style names the likeliest.

In config.json, the task section of a style run lists its styles in order::

    "styles": [{"name": "recipes", "rows": 8, "records": {...} or null, "sources": [...],
                "train_tokens": ..., "val_tokens": ..., "train_chars": ..., "val_chars": ...,
                "validation_span": [start, end], ...}, ...]

Their training tokens lie one after another in train.tokens (val.tokens likewise), the
record offsets of record styles one after another in train.records, and each style's
held-out text in validation.txt at its ``validation_span`` (characters).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charnn.errors import ConfigError
from charnn.text.records import RecordFormat

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
"""A style name: letters, digits, '_', '.', '-' (it names run folders and JSON keys)."""


@dataclass(frozen=True)
class StyleSource:
    """A style as the command line gives it: its name and its files."""

    name: str
    files: tuple[str, ...]


def parse_styles(specs: Sequence[str]) -> list[StyleSource]:
    """``--style NAME=FILE`` options (a name may repeat: several files) -> styles in first-seen order."""
    order: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        name = name.strip()
        if not sep:
            raise ConfigError(f"--style {spec!r} has no '='; write --style NAME=FILE, e.g. --style recipes=recipes.txt")
        check_name(name, f"--style {spec!r}")
        if not file:
            raise ConfigError(f"--style {spec!r} names no file; write --style {name}=FILE")
        order.setdefault(name, []).append(file)
    styles = [StyleSource(name, tuple(files)) for name, files in order.items()]
    check_distinct_files(styles)
    return styles


def styles_per_file(files: Sequence[str]) -> list[StyleSource]:
    """``--style-per-file a.txt b.txt``: one style per file, named after its stem."""
    styles: list[StyleSource] = []
    for file in files:
        if file == "-":
            raise ConfigError("--style-per-file names each style after its file; standard input has no name")
        name = Path(file).stem
        if any(s.name == name for s in styles):
            raise ConfigError(
                f"--style-per-file: two files are named {name!r}; name the styles yourself with --style NAME=FILE"
            )
        check_name(name, f"--style-per-file {file}")
        styles.append(StyleSource(name, (file,)))
    check_distinct_files(styles)
    return styles


def check_name(name: str, where: str) -> None:
    if not name:
        raise ConfigError(f"{where} has an empty style name; write --style NAME=FILE")
    if not NAME.match(name):
        raise ConfigError(
            f"{where}: style name {name!r} may hold only letters, digits, '_', '.' and '-', starting with a "
            "letter or digit"
        )


def check_distinct_files(styles: Sequence[StyleSource]) -> None:
    seen: dict[str, str] = {}
    for style in styles:
        for file in style.files:
            key = file if file == "-" else str(Path(file).resolve())
            if key in seen and seen[key] != style.name:
                raise ConfigError(
                    f"{file} is given under two styles ({seen[key]} and {style.name}); each text belongs to one style"
                )
            if key in seen:
                raise ConfigError(f"{file} is given twice under style {style.name}; name it once")
            seen[key] = style.name


def per_style_option(values: Sequence[str], names: Sequence[str], option: str) -> tuple[dict[str, str], str | None]:
    """``--val NAME=FILE`` / ``--records NAME=SPEC`` values -> {style: value}, and a value without a
    name (allowed for --records: every style that declares nothing)."""
    given: dict[str, str] = {}
    bare: str | None = None
    for value in values:
        name, sep, rest = value.partition("=")
        if sep and name in names:
            if name in given:
                raise ConfigError(f"{option} is given twice for style {name}; give it once")
            given[name] = rest
        elif sep and NAME.match(name):  # a separator is no name=...: "zz=line" is a style that is not there
            raise ConfigError(f"{option} {value!r} names an unknown style {name!r}; the styles are: {', '.join(names)}")
        elif option == "--val":
            raise ConfigError(f"with styles, give each style's validation text as --val NAME=FILE, not {value!r}")
        elif bare is not None:
            raise ConfigError(f"{option} is given twice without a style; give --{option[2:]} NAME=VALUE per style")
        else:
            bare = value
    return given, bare


def run_styles(run_config: dict[str, Any]) -> list[dict[str, Any]]:
    """The styles of a run's config.json, in order; [] for an unconditional run."""
    return list(((run_config.get("task") or {}).get("styles")) or [])


def style_names(run_config: dict[str, Any]) -> list[str]:
    return [s["name"] for s in run_styles(run_config)]


def rows_per_style(batch: int, count: int) -> list[int]:
    """The batch's rows shared out: as equal as they divide, the first styles taking one more."""
    if batch < count:
        raise ConfigError(
            f"--batch-size {batch} gives fewer rows than there are styles ({count}); each style needs a row: "
            f"pass --batch-size {count} or more"
        )
    base, extra = divmod(batch, count)
    return [base + (i < extra) for i in range(count)]


@dataclass(frozen=True)
class StyleChoice:
    """The style a sample or a score is asked for: weights over the run's styles."""

    weights: tuple[float, ...]
    label: str
    """How messages and JSON name it: 'recipes', or 'fantasy=0.5,shakespeare=0.5'."""
    main: int
    """The style with the largest weight: its record format and length cap apply."""


def parse_choice(spec: str, names: Sequence[str]) -> StyleChoice:
    """``--style NAME`` or a blend ``--style a=0.5,b=0.5`` (weights are normalised)."""
    known = ", ".join(names)
    weights = [0.0] * len(names)
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) == 1 and "=" not in parts[0]:
        parts = [f"{parts[0]}=1"]
    seen: set[str] = set()
    for part in parts:
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"--style {spec!r} does not parse; write --style NAME or --style a=0.5,b=0.5")
        if name not in names:
            raise ConfigError(f"unknown style {name!r}; this run's styles are: {known}")
        if name in seen:
            raise ConfigError(f"--style {spec!r} names {name} twice; give each style one weight")
        seen.add(name)
        try:
            weight = float(value)
        except ValueError:
            raise ConfigError(
                f"--style {spec!r}: the weight of {name} is {value!r}, not a number; write e.g. {name}=0.5"
            ) from None
        if not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"--style {spec!r}: the weight of {name} must be a finite number 0 or more, got {value}")
        weights[names.index(name)] = weight
    top = max(weights)
    if top <= 0:
        raise ConfigError(f"--style {spec!r}: the weights sum to 0; give at least one style a positive weight")
    scaled = [w / top for w in weights]  # by the largest first: 1e308 + 1e308 overflows to inf
    normal = tuple(w / sum(scaled) for w in scaled)
    main = max(range(len(names)), key=lambda i: normal[i])
    chosen = [(n, w) for n, w in zip(names, normal) if w > 0]
    label = chosen[0][0] if len(chosen) == 1 else ",".join(f"{n}={w:g}" for n, w in chosen)
    return StyleChoice(normal, label, main)


def drawn_choice(run_config: dict[str, Any], seed: int | None) -> StyleChoice:
    """A style drawn by the training mixture (each style's share of the rows), seeded."""
    import numpy as np

    styles = run_styles(run_config)
    rows = np.asarray([s["rows"] for s in styles], dtype=np.float64)
    rng = np.random.default_rng(None if seed is None else [seed % 2**64, 0x57E1])  # numpy's seeds are not negative
    index = int(rng.choice(len(styles), p=rows / rows.sum()))
    weights = tuple(1.0 if i == index else 0.0 for i in range(len(styles)))
    return StyleChoice(weights, styles[index]["name"], index)


def styled_run(run: Any, choice: StyleChoice) -> Any:
    """The run as one style sees it: that style's record format, longest record and training
    text, and the model set to the choice's weights, so sampling and scoring need nothing else."""
    import dataclasses

    import torch

    style = run_styles(run.config)[choice.main]
    config = dict(run.config)
    config["task"] = {**(run.config.get("task") or {}), "records": style.get("records")}
    config["data"] = {**run.config.get("data", {}), "longest_record": style.get("longest_record", 500)}
    config["style"] = {"index": choice.main, **style}
    run.model.use_style(torch.tensor(choice.weights))
    return dataclasses.replace(run, config=config)


def require_styles(run: Any, option: str) -> list[str]:
    names = style_names(run.config)
    if not names:
        raise ConfigError(f"{run.folder} was trained without styles; drop {option} (it applies to `--style` runs)")
    return names


def style_validation(run: Any, index: int) -> str:
    """A style's held-out text, as validation.txt keeps it."""
    from charnn.errors import CheckpointError

    start, end = run_styles(run.config)[index]["validation_span"]
    try:
        text = run.validation_path.read_text(encoding="utf-8")
    except OSError:
        raise CheckpointError(f"{run.folder} keeps no validation text; name a FILE to evaluate") from None
    return text[start:end]


def score_under(run: Any, choice: StyleChoice, text: str) -> Any:
    """``text`` scored under one style (charnn.tasks.lm.evaluate.Metrics): as that style's records when it
    has records (empty ones skipped, so any text can be scored under any style), else as a stream."""
    from charnn.tasks.lm.evaluate import evaluate_records, evaluate_tokens
    from charnn.text.records import RecordFormat

    styled = styled_run(run, choice)
    spec = styled.config["task"].get("records")
    if spec is None:
        return evaluate_tokens(styled.model, styled.tokenizer, text)
    fmt = RecordFormat.from_dict(spec)
    parts = [r for r in re.split(fmt.pattern, text.strip("\r\n")) if r.strip()]
    if not parts:
        from charnn.errors import CorpusError

        raise CorpusError("the text holds no record to score: it is empty or only separators")
    return evaluate_records(styled.model, styled.tokenizer, parts)


def one_style(names: Sequence[str], index: int) -> StyleChoice:
    return StyleChoice(tuple(1.0 if i == index else 0.0 for i in range(len(names))), names[index], index)


def summary_styles(task: dict[str, Any], results: dict[str, Any]) -> list[dict[str, Any]] | None:
    """`charnn info`'s styles: what each is, and its held-out bits per character when training has reported it."""
    if not task.get("styles"):
        return None
    figures = results.get("val_styles") or {}
    keep = ("name", "sources", "rows", "records", "validation", "train_chars", "val_chars")
    keep += ("train_records", "val_records")
    return [
        {**{k: s[k] for k in keep if k in s}, "val_bits_per_char": figures.get(s["name"], {}).get("val_bits_per_char")}
        for s in task["styles"]
    ]


def style_rows(styles: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """`charnn info`'s row for each style."""
    rows = []
    for style in styles:
        kind = RecordFormat.from_dict(style["records"]).describe() if style.get("records") else "a stream"
        bits = style.get("val_bits_per_char")
        shown = f"; held out {bits:.4f} bits/char" if bits is not None else ""
        rows.append(
            (
                f"style {style['name']}",
                f"{', '.join(style['sources'])} ({kind}, {style['rows']} rows of the batch{shown})",
            )
        )
    return rows


FOLDER_NAME_BYTES = 80
"""The longest default folder name a style run gets from its styles' names (a file name holds 255 bytes)."""


def styles_folder_name(names: list[str]) -> str:
    """A style run's default folder name: its styles' names joined by '+' ("poems+letters"), or as many as fit
    in FOLDER_NAME_BYTES and how many more ("s0+s1+s2+97-more"; 100 styles made a name the system refused)."""
    joined = "+".join(names)
    if len(joined.encode("utf-8")) <= FOLDER_NAME_BYTES:
        return joined
    kept: list[str] = []
    for name in names:
        if len("+".join([*kept, name]).encode("utf-8")) > FOLDER_NAME_BYTES - 12:  # room for "+NNNN-more"
            break
        kept.append(name)
    return "+".join([*kept, f"{len(names) - len(kept)}-more"]) if kept else f"{len(names)}-styles"
