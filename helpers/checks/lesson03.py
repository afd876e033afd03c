"""Checks for lesson 03's exercises, tracked processing (backstage: a learner need not read this).

03-1 `check_find_stragglers`: the indices whose latency is over factor × the median, from a BatchReport.
03-2 `check_run_with_ttft`: run_tracked with a streaming model and a RequestTimer, returning p99 TTFT.
03-3 `check_run_workers`: the core loop, N workers pulling (index, input) from one shared iterator.

03-1 and 03-2 run the learner's code against a private local mock (`start_mock`), never a paid API;
03-3 uses a scripted chain that sleeps, so the check decides how long each input takes. 03-1 also
grades a report built here, with latencies the mean and the median cannot agree on. 03-2 watches the
learner's run through a LangChain configure hook, so it sees the same first tokens as their timer.
"""

from __future__ import annotations

import asyncio
import inspect
import statistics
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

from langchain_core.runnables import RunnableLambda
from langchain_core.tracers.context import register_configure_hook
from langchain_openai import ChatOpenAI

from helpers.backend import DEFAULT_MODEL, SEED_PROMPTS, routed_to, translation_chain
from helpers.checks.common import (FAULT_FREE, SENTENCES_TEMPLATE, call_learner, fail,
                                   long_answer_topics, not_done, passed, require_async)
from helpers.metrics import LatencyStats, is_number, percentile, slots_busy_while_refilling
from helpers.mock import MockHandle, request_key, roll, start_mock
from helpers.runners import BatchReport, run_tracked
from helpers.timing import RequestTimer

_private: MockHandle | None = None


def _private_mock() -> MockHandle:
    """This module's own mock server, started once per process, so no check changes the lesson's mock."""
    global _private
    if _private is None or not _private.running():
        _private = start_mock(**FAULT_FREE)
    return _private


def _made_slow(mock: MockHandle, prompts: list[str]) -> list[bool]:
    """For each prompt, whether the mock (with its settings now) makes its first attempt a tail request."""
    settings = mock.settings()
    return [roll(settings.seed, "tail", request_key(DEFAULT_MODEL, [{"role": "user", "content": p}]), 0)
            < settings.tail_fraction for p in prompts]


# ---------------------------------------------------------------- 03-1: find the stragglers


def _over(values: list[float], factor: float, centre: float) -> list[int]:
    return [i for i, value in enumerate(values) if value > factor * centre]


def _crafted_report() -> BatchReport:
    """41 inputs, starts 30 ms apart: mostly 100 ms, some 150-250 ms, some 330-400 ms, three of 2-3 s.

    The three slowest pull the mean up to about 2.6 × the median, so factor × mean and factor ×
    median pick different inputs, and so do factors 3 and 1.2, and end times and latencies.
    """
    latencies = [0.1 + 0.0002 * (i % 7) for i in range(41)]
    for i, value in {3: 0.35, 9: 0.16, 14: 2.0, 17: 0.33, 22: 0.22, 26: 3.0, 30: 0.4, 33: 0.18, 38: 2.5}.items():
        latencies[i] = value
    intervals = [(0.03 * i, 0.03 * i + latency) for i, latency in enumerate(latencies)]
    return BatchReport([f"answer {i}" for i in range(41)], [], intervals, max(end for _, end in intervals), 20, 20,
                       LatencyStats.from_values(latencies))


def _diagnose_stragglers(result: list[Any], report: BatchReport, factor: float) -> None:
    """Fail with the hint for the mistake `result` shows (it is not the right answer for `factor`)."""
    latencies = [end - start for start, end in report.intervals]
    median = statistics.median(latencies)
    expected = _over(latencies, factor, median)
    if sorted(result) == expected:
        fail("The right inputs, but not in input order: return them sorted by index.")
    if [i - 1 for i in result] == expected:
        fail("Every index is one too high: enumerate() starts at 0, like report.results.")
    if result == _over([end for _, end in report.intervals], factor, median):
        fail("You compared end times, which grow through the run: the latency is end - start.")
    centres = {"the mean": statistics.mean(latencies),
               "p95": report.latency.p95, "p99": report.latency.p99, "the max": report.latency.max}
    for name, centre in centres.items():
        if result == _over(latencies, factor, centre):
            fail(f"You compared with {name}, which the few slow requests pull up, so it hides some of them: "
                 "compare with the median (report.latency.p50, or statistics.median).")
    if factor != 3.0 and result == _over(latencies, 3.0, median):
        fail(f"With factor={factor} your answer should change: use the factor argument, not a fixed 3.")
    if result == [i for i, value in enumerate(latencies) if value >= factor * median] or result == _over(
            latencies, factor, min(latencies)):
        fail("Keep the inputs whose latency is MORE than factor × the median (>, not >=, and the median, not the min).")
    fail(f"For factor={factor} expected {len(expected)} stragglers, got {len(result)}: keep the indices whose "
         "end - start is more than factor × the median of all latencies.")


