"""Is this hand-out intact? `make test` runs every notebook as a learner gets it: unsolved.

Each notebook runs top to bottom with errors allowed, the way JupyterLab's Run All goes on past
the exercise cells (they are tagged `raises-exception`). It passes while the exercises are
unsolved, and asserts that:

- every code cell ran, and no lesson cell failed;
- only exercise and check cells failed, each tagged so Run All goes on past it;
- each check failed with its friendly message: one line that says what to write ("Not solved
  yet: ..."), and no traceback into the helpers. It is still an error output, which is what
  nbgrader's autograder scores as a failed test.

Exercise cells are known by their nbgrader metadata: `solution` (your code) and `grade` (a check).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
RAISES = "raises-exception"
SHOWS_ERROR = "shows-error"  # a lesson cell that shows an error on purpose


def kind(cell) -> str:
    """'solution', 'check' or 'lesson'."""
    meta = cell.metadata.get("nbgrader", {})
    if cell.cell_type == "code" and meta.get("solution"):
        return "solution"
    if cell.cell_type == "code" and meta.get("grade"):
        return "check"
    return "lesson"


def test_the_notebooks_use_this_folders_helpers():
    where = subprocess.run([sys.executable, "-c", "import helpers; print(helpers.__file__)"],
                           capture_output=True, text=True, check=True, cwd=ROOT / "notebooks").stdout
    assert Path(where.strip()).resolve().is_relative_to(ROOT), f"helpers imported from {where.strip()}, not {ROOT}"


def test_there_are_lessons_with_exercises():
    assert len(NOTEBOOKS) >= 8, f"only {len(NOTEBOOKS)} notebooks in {ROOT / 'notebooks'}"
    for path in NOTEBOOKS:
        kinds = [kind(cell) for cell in nbformat.read(path, as_version=4).cells]
        assert kinds.count("solution") >= 2 and kinds.count("check") >= 2, f"{path.name}: its exercises are missing"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_run_all_goes_through_and_only_the_exercises_fail(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    os.environ["WORKBOOK_BACKEND"] = "mock"  # the kernel inherits it: `make test` never spends anything
    NotebookClient(nb, timeout=300, allow_errors=True, resources={"metadata": {"path": str(tmp_path)}}).execute()

    checks = 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        where = f"{path.name} cell {index} ({kind(cell)})"
        assert cell.execution_count is not None, f"{where} did not run"
        errors = [output for output in cell.outputs if output.output_type == "error"]
        if kind(cell) == "lesson" and SHOWS_ERROR in cell.metadata.get("tags", []):
            assert errors, f"{where} should show an error and did not"
            continue
        if kind(cell) == "lesson":
            assert not errors, f"{where} failed: {errors[0].ename}: {errors[0].evalue}"
            continue
        assert RAISES in cell.metadata.get("tags", []), f"{where} is not tagged {RAISES}: Run All would stop there"
        if kind(cell) == "solution":
            assert not errors, f"{where} failed before the check ran: {errors[0].ename}: {errors[0].evalue}"
            continue
        checks += 1
        assert [error.ename for error in errors] == ["ExerciseFailed"], f"{where}: the check passed with no solution"
        shown = "\n".join(errors[0].traceback)
        assert len(errors[0].traceback) == 1 and "Traceback" not in shown and "File " not in shown, (
            f"{where} shows a traceback, not one friendly line:\n{shown}")
        assert errors[0].evalue.startswith("Not solved yet") and len(errors[0].evalue.split()) >= 20, (
            f"{where}: the message does not say what to write: {errors[0].evalue!r}")
    assert checks >= 2
