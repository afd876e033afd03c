"""Checks for lesson 01's exercises, basic abatch (backstage: a learner need not read this).

01-1 `check_concurrency_choice`: the learner writes `concurrency_for(n, budget_s, latency)`. The check
     tries it on batches whose answer it knows exactly (Little's law, C = n / budget_s × latency, with
     modest headroom: 1.2× to 1.6×), so a guessed constant or a wrong formula fails whatever the
     machine's load; then it runs 300 translations at the concurrency the function gives for the
     latency the check measures itself, and times them.
01-2 `check_ordered_progress`: the learner writes `translate_with_progress(chain, inputs, report)`, which
     must call `report(done, failed)` as each request comes back, keep going past failures, return the
     outputs in input order with each failure's exception in its slot, and keep at most 10 in flight.
     The check runs it against a mock of its own that fails some requests (`max_retries=0`).

Both run the learner's code against a private local mock (`start_mock`), never a paid API, so the
notebook's own backend setting and the shared mock's settings do not matter here.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import openai
from langchain_core.runnables import Runnable
from langchain_openai import ChatOpenAI

from helpers.backend import DEFAULT_MODEL, make_chain, translation_chain
from helpers.checks.common import (FAULT_FREE, call_learner, call_sync, fail, passed, peak_overlap,
                                   require_async)
from helpers.metrics import is_number
from helpers.mock import MockHandle, reply_for, start_mock
from helpers.timing import RequestTimer

# ---------------------------------------------------------------- 01-1: size the concurrency

LOWEST_HEADROOM, HIGHEST_HEADROOM = 1.2, 1.6
# (n, budget_s, latency) batches with exact answers; the last one needs a single request in flight.
SIZING_CASES = [(1000, 40.0, 2.0), (300, 3.0, 0.1), (5000, 60.0, 1.2), (60, 30.0, 0.4)]


def mock_chain(mock: MockHandle, template: str | None = None, **llm_kwargs: Any) -> Runnable:
    """The seed's chain shape against `mock` (translation unless `template` is given)."""
    llm = ChatOpenAI(model=DEFAULT_MODEL, base_url=mock.base_url, api_key="mock-key", temperature=0, timeout=30,
                     **llm_kwargs)
    return make_chain(template, llm) if template else translation_chain(llm)


async def mean_latency(chain: Runnable, samples: int = 8) -> float:
    """The mean latency of `samples` warm calls of `chain`, one at a time (after one call to warm up)."""
    await chain.ainvoke({"text": "预热"})
    latencies = []
    for i in range(samples):
        start = time.perf_counter()
        await chain.ainvoke({"text": f"测试{i}"})
        latencies.append(time.perf_counter() - start)
    return statistics.mean(latencies)


def _choice(concurrency_for: Callable[..., Any], n: int, budget_s: float, latency: float) -> int:
    """The learner's concurrency for one batch; it must be a whole number."""
    choice = call_sync(concurrency_for, n, budget_s, latency)
    if choice is None:
        fail(f"concurrency_for({n}, {budget_s}, {latency}) returned None: return the max_concurrency.")
    if isinstance(choice, bool) or not isinstance(choice, int):
        fail(f"concurrency_for({n}, {budget_s}, {latency}) returned {choice!r}: max_concurrency must be a "
             "whole number (try math.ceil).")
    return choice


def _judge(choice: int, n: int, budget_s: float, latency: float) -> None:
    """Fail unless `choice` is Little's law's concurrency for this batch, with modest headroom."""
    case = f"concurrency_for({n}, {budget_s}, {latency}) gave {choice}"
    needed = n / budget_s * latency  # Little's law: C = X × L, with X = n / budget_s
    law = f"Little's law says C = X × L = {n} / {budget_s} s × {latency} s = {needed:g} in flight"
    if choice < needed:
        fail(f"Too low: {case}, but {law}.")
    if choice < LOWEST_HEADROOM * needed - 1e-9:
        fail(f"No headroom: {case}, and {law}. A batch never runs at 100% of C / L (ramp-down, "
             f"formatting, parsing): add {LOWEST_HEADROOM - 1:.0%} to {HIGHEST_HEADROOM - 1:.0%}.")
    if choice > math.ceil(HIGHEST_HEADROOM * needed):
        fail(f"Too much: {case}, and {law}. That is over {HIGHEST_HEADROOM}× what the budget needs; "
             "against a real API the extra concurrency mostly buys rate-limit errors.")


