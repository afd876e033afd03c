"""Re-execute notebooks several times and report whether every claim held each time.

    python tools/rerun_claims.py                         # every lesson, 5 runs, the last 2 with a CPU hog
    python tools/rerun_claims.py notebooks/02_*.ipynb --runs 3 --hog-runs 1

Each run executes the notebook in memory (the stored file is left alone) against the mock. A
claim that a run contradicts raises in its cell (`helpers.claims.claim`), so a run either passes with
all its `Claim:` lines or fails at the cell that disagreed. A "hog" run keeps one core busy with
`stress-ng --cpu 1` (Debian's stress-ng package), as a loaded classroom machine would.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO = Path(__file__).resolve().parents[1]
CLAIM = re.compile(r"^Claim: .+ — (?:holds|does not hold)$", re.M)


def claims_of(nb: nbformat.NotebookNode) -> list[str]:
    text = "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                   for out in cell.get("outputs", []) if out.get("output_type") == "stream")
    return [match.group(0) for match in CLAIM.finditer(text)]


def execute(path: Path) -> tuple[bool, float, list[str], str]:
    """(passed, seconds, claims printed, the error if it failed) for one execution of a copy of `path`."""
    nb = nbformat.read(path, as_version=4)  # executed in memory: the stored notebook is left alone
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    try:
        client.execute()
        error = ""
    except CellExecutionError as exc:
        error = str(exc).strip().splitlines()[-1][:300]
    return not error, time.perf_counter() - start, claims_of(nb), error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--runs", type=int, default=5, help="executions per notebook (default 5)")
    parser.add_argument("--hog-runs", type=int, default=2, help="how many of them with a CPU hog (default 2)")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.hog_runs and not shutil.which("stress-ng"):
        parser.error("--hog-runs needs stress-ng (apt-get install stress-ng), or pass --hog-runs 0")
    os.environ.setdefault("WORKBOOK_BACKEND", "mock")
    failures = 0
    for run in range(args.runs):
        hog = run >= args.runs - args.hog_runs
        stress = subprocess.Popen(["stress-ng", "--cpu", "1", "--quiet"]) if hog else None
        try:
            for path in notebooks:
                passed, seconds, claims, error = execute(path)
                failures += not passed
                label = "with a CPU hog" if hog else "quiet"
                print(f"run {run + 1} ({label}) {path.name}: {'passed' if passed else 'FAILED'} in {seconds:.0f} s, "
                      f"{len(claims)} claims held" + (f" · {error}" if error else ""), flush=True)
        finally:
            if stress:
                stress.terminate()
                stress.wait()
    print(f"{failures} failed execution(s) of {args.runs * len(notebooks)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
