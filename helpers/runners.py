"""Batch runners for LangChain runnables: tracked, merged streaming, and a sliding window to JSONL.

Read this module: it is what lessons 02-06 teach. All three runners share one core (section 2):

    inputs --(one shared iterator)--> worker 1 --+
                                      worker 2 --+--> results list    run_tracked
                                        ...      +--> asyncio.Queue   stream_merged
                                      worker N --+--> JSONL file      run_to_jsonl

- `run_pool`: N worker tasks pull (index, input) from one shared iterator until it is empty; the
  first crash cancels the rest. So at most N requests are in flight, a slow request holds up only
  its own worker (no batch barrier), and nothing is created per input up front: not n coroutines
  (`asyncio.gather`), and not every prompt, then every reply (`chain.abatch` on a sequence).
- `attempt`: one input, start to end: check it, then limiter, timeout and retries
  (`helpers.reliability.invoke_robustly`), timed and counted. It never raises for a failed input.

Then each runner is short: `run_tracked` -> BatchReport (results in input order, Failure records,
latency percentiles); `stream_merged` -> async iterator of StreamEvent (tokens as they arrive, then
one "done" or "error" per input); `run_to_jsonl` -> JsonlSummary, with every result in a
`helpers.results_file.ResultsFile` as it finishes, so a rerun resumes where a crash stopped. Each
input's token usage is caught on its way past the parser by a `helpers.usage.UsageMeter`.

When you pass `retry=`, build the model with `max_retries=0`: otherwise the openai SDK also
retries 429s and 5xx (twice, by default) inside each of our attempts.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
import warnings
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass
from typing import Any

from .metrics import LatencyStats, StreamingStats, is_number
from .reliability import RetryPolicy, TokenRateLimiter, invoke_robustly
from .reports import BatchReport, Failure, JsonlSummary, Progress, StreamEvent, describe_error
from .results_file import ResultsFile, check_output_path, read_jsonl_results
from .usage import InputUsage, UsageMeter

__all__ = ["run_pool", "attempt", "ChainCancelled", "Failure", "BatchReport", "run_tracked", "StreamEvent", "stream_merged",
           "JsonlSummary", "run_to_jsonl", "read_jsonl_results"]

# ------------------------------------------------------------------ 1. Arguments, checked before any work


def _expected_keys(chain: Any) -> list[str] | None:
    """The variables the chain needs when its input is an object (e.g. a prompt template), else None."""
    try:
        schema = chain.get_input_jsonschema()
    except Exception:  # not a Runnable, or a schema LangChain cannot build
        return None
    return list(schema.get("required") or schema.get("properties") or []) if schema.get("type") == "object" else None


def _bad_input(index: int, item: Any, keys: list[str] | None) -> str | None:
    """Why `item` cannot go into a chain that expects a mapping with `keys`, or None if it can."""
    raw = [k for k, v in item.items() if isinstance(v, (bytes, bytearray))] if isinstance(item, Mapping) else []
    if raw or isinstance(item, (bytes, bytearray)):  # a prompt would show the bytes' repr, b'...'
        where = f"input {index}'s {raw[0]!r}" if raw else f"input {index}"
        return f"{where} is bytes, which a prompt shows as b'...': decode it first, e.g. value.decode('utf-8')"
    if keys is None or isinstance(item, Mapping):
        return None
    example = "{" + ", ".join(f"{key!r}: ..." for key in keys) + "}" if keys else "a dict"
    what = "None" if item is None else f"a {type(item).__name__}"
    return f"input {index} is {what}, but the chain's prompt expects a mapping like {example}"


@dataclass(frozen=True)
class Job:
    """One run's checked arguments: the chain, the inputs, and how to make each request."""

    chain: Any
    items: Iterable[Any] | AsyncIterable[Any]
    total: int | None  # len(inputs) when known
    workers: int
    keys: list[str] | None  # what each input must contain, when the chain expects a mapping
    config: Mapping[str, Any] | None = None
    retry: RetryPolicy | None = None
    timeout: float | None = None
    limiter: TokenRateLimiter | None = None


