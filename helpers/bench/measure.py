"""Measure batch runners against the mock: throughput, client CPU per request, peak memory.

    from helpers.bench.measure import measure, run_once, sweep
    measure("run_to_jsonl", n=5000, concurrency=100)        # in a fresh process: memory is its own
    await run_once("abatch", n=500, concurrency=100)         # in this process (top-level await)
    await sweep("abatch", [1, 10, 100], chain=chain)          # throughput at each concurrency

Every function returns plain dicts, so a notebook can print them and `make bench` can save them.
A measurement dict holds: runner, n, concurrency, ok, failed, wall_s, throughput (req/s),
cpu_ms_per_request (client CPU time / n, all threads), mean_latency_s (when known), and, when asked
for, peak_traced_mb (tracemalloc), peak_rss_growth_mb (growth of the process's peak RSS),
intervals ((start, end) of each request, seconds since the run began) and slots_busy (see
`slots_busy`).

Structure
1. RUNNERS: the ways to push n inputs through one chain that the workbook compares, each an async
   function (chain, inputs, concurrency, options) -> list of outputs (an Exception where one failed).
2. `run_once`: build inputs, run one runner, measure it, in this process.
3. `measure`: `run_once` in a fresh process forked from a server that has already imported
   LangChain (multiprocessing's "forkserver"), so starting one costs ~50 ms, not ~2 s of imports,
   and its memory figures belong to that runner alone. `start_in_fresh_process` runs any module-level
   function there too (`jsonl_job`: lesson 04 kills one with SIGKILL).
4. `sweep`: throughput at several concurrencies, with Little's-law ideal C / L0, where L0 is the
   latency of a lone request.
5. `cprofile_lines`, `cpu_by_package`: where the client's CPU goes, as readable lines.
6. A command line for benchmarks (`python -m helpers.bench.measure --help`); it starts its own mock and
   prints the workbook's two performance targets when the rows hold what they need:
       python -m helpers.bench.measure --runners abatch,run_tracked --n 2000 --concurrency 100,1000 \
           --latency 0.2 --repeat 3 --prompt add
       python -m helpers.bench.measure --runners run_to_jsonl --n 5000,50000 --trace-memory

Use one event loop per process: langchain-openai shares one HTTP client per base URL, bound to the
loop that first used it (a notebook has one loop; `measure` runs each measurement in its own process).

Inputs are built inside the measured region: a list for the runners that need one (abatch and the
seed's code index and slice it), a generator for `run_to_jsonl`, which pulls inputs one at a time.
Peak memory therefore includes the input list wherever a runner needs all inputs at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import json
import multiprocessing
import multiprocessing.forkserver
import os
import pstats
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import openai
from langchain_core.runnables import Runnable
from langchain_openai import ChatOpenAI

from helpers.backend import DEFAULT_MODEL, make_chain, pooled_http_client
from helpers.runners import run_to_jsonl, run_tracked
from helpers.seed_tutorial import HighPerformanceBatchProcessor, MemoryEfficientBatchProcessor
from helpers.timing import RequestTimer

__all__ = ["RUNNERS", "PROMPTS", "make_inputs", "mock_chain", "run_once", "measure", "prepare_fresh_processes",
           "start_in_fresh_process", "jsonl_job", "lines_as_inputs", "sweep", "cprofile_lines", "cpu_by_package", "latency_settings"]

# The seed's two prompts: "Translate into English: {text}" and "Calculate {a} + {b}".
PROMPTS = {"translate": "翻译成英文：{text}", "add": "计算 {a} + {b}"}


def make_inputs(prompt: str, n: int, *, warm_up: bool = False) -> Iterator[dict[str, Any]]:
    """The seed's inputs for `prompt`, made one at a time: {"text": "测试i"} or {"a": i, "b": i + 1}.

    warm_up=True gives other inputs ({"text": "预热i"}, {"a": -i, "b": -1}), so warming up does not
    use up the mock's first attempt at the inputs that are measured.
    """
    if prompt == "translate":
        word = "预热" if warm_up else "测试"  # "warm-up", "test"
        return ({"text": f"{word}{i}"} for i in range(n))
    if prompt == "add":
        return ({"a": -i, "b": -1} if warm_up else {"a": i, "b": i + 1} for i in range(n))
    raise ValueError(f"prompt must be one of {sorted(PROMPTS)}, got {prompt!r}")


def mock_chain(base_url: str, prompt: str = "translate", max_retries: int = 2, http_client: Any = None) -> Runnable:
    """The seed's `prompt | ChatOpenAI | StrOutputParser()` chain, talking to the mock at `base_url`.

    `http_client` (e.g. `helpers.backend.pooled_http_client(1000)`) replaces ChatOpenAI's own async one.
    """
    llm = ChatOpenAI(model=DEFAULT_MODEL, base_url=base_url, api_key="mock-key", temperature=0,
                     stream_usage=True, max_retries=max_retries, http_async_client=http_client)
    return make_chain(PROMPTS[prompt], llm)


# The HTTP clients `run_once(client=...)` can give the chain (and raw_openai): the SDK's own pool
# (up to 1,000 connections, 100 kept alive), or one whose kept-alive pool is sized to the concurrency.
CLIENTS = {
    "sdk": "ChatOpenAI's default: httpx2, 100 connections kept alive",
    "httpx-sized": "httpx2, connections kept alive = concurrency",
    "aiohttp-sized": "the openai SDK's aiohttp transport, connections kept alive = concurrency",
}


def _http_client(client: str, concurrency: int) -> Any:
    if client not in CLIENTS:
        raise ValueError(f"client must be one of {sorted(CLIENTS)}, got {client!r}")
    return None if client == "sdk" else pooled_http_client(concurrency, client.split("-")[0])


@contextlib.contextmanager
def _count_connections(counter: list[int]) -> Iterator[None]:
    """Count the TCP connections the running event loop opens inside the block (in counter[0])."""
    loop = asyncio.get_running_loop()
    shadowed = vars(loop).get("create_connection")  # another count already running on this loop
    original = loop.create_connection

    async def create_connection(*args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return await original(*args, **kwargs)

    loop.create_connection = create_connection  # type: ignore[method-assign]
    try:
        yield
    finally:
        if shadowed is None:
            del loop.create_connection  # back to the class's method
        else:
            loop.create_connection = shadowed  # type: ignore[method-assign]


def latency_settings(latency: float) -> dict[str, float]:
    """Mock settings that make a short reply take `latency` seconds on average (±20 % jitter)."""
    return {"ttft": latency, "tokens_per_second": 1e6, "speed": 1.0, "jitter": 0.2, "tail_fraction": 0.0}


# --------------------------------------------------------------------------------------------
# 1. The runners
# --------------------------------------------------------------------------------------------

Outputs = list[Any]
Runner = Callable[[Runnable, Iterable[dict], int, dict], Awaitable[Outputs]]


async def _batch(chain: Runnable, inputs: Iterable[dict], concurrency: int, opts: dict) -> Outputs:
    # Sync `batch` is a thread pool of `concurrency` threads; it blocks this event loop meanwhile.
    return chain.batch(list(inputs), config={"max_concurrency": concurrency}, return_exceptions=True)


async def _abatch(chain: Runnable, inputs: Iterable[dict], concurrency: int, opts: dict) -> Outputs:
    return await chain.abatch(list(inputs), config={"max_concurrency": concurrency}, return_exceptions=True)


async def _abatch_as_completed(chain: Runnable, inputs: Iterable[dict], concurrency: int, opts: dict) -> Outputs:
    inputs = list(inputs)
    results: Outputs = [None] * len(inputs)
    config = {"max_concurrency": concurrency}
    async for index, output in chain.abatch_as_completed(inputs, config=config, return_exceptions=True):
        results[index] = output
    return results


async def _seed_processor(chain: Runnable, inputs: Iterable[dict], concurrency: int, opts: dict) -> Outputs:
    inputs = list(inputs)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints a banner and every error
        metrics = await HighPerformanceBatchProcessor(chain, max_concurrency=concurrency).batch(inputs)
    # It returns only counts; the answers are dropped inside. Report failures as exceptions.
    return ["?"] * metrics.success_count + [RuntimeError("failed")] * metrics.failure_count


async def _seed_chunked(chain: Runnable, inputs: Iterable[dict], concurrency: int, opts: dict) -> Outputs:
    # The seed's chunked processor fixes max_concurrency=100 inside; `concurrency` is ignored.
    processor = MemoryEfficientBatchProcessor(chain, chunk_size=opts.get("chunk_size", 1000))
    with contextlib.redirect_stdout(io.StringIO()):  # it prints a line per chunk
        return await processor.batch(list(inputs))


async def _run_tracked(chain: Runnable, inputs: Iterable[dict], concurrency: int, opts: dict) -> Outputs:
    report = await run_tracked(chain, list(inputs), max_concurrency=concurrency, progress=False)
    opts["intervals"] = report.intervals  # run_tracked times every request itself
    outputs = list(report.results)
    for failure in report.failures:
        outputs[failure.index] = failure.exception or RuntimeError(failure.message)
    return outputs


async def _run_to_jsonl(chain: Runnable, inputs: Iterable[dict], concurrency: int, opts: dict) -> Outputs:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(opts.get("path") or Path(folder) / "results.jsonl")
        summary = await run_to_jsonl(chain, inputs, path, max_concurrency=concurrency, resume=False,
                                     progress=False)
    # The answers are on disk; report only how many succeeded, as the file would.
    return ["?"] * summary.ok + [RuntimeError("failed")] * summary.failed


async def _raw_openai(chain: Runnable, inputs: Iterable[dict], concurrency: int, opts: dict) -> Outputs:
    """The openai SDK alone: one `asyncio.gather` over n coroutines, a semaphore for the limit."""
    template = PROMPTS[opts["prompt"]]
    semaphore = asyncio.Semaphore(concurrency)
    intervals: list[tuple[float, float]] = []
    t0 = time.perf_counter()
    async with openai.AsyncOpenAI(base_url=opts["base_url"], api_key="mock-key", max_retries=opts["max_retries"],
                                  http_client=opts.get("http_client")) as client:
        async def one(item: dict) -> str:
            async with semaphore:
                start = time.perf_counter()
                try:
                    reply = await client.chat.completions.create(
                        model=DEFAULT_MODEL, temperature=0,
                        messages=[{"role": "user", "content": template.format(**item)}])
                finally:
                    intervals.append((start - t0, time.perf_counter() - t0))
                return reply.choices[0].message.content

        outputs = await asyncio.gather(*(one(item) for item in inputs), return_exceptions=True)
    opts["intervals"] = intervals
    return outputs


RUNNERS: dict[str, Runner] = {
    "batch": _batch,  # chain.batch: a thread pool
    "abatch": _abatch,  # chain.abatch: step by step over a RunnableSequence
    "abatch_as_completed": _abatch_as_completed,
    "seed_processor": _seed_processor,  # the seed's HighPerformanceBatchProcessor (section 3)
    "seed_chunked": _seed_chunked,  # the seed's MemoryEfficientBatchProcessor (section 4)
    "run_tracked": _run_tracked,  # helpers.runners: a fixed pool of workers
    "run_to_jsonl": _run_to_jsonl,  # helpers.runners: the same pool, each result to disk
    "raw_openai": _raw_openai,  # openai.AsyncOpenAI + a semaphore, no LangChain
}
_LAZY = {"run_to_jsonl"}  # runners that take the inputs as a generator


# --------------------------------------------------------------------------------------------
# 2. One measured run, in this process
# --------------------------------------------------------------------------------------------


def slots_busy(intervals: list[tuple[float, float]], concurrency: int) -> float | None:
    """Share of the `concurrency` slots that held a request while the runner still had inputs.

    The window runs from the first request's start to the last one's: until then a perfect runner
    refills a slot the moment it frees, so 1.0 means no slot ever waited for the runner. After the
    last start the slots empty one by one however good the runner is (the drain), so that part is
    left out. None when every request started at once (no window to measure).
    """
    if not intervals:
        return None
    first = min(start for start, _ in intervals)
    last = max(start for start, _ in intervals)
    if last <= first:
        return None
    busy = sum(max(0.0, min(end, last) - start) for start, end in intervals)
    return busy / (concurrency * (last - first))


def _proc_status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux: write 5 to /proc/self/clear_refs); False if impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


async def run_once(
    runner: str,
    n: int,
    concurrency: int,
    *,
    chain: Runnable | None = None,
    base_url: str | None = None,
    prompt: str = "translate",
    chunk_size: int = 1000,
    max_retries: int = 2,
    trace_memory: bool = False,
    record_intervals: bool = False,
    warm_up: int = 2,
    client: str = "sdk",
    profile: bool | str = False,
) -> dict[str, Any]:
    """Run `runner` over `n` of the seed's inputs at `concurrency`, in this process; a measurement dict.

    Without `chain`, builds the seed's chain against the mock at `base_url` (default: this process's
    mock). trace_memory=True runs tracemalloc during the run (it makes Python ~4× slower).
    `client` picks the HTTP client (see CLIENTS; ignored with `chain`). profile=True runs cProfile
    during the run and adds "profile": {"by_package": ..., "top": ...} (cpu_by_package, cprofile_lines);
    a path instead of True also saves the raw stats there (for `pstats.Stats(path)`).
    """
    if runner not in RUNNERS:
        raise ValueError(f"runner must be one of {sorted(RUNNERS)}, got {runner!r}")
    if base_url is None:
        from helpers.mock import get_mock

        base_url = get_mock().base_url
    http_client = None if chain is not None else _http_client(client, concurrency)
    chain = chain or mock_chain(base_url, prompt, max_retries, http_client)
    if warm_up:  # open a connection, run the SDK's lazy imports and caches: not part of the figure
        await chain.abatch(list(make_inputs(prompt, warm_up, warm_up=True)))
    timer = None
    if record_intervals and runner != "raw_openai":  # the same callback for every LangChain runner
        timer = RequestTimer()
        chain = chain.with_config(callbacks=[timer])
    opts: dict[str, Any] = {"chunk_size": chunk_size, "prompt": prompt, "base_url": base_url,
                            "max_retries": max_retries, "http_client": _http_client(client, concurrency)}
    connections = [0]
    profiler = cProfile.Profile() if profile else None

    if trace_memory:
        gc.collect()  # start from a clean heap (measure() also collects in its fresh process)
    rss_reset = _reset_peak_rss()
    rss_start = _proc_status_kb("VmRSS")
    if trace_memory:
        tracemalloc.start()
    traced_start = tracemalloc.get_traced_memory()[0] if trace_memory else 0
    cpu_start, start = time.process_time(), time.perf_counter()

    if profiler:
        profiler.enable()
    inputs = make_inputs(prompt, n)
    with _count_connections(connections):
        outputs = await RUNNERS[runner](chain, inputs if runner in _LAZY else list(inputs), concurrency, opts)

    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    if profiler:
        profiler.disable()
    peak_traced = tracemalloc.get_traced_memory()[1] - traced_start if trace_memory else None
    if trace_memory:
        tracemalloc.stop()
    rss_peak = _proc_status_kb("VmHWM") if rss_reset else None
    failed = sum(isinstance(output, BaseException) for output in outputs)
    result: dict[str, Any] = {
        "runner": runner, "n": n, "concurrency": 100 if runner == "seed_chunked" else concurrency,
        "ok": len(outputs) - failed, "failed": failed,
        "wall_s": wall, "throughput": n / wall if wall > 0 else 0.0, "cpu_ms_per_request": 1000 * cpu / n,
        "mean_latency_s": None, "peak_traced_mb": None if peak_traced is None else peak_traced / 1e6,
        "peak_rss_growth_mb": None if rss_peak is None or rss_start is None else (rss_peak - rss_start) / 1e3,
        "peak_rss_mb": None if rss_peak is None else rss_peak / 1e3, "client": client,
        # TCP connections opened by the event loop (None for sync `batch`, whose threads connect directly).
        "connections_opened": None if runner == "batch" else connections[0],
    }
    for owned in (http_client, opts["http_client"]):  # close what we opened, on this loop (see raw_openai)
        if owned is not None:
            await owned.aclose()
    if profiler:
        result["profile"] = {"by_package": cpu_by_package(profiler), "top": cprofile_lines(profiler, 12)}
        if isinstance(profile, str):
            profiler.dump_stats(profile)
    if runner == "seed_chunked":
        result["chunk_size"] = chunk_size
    intervals = timer.intervals() if timer else opts.get("intervals")
    if intervals:
        done = [pair for pair in intervals if pair is not None]
        result["mean_latency_s"] = statistics.fmean(end - begin for begin, end in done)
        if record_intervals:
            first = min(begin for begin, _ in done)
            result["intervals"] = sorted((begin - first, end - first) for begin, end in done)
            result["slots_busy"] = slots_busy(result["intervals"], result["concurrency"])
    return result


# --------------------------------------------------------------------------------------------
# 3. In a fresh process
# --------------------------------------------------------------------------------------------

# The forkserver imports these once: this module (and so LangChain), and what the SDK imports lazily
# on its first request. Missing ones are skipped.
_PRELOAD = ["helpers.bench.measure", "httpcore2", "h11", "anyio._backends._asyncio", "jiter", "openai.resources.chat",
            "openai.lib.streaming.chat", "langchain_core.tracers.langchain", "langchain_core.tracers.stdout",
            "langchain_core.messages.block_translators.langchain_v0"]


def _context() -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    return context


def prepare_fresh_processes() -> None:
    """Start the server that forks fresh processes now; it imports LangChain in the background, so
    the first `measure` call does not wait ~2 s for that."""
    _context()
    multiprocessing.forkserver.ensure_running()


def _run_once_sync(kwargs: dict[str, Any]) -> dict[str, Any]:
    gc.collect()
    return asyncio.run(run_once(**kwargs))


def measure(runner: str, n: int, concurrency: int, **options: Any) -> dict[str, Any]:
    """`run_once` in a fresh process (blocking); same arguments and result, except `chain`.

    The process is forked from a server that has LangChain imported already, so it starts in
    ~50 ms and its peak memory (`peak_rss_growth_mb`, and `peak_traced_mb` with trace_memory=True)
    belongs to this one runner.
    """
    if "chain" in options:
        raise ValueError("measure() builds its own chain in the new process; pass prompt=... instead")
    if options.get("base_url") is None:
        from helpers.mock import get_mock

        options["base_url"] = get_mock().base_url
    with ProcessPoolExecutor(max_workers=1, mp_context=_context(), max_tasks_per_child=1) as pool:
        return pool.submit(_run_once_sync, dict(runner=runner, n=n, concurrency=concurrency, **options)).result()


def start_in_fresh_process(target: Callable[..., Any], *args: Any) -> multiprocessing.process.BaseProcess:
    """Start `target(*args)` (a module-level function) in a fresh, preloaded process; returns it.

    `process.pid` is its id (e.g. for os.kill), `process.join()` waits for it.
    """
    process = _context().Process(target=target, args=args, daemon=True)
    process.start()
    return process


def lines_as_inputs(path: str | os.PathLike[str], key: str = "text") -> Iterator[dict[str, str]]:
    """{key: line} for each non-empty line of a UTF-8 text file, read lazily (one line at a time)."""
    with open(path, encoding="utf-8") as file:
        for line in file:
            if line.strip():
                yield {key: line.strip()}


def jsonl_job(base_url: str, inputs_path: str, out_path: str, concurrency: int) -> None:
    """`run_to_jsonl` of the translation chain over the lines of `inputs_path` into `out_path`,
    resuming; meant for `start_in_fresh_process` (lesson 04 kills it half-way)."""
    chain = mock_chain(base_url, "translate")
    asyncio.run(run_to_jsonl(chain, lines_as_inputs(inputs_path), out_path, max_concurrency=concurrency,
                             progress=False))


# --------------------------------------------------------------------------------------------
# 4. Concurrency sweep
# --------------------------------------------------------------------------------------------


def requests_for(concurrency: int, *, per_slot: int = 4, minimum: int = 40, maximum: int = 2000) -> int:
    """How many requests measure one concurrency well: `per_slot` per slot, within [minimum, maximum]."""
    return max(minimum, min(maximum, per_slot * concurrency))


async def sweep(
    runner: str,
    concurrencies: Sequence[int],
    *,
    chain: Runnable | None = None,
    n_for: Callable[[int], int] = requests_for,
    rate_limit_per_s: float | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Measure `runner` at each concurrency (in this process) and add Little's-law figures.

    Each row is a measurement dict plus `lone_latency_s` (L0, the mean latency at the first
    concurrency, which should be 1) and `ideal` = min(C / L0, rate limit). Only the first run
    records per-request times (a callback costs a little CPU); the others run bare.
    """
    rows: list[dict[str, Any]] = []
    for position, concurrency in enumerate(concurrencies):
        row = await run_once(runner, n_for(concurrency), concurrency, chain=chain,
                             record_intervals=position == 0, **options)
        row.pop("intervals", None)
        rows.append(row)
    base_latency = rows[0]["mean_latency_s"] if rows else None
    for row in rows:
        ideal = row["concurrency"] / base_latency
        row["lone_latency_s"] = base_latency
        row["ideal"] = min(ideal, rate_limit_per_s) if rate_limit_per_s else ideal
    return rows


