"""Checks for lesson 04's exercises, chunks, sliding window and resume (backstage: a learner need not read this).

04-1 `check_questions_from_csv`: a lazy generator of {"text": question} over the rows of a CSV file.
04-2 `check_remaining`: the indices still to run, from a crashed run's JSONL file.
04-3 `check_slot_utilisation`: busy slot-time / (max_concurrency × span).

04-1 runs the learner's generator through run_to_jsonl against the local mock (`get_llm(backend="mock")`),
never a paid API; the other two are pure functions, checked on made-up and measured data.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from helpers.backend import SEED_PROMPTS, get_llm, translation_chain
from helpers.checks.common import ExerciseFailed, call_sync, fail, passed
from helpers.metrics import is_number, slots_busy
from helpers.mock import reply_for
from helpers.runners import read_jsonl_results, run_to_jsonl


# Rows of the CSV for 04-1: commas and a line break inside quoted fields, a blank question, non-ASCII text.
CSV_ROWS = [("q1", "测试1"), ("q2", "Hello, world"), ("q3", "第一行\n第二行"), ("q4", "  "), ("q5", '他说"好"'),
            ("q6", "数据")]
CSV_EXPECTED = [{"text": "测试1"}, {"text": "Hello, world"}, {"text": "第一行\n第二行"}, {"text": '他说"好"'},
                {"text": "数据"}]
FILLER_ROWS = 30_000  # about 1 MB more, so reading the whole file shows up in tracemalloc
LAZY_PEAK_BYTES = 256 * 1024  # a lazy reader holds a buffer of a few KB; the whole file is over 1 MB


def write_questions_csv(path: Path) -> None:
    """The file of exercise 04-1: header `id,question`, the tricky rows, then many ordinary ones."""
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["id", "question"])
        writer.writerows(CSV_ROWS)
        writer.writerows((f"f{i}", f"填充问题{i}") for i in range(FILLER_ROWS))


def first_items(produced: Iterator, k: int) -> tuple[list, int]:
    """The first k items of the learner's generator, and the peak bytes Python allocated to make them."""
    tracemalloc.start()
    try:
        items = list(itertools.islice(produced, k))
        return items, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def check_questions_from_csv(questions_from_csv: Callable[[Any], Any]) -> None:
    """Exercise 04-1: a lazy generator of {"text": question} over the rows of a CSV file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "questions.csv"
        write_questions_csv(path)
        produced = call_sync(questions_from_csv, path)
        if produced is None:
            fail("questions_from_csv returned None: `yield` each input (a function with yield is a generator).")
        if not isinstance(produced, Iterator):
            fail(f"questions_from_csv returned a {type(produced).__name__}, built from the whole file at once. "
                 "Use `yield` inside the loop over the rows, so inputs are made one at a time.")
        try:
            items, peak = first_items(produced, len(CSV_EXPECTED))
        except Exception as exc:  # noqa: BLE001 - any error in the learner's loop becomes a hint
            raise ExerciseFailed(f"Your generator raised {type(exc).__name__}: {exc}. A quoted field may hold a comma "
                                 "or a line break, so one line is not one row: parse with the csv module "
                                 "(csv.DictReader).") from None
        produced.close()
        if peak > LAZY_PEAK_BYTES:
            fail(f"It yields one at a time, but making the first {len(items)} inputs allocated {peak / 1e6:.1f} MB: "
                 "it reads the whole file first (read(), readlines() or list(reader)). Loop over "
                 "csv.DictReader(file) directly: it reads one record at a time.")
        check_csv_items(items)
        chain = translation_chain(get_llm(backend="mock"))
        out = Path(folder) / "answers.jsonl"
        head = itertools.islice(questions_from_csv(path), len(CSV_EXPECTED))
        await run_to_jsonl(chain, head, out, max_concurrency=4, progress=False)
        answers = [record.get("output") for record in read_jsonl_results(out)]
    model = chain.steps[1].model_name
    wanted = [reply_for(model, [{"role": "user", "content": SEED_PROMPTS["translate"].format(text=item["text"])}])
              for item in CSV_EXPECTED]
    if answers != wanted:
        fail(f"run_to_jsonl over your generator gave {answers}, expected {wanted}.")
    passed(f"the first {len(CSV_EXPECTED)} questions of {len(CSV_ROWS) + FILLER_ROWS:,} rows, one record at a "
           f"time (peak {peak / 1024:.0f} KiB); run_to_jsonl answered {answers}.")


def check_csv_items(items: list) -> None:
    """The first inputs must be the CSV's questions, as {"text": ...}, quoted fields whole, blanks skipped."""
    if items and not isinstance(items[0], dict):
        fail(f"It yields {type(items[0]).__name__}s; the chain's prompt needs a mapping: yield {{'text': ...}}.")
    if items and set(items[0]) != {"text"}:
        fail(f"It yields mappings with keys {sorted(items[0])}; the prompt has one variable: yield "
             "{'text': row['question']}.")
    texts = [item["text"] for item in items]
    if "question" in texts:
        fail("The header row became an input: csv.DictReader reads the header for you.")
    if any(isinstance(text, str) and text.startswith('"') for text in texts):
        fail("A quoted field was split or kept its quotes: a comma or a line break inside quotes belongs "
             "to the field. Parse with the csv module, not line.split(',').")
    if any(isinstance(text, str) and not text.strip() for text in texts):
        fail("A blank question became an input: skip rows whose question is empty after strip().")
    if texts != [item["text"] for item in CSV_EXPECTED]:
        fail(f"Expected the first inputs {CSV_EXPECTED}, got {items}. A comma or a line break inside a quoted "
             "field belongs to the field: parse with the csv module, not by lines.")


