"""Batch runners for LangChain runnables: tracked, merged streaming, and a sliding window to JSONL.

All three push many inputs through one chain with a fixed pool of worker tasks:

    inputs --(one shared iterator)--> worker 1 --+
                                      worker 2 --+--> results list    run_tracked
                                        ...      +--> asyncio.Queue   stream_merged
                                      worker N --+--> JSONL file      run_to_jsonl

Each worker pulls the next (index, input), runs it, records the outcome and pulls again. So at
most N requests are in flight, a slow request holds up only its own worker (no batch barrier), and
nothing is created per input up front: not n coroutines (`asyncio.gather`), and not every prompt,
then every reply, then every parsed answer (`chain.abatch` on `prompt | llm | parser`).

Contents
1. Argument checks: bad arguments raise ValueError naming the problem, before any work starts.
2. One request, made robust: lives in `helpers.reliability` (retry policy, rate limiter,
   timeout); every worker calls its `invoke_robustly` for each input.
3. `run_tracked`   -> BatchReport: results in input order, Failure records, (start, end) of every
                      request, peak and mean in flight, latency percentiles, a tqdm progress bar.
4. `stream_merged` -> async iterator of StreamEvent: the tokens of up to N streams, merged as they
                      arrive, then one "done" (or "error") event per input with its full text.
5. `run_to_jsonl`  -> JsonlSummary: one JSON line per finished input, flushed at once, so a crash
                      loses only what was in flight; a rerun skips what the file already holds.
                      `read_jsonl_results` reads the file back in input order.

A failed input never stops a run: it becomes a Failure (or an error line / error event) with its
index, error type, a message a person can act on, and how many attempts were made.

When you pass `retry=`, build the model with `max_retries=0`: otherwise the openai SDK also
retries 429s and 5xx (twice, by default) inside each of our attempts.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
import warnings
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
    Sized,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from .metrics import LatencyStats, StreamingStats, format_seconds
from .reliability import RetryPolicy, TokenRateLimiter, _is_number, describe_error, invoke_robustly

__all__ = [
    "Failure",
    "BatchReport",
    "run_tracked",
    "StreamEvent",
    "stream_merged",
    "JsonlSummary",
    "run_to_jsonl",
    "read_jsonl_results",
]

# --------------------------------------------------------------------------------------------
# 1. Argument checks
# --------------------------------------------------------------------------------------------


def _check_concurrency(max_concurrency: object) -> int:
    if not isinstance(max_concurrency, int) or isinstance(max_concurrency, bool) or max_concurrency <= 0:
        raise ValueError(f"max_concurrency must be a positive int, got {max_concurrency!r}")
    return max_concurrency


def _check_timeout(timeout: object) -> float | None:
    if timeout is None:
        return None
    if not _is_number(timeout) or not 0 < timeout < math.inf:
        raise ValueError(f"timeout must be a positive number of seconds (or None), got {timeout!r}")
    return float(timeout)


def _check_options(config: object, retry: object, limiter: object) -> None:
    if config is not None and not isinstance(config, Mapping):
        raise ValueError(f"config must be a dict (a RunnableConfig) or None, got a {type(config).__name__}")
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise ValueError(f"retry must be a RetryPolicy or None, got a {type(retry).__name__}")
    if limiter is not None and not callable(getattr(limiter, "acquire", None)):
        raise ValueError(f"limiter must be a TokenRateLimiter or None, got a {type(limiter).__name__}")


def _expected_keys(chain: Any) -> list[str] | None:
    """The variables the chain needs when its input is an object (e.g. a prompt template), else None."""
    try:
        schema = chain.get_input_jsonschema()
    except Exception:  # not a Runnable, or a schema LangChain cannot build
        return None
    if schema.get("type") != "object":
        return None
    return list(schema.get("required") or schema.get("properties") or [])


def _bad_input(index: int, item: Any, keys: list[str]) -> str | None:
    """Why `item` cannot go into a chain that expects a mapping with `keys`, or None if it can."""
    if isinstance(item, Mapping):
        return None
    example = "{" + ", ".join(f"{key!r}: ..." for key in keys) + "}" if keys else "a dict"
    what = "None" if item is None else f"a {type(item).__name__}"
    return f"input {index} is {what}, but the chain's prompt expects a mapping like {example}"


@dataclass(frozen=True)
class _Inputs:
    """Checked inputs: the iterable, its length if known, and whether each item still needs checking."""

    items: Iterable[Any] | AsyncIterable[Any]
    total: int | None
    keys: list[str] | None  # what each item must contain, when the chain expects a mapping
    check_each: bool  # True for lazy iterables, whose items could not be checked up front


def _prepare_inputs(chain: Any, inputs: Any, *, allow_async: bool = False) -> _Inputs:
    """Check `inputs`; a list with a None or non-mapping item for a prompt chain raises ValueError."""
    if inputs is None or isinstance(inputs, (str, bytes, Mapping)):
        kind = "None" if inputs is None else f"a single {type(inputs).__name__}"
        raise ValueError(f"inputs must be a list (or other iterable) of inputs, got {kind}; wrap one input in a list")
    is_async = isinstance(inputs, AsyncIterable)
    if is_async and not allow_async:
        raise ValueError("inputs is an async iterable; this runner needs a list or iterable (run_to_jsonl takes both)")
    if not is_async and not isinstance(inputs, Iterable):
        raise ValueError(f"inputs must be a list or iterable, got a {type(inputs).__name__}")
    keys = _expected_keys(chain)
    if keys is not None and isinstance(inputs, Sequence):
        for index, item in enumerate(inputs):
            problem = _bad_input(index, item, keys)
            if problem:
                raise ValueError(problem)
    total = len(inputs) if isinstance(inputs, Sized) else None
    return _Inputs(inputs, total, keys, check_each=keys is not None and not isinstance(inputs, Sequence))


async def _run_workers(worker: Callable[[], Awaitable[None]], count: int) -> None:
    """Run `count` copies of `worker` until all return; if one raises or we are cancelled, cancel the rest."""
    tasks = [asyncio.create_task(worker()) for _ in range(count)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _progress_bar(progress: bool, total: int | None, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit="req", disable=not progress, dynamic_ncols=True)


# --------------------------------------------------------------------------------------------
# 3. run_tracked: results in input order, plus how the run went
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """One input that failed: which one, what went wrong, and how many attempts were made."""

    index: int
    error_type: str
    message: str
    attempts: int
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        tries = "1 attempt" if self.attempts == 1 else f"{self.attempts} attempts"
        return f"#{self.index} {self.error_type} after {tries}: {self.message}"


def _failure(index: int, exc: BaseException, attempts: int, timeout: float | None) -> Failure:
    return Failure(index, type(exc).__name__, describe_error(exc, timeout), attempts, exc)


def _failure_lines(failures: Sequence[Failure], shown: int = 5) -> list[str]:
    lines = [str(f) for f in failures[:shown]]
    if len(failures) > shown:
        lines.append(f"... and {len(failures) - shown} more (see .failures)")
    return lines


def _table(rows: list[tuple[str, str | list[str]]]) -> str:
    """Two-column text table; a list value continues on indented lines."""
    width = max(len(label) for label, _ in rows) + 2
    lines = []
    for label, value in rows:
        values = value if isinstance(value, list) else [value]
        for i, text in enumerate(values):
            lines.append(f"{label if i == 0 else '':<{width}}{text}")
    return "\n".join(lines)


@dataclass
class BatchReport:
    """What `run_tracked` returns: results in input order (None where an input failed) and run metrics.

    `intervals[i]` is (start, end) of input i in seconds since the run began: from when a worker
    took it to when it finished, so limiter waits and retries count. Latency and mean in flight
    cover every input, failed ones too, so mean_in_flight == throughput * latency.mean (Little's law).
    """

    results: list[Any] = field(repr=False)
    failures: list[Failure] = field(repr=False)
    intervals: list[tuple[float, float] | None] = field(repr=False)
    wall_time: float
    peak_in_flight: int
    max_concurrency: int
    latency: LatencyStats

    @property
    def ok(self) -> int:
        return len(self.results) - len(self.failures)

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def throughput(self) -> float:
        """Finished inputs (ok or failed) per second of wall time."""
        return len(self.results) / self.wall_time if self.wall_time > 0 else 0.0

    @property
    def mean_in_flight(self) -> float:
        """Average number of requests in flight over the run: total busy time / wall time."""
        busy = sum(end - start for start, end in filter(None, self.intervals))
        return busy / self.wall_time if self.wall_time > 0 else 0.0

    def summary(self) -> str:
        """A short readable table of the run."""
        rows: list[tuple[str, str | list[str]]] = [
            ("inputs", f"{len(self.results)}: {self.ok} ok, {self.failed} failed"),
            ("wall time", format_seconds(self.wall_time)),
            ("throughput", f"{self.throughput:.1f} req/s"),
            ("latency", self.latency.line()),
            ("in flight", f"peak {self.peak_in_flight} (limit {self.max_concurrency}) · mean {self.mean_in_flight:.1f}"),
        ]
        if self.failures:
            rows.append(("failures", _failure_lines(self.failures)))
        return _table(rows)

    __str__ = summary

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # how IPython/Jupyter shows it
        printer.text(self.summary())


async def run_tracked(
    chain: Any,
    inputs: Iterable[Any],
    *,
    max_concurrency: int,
    progress: bool = True,
    config: Mapping[str, Any] | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    limiter: TokenRateLimiter | None = None,
) -> BatchReport:
    """Run every input through `chain.ainvoke` with at most `max_concurrency` in flight.

    Failed inputs are collected in `failures`, never raised. Returns a BatchReport.
    """
    max_concurrency = _check_concurrency(max_concurrency)
    timeout = _check_timeout(timeout)
    _check_options(config, retry, limiter)
    prepared = _prepare_inputs(chain, inputs)
    total, keys, check_each = prepared.total, prepared.keys or [], prepared.check_each
    results: list[Any] = [None] * total if total is not None else []
    intervals: list[tuple[float, float] | None] = [None] * total if total is not None else []
    failures: list[Failure] = []
    if total == 0:
        return BatchReport(results, failures, intervals, 0.0, 0, max_concurrency, LatencyStats.from_values([]))

    pending = enumerate(prepared.items)  # shared by all workers: each next() hands out one input
    in_flight = peak = 0
    bar = _progress_bar(progress, total, "run_tracked")
    perf_counter = time.perf_counter
    t0 = perf_counter()

    async def worker() -> None:
        nonlocal in_flight, peak
        for index, item in pending:
            if total is None:  # length unknown: grow the lists as inputs arrive
                results.append(None)
                intervals.append(None)
            in_flight += 1
            if in_flight > peak:
                peak = in_flight
            start = perf_counter()
            problem = _bad_input(index, item, keys) if check_each else None
            if problem:
                output, error, attempts = None, ValueError(problem), 0
            else:
                output, error, attempts = await invoke_robustly(chain, item, config, retry, timeout, limiter)
            end = perf_counter()
            in_flight -= 1
            intervals[index] = (start - t0, end - t0)
            if error is None:
                results[index] = output
            else:
                failures.append(_failure(index, error, attempts, timeout))
            bar.update(1)

    try:
        await _run_workers(worker, min(max_concurrency, total) if total is not None else max_concurrency)
    finally:
        bar.close()
    wall_time = perf_counter() - t0
    failures.sort(key=lambda f: f.index)
    latencies = [end - start for start, end in filter(None, intervals)]
    return BatchReport(
        results, failures, intervals, wall_time, peak, max_concurrency, LatencyStats.from_values(latencies)
    )


# --------------------------------------------------------------------------------------------
# 4. stream_merged: tokens of up to N streams, merged through one queue
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamEvent:
    """One event from `stream_merged`.

    kind "token": `text` is the new piece. kind "done": `text` is the full answer. kind "error":
    `text` is what arrived before the failure and `error` says what went wrong. Done and error
    events carry `ttft` (seconds to the first token, None if none came) and `latency` (seconds).
    """

    index: int
    kind: Literal["token", "done", "error"]
    text: str = ""
    error: str | None = None
    ttft: float | None = None
    latency: float | None = None


def _chunk_text(chunk: Any) -> str:
    """The text in one streamed chunk: a str (after StrOutputParser) or a message chunk's content."""
    if isinstance(chunk, str):
        return chunk
    content = getattr(chunk, "content", chunk)
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "".join(part if isinstance(part, str) else str(part.get("text", "")) for part in content)
    return str(content)


_WORKER_DONE = object()  # a worker puts this on the queue when no inputs are left


@dataclass(frozen=True)
class _WorkerCrashed:
    error: BaseException  # the input iterable itself raised


def stream_merged(
    chain: Any,
    inputs: Iterable[Any],
    *,
    max_concurrency: int,
    config: Mapping[str, Any] | None = None,
) -> AsyncIterator[StreamEvent]:
    """Stream up to `max_concurrency` inputs at once and yield their events merged as they arrive.

    Use `async for event in stream_merged(...)`. Leaving early is safe: closing the iterator
    cancels and awaits every worker. `aclose()`, or `contextlib.aclosing` around a loop you
    `break` out of, closes it at once; after a plain `break` Python closes it a moment later.
    Arguments are checked here, at call time. No retries: a stream that failed half-way has
    already shown its tokens.
    """
    max_concurrency = _check_concurrency(max_concurrency)
    _check_options(config, None, None)
    prepared = _prepare_inputs(chain, inputs)
    return _merged_events(chain, prepared, max_concurrency, config)


async def _merged_events(
    chain: Any, prepared: _Inputs, max_concurrency: int, config: Any
) -> AsyncIterator[StreamEvent]:
    total, keys, check_each = prepared.total, prepared.keys or [], prepared.check_each
    if total == 0:
        return
    workers = min(max_concurrency, total) if total is not None else max_concurrency
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=64 * workers)  # a slow reader slows the streams
    pending = enumerate(prepared.items)
    # Set when the reader has gone. Cancelling a worker is not always enough: on Python 3.11,
    # asyncio.wait_for (which langchain-openai wraps around every stream chunk) can swallow a
    # cancel that arrives with a chunk, and the worker would go on and block on the full queue.
    stopping = False

    async def stream_one(index: int, item: Any) -> None:
        start = time.perf_counter()
        ttft: float | None = None
        parts: list[str] = []
        try:
            problem = _bad_input(index, item, keys) if check_each else None
            if problem:
                raise ValueError(problem)
            async for chunk in chain.astream(item, config):
                if stopping:
                    return
                text = _chunk_text(chunk)
                if not text:
                    continue  # e.g. the empty first chunk that only carries the role
                if ttft is None:
                    ttft = time.perf_counter() - start
                parts.append(text)
                await queue.put(StreamEvent(index, "token", text))
        except Exception as exc:
            if stopping:
                return
            latency = time.perf_counter() - start
            message = f"{type(exc).__name__}: {describe_error(exc)}"
            await queue.put(StreamEvent(index, "error", "".join(parts), message, ttft, latency))
            return
        if stopping:
            return
        latency = time.perf_counter() - start
        await queue.put(StreamEvent(index, "done", "".join(parts), None, ttft, latency))

    async def worker() -> None:
        try:
            for index, item in pending:
                if stopping:
                    return
                await stream_one(index, item)
        except Exception as exc:  # only the input iterable can get here
            if not stopping:
                await queue.put(_WorkerCrashed(exc))
        if not stopping:
            await queue.put(_WORKER_DONE)

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    try:
        finished = 0
        while finished < len(tasks):
            event = await queue.get()
            if event is _WORKER_DONE:
                finished += 1
            elif isinstance(event, _WorkerCrashed):
                raise event.error
            else:
                yield event
    finally:  # normal end, consumer left early, or cancelled: leave no task behind
        stopping = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# --------------------------------------------------------------------------------------------
