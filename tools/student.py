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

`make student` writes learner copies without nbgrader: each solution region becomes
`# YOUR CODE HERE` + `raise NotImplementedError()` (as nbgrader does), exercise cells
lose their outputs, and conceptual answers are removed. Lesson cells keep their outputs.

    python tools/student.py tag notebooks/*.ipynb          # (re)apply the metadata, in place
    python tools/student.py learner --out student notebooks/*.ipynb
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CHECK_CALL = re.compile(r"^\s*(await\s+)?check_\w+\(", re.M)
PLACEHOLDER = "# YOUR CODE HERE\nraise NotImplementedError()"
ANSWER_PLACEHOLDER = "YOUR ANSWER HERE"


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


def strip_solution(source: str) -> str:
    """Replace each BEGIN/END SOLUTION region with the placeholder, keeping its indentation."""
    lines, out, inside = source.split("\n"), [], False
    for line in lines:
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError("nested ### BEGIN SOLUTION")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(indent + p for p in PLACEHOLDER.split("\n"))
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
    return copy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python tools/student.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tag = sub.add_parser("tag", help="apply nbgrader metadata in place")
    tag.add_argument("notebooks", nargs="+", type=Path)
    learner = sub.add_parser("learner", help="write learner copies")
    learner.add_argument("--out", type=Path, required=True)
    learner.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)

    for path in args.notebooks:
        nb = nbformat.read(path, as_version=4)
        if args.command == "tag":
            count = tag_notebook(nb, prefix=path.stem.split("_")[0])
            nbformat.write(nb, path)
            print(f"{path}: {count} exercise cells tagged")
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            nbformat.write(learner_copy(nb), args.out / path.name)
            print(f"{args.out / path.name}: learner copy written")


if __name__ == "__main__":
    main(sys.argv[1:])
