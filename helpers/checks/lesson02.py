"""Checks for lesson 02's exercises, streaming (backstage: a learner need not read this).

02-1 `check_first_answers`: the first k whole answers to finish, with the stream stopped early. It runs
     against a mock of its own, and counts the requests that mock still receives after the learner's
     function has returned: a stream left open keeps calling the model for answers nobody reads.
02-2 `check_ttft_per_input`: each input's wait for its first token in the merged stream, with more inputs
     than workers, so that waiting for a free worker counts. It runs against a mock of its own, and compares
     each input's figure with the time its first token reached the client, measured inside the model call.

Both run the learner's code against a local mock started for the check (`start_mock`), never a paid API,
whatever the notebook's backend is.
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

from helpers.backend import DEFAULT_MODEL, make_chain
from helpers.checks.common import (FAULT_FREE, SENTENCES_TEMPLATE, ExerciseFailed, call_learner, fail,
                                   long_answer_topics, passed, peak_overlap, require_async)
from helpers.metrics import is_number
from helpers.mock import MockHandle, reply_for, start_mock


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
async def _abandoned_streams_stay_open() -> AsyncIterator[list[Any]]:
    """In the block, an async generator dropped unclosed (a plain `break`) stays open until the block ends.

    Python closes such a generator only when it collects it: CPython a moment later, other Pythons, or a
    reference left in a traceback, much later. Holding it open makes "later" long enough to see: its
    workers go on sending requests, which the mock counts. Sets the thread's asyncgen hooks (PEP 525)
    for the block; on leaving, puts them back and closes what it held. Yields the list of those held.
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
        yield held
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
        async with _abandoned_streams_stay_open() as held:
            found = await call_learner(first_answers, chain, inputs, k)
            at_return = mock.stats()["requests"]
            total = await _requests_once_settled(mock)
            left_open = [getattr(generator, "__name__", "") for generator in held]
    finally:
        mock.stop()
    if total - at_return > 2:  # a request or two may still be on the wire when the stream is closed
        if "_merged_events" in left_open:  # stream_merged's generator, dropped without being closed
            fail(
                f"{total - at_return} more requests reached the model after your function returned: the "
                "stream's workers were still running, calling the model for answers nobody reads. Read the "
                "stream inside `async with contextlib.aclosing(stream_merged(...)) as events:` so leaving the "
                "block (break or return) closes it at once."
            )
        fail(
            f"{total - at_return} more requests reached the model after your function returned, for answers "
            "nobody reads: something started a task for every input, and stopping the loop cancels none of "
            "them (`abatch_as_completed` does that, and so does `asyncio.as_completed` over tasks). Use "
            "stream_merged inside `async with contextlib.aclosing(...)`: closing it cancels its workers."
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


class _TimesByPrompt(BaseCallbackHandler):
    """For each chat-model call, by its prompt: [start, first non-empty token, end] (perf_counter seconds)."""

    run_inline = True

    def __init__(self) -> None:
        self.calls: dict[str, list[float | None]] = {}
        self._prompts: dict[Any, str] = {}

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: Any, **kw: Any) -> None:
        self._prompts[run_id] = prompt = str(messages[0][-1].content)
        self.calls[prompt] = [time.perf_counter(), None, None]

    def on_llm_new_token(self, token: str, *, run_id: Any, **kw: Any) -> None:
        record = self.calls.get(self._prompts.get(run_id, ""))
        if token and record is not None and record[1] is None:
            record[1] = time.perf_counter()

    def on_llm_end(self, response: Any, *, run_id: Any, **kw: Any) -> None:
        record = self.calls.get(self._prompts.get(run_id, ""))
        if record is not None:
            record[2] = time.perf_counter()

    on_llm_error = on_llm_end


def _shape_of_ttfts(result: Any, n: int) -> list[float]:
    """The learner's figures in input order, after checking they are a dict {0..n-1: seconds >= 0}."""
    if not isinstance(result, dict):
        fail(f"Return a dict {{index: seconds}}, not a {type(result).__name__}.")
    if not all(type(key) is int for key in result) or sorted(result) != list(range(n)):
        fail(f"Expected one figure for each of the {n} inputs (keys 0 to {n - 1}), "
             f"got keys {sorted(result, key=repr)}: use event.index as the key.")
    if not all(is_number(v) and v >= 0 for v in result.values()):
        fail("Every value must be a number of seconds >= 0.")
    return [float(result[i]) for i in range(n)]


