"""The playground page in a real headless Chromium (Debian's chromium and chromium-driver, driven by
selenium) against a real `charnn serve`, and `charnn show`'s page opened from a file.

Each test saves a screenshot under its pytest temporary folder; with CHARNN_SCREENSHOTS=FOLDER
they also go there (docs/images is made so: docs/playground.md)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.serving import Server, copied_runs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="no chromium and chromedriver here (apt-get install chromium chromium-driver; .ci/run does)",
)
WAIT = 30


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("page")
    return [*copied_runs(folder, "lm", "records", "classifier", "tagger", "styles"), names_tagger(folder)]


def names_tagger(folder: Path) -> str:
    """A tagger that finds names (the pinned one, 60 steps old, tags every word O): 400 steps on
    sentences where capitalised words are B-name / I-name, about six seconds."""
    import random

    rng = random.Random(0)
    words = "the a went to walked home with and saw over under river hill stone road came left found".split()
    names = ["Mara", "Tam", "Dunmore", "Old Rooke", "Lesser Thimbleby", "Ned", "Ivy Hall", "Brackenford"]
    rows = []
    for _ in range(300):
        for _ in range(rng.randint(4, 8)):
            if rng.random() < 0.3:
                first, *rest = rng.choice(names).split()
                rows += [f"{first}\tB-name"] + [f"{word}\tI-name" for word in rest]
            else:
                rows.append(f"{rng.choice(words)}\tO")
        rows.append("")
    (folder / "names.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    argv = ["tag", "train", str(folder / "names.tsv"), "--out", str(folder / "names"), "--steps", "400"]
    argv += ["--batch-size", "16", "--layers", "1", "--hidden", "32", "--embed", "16", "--lr", "0.01", "--seed", "7"]
    argv += ["--device", "cpu", "--precision", "fp32"]
    result = subprocess.run(
        [sys.executable, "-m", "charnn", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return str(folder / "names")


@pytest.fixture(scope="module")
def server(runs):
    served = Server(*runs)
    yield served
    assert served.stop() == 0


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


def wait_for(driver, condition, timeout: float = WAIT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: condition(d))


def screenshot(driver, tmp_path: Path, name: str) -> None:
    driver.save_screenshot(str(tmp_path / f"{name}.png"))
    folder = os.environ.get("CHARNN_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def open_page(driver, server, tab: str) -> None:
    from selenium.webdriver.common.by import By

    console_errors(driver)  # what earlier tests left in the log
    driver.get(server.url + "/")
    wait_for(driver, lambda d: d.find_element(By.ID, "write-model").get_attribute("value"))
    driver.find_element(By.ID, f"tab-{tab}").click()


def fill(driver, element_id: str, text: str) -> None:
    from selenium.webdriver.common.by import By

    element = driver.find_element(By.ID, element_id)
    element.clear()
    element.send_keys(text)


def charnn_eval(source: Path, text: str, run: Path, *args: str) -> dict:
    """What ``charnn eval --json`` prints for ``text`` (written to ``source``) on ``run``."""
    source.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "charnn", "eval", str(source), "-m", str(run), *args, "--json"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def charnn_show(*args: str) -> subprocess.CompletedProcess:
    """`charnn show ARGS`, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "charnn", "show", *args], capture_output=True, text=True, env=env)


