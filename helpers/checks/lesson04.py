"""Checks for lesson 04's exercises, chunks, sliding window and resume (backstage: a learner need not read this).

04-1 `check_questions_from`: a lazy generator of {"text": line} over the non-empty lines of a file.
04-2 `check_remaining`: the indices still to run, from a crashed run's JSONL file.
04-3 `check_slot_utilisation`: busy slot-time / (max_concurrency × span).

04-1 runs the learner's generator through run_to_jsonl against the local mock (`get_llm(backend="mock")`),
never a paid API; the other two are pure functions, checked on made-up and measured data.
"""

from __future__ import annotations

import inspect
import json
import math
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from helpers.backend import SEED_PROMPTS, get_llm, translation_chain
from helpers.checks.common import ExerciseFailed, call_sync, fail, passed
from helpers.metrics import is_number, slots_busy
from helpers.mock import reply_for
from helpers.runners import read_jsonl_results, run_to_jsonl


async def check_questions_from(questions_from: Callable[[Any], Any]) -> None:
    """Exercise 04-1: a lazy generator of {"text": line} over the non-empty lines of a file."""
    lines = ["测试1\n", "\n", "  你好世界  \n", "数据\n", "   \n", "最后一行"]  # the last has no line break
    expected = [{"text": "测试1"}, {"text": "你好世界"}, {"text": "数据"}, {"text": "最后一行"}]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "questions.txt"
        path.write_text("".join(lines), encoding="utf-8")
        produced = call_sync(questions_from, path)
        if produced is None:
            fail("questions_from returned None: `yield` each input (a function with yield is a generator).")
        if not isinstance(produced, Iterator):
            fail(f"questions_from returned a {type(produced).__name__}: that reads the whole file at once. "
                 "Use `yield` inside `for line in file:` so inputs are made one at a time.")
        source = inspect.getsource(questions_from) if inspect.isfunction(questions_from) else ""
        if ".readlines(" in source or ".read(" in source or "read_text(" in source:
            fail("It yields one at a time, but reads the whole file first (read/readlines/read_text). "
                 "Iterate over the open file: `for line in file:` reads one line at a time.")
        items = list(produced)
        if items and not isinstance(items[0], dict):
            fail(f"It yields {type(items[0]).__name__}s; the chain's prompt needs a mapping: yield {{'text': ...}}.")
        texts = [item.get("text") for item in items]
        if any(isinstance(text, str) and text.endswith("\n") for text in texts):
            fail("The texts still end with the line break: strip it (line.strip()).")
        if any(isinstance(text, str) and not text.strip() for text in texts):
            fail("Blank lines became inputs: skip lines that are empty after strip().")
        if any(isinstance(text, str) and text != text.strip() for text in texts):
            fail("Some texts keep surrounding spaces: use line.strip(), not only rstrip('\\n').")
        if items != expected:
            fail(f"Expected {expected}, got {items}. Is the last line (no line break at the end) missing?")
        chain = translation_chain(get_llm(backend="mock"))
        out = Path(folder) / "answers.jsonl"
        await run_to_jsonl(chain, questions_from(path), out, max_concurrency=4, progress=False)
        records = read_jsonl_results(out)
    answers = [record.get("output") for record in records]
    model = chain.steps[1].model_name
    wanted = [reply_for(model, [{"role": "user", "content": SEED_PROMPTS["translate"].format(text=item["text"])}])
              for item in expected]
    if answers != wanted:
        fail(f"run_to_jsonl over your generator gave {answers}, expected {wanted}.")
    passed(f"{len(expected)} inputs from 6 lines, made one at a time; run_to_jsonl answered {answers}.")


def check_remaining(remaining: Callable[[Any, int], Any]) -> None:
    """Exercise 04-2: indices still to run, from a crashed run's JSONL (duplicates, errors, a cut-off line)."""
    error = {"type": "InternalServerError", "message": "Error code: 500"}
    records = [{"index": 0, "output": "A0"}, {"index": 2, "output": "A2"}, {"index": 3, "error": error},
               {"index": 5, "output": "A5"}, {"index": 2, "output": "A2"},  # index 2 twice
               {"index": 6, "error": error}, {"index": 6, "output": "A6"}, {"index": 8, "output": "A8"}]
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
    if 2 in answer or 0 in answer:
        fail("Indices 0 and 2 have answers (2 even twice): they are done.")
    if 9 not in answer:
        fail("Index 9's line was cut off by the kill: it is not a record, so 9 still needs a run.")
    if answer != expected:
        fail(f"Expected {expected}, got {answer}: every index in range(n) without a final answer "
             "(never started, like 1, 4 and 7, included).")
    passed(f"remaining = {answer}: errors rerun, duplicates counted once, the cut-off line ignored.")


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
