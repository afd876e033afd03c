"""Checks for lesson 01's exercises, basic abatch (backstage: a learner need not read this).

01-1 `check_concurrency_choice`: is the chosen max_concurrency what Little's law asks for, with headroom?
01-2 `check_ordered_progress`: results in input order, at most 10 in flight, from an async function.

Both run the learner's answer against the local mock (`get_llm(backend="mock")`), never a paid API.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

from langchain_core.runnables import Runnable

from helpers.backend import get_llm, make_chain
from helpers.checks.common import NOT_DONE, call_learner, fail, passed, peak_overlap, require_async
from helpers.mock import reply_for
from helpers.timing import RequestTimer


async def mean_latency(chain: Runnable, samples: int = 5) -> float:
    """The median latency of `samples` calls of `chain`, one at a time."""
    latencies = []
    for i in range(samples):
        start = time.perf_counter()
        await chain.ainvoke({"text": f"测试{i}"})
        latencies.append(time.perf_counter() - start)
    return statistics.median(latencies)


async def check_concurrency_choice(
    chain: Runnable, max_concurrency: Any, *, n: int, budget_s: float
) -> None:
    """Exercise 01-1: does `max_concurrency` finish `n` calls of `chain` within `budget_s`?"""
    if max_concurrency is None:
        fail("Set my_concurrency to your choice first. " + NOT_DONE)
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
        fail(f"max_concurrency must be a whole number, got {max_concurrency!r} (try math.ceil)")
    if max_concurrency < 1:
        fail("max_concurrency must be at least 1")
    latency = await mean_latency(chain)
    minimum = math.ceil(n * latency / budget_s)  # Little's law: C = X * L
    if max_concurrency < minimum:
        fail(
            f"Too low: Little's law says at least {n} / {budget_s} s × {latency:.3f} s = "
            f"{n * latency / budget_s:.1f} requests in flight; you chose {max_concurrency}."
        )
    if max_concurrency > 4 * minimum:
        fail(
            f"It would finish, but {max_concurrency} is over 4× what Little's law asks for "
            f"({minimum}). Against a real API that much concurrency mostly buys rate-limit errors."
        )
    inputs = [{"text": f"测试{i}"} for i in range(n)]
    start = time.perf_counter()
    await chain.abatch(inputs, config={"max_concurrency": max_concurrency})
    elapsed = time.perf_counter() - start
    if elapsed > budget_s:
        fail(f"Took {elapsed:.2f} s, over the {budget_s} s budget: leave more headroom above C = X × L.")
    passed(f"{n} requests in {elapsed:.2f} s, within the {budget_s} s budget.")


async def check_ordered_progress(translate: Callable[..., Any], *, n: int = 40) -> None:
    """Exercise 01-2: ordered results, at most 10 in flight, from an async function."""
    require_async(translate, "`await` the chain")
    timer = RequestTimer()
    # Replies of very different lengths finish in a scrambled order.
    template = "Write a few sentences about topic number {text}."
    llm = get_llm(backend="mock")
    chain = make_chain(template, llm).with_config(callbacks=[timer])
    inputs = [{"text": str(i)} for i in range(n)]
    expected = [
        reply_for(llm.model_name, [{"role": "user", "content": template.format(text=i)}])
        for i in range(n)
    ]
    results = await call_learner(translate, chain, inputs)

    if results is None:
        fail("Your function returned None: return the list of outputs.")
    results = list(results)
    if results and isinstance(results[0], tuple):
        fail("Return just the outputs, not (index, output) pairs: results[index] = output.")
    if len(results) != n:
        fail(f"Expected {n} outputs, got {len(results)}: every input needs exactly one output.")
    if results != expected:
        if sorted(map(str, results)) == sorted(expected):
            fail("The answers are all there but in completion order: write each output to its index.")
        fail("Some outputs don't match their inputs: did you pass `inputs` to the chain unchanged?")
    peak = peak_overlap(timer.intervals())
    if peak > 10:
        fail(f"{peak} requests were in flight at once: pass config={{'max_concurrency': 10}}.")
    passed(f"{n} outputs in input order, never more than 10 requests in flight.")