def _check_options(max_concurrency: object, timeout: object, config: object, retry: object, limiter: object) -> None:
    if not isinstance(max_concurrency, int) or isinstance(max_concurrency, bool) or max_concurrency <= 0:
        raise ValueError(f"max_concurrency must be a positive int, got {max_concurrency!r}")
    if timeout is not None and (not is_number(timeout) or not 0 < timeout < math.inf):
        raise ValueError(f"timeout must be a positive number of seconds (or None), got {timeout!r}")
    if config is not None and not isinstance(config, Mapping):
        raise ValueError(f"config must be a dict (a RunnableConfig) or None, got a {type(config).__name__}")
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise ValueError(f"retry must be a RetryPolicy or None, got a {type(retry).__name__}")
    if limiter is not None and not callable(getattr(limiter, "acquire", None)):
        raise ValueError(f"limiter must be a TokenRateLimiter or None, got a {type(limiter).__name__}")


def make_job(chain: Any, inputs: Any, max_concurrency: int, *, allow_async: bool = False, **options: Any) -> Job:
    """Check every argument; a bad one raises ValueError naming the problem. Returns the Job."""
    _check_options(max_concurrency, options.get("timeout"), options.get("config"), options.get("retry"),
                   options.get("limiter"))
    if inputs is None or isinstance(inputs, (str, bytes, Mapping)):
        kind = "None" if inputs is None else f"a single {type(inputs).__name__}"
        raise ValueError(f"inputs must be a list (or other iterable) of inputs, got {kind}; wrap one input in a list")
    if isinstance(inputs, AsyncIterable) and not allow_async:
        raise ValueError("inputs is an async iterable; this runner needs a list or iterable (run_to_jsonl takes both)")
    if not isinstance(inputs, (Iterable, AsyncIterable)):
        raise ValueError(f"inputs must be a list or iterable, got a {type(inputs).__name__}")
    keys = _expected_keys(chain)
    if isinstance(inputs, Sequence):  # a list can be checked whole, before any request is sent
        for problem in filter(None, (_bad_input(i, item, keys) for i, item in enumerate(inputs))):
            raise ValueError(problem)
    total = len(inputs) if isinstance(inputs, Sized) else None
    workers = min(max_concurrency, total) if total is not None else max_concurrency
    return Job(chain, inputs, total, workers, keys, **options)


# ------------------------------------------------------------------ 2. The core: a pool of workers, one attempt each


@dataclass(frozen=True)
class Outcome:
    """How one input ended: its output or error, the attempts made, and when it started and ended."""

    index: int
    output: Any
    error: Exception | None
    attempts: int
    start: float  # time.perf_counter() seconds
    end: float
    usage: InputUsage | None = None


class ChainCancelled(Exception):
    """The chain raised asyncio.CancelledError itself, though nothing cancelled the run."""


def _cancelled_from_inside(exc: asyncio.CancelledError) -> ChainCancelled:
    """Re-raise a real cancel (someone cancelled our task); turn one the chain raised into a failure."""
    task = asyncio.current_task()
    if task is None or task.cancelling():
        raise exc
    return ChainCancelled("the chain raised CancelledError itself, though nothing cancelled the run")


async def attempt(job: Job, index: int, item: Any) -> Outcome:
    """Run one input through the job's chain with its limiter, timeout and retries; never raises an Exception."""
    start, meter = time.perf_counter(), UsageMeter()
    problem = _bad_input(index, item, job.keys)
    if problem:  # only lazy inputs get here: a list was checked whole
        output, error, attempts = None, ValueError(problem), 0
    else:
        try:
            output, error, attempts = await invoke_robustly(job.chain, item, meter.config(job.config), job.retry,
                                                            job.timeout, job.limiter)
        except asyncio.CancelledError as exc:
            output, error, attempts = None, _cancelled_from_inside(exc), 1
    return Outcome(index, output, error, attempts, start, time.perf_counter(), meter.result(error is None))


def _puller(items: Iterable[Any] | AsyncIterable[Any],
            failed: list[Exception]) -> Callable[[], Awaitable[tuple[int, Any] | None]]:
    """An async function returning the next (index, input), or None at the end; safe for many workers.

    If the iterator raises, the error goes into `failed` and every later pull returns None."""
    if not isinstance(items, AsyncIterable):
        numbered = enumerate(items)

        async def pull_sync() -> tuple[int, Any] | None:
            try:
                return None if failed else next(numbered, None)
            except Exception as exc:
                failed.append(exc)
                return None

        return pull_sync
    iterator, lock, count = aiter(items), asyncio.Lock(), [0]  # two workers may not advance it at once

    async def pull_async() -> tuple[int, Any] | None:
        async with lock:
            try:
                item = None if failed else await anext(iterator)
            except StopAsyncIteration:
                return None
            except Exception as exc:
                failed.append(exc)
            if failed:
                return None
            count[0] += 1
            return count[0] - 1, item

    return pull_async


