"""The cell view's figures: the ranking of units by a selected span, and `charnn show`'s refusals."""

from __future__ import annotations

import numpy as np
import pytest

from charnn.tasks.lm.cells import rank_units
from tests.serving import copied_runs


def test_a_unit_on_inside_the_span_and_off_outside_ranks_first():
    rng = np.random.default_rng(0)
    values = rng.normal(0, 0.1, size=(200, 8))
    inside = np.zeros(200, dtype=bool)
    inside[50:80] = True
    values[inside, 5] += 1.0  # unit 5 tracks the span
    values[inside, 2] -= 1.0  # unit 2 is off in it: last
    ranked = rank_units(values, inside)
    assert ranked[0][0] == 5 and ranked[-1][0] == 2
    column = values[:, 5]
    pooled = np.sqrt((column[inside].var() * 30 + column[~inside].var() * 170) / 200)
    assert ranked[0][1] == pytest.approx((column[inside].mean() - column[~inside].mean()) / pooled)
    assert ranked[0][1] > 8  # a clean on-off unit is many pooled deviations apart
    assert [gap for _, gap in ranked] == sorted((gap for _, gap in ranked), reverse=True)


def test_show_refuses_in_one_line_and_never_overwrites(run_cli, tmp_path):
    run = copied_runs(tmp_path, "lm")[0]
    text = tmp_path / "t.txt"
    text.write_text("Hello there, said the knight.\n", encoding="utf-8")
    page = tmp_path / "page.html"
    page.write_text("mine", encoding="utf-8")
    code, _, err = run_cli("show", text, "-m", run, "--out", page)
    assert code == 2 and "exists" in err and page.read_text(encoding="utf-8") == "mine"
    code, _, err = run_cli("show", text, "-m", run, "--out", tmp_path / "new.html", "--layer", "3")
    assert code == 2 and "--layer must be from 1 to 2" in err and not (tmp_path / "new.html").exists()
    code, _, err = run_cli("show", "-", "-m", run, "--out", tmp_path / "new.html", stdin=b"x")
    assert code == 2 and "too short" in err
    code, out, err = run_cli("show", "-", "-m", run, "--out", tmp_path / "new.html", stdin=b"Hello, knight.")
    assert code == 0 and out.strip() == str(tmp_path / "new.html")
    html = (tmp_path / "new.html").read_text(encoding="utf-8")
    assert "window.CHARNN_OFFLINE" in html and "Hello, knight." in html
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left behind
