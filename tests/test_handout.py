"""The classroom hand-out (`make student`): learner copies that start, run through, and help.

- Exercise cells carry nbgrader metadata, and a learner copy leaks no solution or answer.
- Every placeholder says in a sentence what to write, inside the exercise's function.
- The headings are consistent: "Exercise N — ..." for code, "Question N — ..." for a conceptual one.
- `make lab` serves the repository root, opens lesson 01 first, with JupyterLab's news prompt off.
- The hand-out, copied alone to a temporary folder, passes its own `make test` (tools/handout/
  test_handout.py: every lesson cell runs, only exercise and check cells fail, each check with its
  one friendly line), using this virtualenv rather than building a second one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from student import BEGIN, END, RAISES, cell_kind, learner_copy, strip_solution, tag_notebook, write_handout

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
FIRST = "notebooks/01_basic_abatch.ipynb"
# A lesson cell that shows an error on purpose (nbval needs raises-exception on it too).
SHOWS_ERROR = "shows-error"
PLACEHOLDER = re.compile(r'^( *)raise NotImplementedError\((.*?)\)$', re.M | re.S)


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


def test_strip_solution_puts_the_hint_in_the_placeholder_and_rejects_broken_markers():
    source = "def f():\n    # Hint: Return the answer, a number.\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"
    assert strip_solution(source) == ('def f():\n    # YOUR CODE HERE\n'
                                      '    raise NotImplementedError("Return the answer, a number.")')
    long = "def f():\n    # Hint: " + "word " * 30 + "\n    #       and more.\n    ### BEGIN SOLUTION\n    ### END SOLUTION"
    stripped = strip_solution(long)
    assert "and more." in stripped and "# Hint" not in stripped and max(map(len, stripped.split("\n"))) <= 100
    with pytest.raises(ValueError, match="needs a hint"):
        strip_solution("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION")
    with pytest.raises(ValueError, match="without END"):
        strip_solution("# Hint: Set x.\n### BEGIN SOLUTION\nx = 1")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_exercises_are_tagged_for_nbgrader(path):
    nb = nbformat.read(path, as_version=4)
    kinds = [cell_kind(c) for c in nb.cells]
    assert kinds.count("solution") >= 2 and kinds.count("check") >= 2, "2-4 coding exercises with checks"
    assert kinds.count("answer") >= 2, "2-3 conceptual questions with answers"
    stored = [c.metadata.get("nbgrader") for c in nb.cells]
    tag_notebook(nb, prefix=path.stem.split("_")[0])
    assert stored == [c.metadata.get("nbgrader") for c in nb.cells], (
        f"stale nbgrader metadata: run `python tools/student.py tag {path.name}`")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_learner_copy_leaks_no_solution_or_answer(path):
    nb = nbformat.read(path, as_version=4)
    copy = learner_copy(nb)
    text = "\n".join(c.source for c in copy.cells)
    assert BEGIN not in text and END not in text and "<details>" not in text and "# Hint:" not in text
    leaked = [line for line in solution_lines(nb) if line in text]
    assert not leaked, f"solution lines left in the learner copy: {leaked}"
    for cell in copy.cells:
        if cell_kind(cell) in ("solution", "check") or "raise NotImplementedError" in cell.source:
            assert cell.get("outputs", []) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_placeholder_says_what_to_write_inside_its_function(path):
    original = nbformat.read(path, as_version=4)
    copy = learner_copy(original)
    placeholders = [match for cell in copy.cells for match in PLACEHOLDER.finditer(cell.source)]
    assert len(placeholders) == sum(c.source.count(BEGIN) for c in original.cells)
    for indent, message in (match.groups() for match in placeholders):
        hint = "".join(eval(part) for part in message.split("\n") if part.strip())  # its string literal(s)
        assert len(hint.split()) >= 8 and hint.endswith("."), f"{path.name}: a placeholder without a hint: {hint!r}"
        assert indent, f"{path.name}: a placeholder at the top level of a cell raises before its check runs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_learner_copy_tags_exercise_and_check_cells_so_run_all_goes_on(path):
    original = nbformat.read(path, as_version=4)
    for before, cell in zip(original.cells, learner_copy(original).cells):
        tags = cell.metadata.get("tags", [])
        if cell_kind(before) in ("solution", "check"):
            assert RAISES in tags
        else:  # a lesson cell that raises on purpose says so with its own marker
            assert (RAISES in tags) == (SHOWS_ERROR in tags), f"{path.name}: {before.source[:60]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_headings_are_exercise_for_code_and_question_for_the_rest(path):
    cells = nbformat.read(path, as_version=4).cells
    seen = {"Exercise": [], "Question": []}
    for cell, after in zip(cells, cells[1:]):
        match = re.search(r"\*\*(Exercise|Question) (\d+) — [^*]+\*\*", cell.source) if cell.cell_type == "markdown" else None
        if not match:
            assert not re.search(r"\*\*(Exercise|Question) \d", cell.source), f"{path.name}: {cell.source[:60]!r}"
            continue
        conceptual = cell_kind(after) == "answer"
        assert match.group(1) == ("Question" if conceptual else "Exercise"), f"{path.name}: {match.group(0)}"
        seen[match.group(1)].append(int(match.group(2)))
    assert seen["Exercise"] == list(range(1, len(seen["Exercise"]) + 1)), f"{path.name}: {seen}"
    assert seen["Question"] == list(range(1, len(seen["Question"]) + 1)), f"{path.name}: {seen}"


def lab_command(folder: Path, venv: Path) -> str:
    """What `make lab` would run in `folder` (make -n prints it without running it)."""
    return subprocess.run(["make", "-n", "lab", f"VENV={venv}"], cwd=folder, capture_output=True, text=True,
                          check=True).stdout


def assert_lab_opens_lesson_01_without_news(folder: Path, command: str) -> None:
    assert "--notebook-dir=." in command, "make lab must serve the folder's root, where the README is"
    assert f"--LabApp.default_url=/lab/tree/{FIRST}" in command and (folder / FIRST).is_file()
    settings = Path(re.search(r"--LabApp.app_settings_dir=(\S+)", command).group(1))
    overrides = json.loads((settings / "overrides.json").read_text())
    notification = overrides["@jupyterlab/apputils-extension:notification"]
    assert notification == {"fetchNews": "false", "checkForUpdates": False}


def test_make_lab_serves_the_root_opens_lesson_01_and_turns_the_news_off():
    assert_lab_opens_lesson_01_without_news(ROOT, lab_command(ROOT, Path(sys.prefix)))


@pytest.mark.timeout(1500)
def test_the_handout_alone_starts_and_passes_its_own_make_test(tmp_path):
    write_handout(tmp_path / "built" / "student", tmp_path / "built" / "student.zip")
    alone = tmp_path / "alone"
    shutil.copytree(tmp_path / "built" / "student", alone)  # the folder alone, away from this repository
    assert (tmp_path / "built" / "student.zip").stat().st_size > 0
    # This virtualenv already holds requirements.txt: make must not install it again (`-e .` would
    # point it at the copy). Its own helpers/ still win: the hand-out's Makefile puts it on PYTHONPATH.
    stamp = Path(sys.prefix) / ".installed"
    if not stamp.exists():
        stamp.touch()
    for name in ("requirements.txt", "pyproject.toml"):
        assert (alone / name).read_text() == (ROOT / name).read_text()
        os.utime(alone / name, (946684800, 946684800))  # 2000-01-01: older than the stamp
    assert_lab_opens_lesson_01_without_news(alone, lab_command(alone, Path(sys.prefix)))
    done = subprocess.run(["make", "test", f"VENV={sys.prefix}"], cwd=alone, capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST")})
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert re.search(r"\b1\d passed\b", done.stdout), done.stdout[-500:]
