"""The package's layout keeps its promises: what a learner reads stays short, and the map names it all.

- The learner's path (runners.py + reliability.py + results_file.py) is at most 1,000 lines, and no
  function in it is over 40 lines (a function's length includes the functions nested in it).
- No module under helpers/ is over 450 lines.
- helpers/__init__.py, the package map, names every module; each module opens with a docstring.
- Lessons point learners at the modules a learner reads, never into the machinery's files.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HELPERS = ROOT / "helpers"
LEARNER_PATH = ["runners.py", "reliability.py", "results_file.py"]
PATH_LIMIT, FUNCTION_LIMIT, MODULE_LIMIT = 1000, 40, 450
MODULES = sorted(p for p in HELPERS.rglob("*.py") if "__pycache__" not in p.parts)


def lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def long_functions(path: Path, limit: int) -> list[str]:
    """Top-level functions and methods longer than `limit` lines (nested functions count in their parent)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in tree.body:
        members = node.body if isinstance(node, ast.ClassDef) else [node]
        for member in members:
            if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([member.lineno] + [d.lineno for d in member.decorator_list])
                length = member.end_lineno - start + 1
                if length > limit:
                    found.append(f"{path.name}:{member.name} ({length} lines)")
    return found


def test_the_learners_path_is_short():
    total = sum(lines(HELPERS / name) for name in LEARNER_PATH)
    assert total <= PATH_LIMIT, f"the learner's path is {total} lines (limit {PATH_LIMIT})"
    too_long = [f for name in LEARNER_PATH for f in long_functions(HELPERS / name, FUNCTION_LIMIT)]
    assert not too_long, f"functions over {FUNCTION_LIMIT} lines on the learner's path: {too_long}"


def test_the_length_rules_can_fail(tmp_path):
    long = tmp_path / "long.py"
    long.write_text("def f():\n" + "    x = 1\n" * 45 + "\n\ndef g():\n    return 1\n", encoding="utf-8")
    assert long_functions(long, FUNCTION_LIMIT) == ["long.py:f (46 lines)"]
    assert lines(long) == 50


@pytest.mark.parametrize("module", MODULES, ids=lambda p: str(p.relative_to(HELPERS)))
def test_no_module_is_too_long_and_each_says_what_it_is(module):
    assert lines(module) <= MODULE_LIMIT, f"{module.relative_to(ROOT)} is {lines(module)} lines (limit {MODULE_LIMIT})"
    if module.name != "__main__.py":
        assert ast.get_docstring(ast.parse(module.read_text(encoding="utf-8"))), f"{module.name} has no docstring"


def test_the_map_names_every_module():
    package_map = ast.get_docstring(ast.parse((HELPERS / "__init__.py").read_text(encoding="utf-8")))
    named = set(re.findall(r"\w+\.py|\w+/", package_map))
    missing = []
    for module in MODULES:
        relative = module.relative_to(HELPERS)
        if relative.name in ("__init__.py", "__main__.py"):
            continue
        folder_named = len(relative.parts) == 1 or f"{relative.parts[0]}/" in named
        in_range = re.fullmatch(r"lesson\d\d\.py", relative.name) and "lesson01.py ... lesson" in package_map
        if not folder_named or (relative.name not in named and not in_range):
            missing.append(str(relative))
    assert not missing, f"helpers/__init__.py does not name: {missing}"


BACKSTAGE = ("helpers/mock/", "helpers/checks/", "helpers/bench/", "helpers.mock.", "helpers.bench.",
             "helpers.checks.")


def test_lessons_point_learners_only_at_modules_a_learner_reads():
    """Prose may name a backstage package (to say it need not be read), but never send a learner into its files."""
    pointing = []
    for path in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            text = "".join(cell["source"])
            pointing += [f"{path.name}: {word}" for word in BACKSTAGE if word in text]
    assert not pointing, f"lesson prose sends learners into the machinery: {pointing}"
