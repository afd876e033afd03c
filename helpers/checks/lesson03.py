"""Checks for lesson 03's exercises, observability (backstage: a learner need not read this).

03-1 `check_find_stragglers`: the indices whose latency is over factor × the median, from a BatchReport.
03-2 `check_run_with_ttft`: run_tracked with a streaming model and a RequestTimer, returning p99 TTFT.

Both run the learner's code against the local mock (`get_llm(backend="mock")`), never a paid API.
"""

from __future__ import annotations

import inspect
import statistics
from collections.abc import Callable
from typing import Any

from helpers.backend import DEFAULT_MODEL, SEED_PROMPTS, get_llm, make_chain, translation_chain
from helpers.checks.common import (NOT_DONE, SENTENCES_TEMPLATE, ExerciseFailed, call_learner, fail,
                                   long_answer_topics, passed, require_async)
from helpers.metrics import is_number
from helpers.mock import get_mock, request_key, roll
from helpers.runners import BatchReport, run_tracked
from helpers.timing import RequestTimer


def _mock_made_slow(prompts: list[str], tail_fraction: float) -> list[int]:
    """Indices of the prompts the mock makes slow on their first attempt (its tail roll)."""
    seed = 0
    try:
        seed = get_mock().settings().seed
    except Exception:
        pass
    return [
        i
        for i, prompt in enumerate(prompts)
        if roll(seed, "tail", request_key(DEFAULT_MODEL, [{"role": "user", "content": prompt}]), 0) < tail_fraction
    ]


async def check_find_stragglers(find_stragglers: Callable[..., Any], *, n: int = 200) -> None:
    """Exercise 03-1: indices whose latency is over factor × the median, from a BatchReport."""
    texts = [f"慢{i}" for i in range(n)]
    # Reset first (attempt 0 for every prompt), so the mock's slow set is known.
    with get_mock().temporarily(tail_fraction=0.05):
        report = await run_tracked(
            translation_chain(get_llm(backend="mock")), [{"text": t} for t in texts], max_concurrency=20, progress=False
        )
    intervals = report.intervals
    latencies = [end - start for start, end in intervals]

    def over(values: list[float], factor: float, centre: float | None = None) -> list[int]:
        limit = factor * (statistics.median(values) if centre is None else centre)
        return [i for i, value in enumerate(values) if value > limit]

    async def call(factor: float) -> Any:
        try:
            result = find_stragglers(report, factor=factor)
            return await result if inspect.isawaitable(result) else result
        except NotImplementedError:
            raise ExerciseFailed(NOT_DONE) from None

    result = await call(3.0)
    expected = over(latencies, 3.0)
    if result is None:
        fail("Your function returned None: return the list of indices.")
    result = list(result)
    if any(isinstance(x, float) for x in result):
        fail("Return the inputs' indices (ints), not their latencies: use enumerate().")
    if result != expected:
        if sorted(result) == expected:
            fail("The right inputs, but not in input order: return them sorted by index.")
        if [i - 1 for i in result] == expected:
            fail("Every index is one too high: enumerate() starts at 0, like report.results.")
        ends = [end for _, end in intervals]
        if result == over(ends, 3.0):
            fail("You compared end times, which grow through the run: the latency is end - start.")
        if result == over(latencies, 3.0, statistics.mean(latencies)):
            fail("You compared with the mean, which the slow requests pull up: use the median.")
        fail(f"Expected {len(expected)} stragglers, got {len(result)}: keep the indices whose "
             "end - start is more than factor × the median of all latencies.")
    result = list(await call(1.2))
    if result != over(latencies, 1.2):
        if result == over(latencies, 1.2, statistics.mean(latencies)):
            fail("With factor=1.2 you compared with the mean, which the slow requests pull up: use the median.")
        fail("With factor=1.2 your answer should change: use the factor argument, not a fixed 3.")
    slow = _mock_made_slow([SEED_PROMPTS["translate"].format(text=t) for t in texts], 0.05)
    found = sum(i in expected for i in slow)
    print(f"Of the {len(slow)} inputs the mock made 5× slower you found {found / len(slow):.0%} "
          "(on a busy machine, other requests can be slow too).")
    passed("the right stragglers for factor 3 and for factor 1.2, in input order.")


async def check_run_with_ttft(run_with_ttft: Callable[..., Any], *, n: int = 40) -> None:
    """Exercise 03-2: run_tracked with a streaming model and a RequestTimer, returning p99 TTFT."""
    require_async(run_with_ttft, "`await run_tracked(...)`")
    topics = long_answer_topics(n, min_pieces=45, pool=300)  # long answers, so TTFT and latency are far apart
    try:
        result = await call_learner(run_with_ttft, [{"topic": t} for t in topics])
    except ValueError as error:  # percentile() / statistics of an empty list
        fail(
            f"{type(error).__name__}: {error}. The timer recorded no first tokens: `ainvoke` streams only "
            "when the model is built with get_llm(streaming=True), and the timer must be in "
            "config={'callbacks': [timer]}."
        )
    if not isinstance(result, tuple) or len(result) != 2:
        fail("Return a pair: (report, p99_ttft).")
    report, value = result
    if not isinstance(report, BatchReport):
        fail(f"The first item should be run_tracked's BatchReport, got a {type(report).__name__}.")
    if report.ok != n:
        fail(f"{report.ok} of {n} inputs succeeded: pass the inputs unchanged to run_tracked.")
    if report.max_concurrency != 20:
        fail(f"Use max_concurrency=20 (you used {report.max_concurrency}).")
    if not is_number(value) or not value > 0:
        fail(f"p99_ttft must be a positive number of seconds, got {value!r}.")
    if value > 20:
        fail(f"p99_ttft = {value:.0f}: that looks like milliseconds. Return seconds.")
    if value >= 0.8 * report.latency.p99:
        fail(
            f"{value:.3f} s is about the p99 latency ({report.latency.p99:.3f} s), not the TTFT: "
            "take percentile(timer.ttfts(), 99), not the latencies."
        )
    timer = RequestTimer()  # a reference run, to compare with
    reference = make_chain(SENTENCES_TEMPLATE, get_llm(backend="mock", streaming=True))
    await run_tracked(reference, [{"topic": t} for t in topics], max_concurrency=20, progress=False,
                      config={"callbacks": [timer]})
    median_ttft = statistics.median(timer.ttfts())
    if value < 0.9 * median_ttft:
        fail(
            f"{value:.3f} s is below the median TTFT ({median_ttft:.3f} s), so it cannot be the p99: "
            "percentile() takes q from 0 to 100 (99, not 0.99)."
        )
    passed(f"p99 TTFT {value:.3f} s, against p99 latency {report.latency.p99:.3f} s "
           f"(median TTFT in a second run: {median_ttft:.3f} s).")
