"""Checks for lesson 02's exercises, streaming (backstage: a learner need not read this).

02-1 `check_first_answers`: the first k whole answers to finish, with the stream stopped early. It runs
     against a mock of its own, and counts the requests that mock still receives after the learner's
     function has returned: a stream left open keeps calling the model for answers nobody reads.
02-2 `check_ttft_per_input`: per-input TTFT from the merged stream, against the model's own TTFT.

Both run the learner's code against the local mock (`get_llm(backend="mock")` or `start_mock`), never a
paid API.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import Runnable
from langchain_openai import ChatOpenAI

from helpers.backend import DEFAULT_MODEL, get_llm, make_chain
from helpers.checks.common import (FAULT_FREE, SENTENCES_TEMPLATE, call_learner, fail, long_answer_topics,
                                   passed, peak_overlap, require_async)
from helpers.metrics import is_number
from helpers.mock import MockHandle, reply_for, start_mock
from helpers.timing import RequestTimer


class _CallCounter(BaseCallbackHandler):
    """Counts chat-model calls started, and the most in flight at once."""

    run_inline = True

    def __init__(self) -> None:
        self.started = 0
        self.in_flight = 0
        self.peak = 0

    def on_chat_model_start(self, serialized: Any, messages: Any, **kw: Any) -> None:
        self.started += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    def on_llm_end(self, response: Any, **kw: Any) -> None:
        self.in_flight -= 1

    def on_llm_error(self, error: BaseException, **kw: Any) -> None:
        self.in_flight -= 1


def _sentence_task(topics: list[str], llm: ChatOpenAI, *callbacks: Any) -> tuple[Runnable, list[dict], list[str]]:
    """A chain asking `llm` for a few sentences per topic, its inputs, and the answers the mock will give."""
    chain = make_chain(SENTENCES_TEMPLATE, llm).with_config(callbacks=list(callbacks))
    expected = [
        reply_for(llm.model_name, [{"role": "user", "content": SENTENCES_TEMPLATE.format(topic=t)}])
        for t in topics
    ]
    return chain, [{"topic": t} for t in topics], expected


@contextlib.asynccontextmanager
async def _abandoned_streams_stay_open() -> AsyncIterator[None]:
    """In the block, an async generator dropped unclosed (a plain `break`) stays open until the block ends.

    Python closes such a generator only when it collects it: CPython a moment later, other Pythons, or a
    reference left in a traceback, much later. Holding it open makes "later" long enough to see: its
    workers go on sending requests, which the mock counts. Sets the thread's asyncgen hooks (PEP 525)
    for the block; on leaving, puts them back and closes what it held.
    """
    firstiter, finalizer = sys.get_asyncgen_hooks()
    held: list[Any] = []
    holding = [True]

    def hold(generator: Any) -> None:
        if holding[0]:
            held.append(generator)
        elif finalizer is not None:
            finalizer(generator)

    sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=hold)
    try:
        yield
    finally:
        sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=finalizer)
        holding[0] = False
        for generator in held:
            with contextlib.suppress(Exception):
                await generator.aclose()


async def _requests_once_settled(mock: MockHandle, *, least: float = 0.5, most: float = 2.0) -> int:
    """The mock's request count once it has stopped growing (watched for `least` to `most` seconds)."""
    start, last = time.perf_counter(), mock.stats()["requests"]
    while True:
        await asyncio.sleep(0.1)
        now = mock.stats()["requests"]
        waited = time.perf_counter() - start
        if (now == last and waited >= least) or waited >= most:
            return now
        last = now