async def check_concurrency_choice(concurrency_for: Any, *, n: int = 300, budget_s: float = 3.0) -> None:
    """Exercise 01-1: does `concurrency_for(n, budget_s, latency)` apply Little's law with modest headroom?"""
    if not callable(concurrency_for):
        fail(f"Write a function concurrency_for(n, budget_s, latency), not a {type(concurrency_for).__name__}: "
             "the check calls it for several batches.")
    choices = [_choice(concurrency_for, *case) for case in SIZING_CASES]
    if len(set(choices)) == 1:
        fail(f"concurrency_for gives {choices[0]} whatever the batch: a guess. Compute it from n, budget_s "
             "and latency with Little's law.")
    for choice, case in zip(choices, SIZING_CASES):
        _judge(choice, *case)
    mock = start_mock(speed=4, **FAULT_FREE)  # the notebook's speed; a mock of its own, whatever the backend
    try:
        chain = mock_chain(mock)
        latency = round(await mean_latency(chain), 4)
        concurrency = _choice(concurrency_for, n, budget_s, latency)
        _judge(concurrency, n, budget_s, latency)
        inputs = [{"text": f"测试{i}"} for i in range(n)]
        start = time.perf_counter()
        await chain.abatch(inputs, config={"max_concurrency": concurrency})
        elapsed = time.perf_counter() - start
    finally:
        mock.stop()
    # The formula is what is checked (exactly, above); the run shows it at work. Its time is a measurement:
    # on a busy machine the client's CPU, not the concurrency, can make it miss the budget.
    passed(f"your function follows Little's law with modest headroom on {len(SIZING_CASES) + 1} batches. At the "
           f"latency measured here ({latency:.3f} s) it ran {n} requests in {elapsed:.2f} s, for a {budget_s} s "
           "budget (a busy machine can push that time over: the formula is what is checked).")


# ---------------------------------------------------------------- 01-2: progress that counts failures

PROGRESS_TEMPLATE = "Write a few sentences about topic number {text}."  # replies of very different lengths
PROGRESS_SEED = 0  # with error_rate 0.15 this seed fails 5 of the 40 first attempts, one in the first ten


class _Reports:
    """What the check hands the learner as `report`: records each call and when it came."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, tuple[Any, ...]]] = []

    def __call__(self, *args: Any) -> None:
        self.calls.append((time.perf_counter(), args))


async def _settle(mock: MockHandle, most: float = 5.0) -> None:
    """Wait until `mock` has nothing in flight and its request count stops growing (at most `most` s)."""
    deadline, last = time.perf_counter() + most, -1
    while time.perf_counter() < deadline:
        stats = mock.stats()
        if stats["in_flight"] == 0 and stats["requests"] == last:
            return
        last = stats["requests"]
        await asyncio.sleep(0.2)


async def _run_progress(translate: Callable[..., Any], n: int) -> tuple[Any, _Reports, RequestTimer, dict, list]:
    """Run the learner's function on n inputs against a failing private mock: results, reports, timer, stats."""
    mock = start_mock(speed=4, **{**FAULT_FREE, "error_rate": 0.15}, seed=PROGRESS_SEED)
    timer, reports = RequestTimer(), _Reports()
    try:
        chain = mock_chain(mock, PROGRESS_TEMPLATE, max_retries=0).with_config(callbacks=[timer])
        inputs = [{"text": str(i)} for i in range(n)]
        try:
            results = await call_learner(translate, chain, inputs, reports)
        except openai.APIError as error:
            await _settle(mock)  # the requests still running finish against this mock, not a stopped one
            fail(f"Your function raised {type(error).__name__} at the first failed request, and the rest of the "
                 "batch was lost (its requests still ran). Pass return_exceptions=True, so each failure "
                 "comes back as an output.")
        stats = mock.stats()
    finally:
        mock.stop()
    expected = [reply_for(DEFAULT_MODEL, [{"role": "user", "content": PROGRESS_TEMPLATE.format(text=i)}])
                for i in range(n)]
    return results, reports, timer, stats, expected