def test_the_page_loads_with_no_console_errors_and_lists_the_models(browser, server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    open_page(browser, server, "write")
    assert [o.text for o in Select(browser.find_element(By.ID, "write-model")).options] == ["lm", "records", "styles"]
    assert [o.get_attribute("textContent") for o in Select(browser.find_element(By.ID, "classify-model")).options] == [
        "classifier"
    ]
    assert browser.find_element(By.ID, "status").text == ""
    screenshot(browser, tmp_path, "page")
    assert console_errors(browser) == []


def test_a_sample_streams_in_and_an_alternative_replaces_the_tail(browser, server, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    open_page(browser, server, "write")
    fill(browser, "write-prime", "The ")
    fill(browser, "write-length", "80")
    fill(browser, "write-temp", "0")
    browser.find_element(By.ID, "write-go").click()
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#write-out .ch")) == 80)
    spans = browser.find_elements(By.CSS_SELECTOR, "#write-out .ch")
    assert all(span.get_attribute("style") for span in spans)  # shaded by probability
    # A newline or a space at a line's end has no width to hover: take a visible character.
    at = next(i for i, span in enumerate(spans) if i >= 10 and span.get_attribute("textContent").strip())
    ActionChains(browser).move_to_element(spans[at]).perform()
    wait_for(browser, lambda d: d.find_element(By.ID, "inspect").is_displayed())
    alternatives = browser.find_elements(By.CSS_SELECTOR, "#inspect button.alt")
    assert len(alternatives) == 5
    assert sum(float(a.get_attribute("data-p")) for a in alternatives) <= 1 + 1e-6
    screenshot(browser, tmp_path, "write")
    before = "".join(s.get_attribute("textContent") for s in spans[:at])
    chosen = alternatives[-1].get_attribute("data-text")
    alternatives[-1].click()
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#write-out .ch")) == at + 1 + 80)
    after = browser.find_elements(By.CSS_SELECTOR, "#write-out .ch")
    assert "".join(s.get_attribute("textContent") for s in after[:at]) == before
    assert after[at].get_attribute("textContent") == chosen and "chosen" in after[at].get_attribute("class")
    browser.find_element(By.ID, "write-undo").click()
    assert len(browser.find_elements(By.CSS_SELECTOR, "#write-out .ch")) == 80
    assert console_errors(browser) == []


def test_writing_anew_mid_stream_keeps_stop_and_undo_stops_it_and_a_late_score_is_dropped(browser, server, runs):
    import time

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    open_page(browser, server, "write")
    fill(browser, "write-prime", "The ")
    fill(browser, "write-length", "4096")
    written = "return state.write.entries.filter((e) => !e.prime).length"
    browser.find_element(By.ID, "write-go").click()
    wait_for(browser, lambda d: d.execute_script(written) > 40)
    browser.find_element(By.ID, "write-go").click()  # as choosing an alternative does: a new stream over the old
    wait_for(browser, lambda d: d.execute_script(written) > 40)
    time.sleep(0.5)  # the first stream's end has come by now
    # before: the first stream's end disabled Stop and dropped the second stream's controller
    assert browser.find_element(By.ID, "write-stop").is_enabled()
    browser.find_element(By.ID, "write-undo").click()  # back to the first text, the stream stopped
    undone = browser.execute_script(written)
    time.sleep(1.0)
    assert browser.execute_script(written) == undone  # before: the running stream went on writing into it
    assert not browser.find_element(By.ID, "write-stop").is_enabled()

    browser.find_element(By.ID, "tab-score").click()
    Select(browser.find_element(By.ID, "score-model")).select_by_value("records")
    fill(browser, "score-text", "Crimson Dawn\nBlue Sky\n")
    browser.execute_script(  # the answer comes a second late: the user has chosen another model by then
        "const f = window.fetch; window.fetch = (...a) => new Promise((r) => setTimeout(r, 1000)).then(() => f(...a));"
    )
    browser.find_element(By.ID, "score-go").click()
    Select(browser.find_element(By.ID, "score-model")).select_by_value("lm")
    time.sleep(2.5)
    # before: the records run's figure was shown under "lm", worded as the lm's
    assert browser.find_element(By.ID, "score-bpc").text == ""
    browser.find_element(By.ID, "score-go").click()  # asked again, of the model chosen: shown
    wait_for(browser, lambda d: d.find_element(By.ID, "score-bpc").text)
    assert console_errors(browser) == []


def test_cell_spans_stay_only_over_the_same_tokens_and_the_info_counts_characters_and_tokens(browser, server):
    from selenium.webdriver.common.by import By

    open_page(browser, server, "cells")
    values = "values: arguments[0].map((_, i) => [i % 2])"
    read = f"showCells({{tokens: arguments[0], {values}, units: 1, layer: 0, state: 'hidden'}});"
    browser.execute_script(read + "state.cells.spans = [[1, 3]];", list("abcd"))
    browser.execute_script(read, list("abcd"))  # the same text, the same tokens: another layer, say
    assert browser.execute_script("return state.cells.spans") == [[1, 3]]
    assert browser.find_element(By.ID, "cells-info").text.startswith("4 characters; layer 1")
    browser.execute_script(read, ["ab", "cd"])  # the same text cut into other tokens: a subword run
    # before: the spans (token indices of the other run) stayed, past the end of this one's two tokens
    assert browser.execute_script("return state.cells.spans") == []
    assert browser.find_element(By.ID, "cells-info").text.startswith("4 characters in 2 tokens; layer 1")
    assert console_errors(browser) == []


def test_the_keyboard_alone_writes_inspects_and_chooses_and_records_and_styles_write(browser, server, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    def keys(*pressed):
        ActionChains(browser).send_keys(*pressed).perform()

    def done(driver):  # the stream has closed: Stop is disabled again
        return driver.find_element(By.ID, "write-stop").get_attribute("disabled") is not None

    def written():
        return "".join(s.get_attribute("textContent") for s in browser.find_elements(By.CSS_SELECTOR, "#write-out .ch"))

    open_page(browser, server, "write")
    fill(browser, "write-prime", "The ")
    fill(browser, "write-temp", "0")
    fill(browser, "write-length", "30")
    browser.find_element(By.ID, "write-go").send_keys(Keys.ENTER)  # Enter on the focused button
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#write-out .ch")) == 30 and done(d))
    assert browser.switch_to.active_element.get_attribute("id") == "write-go"
    keys(Keys.TAB)  # Stop is disabled once the sample is in: Undo, then the text
    assert browser.switch_to.active_element.get_attribute("id") == "write-undo"
    keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "write-out"
    keys(*[Keys.ARROW_RIGHT] * 5)  # to the fifth character: the inspector opens on it
    assert browser.switch_to.active_element.get_attribute("data-index") == "4"
    wait_for(browser, lambda d: d.find_element(By.ID, "inspect").is_displayed())
    before = written()[:4]
    keys(Keys.ENTER)  # into the alternatives
    assert "alt" in browser.switch_to.active_element.get_attribute("class")
    keys(Keys.TAB)
    chosen = browser.switch_to.active_element.get_attribute("data-text")
    keys(Keys.ENTER)  # the second alternative: the text is cut there and goes on from it
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#write-out .ch")) == 5 + 30 and done(d))
    assert written()[:5] == before + chosen  # the prime is not shown: the 30 written, cut at 5, 30 more
    # the keyboard is back on the chosen character (it fell to the page's start), the inspector closed
    assert browser.switch_to.active_element.get_attribute("data-index") == "4"
    assert not browser.find_element(By.ID, "inspect").is_displayed()
    keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT)
    wait_for(browser, lambda d: d.find_element(By.ID, "inspect").is_displayed())
    keys(Keys.ENTER)  # into the alternatives, then Escape: back on the character they were for
    assert "alt" in browser.switch_to.active_element.get_attribute("class")
    keys(Keys.ESCAPE)
    assert not browser.find_element(By.ID, "inspect").is_displayed()
    assert browser.switch_to.active_element.get_attribute("data-index") == "2"

    Select(browser.find_element(By.ID, "write-model")).select_by_value("records")  # a record run
    another = browser.find_element(By.ID, "write-another")
    assert another.is_displayed()
    another.send_keys(Keys.ENTER)
    wait_for(browser, lambda d: done(d) and written())
    assert "\n" not in written().strip("\n")  # one name a line: a record, and no more
    entries = browser.execute_script("return state.write.entries")
    at = next(i for i, e in enumerate(entries) if e["top"] and any(text == "" for text, _ in e["top"]))
    kept = "".join(e["text"] for e in entries[:at])
    browser.execute_script("choose(arguments[0], '', -1)", at)  # as a click on the record's end ('') does
    wait_for(browser, lambda d: d.find_element(By.ID, "status").text.startswith("The record ends here"))
    time.sleep(0.5)
    assert written() == kept and done(browser)  # the record ends at the choice: nothing written after it

    Select(browser.find_element(By.ID, "write-model")).select_by_value("styles")  # a style run, a blend
    assert not another.is_displayed() and browser.find_element(By.ID, "write-style").is_displayed()
    fill(browser, "write-style", "prose=0.5,names=0.5")
    browser.find_element(By.ID, "write-go").send_keys(Keys.ENTER)
    wait_for(browser, lambda d: done(d) and written())
    assert browser.find_element(By.ID, "status").text == ""
    assert console_errors(browser) == []
    fill(browser, "write-style", "poetry")
    browser.find_element(By.ID, "write-go").send_keys(Keys.ENTER)
    wait_for(browser, lambda d: d.find_element(By.ID, "status").text.startswith("Refused: "))
    assert "poetry" in browser.find_element(By.ID, "status").text
    errors = console_errors(browser)
    assert errors and all("status of 400" in error for error in errors)  # the refusal, and nothing else


def test_a_scored_text_shows_the_bits_per_character_of_charnn_eval(browser, server, runs, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from charnn.tasks import load_run
    from charnn.tasks.lm.evaluate import evaluate_text

    text = "The dragon turned, and the knight ran back to the gate."
    open_page(browser, server, "score")
    fill(browser, "score-text", text)
    browser.find_element(By.ID, "score-go").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "score-bpc").text)
    shown = float(browser.find_element(By.ID, "score-bpc").get_attribute("data-bpc"))
    assert shown == pytest.approx(evaluate_text(load_run(runs[0]), text).bits_per_char, rel=1e-5)
    assert (
        f"{evaluate_text(load_run(runs[0]), text).bits_per_char:.4f}" in browser.find_element(By.ID, "score-bpc").text
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "#score-out .ch")) == len(text)
    screenshot(browser, tmp_path, "score")
    # a style run scores under the style given, as `charnn eval --style` does
    assert not browser.find_element(By.ID, "score-style").is_displayed()
    Select(browser.find_element(By.ID, "score-model")).select_by_value("styles")
    assert browser.find_element(By.ID, "score-style").get_attribute("value") == "prose"  # the first, not none
    assert browser.find_element(By.ID, "score-bpc").text == ""  # the other run's figure went with it
    blend = "prose=0.7,names=0.3"  # a stream (prose leads); no style picked at random scores as it does
    fill(browser, "score-style", blend)
    browser.find_element(By.ID, "score-go").click()
    figure = lambda d: d.find_element(By.ID, "score-bpc").get_attribute("data-bpc")  # noqa: E731
    wait_for(browser, lambda d: figure(d) is not None and float(figure(d)) != shown)  # cleared as the run changed
    source = tmp_path / "text.txt"
    styled = float(browser.find_element(By.ID, "score-bpc").get_attribute("data-bpc"))
    assert styled == pytest.approx(charnn_eval(source, text, runs[4], "--style", blend)["bits_per_char"], rel=1e-5)
    # under a style that reads records (a blend's largest part), the text is read and counted as on a record run
    blend, names = "prose=0.2,names=0.8", "Crimson Dawn\nBlue Sky\n"
    fill(browser, "score-text", names)
    fill(browser, "score-style", blend)
    browser.find_element(By.ID, "score-go").click()
    wait_for(browser, lambda d: "record's end" in d.find_element(By.ID, "score-bpc").text)
    assert "over 22 characters" in browser.find_element(By.ID, "score-bpc").text
    styled = float(browser.find_element(By.ID, "score-bpc").get_attribute("data-bpc"))
    scored = charnn_eval(source, names, runs[4], "--style", blend)
    assert scored["chars"] == 22 and styled == pytest.approx(scored["bits_per_char"], rel=1e-5)
    # a record run: one record, and the figure says that charnn eval also counts the record's end
    Select(browser.find_element(By.ID, "score-model")).select_by_value("records")
    fill(browser, "score-text", "Crimson Dawn")
    browser.find_element(By.ID, "score-go").click()
    wait_for(browser, lambda d: "over 12 characters" in d.find_element(By.ID, "score-bpc").text)
    assert "record's end" in browser.find_element(By.ID, "score-bpc").text
    record = float(browser.find_element(By.ID, "score-bpc").get_attribute("data-bpc"))
    scored = charnn_eval(source, "Crimson Dawn", runs[1])
    assert scored["chars"] == len("Crimson Dawn") + 1  # the record's end
    end_bits = scored["bits_per_char"] * scored["chars"] - record * len("Crimson Dawn")
    assert 0 < end_bits < 20  # the same characters, and one more
    # several records, each ending at its separator: each read from the boundary, as charnn eval reads them
    fill(browser, "score-text", "Crimson Dawn\nBlue Sky\n")
    browser.find_element(By.ID, "score-go").click()
    wait_for(browser, lambda d: "over 22 characters" in d.find_element(By.ID, "score-bpc").text)
    records = float(browser.find_element(By.ID, "score-bpc").get_attribute("data-bpc"))
    scored = charnn_eval(source, "Crimson Dawn\nBlue Sky\n", runs[1])
    assert scored["chars"] == 22 and records == pytest.approx(scored["bits_per_char"], rel=1e-5)
    assert console_errors(browser) == []