async def check_ttft_per_input(ttft_per_input: Callable[..., Any], *, n: int = 8, concurrency: int = 4) -> None:
    """Exercise 02-2: each input's wait for its first token event, queueing included, with n > concurrency."""
    require_async(ttft_per_input, "read the stream with `async for`")
    # The figures are timings: a machine that stalls for a moment can push a right answer past a
    # margin once. A wrong one fails every time, so a timing verdict is only given after a second run.
    for attempt in (1, 2):
        yours, starts, waits, ttfts, streaming = await _time_ttfts(ttft_per_input, n, concurrency)
        try:
            queued = _judge_ttfts(yours, starts, waits, ttfts, streaming)
            break
        except ExerciseFailed:
            if attempt == 2:
                raise
    passed(f"each input's wait for its first token, queueing included: median {statistics.median(yours):.3f} s. "
           f"The inputs that waited for a free worker waited "
           f"{statistics.median(yours[i] for i in queued):.3f} s for theirs, though their own TTFT was only "
           f"{statistics.median(ttfts[i] for i in queued):.3f} s.")


async def _time_ttfts(ttft_per_input: Callable[..., Any], n: int, concurrency: int) -> tuple[list[float], ...]:
    """Run the learner's function once on a private mock: its figures, and the client's own timings."""
    timer = _TimesByPrompt()
    mock = start_mock(speed=3, **FAULT_FREE)  # its own, so a learner's mock settings change nothing here
    try:
        llm = ChatOpenAI(base_url=mock.base_url, api_key="mock-key", model=DEFAULT_MODEL, temperature=0,
                         stream_usage=True, max_retries=0)
        # Long answers, so the time to the first token and to the last one are far apart.
        topics = long_answer_topics(n, min_pieces=50, pool=200)
        chain, inputs, _ = _sentence_task(topics, llm, timer)
        result = await call_learner(ttft_per_input, chain, inputs, concurrency)
    finally:
        mock.stop()
    yours = _shape_of_ttfts(result, n)
    calls = [timer.calls.get(SENTENCES_TEMPLATE.format(topic=topic)) for topic in topics]
    if any(call is None or call[1] is None or call[2] is None for call in calls):
        fail("Not every input was streamed to its end: stream all of them through one stream_merged.")
    peak = peak_overlap([(call[0], call[2]) for call in calls])
    if peak != concurrency:
        fail(f"{peak} requests were in flight at once, not {concurrency}: pass max_concurrency=max_concurrency "
             f"to stream_merged, so the inputs after the first {concurrency} wait for a free worker.")
    t0 = min(call[0] for call in calls)
    starts = [call[0] - t0 for call in calls]  # when each input's request started, from the first start
    waits = [call[1] - t0 for call in calls]  # when its first token reached the client
    ttfts = [call[1] - call[0] for call in calls]
    streaming = [call[2] - call[1] for call in calls]  # from its first token to its last
    return yours, starts, waits, ttfts, streaming


def _judge_ttfts(yours: list[float], starts: list[float], waits: list[float], ttfts: list[float],
                 streaming: list[float]) -> list[int]:
    """Fail with the hint for the mistake unless each of `yours` is close to that input's wait in `waits`.

    Returns the inputs that waited for a free worker (their request started half a latency or more late).
    """
    if statistics.median(yours) > 50 * max(waits):
        fail(f"Your median is {statistics.median(yours):.0f}: that looks like milliseconds. Return seconds.")
    latency = statistics.median(t + s for t, s in zip(ttfts, streaming))
    first_wave = [i for i, start in enumerate(starts) if start <= latency / 2]
    queued = [i for i, start in enumerate(starts) if start > latency / 2]
    if statistics.median(yours[i] for i in first_wave) < 0.5 * statistics.median(waits[i] for i in first_wave):
        fail("Your figures for the inputs that started at once are far below their time to first token: "
             "measure from one start time taken before the stream, not from the previous event or the first one.")
    missing = statistics.median(waits[i] - yours[i] for i in queued)
    if missing > 0.5 * statistics.median(starts[i] for i in queued):
        i = max(queued, key=lambda j: starts[j])
        fail(f"Your figures leave out the wait for a free worker: input {i} started {starts[i]:.3f} s after the "
             f"stream and its first token came at {waits[i]:.3f} s, but you give {yours[i]:.3f} s. That is what "
             "event.ttft measures (from when the input's own request started). Take one start time before the "
             "stream and measure each input's first token event from it.")
    late = statistics.median(y - w for y, w in zip(yours, waits))
    if late > statistics.median(streaming) / 2:
        fail(f"Your figures are about {late:.3f} s after each input's first token, close to its last one: "
             "record the time of each input's FIRST token event only.")
    if abs(late) > 0.5 * statistics.median(ttfts) + 0.05:
        where = "after" if late > 0 else "before"
        fail(f"Your figures are about {abs(late):.3f} s {where} each input's first token reached the client: take "
             "the start time just before you start reading the stream, and the time of each first token event.")
    return queued