# 5. run_to_jsonl: a bounded sliding window that writes each result to disk as it finishes
# --------------------------------------------------------------------------------------------


@dataclass
class JsonlSummary:
    """What `run_to_jsonl` returns: counts for this run. The results themselves are in the file."""

    path: Path
    written: int  # lines written by this run (ok + failed)
    skipped: int  # inputs the file already held a record for
    skipped_errors: int  # of those, how many were recorded errors (rerun them with retry_errors=True)
    ok: int
    failed: int
    wall_time: float
    peak_in_flight: int
    max_concurrency: int
    latency: StreamingStats = field(repr=False)

    @property
    def throughput(self) -> float:
        """Lines written per second of wall time."""
        return self.written / self.wall_time if self.wall_time > 0 else 0.0

    def summary(self) -> str:
        """A short readable table of the run."""
        skipped = f"{self.skipped} already in the file"
        if self.skipped_errors:
            skipped += f" ({self.skipped_errors} of them errors; retry_errors=True reruns those)"
        return _table(
            [
                ("file", self.path.name),
                ("written", f"{self.written}: {self.ok} ok, {self.failed} failed"),
                ("skipped", skipped),
                ("wall time", format_seconds(self.wall_time)),
                ("throughput", f"{self.throughput:.1f} req/s"),
                ("latency", self.latency.line()),
                ("in flight", f"peak {self.peak_in_flight} (limit {self.max_concurrency})"),
            ]
        )

    __str__ = summary

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.summary())