async def _stragglers_of(find_stragglers: Callable[..., Any], report: BatchReport, factor: float) -> list[Any]:
    try:
        result = find_stragglers(report, factor=factor)
        result = await result if inspect.isawaitable(result) else result
    except NotImplementedError as placeholder:
        raise not_done(placeholder) from None
    if result is None:
        fail("Your function returned None: return the list of indices.")
    result = list(result)
    if any(isinstance(x, float) for x in result):
        fail("Return the inputs' indices (ints), not their latencies: use enumerate().")
    latencies = [end - start for start, end in report.intervals]
    if result != _over(latencies, factor, statistics.median(latencies)):
        _diagnose_stragglers(result, report, factor)
    return result


async def check_find_stragglers(find_stragglers: Callable[..., Any], *, n: int = 100) -> None:
    """Exercise 03-1: indices whose latency is over factor × the median, from a BatchReport."""
    crafted = _crafted_report()
    for factor in (3.0, 1.2):
        await _stragglers_of(find_stragglers, crafted, factor)
    mock = _private_mock()
    texts = [f"慢{i}" for i in range(n)]
    with mock.temporarily(speed=4, tail_fraction=0.05):  # the lesson's speed; resets first: every prompt on attempt 0
        llm = ChatOpenAI(base_url=mock.base_url, api_key="mock-key", model=DEFAULT_MODEL, temperature=0)
        report = await run_tracked(translation_chain(llm), [{"text": t} for t in texts], max_concurrency=20,
                                   progress=False)
        slow = [i for i, s in enumerate(_made_slow(mock, [SEED_PROMPTS["translate"].format(text=t) for t in texts]))
                if s]
    found = await _stragglers_of(find_stragglers, report, 3.0)
    print(f"In a run of {n} on the mock, {len(slow)} inputs were made 5× slower; you found "
          f"{sum(i in found for i in slow) / max(1, len(slow)):.0%} of them (on a busy machine, the client's own "
          "delays blur the difference).")
    passed("the right stragglers for factor 3 and for factor 1.2, in input order, in a report where the mean "
           "and the median disagree, and in a real run.")


# ---------------------------------------------------------------- 03-2: p99 TTFT in the tracker

_WATCHER: ContextVar[RequestTimer | None] = ContextVar("lesson03_ttft_watcher", default=None)
register_configure_hook(_WATCHER, inheritable=True)  # while set, every LangChain run also reports to it