async def run_pool(items: Iterable[Any] | AsyncIterable[Any], workers: int,
                   handle: Callable[[int, Any], Awaitable[None]]) -> None:
    """`workers` tasks pull (index, input) from one iterator and await `handle` on each, until it is empty.

    If `handle` raises, or we are cancelled, the others are cancelled too. If the iterator raises, no
    input is taken after it, the inputs already taken finish, and then its error is raised.
    """
    failed: list[Exception] = []
    pull = _puller(items, failed)

    async def worker() -> None:
        while (pulled := await pull()) is not None:
            await handle(*pulled)

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if failed:
        raise failed[0]


# ------------------------------------------------------------------ 3. run_tracked: results in input order


async def run_tracked(chain: Any, inputs: Iterable[Any], *, max_concurrency: int, progress: bool = True,
                      config: Mapping[str, Any] | None = None, retry: RetryPolicy | None = None,
                      timeout: float | None = None, limiter: TokenRateLimiter | None = None) -> BatchReport:
    """Run every input through `chain.ainvoke` with at most `max_concurrency` in flight.

    Failed inputs are collected in `failures`, never raised. Returns a BatchReport.
    """
    job = make_job(chain, inputs, max_concurrency, config=config, retry=retry, timeout=timeout, limiter=limiter)
    outcomes: dict[int, Outcome] = {}
    meter = Progress(progress, job.total, "run_tracked")
    t0 = time.perf_counter()

    async def handle(index: int, item: Any) -> None:
        outcomes[index] = await meter.track(attempt(job, index, item))

    inputs_error = None
    try:
        await run_pool(job.items, job.workers, handle)
    except Exception as exc:  # the inputs iterable raised: keep and return what finished
        inputs_error = f"the inputs raised {type(exc).__name__} after {len(outcomes)}: {describe_error(exc)}"
        warnings.warn(f"run_tracked stopped early: {inputs_error}", stacklevel=2)
    finally:
        meter.bar.close()
    wall_time = time.perf_counter() - t0
    ordered = [outcomes[i] for i in range(len(outcomes))]
    failures = [Failure(o.index, type(o.error).__name__, describe_error(o.error, job.timeout), o.attempts, o.error)
                for o in ordered if o.error is not None]
    intervals = [(o.start - t0, o.end - t0) for o in ordered]
    return BatchReport([o.output for o in ordered], failures, intervals, wall_time, meter.peak, max_concurrency,
                       LatencyStats.from_values([o.end - o.start for o in ordered]), inputs_error,
                       [o.usage for o in ordered])


# ------------------------------------------------------------------ 4. stream_merged: many streams, one queue


def _chunk_text(chunk: Any) -> str:
    """The text in one streamed chunk: a str (after StrOutputParser) or a message chunk's content."""
    content = getattr(chunk, "content", chunk)
    if isinstance(content, list):  # content blocks
        return "".join(part if isinstance(part, str) else str(part.get("text", "")) for part in content)
    return content if isinstance(content, str) else str(content)


def stream_merged(chain: Any, inputs: Iterable[Any], *, max_concurrency: int,
                  config: Mapping[str, Any] | None = None) -> AsyncIterator[StreamEvent]:
    """Stream up to `max_concurrency` inputs at once and yield their events merged as they arrive.

    Use `async for event in stream_merged(...)`. Leaving early is safe: closing the iterator cancels
    and awaits every worker. `contextlib.aclosing` around a loop you `break` out of closes it at
    once; after a plain `break` Python closes it only later. Arguments are checked here, at call
    time. No retries: a stream that failed half-way has already shown its tokens.
    """
    return _merged_events(make_job(chain, inputs, max_concurrency, config=config))


async def _stream_one(job: Job, index: int, item: Any, emit: Callable[[StreamEvent], Awaitable[None]]) -> None:
    """Stream one input, emitting a token event per chunk, then one done or error event."""
    start, ttft, parts, meter = time.perf_counter(), None, [], UsageMeter()
    try:
        if problem := _bad_input(index, item, job.keys):
            raise ValueError(problem)
        async for chunk in job.chain.astream(item, meter.config(job.config)):
            if text := _chunk_text(chunk):  # skip e.g. the empty first chunk that only carries the role
                ttft = time.perf_counter() - start if ttft is None else ttft
                parts.append(text)
                await emit(StreamEvent(index, "token", text))
    except (Exception, asyncio.CancelledError) as exc:
        if isinstance(exc, asyncio.CancelledError):
            exc = _cancelled_from_inside(exc)
        message = f"{type(exc).__name__}: {describe_error(exc)}"
        await emit(StreamEvent(index, "error", "".join(parts), message, ttft, time.perf_counter() - start,
                               meter.result(False)))
        return
    await emit(StreamEvent(index, "done", "".join(parts), None, ttft, time.perf_counter() - start, meter.result(True)))


