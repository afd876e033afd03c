"""What a Run All costs on a real backend: requests and tokens per notebook, measured on a second server.

    .venv/bin/python tools/real_backend_costs.py                  # print the table
    .venv/bin/python tools/real_backend_costs.py --update-readme  # also write it into README.md (make costs)

Runs every notebook against tests/other_server.py, an OpenAI-compatible server that is not the
workbook's mock, with the settings `.env` uses for a real backend and the default request budget.
For each notebook it reports the requests that reached that server, their tokens (as that server
counts them, about 4 characters a token, so a real tokenizer gives other figures), the cell that sent
the most, and how many demos ran on the local mock instead. The README's table lies between the
`costs` markers and is written only by this script.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from other_server import DEMO_LINE, OtherServer, run_notebook  # noqa: E402

from helpers.budget import DEFAULT_MAX_REQUESTS  # noqa: E402

README = ROOT / "README.md"
MARKERS = ("<!-- costs:start -->", "<!-- costs:end -->")


def measure() -> str:
    """Run every notebook on the other server; return the Markdown table and its heading lines."""
    server = OtherServer().start()
    rows, started = [], time.time()
    try:
        for notebook in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")):
            runs = run_notebook(str(notebook), server)
            biggest = max(runs, key=lambda run: run.requests)
            demos = sum(line.count(DEMO_LINE) for run in runs for line in run.text.splitlines())
            raised = sum(1 for run in runs if run.error and "raises-exception" not in run.tags)
            rows.append(f"| {notebook.stem} | {sum(r.requests for r in runs):,} | {sum(r.tokens for r in runs):,} "
                        f"| {biggest.requests:,} | {demos} | {raised} |")
            print(rows[-1], flush=True)
    finally:
        server.stop()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return "\n".join([
        f"Command: `.venv/bin/python tools/real_backend_costs.py --update-readme` · {when} · "
        f"{(time.time() - started) / 60:.1f} min · budget {DEFAULT_MAX_REQUESTS} requests per notebook",
        "",
        "| notebook | requests | tokens | most in one cell | demos on the local mock | cells that raised |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *rows,
    ])


def write_into_readme(table: str) -> None:
    start, end = MARKERS
    text = README.read_text(encoding="utf-8")
    if start not in text or end not in text:
        raise SystemExit(f"README.md has no {start} ... {end} markers to write between")
    pattern = re.escape(start) + ".*?" + re.escape(end)
    README.write_text(re.sub(pattern, lambda _: f"{start}\n{table}\n{end}", text, flags=re.S), encoding="utf-8")


if __name__ == "__main__":
    result = measure()
    print(result)
    if "--update-readme" in sys.argv[1:]:
        write_into_readme(result)
