"""Every notebook runs end to end on a second OpenAI-compatible server that is not the workbook's mock.

The server (tests/other_server.py) answers otherwise, has no rate limits, no faults and no /mock/*
endpoints, so a notebook that still leans on the mock without saying so fails here. For each notebook:
- no cell raises, except the cells tagged `raises-exception` (they show an error on purpose);
- it stays within the default request budget (WORKBOOK_MAX_REQUESTS = 300);
- at least 10 requests reach the other server, so a notebook that skipped everything cannot pass;
- a cell that sends more than 20 requests printed its estimate first (budget.expect);
- an exercise check sends none: checks run the learner's code on a private mock.
The demos that ran on the local mock instead are printed, and each executed notebook is saved to
build/other_server/ to read what a learner on a real backend sees.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers.budget import DEFAULT_MAX_REQUESTS
from other_server import DEMO_LINE, OtherServer, run_notebook, summary

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9]*.ipynb"))
BUILD = Path(__file__).resolve().parents[1] / "build" / "other_server"
CHECK_CALL = re.compile(r"\bcheck_\w+\(")


@pytest.fixture(scope="module")
def other():
    server = OtherServer().start()
    yield server
    server.stop()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_notebook_runs_on_another_server(notebook, other, capsys):
    runs = run_notebook(str(notebook), other, save_to=str(BUILD / notebook.name))
    total = sum(run.requests for run in runs)
    with capsys.disabled():
        demos = sorted({line.strip() for run in runs for line in run.text.splitlines() if DEMO_LINE in line})
        print(f"\n{notebook.stem}: {total} requests to the other server; demos on the local mock:",
              *(f"  {line}" for line in demos) or ["  (none)"], sep="\n")
    raised = [f"cell {r.index}: {r.error}" for r in runs if r.error and "raises-exception" not in r.tags]
    assert not raised, f"cells raised on another server:\n" + "\n".join(raised) + "\n" + summary(runs)
    assert total <= DEFAULT_MAX_REQUESTS, f"{total} requests: over the default budget\n{summary(runs)}"
    assert total >= 10, f"only {total} requests reached the other server: the notebook skipped its lesson"
    unannounced = [r.index for r in runs if r.requests > 20 and "Estimate for" not in r.text]
    assert not unannounced, f"cells sent over 20 requests with no estimate first: {unannounced}\n{summary(runs)}"
    from_checks = [r.index for r in runs if CHECK_CALL.search(r.source) and r.requests]
    assert not from_checks, f"exercise checks sent requests to the real backend: cells {from_checks}"