def _check_output_path(path: object) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"path must be a file path (str or Path), got a {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is a directory; give a file name such as {str(path / 'results.jsonl')!r}")
    if path.exists() and not path.is_file():  # a FIFO or device: reading it to resume could block forever
        raise ValueError(f"path {str(path)!r} is not a regular file; give a file name such as 'results.jsonl'")
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(f"folder {str(folder)!r} for the output file does not exist; create it first")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"cannot write to {str(path)!r}: permission denied")
    return path


def _parse_record(line: bytes) -> dict[str, Any] | None:
    """The record on one line, or None if the line is not a complete, valid record."""
    try:
        record = json.loads(line)
    except ValueError:  # includes UnicodeDecodeError and json.JSONDecodeError
        return None
    if not isinstance(record, dict) or ("output" not in record and "error" not in record):
        return None
    index = record.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        return None
    return record


def _preview(line: bytes) -> str:
    text = line.decode("utf-8", errors="replace").strip()
    return text if len(text) <= 60 else text[:57] + "..."


def _scan_existing(path: Path) -> tuple[set[int], set[int]]:
    """Indices whose last record in `path` is ok, and those whose last record is an error.

    Invalid lines are skipped with a warning. Invalid lines at the very end (a write cut off by a
    crash) are also cut from the file, so new lines start on a clean line.
    """
    done_ok: set[int] = set()
    done_error: set[int] = set()
    if not path.exists():
        return done_ok, done_error
    bad: list[tuple[int, int, bytes]] = []  # (line number, byte offset, line)
    last_good_line = 0
    offset = 0
    with open(path, "rb") as file:
        for number, line in enumerate(file, start=1):
            start, offset = offset, offset + len(line)
            if not line.strip():
                continue
            record = _parse_record(line)
            if record is None:
                bad.append((number, start, line))
                continue
            last_good_line = number
            index = record["index"]
            if "error" in record:
                done_error.add(index)
                done_ok.discard(index)
            else:
                done_ok.add(index)
                done_error.discard(index)
    for number, _, line in bad:
        fate = "cut from the file" if number > last_good_line else "ignored"
        warnings.warn(
            f"{path.name} line {number} is not a complete record ({_preview(line)!r}); {fate}, and its input will be run again",
            stacklevel=3,
        )
    tail = [start for number, start, _ in bad if number > last_good_line]
    with open(path, "rb+") as file:
        if tail:
            file.truncate(tail[0])
        end = file.seek(0, os.SEEK_END)
        if end:
            file.seek(end - 1)
            if file.read(1) != b"\n":  # a valid last record whose newline never made it
                file.write(b"\n")
    return done_ok, done_error


