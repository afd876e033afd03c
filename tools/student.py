"""Exercise markup and learner copies, compatible with nbgrader.

The notebooks in `notebooks/` are the instructor's versions: every exercise is solved
and every check passes. Three kinds of exercise cell are marked with nbgrader's cell
metadata (`schema_version: 3`), so an instructor who uses nbgrader can run
`nbgrader generate_assignment` on them directly:

| cell                                   | recognised by                            | nbgrader metadata            |
| -------------------------------------- | ---------------------------------------- | ---------------------------- |
| solution (code)                        | `### BEGIN SOLUTION` ... `### END SOLUTION` | solution, not locked      |
| check (code)                           | calls a `check_...` function              | grade, locked, 1 point       |
| conceptual answer (markdown)           | starts with `<details>`                   | solution + grade (manual), 1 point |

Every solution region has a hint right above it, a comment that says in a sentence what to
write (`# Hint: ...`, continued on `#       ...` lines). A learner copy replaces the hint and the
region with `# YOUR CODE HERE` and `raise NotImplementedError("<the hint>")`, so an unsolved
exercise's check says what to write. Exercise and check cells lose their outputs and are tagged
`raises-exception`, so JupyterLab's Run All goes on past an unsolved one; conceptual answers are
removed. Lesson cells keep their outputs.

`make student` writes the hand-out: a folder that works on its own (the learner copies, `helpers/`,
the requirements and packaging, and its own README, Makefile and test, from `tools/handout/`),
and a zip archive of it.

    python tools/student.py tag notebooks/*.ipynb          # (re)apply the metadata, in place
    python tools/student.py learner --out DIR notebooks/*.ipynb   # learner copies only
    python tools/student.py handout --out student --archive build/student.zip
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import textwrap
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
HINT, HINT_MORE = "# Hint: ", "#       "
CHECK_CALL = re.compile(r"^\s*(await\s+)?check_\w+\(", re.M)
ANSWER_PLACEHOLDER = "YOUR ANSWER HERE"
# Tagged on exercise and check cells of a learner copy: JupyterLab's Run All goes on past them.
RAISES = "raises-exception"
# What the hand-out holds besides its notebooks; tools/handout/ has its README, Makefile and test.
HANDOUT_FILES = {"requirements.txt": "requirements.txt", "pyproject.toml": "pyproject.toml",
                 ".env.example": ".env.example", "tools/handout/README.md": "README.md",
                 "tools/handout/Makefile": "Makefile", "tools/handout/test_handout.py": "tests/test_handout.py",
                 ".jupyter/lab-settings/overrides.json": ".jupyter/lab-settings/overrides.json"}


def cell_kind(cell: dict) -> str | None:
    """'solution', 'check', 'answer' for exercise cells; None for lesson cells."""
    source = cell.source
    if cell.cell_type == "code" and BEGIN in source:
        return "solution"
    if cell.cell_type == "code" and CHECK_CALL.search(source):
        return "check"
    if cell.cell_type == "markdown" and source.lstrip().startswith("<details>"):
        return "answer"
    return None


def tag_notebook(nb: nbformat.NotebookNode, prefix: str) -> int:
    """Set nbgrader metadata on every exercise cell (and remove stale metadata); return how many."""
    counts: dict[str, int] = {}
    for cell in nb.cells:
        kind = cell_kind(cell)
        cell.metadata.pop("nbgrader", None)
        if kind is None:
            continue
        counts[kind] = counts.get(kind, 0) + 1
        meta = {
            "grade": kind in ("check", "answer"),
            "grade_id": f"{prefix}-{kind}-{counts[kind]}",
            "locked": kind == "check",
            "schema_version": 3,
            "solution": kind in ("solution", "answer"),
            "task": False,
        }
        if meta["grade"]:
            meta["points"] = 1
        cell.metadata["nbgrader"] = meta
    return sum(counts.values())


def placeholder(indent: str, hint: str) -> list[str]:
    """`# YOUR CODE HERE` and a `raise NotImplementedError("...")` whose message is the hint."""
    one_line = f"{indent}raise NotImplementedError({json.dumps(hint, ensure_ascii=False)})"
    if len(one_line) <= 100:
        return [f"{indent}# YOUR CODE HERE", one_line]
    pieces = textwrap.wrap(hint, width=92 - len(indent), drop_whitespace=False)
    return [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError(",
            *(f"{indent}    {json.dumps(piece, ensure_ascii=False)}" for piece in pieces), f"{indent})"]


def _pop_hint(out: list[str]) -> str:
    """Take the `# Hint:` comment (and its continuation lines) off the end of `out`; '' if none."""
    end = len(out)
    while end and out[end - 1].lstrip().startswith(HINT_MORE):
        end -= 1
    if not end or not out[end - 1].strip().startswith(HINT):
        return ""
    lines = [out[end - 1].strip()[len(HINT):], *(line.strip()[1:] for line in out[end:])]
    del out[end - 1:]
    return " ".join(part.strip() for part in lines if part.strip())


def strip_solution(source: str) -> str:
    """Replace each hint + BEGIN/END SOLUTION region with the placeholder, keeping its indentation."""
    out: list[str] = []
    inside = False
    for line in source.split("\n"):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError("nested ### BEGIN SOLUTION")
            inside = True
            hint = _pop_hint(out)
            if not hint:
                raise ValueError("a solution region needs a hint on the line right above ### BEGIN SOLUTION: "
                                 f"`{HINT}<a sentence saying what to write>`")
            out.extend(placeholder(line[: len(line) - len(line.lstrip())], hint))
        elif stripped == END:
            if not inside:
                raise ValueError("### END SOLUTION without BEGIN")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("### BEGIN SOLUTION without END")
    return "\n".join(out)


def learner_copy(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy with solutions replaced, exercise outputs cleared and conceptual answers removed."""
    copy = nbformat.from_dict(nb)
    for cell in copy.cells:
        kind = cell_kind(cell)
        if kind == "solution":
            cell.source = strip_solution(cell.source)
        elif kind == "answer":
            cell.source = ANSWER_PLACEHOLDER
        if kind in ("solution", "check") and cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            tags = cell.metadata.setdefault("tags", [])
            if RAISES not in tags:
                tags.append(RAISES)
    return copy