def test_cells_colour_one_span_a_character_and_a_selection_ranks_units(browser, server, tmp_path):
    import httpx
    import numpy as np
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from charnn.tasks.lm.cells import rank_units

    text = 'He said "go now" and she said "no". Then "we go," he said, and they went.'
    quotes = [(i, text.index('"', i + 1) + 1) for i in (text.index('"'), text.index('"no'), text.index('"we'))]
    open_page(browser, server, "cells")
    fill(browser, "cells-text", text)
    browser.find_element(By.ID, "cells-go").click()
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#cells-units button")) > 0)
    spans = browser.find_elements(By.CSS_SELECTOR, "#cells-out .ch")
    assert len(spans) == len(text) and all("background" in s.get_attribute("style") for s in spans)
    units = browser.find_elements(By.CSS_SELECTOR, "#cells-units button")
    units[3].click()
    assert units[3].get_attribute("aria-pressed") == "true"
    fill(browser, "cells-unit", "31")  # any unit by its number (on a big model most are not listed)
    browser.find_element(By.ID, "cells-colour").click()
    assert {s.get_attribute("title").split(":")[0] for s in spans} == {"unit 31"}
    fill(browser, "cells-unit", "32")
    browser.find_element(By.ID, "cells-colour").click()
    assert browser.find_element(By.ID, "status").text == "Give a unit from 0 to 31."
    values = np.asarray(
        httpx.post(server.url + "/v1/cells", json={"model": "lm", "input": text}, trust_env=False).json()["values"]
    )

    def ranked_as_charnn_ranks(selected):
        inside = np.zeros(len(text), dtype=bool)
        for a, b in selected:
            inside[a:b] = True
        ranked = browser.find_elements(By.CSS_SELECTOR, "#cells-units button")
        gaps = [float(b.text.split()[-2].replace("−", "-")) for b in ranked]
        assert len(ranked) == 20 and [abs(g) for g in gaps] == sorted((abs(g) for g in gaps), reverse=True)
        expected = rank_units(values, inside)[:20]  # the same ranking as charnn's own over the API's values
        assert [int(b.get_attribute("data-unit")) for b in ranked][:5] == [unit for unit, _ in expected][:5]
        assert gaps == pytest.approx([round(gap, 2) for _, gap in expected], abs=0.011)

    fill(browser, "cells-from", str(quotes[0][0]))
    fill(browser, "cells-to", str(quotes[0][1]))
    browser.find_element(By.ID, "cells-rank").click()
    wait_for(browser, lambda d: "around them" in d.find_element(By.ID, "cells-units-title").text)
    ranked_as_charnn_ranks(quotes[:1])
    for a, b in quotes:  # three quotations added to the selection, each outlined in the text
        fill(browser, "cells-from", str(a))
        fill(browser, "cells-to", str(b))
        browser.find_element(By.ID, "cells-add").click()
    assert len(browser.find_elements(By.CSS_SELECTOR, "#cells-spans li")) == 3
    assert len(browser.find_elements(By.CSS_SELECTOR, "#cells-out .ch.picked")) == sum(b - a for a, b in quotes)
    browser.find_element(By.ID, "cells-rank").click()
    wait_for(browser, lambda d: "3 spans" in d.find_element(By.ID, "cells-units-title").text)
    ranked_as_charnn_ranks(quotes)
    screenshot(browser, tmp_path, "cells")
    # the cell through tanh, the same text read again: the spans stay, the ranking is rank_units' over tanh(c)
    Select(browser.find_element(By.ID, "cells-state")).select_by_value("tanh")
    browser.find_element(By.ID, "cells-go").click()
    wait_for(browser, lambda d: "tanh(c)" in d.find_element(By.ID, "cells-info").text)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#cells-spans li")) == 3
    cells = httpx.post(
        server.url + "/v1/cells", json={"model": "lm", "input": text, "state": "cell"}, trust_env=False
    ).json()["values"]
    values = np.tanh(np.asarray(cells))
    browser.find_element(By.ID, "cells-rank").click()
    ranked_as_charnn_ranks(quotes)
    browser.find_element(By.CSS_SELECTOR, "#cells-spans li button").click()  # take the first out: ranked again
    assert len(browser.find_elements(By.CSS_SELECTOR, "#cells-spans li")) == 2
    wait_for(browser, lambda d: "2 spans" in d.find_element(By.ID, "cells-units-title").text)
    a, b = quotes[1]
    fill(browser, "cells-from", str(b))  # a span touching the second quotation merges with it
    fill(browser, "cells-to", str(b + 4))
    browser.find_element(By.ID, "cells-add").click()
    assert [li.text.split()[0] for li in browser.find_elements(By.CSS_SELECTOR, "#cells-spans li")] == [
        f"{a}–{b + 3}",
        f"{quotes[2][0]}–{quotes[2][1] - 1}",
    ]
    ranked_as_charnn_ranks([(a, b + 4), quotes[2]])
    fill(browser, "cells-from", "1.5")
    browser.find_element(By.ID, "cells-add").click()
    assert "0 ≤ from < to" in browser.find_element(By.ID, "status").text
    fill(browser, "cells-from", "0")
    fill(browser, "cells-to", str(len(text) + 5))
    browser.find_element(By.ID, "cells-add").click()
    assert f"≤ {len(text)}" in browser.find_element(By.ID, "status").text
    # another run: what is shown is the first run's, said so; its units are not coloured until read again
    Select(browser.find_element(By.ID, "cells-model")).select_by_value("records")
    assert browser.find_element(By.ID, "cells-info").text.startswith("Read by another run: press Read")
    fill(browser, "cells-unit", "3")
    browser.find_element(By.ID, "cells-colour").click()
    assert browser.find_element(By.ID, "status").text == "Read the text with this run first (Read)."
    assert len(browser.find_elements(By.CSS_SELECTOR, "#cells-spans li")) == 2  # kept, to compare rankings