async def check_first_answers(first_answers: Callable[..., Any], *, n: int = 40, k: int = 10) -> None:
    """Exercise 02-1: the first k whole answers to finish, stream stopped early, nothing left sending."""
    require_async(first_answers, "read the stream with `async for`")
    concurrency = 10
    counter = _CallCounter()
    mock = start_mock(speed=5, **FAULT_FREE)  # its own, so every request it counts is this check's
    try:
        llm = ChatOpenAI(base_url=mock.base_url, api_key="mock-key", model=DEFAULT_MODEL, temperature=0,
                         stream_usage=True, max_retries=0)
        chain, inputs, expected = _sentence_task([f"subject {i}" for i in range(n)], llm, counter)
        async with _abandoned_streams_stay_open():
            found = await call_learner(first_answers, chain, inputs, k)
            at_return = mock.stats()["requests"]
            total = await _requests_once_settled(mock)
    finally:
        mock.stop()
    if total - at_return > 2:  # a request or two may still be on the wire when the stream is closed
        fail(
            f"{total - at_return} more requests reached the model after your function returned: the stream's "
            "workers were still running, calling the model for answers nobody reads. Read the stream inside "
            "`async with contextlib.aclosing(stream_merged(...)) as events:` so leaving the block (break or "
            "return) closes it at once."
        )
    if not isinstance(found, dict):
        fail(f"Return a dict {{index: answer}}, not a {type(found).__name__}.")
    if len(found) != k:
        fail(f"Expected {k} answers, got {len(found)}: count only 'done' events, and stop at {k}.")
    for index, text in found.items():
        if not isinstance(index, int) or not 0 <= index < n:
            fail(f"Key {index!r} is not an input index: use event.index as the key.")
        if text != expected[index]:
            if isinstance(text, str) and text in expected[index]:
                fail(
                    f"The answer for input {index} is cut short ({len(text)} of {len(expected[index])} "
                    "characters): that is a token, or the text so far. Keep the text of 'done' events."
                )
            fail(f"The answer for input {index} is not that input's answer: key each event.text by event.index.")
    if counter.peak > concurrency:
        fail(f"{counter.peak} requests were in flight at once: pass max_concurrency={concurrency} to stream_merged.")
    if set(found) == set(range(k)) and counter.started <= k:
        fail(
            f"Those are the first {k} inputs, not the first {k} to finish: stream all {n} inputs "
            "and keep the first 'done' events that arrive."
        )
    if counter.started >= n:
        fail(
            f"All {n} inputs were sent to the model: you read the whole stream. Break out of the loop "
            f"as soon as you have {k} answers."
        )
    needed = k + concurrency  # the first k to finish, and those in flight when the k-th did
    if total > needed + needed // 2:
        fail(
            f"{total} requests were sent for {k} answers, where about {needed} are enough: stop reading the "
            f"stream as soon as you have {k}, inside `async with contextlib.aclosing(stream_merged(...))`."
        )
    passed(f"the first {k} whole answers; {total} of the {n} requests were sent, and none after your "
           "function returned.")


async def check_ttft_per_input(ttft_per_input: Callable[..., Any], *, n: int = 12) -> None:
    """Exercise 02-2: per-input TTFT from the merged stream, compared with the model's own TTFT."""
    require_async(ttft_per_input, "read the stream with `async for`")
    # Long answers, so the time to the first token and to the last one are far apart.
    timer = RequestTimer()
    chain, inputs, _ = _sentence_task(long_answer_topics(n, min_pieces=50, pool=200), get_llm(backend="mock"), timer)
    result = await call_learner(ttft_per_input, chain, inputs)

    if not isinstance(result, dict):
        fail(f"Return a dict {{index: seconds}}, not a {type(result).__name__}.")
    if sorted(result) != list(range(n)):
        fail(f"Expected one TTFT for each of the {n} inputs (keys 0 to {n - 1}), got keys {sorted(result)}.")
    values = list(result.values())
    if not all(is_number(v) and v >= 0 for v in values):
        fail("Every value must be a number of seconds >= 0.")
    if peak_overlap(timer.intervals()) < n:
        fail(f"Not all {n} inputs streamed at once: pass max_concurrency=len(inputs), so every TTFT "
             "is measured from the same start.")
    yours = statistics.median(values)
    model_ttft = statistics.median(timer.ttfts())
    model_latency = statistics.median(timer.latencies())
    if yours > 50 * model_latency:
        fail(f"Your median is {yours:.0f}: that looks like milliseconds. Return seconds.")
    if yours > (model_ttft + model_latency) / 2:
        fail(
            f"Your median {yours:.3f} s is close to the whole latency ({model_latency:.3f} s), not the "
            f"TTFT ({model_ttft:.3f} s): record the time of each input's FIRST token event only."
        )
    if yours < 0.5 * model_ttft:
        fail(
            f"Your median {yours:.3f} s is far below the model's TTFT ({model_ttft:.3f} s): measure from "
            "one start time taken before the stream, not from the previous event."
        )
    if yours > 1.5 * model_ttft + 0.05:
        fail(f"Your median {yours:.3f} s is well above the model's TTFT ({model_ttft:.3f} s): "
             "take the start time just before you start reading the stream.")
    passed(f"median TTFT {yours:.3f} s from the events; the model measured {model_ttft:.3f} s "
           f"(total latency {model_latency:.3f} s).")