# --------------------------------------------------------------------------------------------
# 5. Where the CPU goes
# --------------------------------------------------------------------------------------------


def _short_path(filename: str) -> str:
    """'langchain_core/runnables/base.py' for a file in site-packages, 'asyncio/events.py' for the stdlib."""
    for marker in ("site-packages/", "/lib/python3."):
        if marker in filename:
            tail = filename.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker == "/lib/python3." else tail
    return Path(filename).name


# Libraries, by the first folder of their files below site-packages.
PACKAGES = {
    "LangChain": ("langchain_core", "langchain_openai", "langsmith"),
    "openai SDK": ("openai",),
    "pydantic (used by the SDK and LangChain)": ("pydantic", "pydantic_core"),
    "HTTP client (httpx2, httpcore2, anyio, h11)": ("httpx2", "httpcore2", "anyio", "h11", "sniffio"),
}


def _library_of(filename: str) -> str:
    """Which PACKAGES entry a profiled file belongs to, else asyncio / the standard library / other."""
    if "site-packages/" in filename:
        top = filename.split("site-packages/", 1)[1].split("/", 1)[0]
        return next((name for name, tops in PACKAGES.items() if top in tops), "other")
    if "/asyncio/" in filename or filename.endswith("selectors.py"):
        return "asyncio event loop"
    if "/lib/python3." in filename or filename == "~":  # "~" marks built-ins (C functions)
        return "Python built-ins and standard library"
    return "other"