def write_learner_copies(notebooks: list[Path], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for path in notebooks:
        nbformat.write(learner_copy(nbformat.read(path, as_version=4)), out / path.name)


def write_handout(out: Path, archive: Path | None = None) -> None:
    """The hand-out folder (replacing `out`), and a zip of it if `archive` is given."""
    if out.exists():
        shutil.rmtree(out)
    write_learner_copies(sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")), out / "notebooks")
    shutil.copytree(ROOT / "helpers", out / "helpers", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for source, target in HANDOUT_FILES.items():
        (out / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / source, out / target)
    if archive is not None:
        archive.parent.mkdir(parents=True, exist_ok=True)
        made = shutil.make_archive(str(archive.with_suffix("")), "zip", root_dir=out.parent, base_dir=out.name)
        print(f"{made}: the hand-out as one archive")
    print(f"{out}/: the hand-out ({len(list((out / 'notebooks').glob('*.ipynb')))} learner notebooks); "
          f"start it with `make lab` there")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python tools/student.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tag = sub.add_parser("tag", help="apply nbgrader metadata in place")
    tag.add_argument("notebooks", nargs="+", type=Path)
    learner = sub.add_parser("learner", help="write learner copies")
    learner.add_argument("--out", type=Path, required=True)
    learner.add_argument("notebooks", nargs="+", type=Path)
    handout = sub.add_parser("handout", help="write the hand-out folder (and a zip of it)")
    handout.add_argument("--out", type=Path, required=True)
    handout.add_argument("--archive", type=Path)
    args = parser.parse_args(argv)

    if args.command == "handout":
        write_handout(args.out, args.archive)
    elif args.command == "learner":
        write_learner_copies(args.notebooks, args.out)
        print(f"{args.out}/: {len(args.notebooks)} learner copies written")
    else:
        for path in args.notebooks:
            nb = nbformat.read(path, as_version=4)
            count = tag_notebook(nb, prefix=path.stem.split("_")[0])
            nbformat.write(nb, path)
            print(f"{path}: {count} exercise cells tagged")


if __name__ == "__main__":
    main(sys.argv[1:])