def _jsonable(value: Any) -> Any:
    """Fallback for json.dumps: pydantic objects (e.g. messages) as dicts, anything else as str."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)


def _puller(items: Iterable[Any] | AsyncIterable[Any]) -> Callable[[], Awaitable[tuple[int, Any] | None]]:
    """An async function returning the next (index, input) or None at the end; safe for many workers."""
    if not isinstance(items, AsyncIterable):
        numbered = enumerate(items)

        async def pull_sync() -> tuple[int, Any] | None:
            return next(numbered, None)

        return pull_sync

    iterator = aiter(items)
    lock = asyncio.Lock()  # an async generator cannot be advanced by two workers at once
    count = 0
    exhausted = False

    async def pull_async() -> tuple[int, Any] | None:
        nonlocal count, exhausted
        async with lock:
            if exhausted:
                return None
            try:
                item = await anext(iterator)
            except StopAsyncIteration:
                exhausted = True
                return None
            count += 1
            return count - 1, item

    return pull_async


async def run_to_jsonl(
    chain: Any,
    inputs: Iterable[Any] | AsyncIterable[Any],
    path: str | os.PathLike[str],
    *,
    max_concurrency: int,
    resume: bool = True,
    retry_errors: bool = False,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    limiter: TokenRateLimiter | None = None,
    progress: bool = True,
    config: Mapping[str, Any] | None = None,
) -> JsonlSummary:
    """Run inputs through `chain` with at most `max_concurrency` in flight, appending one JSON line each.

    A line is `{"index", "output", "attempts", "latency"}` or `{"index", "error": {"type", "message"},
    "attempts", "latency"}`, flushed as soon as the input finishes. Inputs may be any iterable or
    async iterable; they are pulled one at a time, never all loaded. With resume=True (default) the
    inputs already recorded in `path` are skipped (recorded errors too, unless retry_errors=True);
    the index is the position in `inputs`, so resume with the same inputs in the same order.
    resume=False empties the file first. Returns a JsonlSummary.
    """
    max_concurrency = _check_concurrency(max_concurrency)
    timeout = _check_timeout(timeout)
    _check_options(config, retry, limiter)
    prepared = _prepare_inputs(chain, inputs, allow_async=True)
    path = _check_output_path(path)
    keys, check_each = prepared.keys or [], prepared.check_each
    stats = StreamingStats()
    if prepared.total == 0:
        return JsonlSummary(path, 0, 0, 0, 0, 0, 0.0, 0, max_concurrency, stats)

    try:
        done_ok, done_error = _scan_existing(path) if resume else (set(), set())
    except OSError as exc:
        raise ValueError(
            f"cannot read {str(path)!r} to resume from it: {exc.strerror}; fix its permissions, "
            "or pass resume=False to start over"
        ) from exc
    pull = _puller(prepared.items)
    written = skipped = skipped_errors = ok = failed = 0
    in_flight = peak = 0
    bar = _progress_bar(progress, prepared.total, path.name)

    async def next_input() -> tuple[int, Any] | None:
        """The next input not already in the file (discarding skipped indices keeps the sets shrinking)."""
        nonlocal skipped, skipped_errors
        while (pulled := await pull()) is not None:
            index = pulled[0]
            if index in done_ok:
                done_ok.discard(index)
            elif index in done_error and not retry_errors:
                done_error.discard(index)
                skipped_errors += 1
            else:
                done_error.discard(index)
                return pulled
            skipped += 1
            bar.update(1)
        return None

    try:
        out = open(path, "a" if resume else "w", encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot open {str(path)!r} for writing: {exc.strerror}") from exc

    def write(record: dict[str, Any]) -> None:
        # One write + flush with no await in between: lines from different workers never interleave,
        # and once flushed, a line survives the process being killed.
        out.write(json.dumps(record, ensure_ascii=False, default=_jsonable) + "\n")
        out.flush()

    async def worker() -> None:
        nonlocal written, ok, failed, in_flight, peak
        while (pulled := await next_input()) is not None:
            index, item = pulled
            in_flight += 1
            peak = max(peak, in_flight)
            start = time.perf_counter()
            problem = _bad_input(index, item, keys) if check_each else None
            if problem:
                output, error, attempts = None, ValueError(problem), 0
            else:
                output, error, attempts = await invoke_robustly(chain, item, config, retry, timeout, limiter)
            latency = time.perf_counter() - start
            in_flight -= 1
            if error is None:
                write({"index": index, "output": output, "attempts": attempts, "latency": round(latency, 4)})
                ok += 1
            else:
                message = describe_error(error, timeout)
                error_record = {"type": type(error).__name__, "message": message}
                write({"index": index, "error": error_record, "attempts": attempts, "latency": round(latency, 4)})
                failed += 1
            written += 1
            stats.add(latency)
            bar.update(1)

    t0 = time.perf_counter()
    try:
        count = min(max_concurrency, prepared.total) if prepared.total is not None else max_concurrency
        await _run_workers(worker, count)
    finally:
        out.close()
        bar.close()
    wall_time = time.perf_counter() - t0
    return JsonlSummary(
        path, written, skipped, skipped_errors, ok, failed, wall_time, peak, max_concurrency, stats
    )


def read_jsonl_results(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records in a run_to_jsonl file, in input order; the last record for an index wins."""
    path = Path(path)
    latest: dict[int, dict[str, Any]] = {}
    with open(path, "rb") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            record = _parse_record(line)
            if record is None:
                warnings.warn(f"{path.name} line {number} is not a complete record ({_preview(line)!r}); skipped", stacklevel=2)
                continue
            latest[record["index"]] = record
    return [latest[index] for index in sorted(latest)]
