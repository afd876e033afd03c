"""Learner copies: no solution or answer leaks, nbgrader metadata in place, and every check fails
with its hint when the solution is missing (which proves the checks can fail)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from student import BEGIN, END, cell_kind, learner_copy, strip_solution, tag_notebook

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9]*.ipynb"))


def solution_lines(nb) -> list[str]:
    """Substantial lines inside solution regions that appear nowhere else in the notebook."""
    inside, lines = False, []
    for cell in nb.cells:
        if cell_kind(cell) != "solution":
            continue
        for line in cell.source.split("\n"):
            if line.strip() in (BEGIN, END):
                inside = line.strip() == BEGIN
            elif inside and len(line.strip()) > 12:
                lines.append(line.strip())
    elsewhere = "\n".join(c.source for c in nb.cells if cell_kind(c) != "solution")
    return [line for line in lines if line not in elsewhere]


def test_strip_solution_keeps_indentation_and_rejects_broken_markers():
    source = "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"
    assert strip_solution(source) == "def f():\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    with pytest.raises(ValueError, match="without END"):
        strip_solution("### BEGIN SOLUTION\nx = 1")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_exercises_are_tagged_for_nbgrader(path):
    nb = nbformat.read(path, as_version=4)
    kinds = [cell_kind(c) for c in nb.cells]
    assert kinds.count("solution") >= 2 and kinds.count("check") >= 2, "2-4 coding exercises with checks"
    assert kinds.count("answer") >= 2, "2-3 conceptual questions with answers"
    stored = [c.metadata.get("nbgrader") for c in nb.cells]
    tag_notebook(nb, prefix=path.stem.split("_")[0])
    assert stored == [c.metadata.get("nbgrader") for c in nb.cells], (
        f"stale nbgrader metadata: run `python tools/student.py tag {path.name}`"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_learner_copy_leaks_no_solution_or_answer(path):
    nb = nbformat.read(path, as_version=4)
    copy = learner_copy(nb)
    text = "\n".join(c.source for c in copy.cells)
    assert BEGIN not in text and END not in text and "<details>" not in text
    leaked = [line for line in solution_lines(nb) if line in text]
    assert not leaked, f"solution lines left in the learner copy: {leaked}"
    for cell in copy.cells:
        if cell_kind(cell) in ("solution", "check") or "raise NotImplementedError()" in cell.source:
            assert cell.get("outputs", []) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_learner_copy_runs_and_only_exercises_fail(path, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_BACKEND", "mock")
    original = nbformat.read(path, as_version=4)
    copy = learner_copy(original)
    NotebookClient(copy, timeout=300, allow_errors=True, resources={"metadata": {"path": str(tmp_path)}}).execute()

    for index, (before, cell) in enumerate(zip(original.cells, copy.cells)):
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.outputs if o.output_type == "error"]
        where = f"{path.name} cell {index}"
        if "raises-exception" in before.metadata.get("tags", []):  # a lesson cell that shows an error
            assert errors, f"{where} is tagged raises-exception but did not raise"
            continue
        if "\nraise NotImplementedError()" in "\n" + cell.source:  # a top-level placeholder raises at once
            assert [e.ename for e in errors] == ["NotImplementedError"], where
        elif cell_kind(before) == "check":
            assert [e.ename for e in errors] == ["ExerciseFailed"], f"{where}: the check passed without a solution"
            assert errors[0].evalue.strip(), f"{where}: the check failed without a hint"
        else:
            assert not errors, f"{where} (a lesson cell) failed: {errors[0].ename}: {errors[0].evalue}"
