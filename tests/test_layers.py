"""The shape of the code: a kind of run is named in its own package only, and files and
functions stay small enough to hold in mind (docs/design.md). The import layers themselves
are import-linter's contracts in pyproject.toml, which bin/test runs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "charnn"
KIND_AWARE = ("charnn/tasks/", "charnn/model/")
"""Where a kind of run may be named: the task packages (and the registry) and the networks."""

KIND_OR_METRIC = re.compile(r"""["'](?:lm|classify|tag)["']|\bval_(?:accuracy|f1|macro_f1|styles)\b""")
"""A kind's name as a string, or a metric that only some kinds have."""

JUSTIFIED = {
    ("charnn/cli/__init__.py", 'app.add_typer(classify_app, name="classify")'): "the subcommand's name",
    ("charnn/cli/__init__.py", 'app.add_typer(tag_app, name="tag")'): "the subcommand's name",
    ("charnn/cli/tag.py", 'print_scores("tag", figures["tags"], figures)'): "a table's column heading",
    ("charnn/text/tagged.py", 'what = "tag" if word else ("form" if conllu else "token")'): "a file's column",
}
"""Lines outside KIND_AWARE that may match KIND_OR_METRIC, and why: none of them dispatches on a kind."""

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_TOP_LEVEL_MODULES = 10


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_no_kind_or_kind_metric_is_named_outside_the_tasks():
    found = []
    for path in _sources():
        if _name(path).startswith(KIND_AWARE):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if KIND_OR_METRIC.search(line) and (_name(path), line.strip()) not in JUSTIFIED:
                found.append(f"{_name(path)}:{number}: {line.strip()}")
    assert not found, "a kind is named outside charnn/tasks/ (move it into its task):\n" + "\n".join(found)


def test_the_justified_exceptions_still_exist():
    """An exception whose line is gone must leave the list, so that the list cannot hide a new one."""
    lines = {(_name(p), line.strip()) for p in _sources() for line in p.read_text(encoding="utf-8").splitlines()}
    assert set(JUSTIFIED) <= lines


def test_the_kind_check_finds_a_kind_named_outside_the_tasks():
    assert KIND_OR_METRIC.search('if kind == "classify":')
    assert KIND_OR_METRIC.search('metrics.get("val_accuracy")')
    assert KIND_OR_METRIC.search("event.val_styles")
    assert not KIND_OR_METRIC.search("def _eval_styles(run):")  # a word that holds a metric's name


def test_no_module_is_longer_than_a_reader_can_hold():
    long = [f"{_name(p)}: {n} lines" for p in _sources() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not long, f"split these along a real seam (at most {MAX_MODULE_LINES} lines):\n" + "\n".join(long)


def _body_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function's body, its docstring left out (a command's option declarations are its signature)."""
    body = function.body
    if (
        isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        body = body[1:]
    return body[-1].end_lineno - body[0].lineno + 1 if body else 0


def test_no_function_body_is_longer_than_a_screen():
    long = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _body_lines(node) > MAX_FUNCTION_LINES:
                long.append(f"{_name(path)}:{node.lineno} {node.name}: {_body_lines(node)} lines")
    assert not long, f"split these (at most {MAX_FUNCTION_LINES} lines of body):\n" + "\n".join(long)


def test_charnn_keeps_few_modules_at_its_top_level():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


@pytest.mark.parametrize(
    "source", ["def f():\n    x = 1\n" + "    x += 1\n" * 70, '''def f():\n    """Doc."""\n    return 1\n''']
)
def test_the_function_measure_counts_the_body_alone(source):
    function = ast.parse(source).body[0]
    assert _body_lines(function) == (71 if "x += 1" in source else 1)
