"""The workbook's tqdm bar, as a saved notebook shows it (helpers/progress_bars.py).

JupyterLab shows a widget output's text/plain when the notebook is untrusted (opened before it
is run). One tiny notebook runs in a real kernel, as `make execute` runs the lessons (nbclient):

- the saved text/plain of a bar that finished reads "5/5", not tqdm's first "0/5";
- a bar closed short (an error, an interrupt) is saved with its real count, "2/5";
- the text first displayed (what strict nbval compares, as it ignores display updates) equals
  the saved one once tests/sanitize.cfg has masked times and rates, so nbval stays stable.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbval.plugin import get_sanitize_patterns

ROOT = Path(__file__).resolve().parent.parent

_FINISHED_BAR = """\
from helpers.reports import Progress
meter = Progress(True, 5, "lesson")
for _ in range(5):
    meter.bar.update(1)
meter.bar.close()"""

_STOPPED_SHORT = """\
from helpers.reports import Progress
meter = Progress(True, 5, "lesson")
meter.bar.update(2)
meter.bar.close()"""

_FIRST_TEXT = """\
import helpers.progress_bars as progress_bars
shown, real_display = [], progress_bars._display
progress_bars._display = lambda obj, raw: shown.append(obj) or real_display(obj, raw)
bar = progress_bars.tqdm(total=3, desc="first", unit="req")
bar.update(3)
bar.close()
print("FIRST:", shown[0]["text/plain"])"""


def _bar_text(cell) -> str:
    """The text/plain of the cell's widget output (the progress bar)."""
    bars = [o for o in cell.outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(bars) == 1, f"expected one widget output, got {cell.outputs}"
    return bars[0]["data"]["text/plain"]


@pytest.fixture(scope="module")
def executed():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(_FINISHED_BAR),
                                               nbformat.v4.new_code_cell(_FIRST_TEXT),
                                               nbformat.v4.new_code_cell(_STOPPED_SHORT)])
    NotebookClient(notebook, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    return notebook


def test_a_finished_bar_is_saved_as_finished(executed):
    text = _bar_text(executed.cells[0])
    assert "5/5" in text and "100%" in text, f"saved bar text: {text!r}"


def test_a_bar_closed_short_is_saved_with_its_real_count(executed):
    text = _bar_text(executed.cells[2])
    assert "2/5" in text and "40%" in text, f"saved bar text: {text!r}"


def test_first_text_matches_the_saved_one_after_sanitizing(executed):
    cell = executed.cells[1]
    printed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    first = re.search(r"FIRST: (.*)", printed).group(1)
    saved = _bar_text(cell)
    patterns = get_sanitize_patterns((ROOT / "tests" / "sanitize.cfg").read_text(encoding="utf-8"))

    def sanitize(text: str) -> str:
        for regex, replace in patterns:
            text = re.sub(regex, replace, text)
        return text

    assert "3/3" in saved
    assert sanitize(first) == sanitize(saved), f"first {first!r} vs saved {saved!r}"