async def _merged_events(job: Job) -> AsyncIterator[StreamEvent]:
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=64 * max(1, job.workers))  # a slow reader slows the streams
    end = object()
    # Set when the reader has gone. Cancelling a worker is not always enough: on Python 3.11,
    # asyncio.wait_for (which langchain-openai wraps around every stream chunk) can swallow a
    # cancel that arrives with a chunk, and the worker would go on and block on the full queue.
    stopping = False

    async def emit(event: Any) -> None:
        if stopping:
            raise asyncio.CancelledError  # ends this worker even if its cancel was swallowed
        await queue.put(event)

    async def pool() -> None:
        try:
            await run_pool(job.items, job.workers, lambda index, item: _stream_one(job, index, item, emit))
        except Exception as exc:  # only the input iterable can get here
            await emit(exc)
        await emit(end)

    task = asyncio.create_task(pool())
    try:
        while (event := await queue.get()) is not end:
            if isinstance(event, Exception):
                raise event
            yield event
    finally:  # normal end, consumer left early, or cancelled: leave no task behind
        stopping = True
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# ------------------------------------------------------------------ 5. run_to_jsonl: each result to disk as it finishes


async def run_to_jsonl(chain: Any, inputs: Iterable[Any] | AsyncIterable[Any], path: str | os.PathLike[str], *,
                       max_concurrency: int, resume: bool = True, retry_errors: bool = False,
                       retry: RetryPolicy | None = None, timeout: float | None = None,
                       limiter: TokenRateLimiter | None = None, progress: bool = True,
                       config: Mapping[str, Any] | None = None, overwrite: bool = False,
                       fsync_every: int | None = None, fsync_seconds: float | None = 1.0) -> JsonlSummary:
    """Run inputs through `chain` with at most `max_concurrency` in flight, appending a record per input.

    Inputs may be any iterable or async iterable, pulled one at a time, never all loaded. With resume=True
    (default) inputs the file already holds are skipped (recorded errors too, unless retry_errors=True);
    an input that differs from the one recorded at its index raises InputMismatch. resume=False starts the
    file over, and refuses to erase results unless overwrite=True. fsync_every / fsync_seconds: see
    helpers.results_file, which also gives the format. Returns a JsonlSummary.
    """
    job = make_job(chain, inputs, max_concurrency, allow_async=True, config=config, retry=retry,
                   timeout=timeout, limiter=limiter)
    summary = JsonlSummary(check_output_path(path), 0, 0, 0, 0, 0, 0.0, 0, max_concurrency, StreamingStats())
    if job.total == 0:
        return summary
    results = ResultsFile(path, resume=resume, overwrite=overwrite, fsync_every=fsync_every,
                          fsync_seconds=fsync_seconds)
    meter = Progress(progress, job.total, os.path.basename(path))
    t0 = time.perf_counter()
    with results:
        try:
            await run_pool(job.items, job.workers, _record_each(job, results, summary, meter, retry_errors))
        finally:
            meter.bar.close()
    summary.wall_time, summary.peak_in_flight = time.perf_counter() - t0, meter.peak
    return summary


def _record_each(job: Job, results: ResultsFile, summary: JsonlSummary, meter: Progress,
                 retry_errors: bool) -> Callable[[int, Any], Awaitable[None]]:
    """What run_to_jsonl does with each input: skip it if the file holds it, else run it and append a record."""
    async def handle(index: int, item: Any) -> None:
        recorded = results.recorded(index, item, check=True)
        if recorded == "ok" or (recorded == "error" and not retry_errors):
            summary.add_skipped(recorded)
            meter.bar.update(1)
            return
        outcome = await meter.track(attempt(job, index, item))
        error = None if outcome.error is None else (type(outcome.error).__name__, describe_error(outcome.error, job.timeout))
        ok = results.append(index, outcome.output, error, outcome.attempts, outcome.end - outcome.start, item=item,
                            usage=outcome.usage)
        summary.add_written(outcome.end - outcome.start, ok=ok, usage=outcome.usage)

    return handle