def cprofile_lines(profile: cProfile.Profile, top: int = 10,
                   skip: Iterable[str] = ("asyncio/", "contextvars", "~")) -> list[tuple[str, float]]:
    """The `top` functions of `profile` by cumulative time, as (file:line function, share of all time).

    Functions in files matching `skip` (the event loop's own machinery, builtins) are left out, so the
    list shows where library code spends the time. Cumulative time includes the functions called.
    """
    stats = pstats.Stats(profile)
    total = sum(entry[2] for entry in stats.stats.values()) or 1.0  # type: ignore[attr-defined]
    rows = []
    for (filename, line, name), (_, _, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if filename.startswith("<") or any(pattern in filename for pattern in skip):
            continue
        rows.append((f"{_short_path(filename)}:{line} {name}", cumulative / total))
    rows.sort(key=lambda row: -row[1])
    return rows[:top]


_UNOWNED = "Python built-ins and standard library"


def cpu_by_package(profile: cProfile.Profile) -> dict[str, float]:
    """Share of the profiled time per library: the PACKAGES, the asyncio event loop, and "other" (the
    runner, this workbook's code). Shares add up to 1.

    A built-in or standard-library function (a socket call, `json`, `typing`) is charged to the
    library that called it, split by how much time each caller spent in it; whatever cannot be traced
    to a caller stays under "Python built-ins and standard library".
    """
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    names = [*PACKAGES, "asyncio event loop", "other", _UNOWNED]
    owners: dict[tuple, dict[str, float]] = {}  # function -> how its time splits over the libraries

    def owner_of(key: tuple, visiting: frozenset = frozenset()) -> dict[str, float]:
        library = _library_of(key[0])
        callers = stats.get(key, (0, 0, 0, 0, {}))[4]
        if library != _UNOWNED or not callers or key in visiting:
            return {library: 1.0}
        if key not in owners:
            weights = {caller: timing[2] for caller, timing in callers.items()}  # time in `key` per caller
            total = sum(weights.values())
            split: dict[str, float] = {}
            for caller, weight in weights.items():
                share = weight / total if total > 0 else 1 / len(weights)
                for name, part in owner_of(caller, visiting | {key}).items():
                    split[name] = split.get(name, 0.0) + share * part
            owners[key] = split
        return owners[key]

    shares = dict.fromkeys(names, 0.0)
    for key, (_, _, own, _, _) in stats.items():
        for name, part in owner_of(key).items():
            shares[name] += own * part
    total = sum(shares.values())
    return {name: share / total for name, share in shares.items()} if total else shares


# --------------------------------------------------------------------------------------------
# 6. Command line
# --------------------------------------------------------------------------------------------


def _table(rows: list[dict[str, Any]]) -> str:
    columns = [("runner", "{}"), ("n", "{}"), ("concurrency", "{}"), ("failed", "{}"),
               ("throughput", "{:.1f} req/s"), ("cpu_ms_per_request", "{:.2f} ms"),
               ("peak_traced_mb", "{:.1f} MB"), ("peak_rss_growth_mb", "{:.1f} MB")]
    columns = [(name, form) for name, form in columns if any(row.get(name) is not None for row in rows)]
    cells = [[name for name, _ in columns]]
    cells += [[form.format(row[name]) if row.get(name) is not None else "-" for name, form in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(line, widths)) for line in cells)


def _target_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The workbook's two performance targets, where `rows` hold what they need (medians of repeats).

    run_tracked / abatch throughput at each (n, concurrency), target >= 0.95; and for run_to_jsonl the
    peak memory at its largest n over its smallest n, target <= 1.2.
    """
    def median_of(runner: str, key: str, **match: Any) -> float | None:
        values = [row[key] for row in rows if row["runner"] == runner and row.get(key) is not None
                  and all(row[k] == v for k, v in match.items())]
        return statistics.median(values) if values else None

    lines = []
    for n, concurrency in dict.fromkeys((row["n"], row["concurrency"]) for row in rows):
        tracked = median_of("run_tracked", "throughput", n=n, concurrency=concurrency)
        bare = median_of("abatch", "throughput", n=n, concurrency=concurrency)
        if tracked and bare:
            lines.append(f"target run_tracked / abatch at n={n}, C={concurrency}: {tracked / bare:.3f} (>= 0.95)")
    sizes = sorted({row["n"] for row in rows if row["runner"] == "run_to_jsonl"})
    for key in ("peak_traced_mb", "peak_rss_growth_mb"):
        if len(sizes) >= 2:
            small, large = median_of("run_to_jsonl", key, n=sizes[0]), median_of("run_to_jsonl", key, n=sizes[-1])
            if small and large:
                lines.append(f"target run_to_jsonl {key} at n={sizes[-1]} / n={sizes[0]}: {large / small:.3f} (<= 1.2)")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Measure batch runners against a fresh mock, each run in a fresh process.",
        epilog="Example: python -m helpers.bench.measure --runners run_to_jsonl --n 5000,50000 --trace-memory")
    parser.add_argument("--runners", default="abatch,run_tracked", help=f"comma-separated, from {','.join(RUNNERS)}")
    parser.add_argument("--n", default="2000", help="comma-separated input counts")
    parser.add_argument("--concurrency", default="100", help="comma-separated concurrencies")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each case (the table shows all)")
    parser.add_argument("--latency", type=float, default=None,
                        help="mock latency in seconds (default: a very fast mock, speed 1000)")
    parser.add_argument("--prompt", default="translate", choices=sorted(PROMPTS))
    parser.add_argument("--trace-memory", action="store_true", help="tracemalloc peak (~4× slower)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    from helpers.mock import start_mock

    # Fresh processes re-import this module as __mp_main__; runpy warns about that, harmlessly.
    os.environ["PYTHONWARNINGS"] = "ignore::RuntimeWarning:runpy"

    settings = latency_settings(args.latency) if args.latency else {"speed": 1000.0, "jitter": 0.0}
    mock = start_mock(**settings)
    rows = []
    try:
        for n in map(int, args.n.split(",")):
            for concurrency in map(int, args.concurrency.split(",")):
                for _ in range(args.repeat):
                    for runner in args.runners.split(","):
                        row = measure(runner, n, concurrency, base_url=mock.base_url, prompt=args.prompt,
                                      trace_memory=args.trace_memory)
                        rows.append(row)
                        print(_table([row]).splitlines()[1], flush=True)
    finally:
        mock.stop()
    print(_table(rows))
    for line in _target_lines(rows):
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