def _one_slow_among(mock: MockHandle, count: int) -> list[str]:
    """`count` long-answer topics of which exactly one is a tail request for the mock's settings now."""
    pool = long_answer_topics(count * 3, min_pieces=45, pool=600)
    slow = _made_slow(mock, [SENTENCES_TEMPLATE.format(topic=t) for t in pool])
    fast = [t for t, s in zip(pool, slow) if not s]
    tail = [t for t, s in zip(pool, slow) if s]
    if not tail or len(fast) < count - 1:
        raise RuntimeError("no topic set with exactly one slow request; change the pool")
    return fast[: count // 2] + tail[:1] + fast[count // 2: count - 1]


def _ttft_mistake(value: float, ttfts: list[float], latencies: list[float]) -> str | None:
    """None if `value` is the p99 of `ttfts`; else the hint for the statistic it is closest to."""
    p99 = percentile(ttfts, 99)
    candidates = {
        "p99": (p99, None),
        "median": (statistics.median(ttfts), "the median TTFT, the typical request's: p99 is the slow end, "
                                             "percentile(timer.ttfts(), 99)"),
        "mean": (statistics.mean(ttfts), "the mean TTFT, which the one slow request barely moves: take "
                                         "percentile(timer.ttfts(), 99)"),
        "p95": (percentile(ttfts, 95), "the p95 TTFT: take percentile(timer.ttfts(), 99)"),
        "max": (max(ttfts), "the largest TTFT (the max), not the p99: of 40 requests, p99 lies between the two "
                            "slowest; take percentile(timer.ttfts(), 99)"),
        "q": (percentile(ttfts, 0.99), "about the fastest TTFT: percentile() takes q from 0 to 100 (99, not 0.99)"),
        "latency": (percentile(latencies, 99), "the p99 latency (the whole answer), not the TTFT: take "
                                               "percentile(timer.ttfts(), 99), not the latencies"),
        "median latency": (statistics.median(latencies), "the median latency, not the p99 TTFT: take "
                                                         "percentile(timer.ttfts(), 99)"),
    }
    name, (_, hint) = min(candidates.items(), key=lambda item: abs(item[1][0] - value))
    # Two timers on one event differ by microseconds, or by a few ms when a busy machine preempts the
    # process between them: the nearest statistic decides, the band only rules out an unrelated number.
    if name == "p99" and abs(value - p99) <= 0.005 + 0.25 * p99:
        return None
    return hint or "not the p99 TTFT of your run: take percentile(timer.ttfts(), 99) from the timer you passed in"


async def check_run_with_ttft(run_with_ttft: Callable[..., Any], *, n: int = 40) -> None:
    """Exercise 03-2: run_tracked with a streaming model and a RequestTimer, returning p99 TTFT."""
    require_async(run_with_ttft, "`await run_tracked(...)`")
    mock, watcher = _private_mock(), RequestTimer()
    with mock.temporarily(speed=10, jitter=0.1, tail_fraction=0.05, tail_multiplier=6):
        topics = _one_slow_among(mock, n)  # so p99 sits well between the typical TTFT and the max
        token = _WATCHER.set(watcher)
        try:
            with routed_to(mock):  # the learner's get_llm() builds on this check's mock
                result = await call_learner(run_with_ttft, [{"topic": t} for t in topics])
        except ValueError as error:  # percentile() / statistics of an empty list
            fail(f"{type(error).__name__}: {error}. The timer recorded no first tokens: `ainvoke` streams only "
                 "when the model is built with get_llm(streaming=True), and the timer must be in "
                 "config={'callbacks': [timer]}.")
        finally:
            _WATCHER.reset(token)
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
    ttfts = watcher.ttfts()
    if len(ttfts) < n:
        fail("Not every request streamed its answer: build the model with get_llm(streaming=True).")
    mistake = _ttft_mistake(value, ttfts, watcher.latencies())
    if mistake:
        fail(f"{value:.3f} s is {mistake}.")
    passed(f"p99 TTFT {value:.3f} s, against a median TTFT of {statistics.median(ttfts):.3f} s and a p99 "
           f"latency of {report.latency.p99:.3f} s.")


# ---------------------------------------------------------------- 03-3: the core loop


class _InputFailed(RuntimeError):
    """The scripted chain's failure for one input."""


class _Script:
    """A chain that sleeps `delay(i)` for input i and answers "answer i"; it records every call."""

    def __init__(self, delay: Callable[[int], float], fail_at: int | None = None) -> None:
        self.delay, self.fail_at = delay, fail_at
        self.calls: dict[int, list[list[float]]] = {}  # index -> [start, end] of each call
        self.in_flight = self.peak = self.learner_tasks = 0
        self.before: set[asyncio.Task[Any]] = set()  # the tasks there were before the learner's function
        self.bad_input: Any = None
        self.chain = RunnableLambda(self._call, name="scripted_chain")

    async def _call(self, item: Any) -> str:
        if not isinstance(item, Mapping) or not str(item.get("text", "")).startswith("input "):
            self.bad_input = item
            raise TypeError(f"the chain got {item!r}, not one of the inputs")
        index, record = int(item["text"].split()[1]), [time.perf_counter(), 0.0]
        self.calls.setdefault(index, []).append(record)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        # Each call through RunnableLambda.ainvoke runs in a task of its own; wait_for runs the learner's
        # function in one more. The rest are the learner's.
        tasks = [t for t in asyncio.all_tasks() - self.before
                 if getattr(t.get_coro(), "__qualname__", "") != "RunnableLambda._ainvoke"]
        self.learner_tasks = max(self.learner_tasks, len(tasks) - 1)
        try:
            await asyncio.sleep(self.delay(index))
            if index == self.fail_at:
                raise _InputFailed(f"input {index} fails on purpose")
            return f"answer {index}"
        finally:
            self.in_flight -= 1
            record[1] = time.perf_counter()

    def intervals(self) -> list[tuple[float, float]]:
        return [(start, end) for records in self.calls.values() for start, end in records]


async def _run_learner(run_workers: Callable[..., Any], script: _Script, inputs: Any, workers: int,
                       patience: float) -> tuple[Any, BaseException | None, int]:
    """Await the learner's function; returns (result, error, how many of its tasks and calls outlived it)."""
    before = script.before = asyncio.all_tasks()
    result, error = None, None
    try:
        result = await asyncio.wait_for(run_workers(script.chain, inputs, workers), patience)
    except NotImplementedError as placeholder:
        raise not_done(placeholder) from None
    except TimeoutError:
        fail(f"Your function did not return within {patience:g} s: a worker waits forever for more work "
             "(an `await queue.get()` on an empty queue?). Let each worker stop when the iterator is empty.")
    except Exception as exc:  # noqa: BLE001 (the failure run expects one)
        error = exc
    calls_left = script.in_flight
    left = [task for task in asyncio.all_tasks() - before if task is not asyncio.current_task() and not task.done()]
    for task in left:  # leave nothing behind in the learner's kernel
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)
    return result, error, max(len(left), calls_left)