def check_remaining(remaining: Callable[[Any, int], Any]) -> None:
    """Exercise 04-2: indices still to run, from a crashed run's JSONL (duplicates, errors, a cut-off line)."""
    error = {"type": "InternalServerError", "message": "Error code: 500"}
    records = [{"index": 0, "output": "A0"}, {"index": 2, "output": "A2"}, {"index": 3, "error": error},
               {"index": 5, "output": "A5"}, {"index": 2, "output": "A2"},  # index 2 twice
               {"index": 6, "error": error}, {"index": 4, "output": "A4"}, {"index": 6, "output": "A6"},
               {"index": 8, "output": "A8"}, {"index": 4, "error": error}]  # 4: an answer, then a failed rerun
    text = "".join(json.dumps(record) + "\n" for record in records) + '{"index": 9, "outp'  # cut by the kill
    expected = [1, 3, 4, 7, 9]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "killed.jsonl"
        path.write_text(text, encoding="utf-8")
        try:
            answer = call_sync(remaining, path, 10)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            raise ExerciseFailed("Your function raised on the last line, which the kill cut in half "
                                 f"({type(exc).__name__}). Skip lines that are not valid JSON.") from None
    if isinstance(answer, int):
        fail(f"You returned a count ({answer}); return the list of indices, e.g. [1, 3, ...].")
    if answer is None:
        fail("remaining returned None: return a sorted list of indices.")
    answer = list(answer)
    if sorted(answer) != answer:
        fail(f"Return the indices sorted, got {answer}.")
    if 3 not in answer:
        fail("Index 3's only record is an error, so it still needs a run: only an 'output' record means done.")
    if 6 in answer:
        fail("Index 6 failed once and then succeeded: the LAST record for an index decides.")
    if 4 not in answer:
        fail("Index 4 has an answer, but its last record is an error (a later rerun failed): the LAST record "
             "decides, not whether any record has an output. 4 still needs a run.")
    if 2 in answer or 0 in answer:
        fail("Indices 0 and 2 have answers (2 even twice): they are done.")
    if 1 not in answer or 7 not in answer:
        fail("Indices 1 and 7 have no record at all: they never started, so they still need a run. "
             "Go through range(n), not only the indices in the file.")
    if 9 not in answer:
        fail("Index 9's line was cut off by the kill: it is not a record, so 9 still needs a run.")
    if answer != expected:
        fail(f"Expected {expected}, got {answer}: every index in range(n) without a final answer "
             "(never started, like 1 and 7, included).")
    passed(f"remaining = {answer}: the last record decides, duplicates count once, the cut-off line is ignored.")


def check_slot_utilisation(slot_utilisation: Callable[..., Any], runs: dict[str, dict] | None = None) -> None:
    """Exercise 04-3: busy slot-time / (max_concurrency × span), on made-up intervals and measured runs."""
    intervals = [(5.0, 6.0), (5.0, 5.5), (5.5, 7.0), (6.0, 6.5)]  # busy 3.5 s over 2 s with 2 slots
    answer = call_sync(slot_utilisation, intervals, 2)
    if not is_number(answer):
        fail(f"Return a number (a share from 0 to 1), got {answer!r}.")
    if math.isclose(answer, 1.75):
        fail("Got 1.75, more than 1: divide by max_concurrency too (there are that many slots).")
    if math.isclose(answer, 3.5 / (2 * 7.0)):
        fail("Measure the span from the first start, not from 0: (last end − first start).")
    if math.isclose(answer, 1.0):
        fail("Got 1.0: that counts requests, not their durations. Sum end − start over the intervals.")
    if not math.isclose(answer, 0.875):
        fail(f"For {intervals} with 2 slots: busy 3.5 s / (2 × 2 s) = 0.875; you returned {answer!r}.")
    shares = []
    for name, run in (runs or {}).items():
        mine = slots_busy(run["intervals"], run["concurrency"])
        theirs = call_sync(slot_utilisation, run["intervals"], run["concurrency"])
        if not math.isclose(theirs, mine, rel_tol=1e-6):
            fail(f"On the measured {name} run you got {theirs!r}, expected {mine:.4f}.")
        shares.append(f"{name} {mine:.0%}")
    passed("0.875 on the made-up case" + (f"; measured runs: {', '.join(shares)}" if shares else "") + ".")