def test_the_classifier_and_tagger_views_render_their_answers(browser, server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    open_page(browser, server, "classify")
    fill(browser, "classify-text", "Stir in the flour and bake for an hour.")
    browser.find_element(By.ID, "classify-go").click()
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#classify-out .bar"))
    assert {
        b.find_element(By.CLASS_NAME, "name").text for b in browser.find_elements(By.CSS_SELECTOR, "#classify-out .bar")
    } == {
        "recipe",
        "story",
    }
    assert browser.find_elements(By.CSS_SELECTOR, "#classify-out .tok")
    screenshot(browser, tmp_path, "classify")
    # a long sentence's tokens wrap in the column, in a narrow window too (they pushed the page sideways)
    fill(browser, "classify-text", "Stir in the flour and bake for an hour, then let it cool on a rack. " * 4)
    browser.set_window_size(400, 800)
    try:
        browser.find_element(By.ID, "classify-go").click()
        wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#classify-out .tok")) > 40)
        wide = "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        scroll, client = browser.execute_script(wide)
        assert scroll <= client, (scroll, client)
    finally:
        browser.set_window_size(1200, 900)
    browser.find_element(By.ID, "tab-tag").click()
    Select(browser.find_element(By.ID, "tag-model")).select_by_value("names")
    fill(browser, "tag-text", "Mara walked to Dunmore with Old Rooke")
    browser.find_element(By.ID, "tag-go").click()
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#tag-out .chip")) == 7)
    entities = browser.find_elements(By.CSS_SELECTOR, "#tag-out .entity")  # underlined, the label beside
    words = [[w.get_attribute("textContent") for w in e.find_elements(By.CLASS_NAME, "word")] for e in entities]
    assert words == [["Mara"], ["Dunmore"], ["Old", "Rooke"]]
    assert all(e.get_attribute("data-label") == "name" for e in entities)
    assert {e.value_of_css_property("border-bottom-style") for e in entities} == {"solid"}
    screenshot(browser, tmp_path, "tag")
    assert console_errors(browser) == []


def test_a_refused_request_and_an_unreachable_server_are_said(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    open_page(browser, server, "write")
    fill(browser, "write-length", "999999")
    browser.find_element(By.ID, "write-go").click()
    wait_for(browser, lambda d: "max_tokens" in d.find_element(By.ID, "status").text)
    assert browser.find_element(By.ID, "status").text.startswith("Refused: ")
    # an empty or negative box is said, and the text stays (it wrote 1 character, or greedily, unasked)
    fill(browser, "write-length", "40")
    browser.find_element(By.ID, "write-go").click()
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#write-out .ch")) == 40)
    for box, value, said in [
        ("write-length", "", "Give a length of 1 character or more."),
        ("write-length", "-5", "Give a length of 1 character or more."),
        ("write-temp", "", "Give a temperature of 0 (always the likeliest character) or more."),
    ]:
        fill(browser, "write-length", "40")
        fill(browser, "write-temp", "0.8")
        fill(browser, box, value)
        browser.find_element(By.ID, "write-go").click()
        wait_for(browser, lambda d, said=said: d.find_element(By.ID, "status").text == said)
        assert len(browser.find_elements(By.CSS_SELECTOR, "#write-out .ch")) == 40
    fill(browser, "write-temp", "0.8")
    lone = Server(*copied_runs(tmp_path, "lm"))
    open_page(browser, lone, "write")
    assert lone.stop() == 0
    browser.find_element(By.ID, "write-go").click()
    wait_for(browser, lambda d: "unreachable" in d.find_element(By.ID, "status").text)
    screenshot(browser, tmp_path, "unreachable")
    # a page whose models could not be listed (the server was down as it loaded) lists them again when used
    open_page(browser, server, "write")
    browser.execute_script(
        "window.realFetch = window.fetch;"
        "window.fetch = () => Promise.reject(new TypeError('Failed to fetch'));"
        "loadModels().catch(() => {}); window.fetch = window.realFetch;"
    )
    wait_for(browser, lambda d: d.find_element(By.ID, "write-model").get_attribute("value") == "")
    browser.find_element(By.ID, "write-go").click()
    wait_for(browser, lambda d: "answers now" in d.find_element(By.ID, "status").text)
    assert browser.find_element(By.ID, "write-model").get_attribute("value") == "lm"


def test_a_view_whose_kind_is_not_served_and_an_empty_text_are_said(browser, tmp_path):
    from selenium.webdriver.common.by import By

    encoders = Server(*copied_runs(tmp_path, "classifier", "tagger"))  # no language model
    try:
        console_errors(browser)  # what earlier tests left in the log
        browser.get(encoders.url + "/")
        wait_for(browser, lambda d: d.find_element(By.ID, "classify-model").get_attribute("value") == "classifier")
        assert browser.find_element(By.ID, "classify").is_displayed()  # opened on a view it can use, not Write
        for tab, button in (("score", "score-go"), ("cells", "cells-go")):
            browser.find_element(By.ID, f"tab-{tab}").click()
            browser.find_element(By.ID, button).click()
            # before: the request went out with "model": "" and the API's list of its routes came back
            wait_for(browser, lambda d: "No language model is served" in d.find_element(By.ID, "status").text)
        browser.find_element(By.ID, "tab-tag").click()
        fill(browser, "tag-text", "   ")
        browser.find_element(By.ID, "tag-go").click()  # before: the chips went, and nothing was said
        wait_for(browser, lambda d: d.find_element(By.ID, "status").text == "Give a sentence to tag.")
        assert console_errors(browser) == []
    finally:
        assert encoders.stop() == 0


def test_charnn_shows_page_renders_offline(browser, runs, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    text = 'The knight said "we ride <!--<script> at dawn" and left.</script>\n'  # HTML in the text stays text
    source = tmp_path / "text.txt"
    source.write_text(text, encoding="utf-8")
    page = tmp_path / "show.html"
    result = charnn_show(str(source), "-m", runs[0], "--out", str(page))
    assert result.returncode == 0, result.stderr
    html = page.read_text(encoding="utf-8")
    assert "/static/" not in html and "http" not in html.split("<body>")[1].split("<script>")[0]
    console_errors(browser)  # what earlier tests left in the log
    browser.get(page.as_uri())
    wait_for(browser, lambda d: d.find_element(By.ID, "score-bpc").text)
    from charnn.tasks import load_run
    from charnn.tasks.lm.evaluate import evaluate_text

    bpc = float(browser.find_element(By.ID, "score-bpc").get_attribute("data-bpc"))
    assert bpc == pytest.approx(evaluate_text(load_run(runs[0]), text).bits_per_char, rel=1e-5)
    screenshot(browser, tmp_path, "show-score")
    browser.find_element(By.ID, "tab-cells").click()
    assert len(browser.find_elements(By.CSS_SELECTOR, "#cells-out .ch")) == len(text)
    assert not browser.find_element(By.ID, "tab-write").is_displayed()
    screenshot(browser, tmp_path, "show-cells")
    assert console_errors(browser) == []
    # a page of a cell's values reads them through tanh too, offline
    cell_page = tmp_path / "cell.html"
    result = charnn_show(str(source), "-m", runs[0], "--cell", "--out", str(cell_page))
    assert result.returncode == 0, result.stderr
    browser.get(cell_page.as_uri())
    wait_for(browser, lambda d: d.find_element(By.ID, "score-bpc").text)
    browser.find_element(By.ID, "tab-cells").click()
    assert "cell c" in browser.find_element(By.ID, "cells-info").text
    Select(browser.find_element(By.ID, "cells-state")).select_by_value("tanh")
    wait_for(browser, lambda d: "tanh(c)" in d.find_element(By.ID, "cells-info").text)
    titles = [s.get_attribute("title") for s in browser.find_elements(By.CSS_SELECTOR, "#cells-out .ch")]
    assert len(titles) == len(text) and all(abs(float(t.split(": ")[1])) <= 1 for t in titles)
    assert console_errors(browser) == []
    again = charnn_show(str(source), "-m", runs[0], "--out", str(page))
    assert again.returncode == 2 and "exists" in again.stderr and page.read_text(encoding="utf-8") == html
    assert not math.isnan(bpc)
    assert "(as charnn eval scores it)" in browser.find_element(By.ID, "score-bpc").get_attribute("textContent")
    record_page = tmp_path / "records.html"  # a record run's page words its figure as the served page does
    result = charnn_show(str(source), "-m", runs[1], "--out", str(record_page))
    assert result.returncode == 0, result.stderr
    browser.get(record_page.as_uri())
    wait_for(browser, lambda d: d.find_element(By.ID, "score-bpc").text)
    assert "as charnn eval scores records" in browser.find_element(By.ID, "score-bpc").text
    style_page = tmp_path / "style.html"  # a style run's page names the style it was read under
    result = charnn_show(str(source), "-m", runs[4], "--style", "prose", "-o", str(style_page))
    assert result.returncode == 0, result.stderr
    browser.get(style_page.as_uri())
    wait_for(browser, lambda d: d.find_element(By.ID, "score-bpc").text)
    assert "(as charnn eval --style prose scores it)" in browser.find_element(By.ID, "score-bpc").text
    assert browser.find_element(By.ID, "score-style").get_attribute("value") == "prose"
    assert browser.find_element(By.ID, "score-style").is_displayed()
    assert console_errors(browser) == []
    blank = tmp_path / "blank"  # blocks between blank lines: each "\n\n" one character, as charnn eval counts it
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    tiny = ["--hidden", "32", "--embed", "16", "--seq-len", "32", "--batch-size", "4", "--steps", "10"]
    trained = subprocess.run(
        [sys.executable, "-m", "charnn", "train", str(ROOT / "corpora" / "recipes.txt"), "--records", "blank",
         "--out", str(blank), *tiny], capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    blocks, recipe = tmp_path / "blocks.txt", "Title: Soup\nServes 2\n\nTitle: Bread\nServes 4\n\n"
    scored = charnn_eval(blocks, recipe, blank)  # writes the text to blocks.txt
    blank_page = tmp_path / "blank.html"
    result = charnn_show(str(blocks), "-m", str(blank), "-o", str(blank_page))
    assert result.returncode == 0, result.stderr
    browser.get(blank_page.as_uri())
    wait_for(browser, lambda d: d.find_element(By.ID, "score-bpc").text)
    bpc = float(browser.find_element(By.ID, "score-bpc").get_attribute("data-bpc"))
    assert bpc == pytest.approx(scored["bits_per_char"], rel=1e-5)  # before: 2 characters a blank line
    assert f"over {scored['chars']} characters" in browser.find_element(By.ID, "score-bpc").text


def test_a_key_in_the_address_is_read_as_typed_a_plus_included(browser, tmp_path):
    from selenium.webdriver.common.by import By

    key = "ab+cd/e=="  # base64 keys hold '+', which a query string would read as a space
    served = Server(*copied_runs(tmp_path, "lm"), env={"CHARNN_API_KEY": key})
    try:
        browser.get(served.url + "/")  # opened without its key: the page says how to give it
        wait_for(browser, lambda d: "#key=KEY" in d.find_element(By.ID, "status").text)
        assert browser.find_element(By.ID, "write-model").text == "(could not list the models)"  # was empty
        browser.find_element(By.ID, "write-go").click()  # before: "No language model is served", untrue
        assert "#key=KEY" in browser.find_element(By.ID, "status").text
        browser.execute_script("location.hash = arguments[0]", "key=wrong")  # typed into the address: read at once
        wait_for(browser, lambda d: "is not this server's" in d.find_element(By.ID, "status").text)
        browser.execute_script("location.hash = arguments[0]", "key=" + key)
        wait_for(browser, lambda d: d.find_element(By.ID, "write-model").get_attribute("value") == "lm")
        assert not browser.find_element(By.ID, "status").text.startswith("Refused")
    finally:
        assert served.stop() == 0


def test_a_stream_the_server_ends_as_it_stops_is_said_to_end_early(browser, tmp_path):
    from selenium.webdriver.common.by import By

    lone = Server(*copied_runs(tmp_path, "lm"))
    try:
        open_page(browser, lone, "write")
        fill(browser, "write-length", "4096")
        browser.find_element(By.ID, "write-go").click()
        wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#write-out .ch")) > 20)
        assert lone.stop() == 0  # SIGTERM: the server ends the streams in flight, then exits
        wait_for(browser, lambda d: "ended the text before its length" in d.find_element(By.ID, "status").text)
        assert len(browser.find_elements(By.CSS_SELECTOR, "#write-out .ch")) < 4096  # before: said nothing
    finally:
        lone.stop()
    crashed = Server(*copied_runs(tmp_path / "crash", "lm"))
    try:
        open_page(browser, crashed, "write")
        fill(browser, "write-length", "4096")
        browser.find_element(By.ID, "write-go").click()
        wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#write-out .ch")) > 20)
        crashed.process.kill()  # kill -9: the stream is cut, no end
        crashed.process.wait()
        wait_for(browser, lambda d: "connection to the server was lost" in d.find_element(By.ID, "status").text)
        # before: "network error", the browser's own words
    finally:
        crashed.stop()