def _judge_outputs(result: Any, script: _Script, n: int) -> None:
    if not isinstance(result, list):
        fail(f"Return a list of outputs in input order, not a {type(result).__name__}.")
    lost = [i for i in range(n) if i not in script.calls]
    repeated = [i for i, calls in script.calls.items() if len(calls) > 1]
    if lost:
        fail(f"{len(lost)} of the {n} inputs were never sent (the first: {lost[0]}): keep pulling until the "
             "shared iterator is empty, not a fixed number of times per worker.")
    if repeated:
        fail(f"Input {repeated[0]} was sent {len(script.calls[repeated[0]])} times: the workers must share ONE "
             "iterator (create it once, outside the workers), so each input is taken by one worker only.")
    expected = [f"answer {i}" for i in range(n)]
    if result != expected:
        if sorted(result, key=str) == sorted(expected):
            fail("Every output is there, but in the order they finished: store each output at its input's "
                 "index (keep the index from enumerate) and return them in input order.")
        fail(f"Output 0 should be the chain's answer to input 0, {expected[0]!r}; yours starts {result[:2]!r}.")


def _judge_pool(script: _Script, workers: int, n: int, left: int) -> None:
    if script.peak > workers:
        fail(f"{script.peak} calls were in flight at once, for n_workers={workers}: a task per input with "
             "nothing to bound them (a plain asyncio.gather over every input). Start n_workers workers.")
    if script.learner_tasks > workers + 2:
        fail(f"{script.learner_tasks} tasks were alive at once for n_workers={workers} and {n} inputs: one task "
             "per input (a semaphore bounds the calls, not the tasks; abatch does the same). Start n_workers "
             "tasks, each pulling the next input.")
    if script.peak < workers:
        fail(f"Only {script.peak} call(s) at a time, for n_workers={workers}: start n_workers workers, each its "
             "own task (asyncio.gather or a TaskGroup), each awaiting chain.ainvoke.")
    busy = slots_busy_while_refilling(script.intervals(), workers) or 0.0
    if busy < 0.85:
        fail(f"While inputs were still waiting, the slots were busy only {busy:.0%} of the time: your workers "
             "each took a fixed share of the inputs (or a chunk at a time), so those done with theirs sat idle "
             "while the slow input's share waited. Let every worker pull the next input from one shared iterator.")
    if left:
        fail(f"{left} task(s) you started were still running after your function returned: stop the workers "
             "(cancel them, or let each end when the iterator is empty) before returning.")


async def check_run_workers(run_workers: Callable[..., Any], *, n: int = 30, workers: int = 4,
                            patience: float = 10.0) -> None:
    """Exercise 03-3: outputs in input order, at most n_workers in flight, each input once, no idle slot."""
    require_async(run_workers, "await chain.ainvoke(...) in each worker")
    inputs = [{"text": f"input {i}"} for i in range(n)]
    script = _Script(lambda i: 0.4 if i == 0 else 0.04)  # input 0 is slow: does the rest flow past it?
    result, error, left = await _run_learner(run_workers, script, inputs, workers, patience)
    if script.bad_input is not None:
        fail(f"chain.ainvoke got {script.bad_input!r}: pass the input itself, not (index, input).")
    if error is not None:
        if "synchronously" in str(error):
            fail("Call `await chain.ainvoke(item)`: chain.invoke blocks the event loop, so nothing runs at once.")
        fail(f"Your function raised {type(error).__name__}: {error}")
    _judge_outputs(result, script, n)
    _judge_pool(script, workers, n, left)

    lazy = _Script(lambda i: 0.01)
    result, error, _ = await _run_learner(run_workers, lazy, (item for item in inputs), workers, patience)
    if error is not None or result != [f"answer {i}" for i in range(n)]:
        fail(f"With a generator as inputs your function {'raised ' + repr(error) if error else 'went wrong'}: "
             "inputs may be any iterable (lines read from a file); take them with one shared iterator, "
             "no len() and no slicing.")

    broken = _Script(lambda i: 0.0 if i == 5 else 0.1, fail_at=5)
    _, error, left = await _run_learner(run_workers, broken, inputs, workers, patience)
    failure = error if isinstance(error, _InputFailed) else (
        error.subgroup(_InputFailed) if isinstance(error, BaseExceptionGroup) else None)
    if failure is None:
        fail(f"Input 5's call raised, but your function {'raised ' + repr(error) if error else 'returned'}: "
             "let that error propagate out of your function.")
    if left:
        fail(f"Input 5 failed and your function raised, but {left} other worker(s) were still running, calling "
             "the chain for answers nobody will read: asyncio.gather does not stop them. Use asyncio.TaskGroup, "
             "or cancel the worker tasks in a `finally`.")
    passed(f"{n} inputs, each sent once, outputs in input order; at most {workers} in flight, and the others "
           f"flowed past a slow input; a generator works; a failure stops every worker.")