def _check_outputs(results: Any, expected: list[str], errors: int) -> list:
    """The outputs in input order, each failure's exception in its slot (else fail with a hint)."""
    n = len(expected)
    if results is None:
        fail("Your function returned None: return the list of outputs.")
    results = list(results)
    if results and isinstance(results[0], tuple):
        fail("Return just the outputs, not (index, output) pairs: results[index] = output.")
    failures = [r for r in results if isinstance(r, Exception)]
    if len(results) == n - errors and not failures:
        fail(f"Got {len(results)} outputs for {n} inputs: only the successes. Keep each failed input's "
             "exception in its slot, so results[i] stays the outcome of inputs[i].")
    if len(results) != n:
        fail(f"Expected {n} outputs, got {len(results)}: every input needs exactly one output.")
    if any(r is None for r in results):
        fail("Some slots hold None: write every output, and every exception, to its index.")
    answers = [r for r in results if not isinstance(r, Exception)]
    if any(r != expected[i] for i, r in enumerate(results) if not isinstance(r, Exception)):
        if set(map(str, answers)) <= set(expected):
            fail("The answers are all there but in completion order: write each output to its index.")
        fail("Some outputs don't match their inputs: did you pass `inputs` to the chain unchanged?")
    if len(failures) != errors:
        fail(f"{errors} requests failed but {len(failures)} slots hold an exception: keep each failure "
             "as its exception (no retry here).")
    return results


def _check_reports(reports: _Reports, n: int, errors: int, last_end: float) -> None:
    """report(done, failed) called once per request, as each came back, with the right counts."""
    if not reports.calls:
        fail("report was never called: call report(done, failed) each time a request comes back, "
             "so the learner watching sees the batch move.")
    args = [call for _, call in reports.calls]
    if any(len(a) != 2 or not all(is_number(v) for v in a) for a in args):
        fail("Call report with two numbers: report(done, failed).")
    if len(args) != n or [a[0] for a in args] != list(range(1, n + 1)):
        fail(f"report was called {len(args)} times, with done = {[a[0] for a in args][:5]}...: call it once "
             f"per request that comes back, with done counting up from 1 to {n}.")
    failed = [a[1] for a in args]
    if failed[-1] != errors or any(b < a for a, b in zip(failed, failed[1:])):
        fail(f"failed ended at {failed[-1]}, but {errors} requests failed: count the outputs that are "
             "exceptions (isinstance(output, Exception)) as they come back.")
    early = sum(1 for at, _ in reports.calls if at < last_end)
    if early < n // 2:
        fail(f"Only {early} of the {n} reports came before the last request had finished: your progress "
             "moved only when the whole batch was over (a plain abatch). Report each answer as it "
             "arrives: iterate abatch_as_completed.")


async def check_ordered_progress(translate: Callable[..., Any], *, n: int = 40) -> None:
    """Exercise 01-2: progress as answers arrive, failures in place, input order, at most 10 in flight."""
    require_async(translate, "`await` the chain")
    results, reports, timer, stats, expected = await _run_progress(translate, n)
    errors = stats["errors_injected"]
    _check_outputs(results, expected, errors)
    _check_reports(reports, n, errors, max((end for _, _, end, _ in timer.records), default=0.0))
    peak = peak_overlap(timer.intervals())
    if peak > 10:
        fail(f"{peak} requests were in flight at once: pass config={{'max_concurrency': 10}}. Passed as a "
             "keyword argument, max_concurrency goes to the prompt, which ignores it.")
    passed(f"{n} outputs in input order with the {errors} failures in their slots; report was called as each "
           "request came back; never more than 10 requests in flight.")
