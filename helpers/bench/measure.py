"""Measure one batch runner against the mock: throughput, client CPU per request, peak memory (backstage).

Part of the measuring harness (`helpers.bench`) that lessons 04 and 05 and `make bench` call; a
learner need not read it.

    from helpers.bench import measure, run_once
    measure("run_to_jsonl", n=5000, concurrency=100)        # in a fresh process: memory is its own
    await run_once("abatch", n=500, concurrency=100)         # in this process (top-level await)

Both return a plain dict, so a notebook can print it and `make bench` can save it. It holds: runner,
n, concurrency, ok, failed, wall_s, throughput (req/s), cpu_ms_per_request (client CPU time / n, all
threads), mean_latency_s (when known), peak_rss_mb and peak_rss_growth_mb (the process's peak RSS,
and its growth during the run), connections_opened, and when asked for, peak_traced_mb
(tracemalloc), intervals ((start, end) of each request, seconds since the first start) and
slots_busy: the share of the C slots busy *while inputs remained*, from the first request's start to
the last one's start (`helpers.metrics.slots_busy_while_refilling`; README's "busy").

Structure
1. `run_once`: build inputs, run one runner of `helpers.bench.runners.RUNNERS`, measure it, here.
2. `measure`: `run_once` in a fresh process forked from a server that has already imported
   LangChain (multiprocessing's "forkserver"), so starting one costs ~50 ms, not ~2 s of imports,
   and its memory figures belong to that runner alone. `start_in_fresh_process` runs any module-level
   function there too (`jsonl_job`: lesson 04 kills one with SIGKILL).
3. `requests_for`: how many requests measure one concurrency well.

Use one event loop per process: langchain-openai shares one HTTP client per base URL, bound to the
loop that first used it (a notebook has one loop; `measure` runs each measurement in its own process).

Inputs are built inside the measured region: a list for the runners that need one (abatch and the
seed's code index and slice it), a generator for `run_to_jsonl`, which pulls inputs one at a time.
Peak memory therefore includes the input list wherever a runner needs all inputs at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import json
import multiprocessing
import multiprocessing.forkserver
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from langchain_core.runnables import Runnable

from helpers import budget
from helpers.bench.profile import cprofile_lines, cpu_by_package, cpu_split
from helpers.bench.runners import LAZY, RUNNERS, http_client_for, latency_settings, make_inputs, mock_chain
from helpers.metrics import slots_busy_while_refilling
from helpers.runners import run_to_jsonl
from helpers.timing import RequestTimer

__all__ = ["run_once", "measure", "prepare_fresh_processes", "start_in_fresh_process", "jsonl_job",
           "requests_for", "latency_settings"]


# --------------------------------------------------------------------------------------------
# Memory and connections
# --------------------------------------------------------------------------------------------


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


def _default_mock_url() -> str:
    """This process's mock (started on first use). Imported here: the harness's fresh processes,
    which are given a base URL, need not import the mock server."""
    from helpers.mock import get_mock

    return get_mock().base_url


# --------------------------------------------------------------------------------------------
# 1. One measured run, in this process
# --------------------------------------------------------------------------------------------


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
    during the run and adds "profile": {"by_package": ..., "split": ..., "top": ...} (cpu_by_package,
    cpu_split, cprofile_lines);
    a path instead of True also saves the raw stats there (for `pstats.Stats(path)`).
    """
    if runner not in RUNNERS:
        raise ValueError(f"runner must be one of {sorted(RUNNERS)}, got {runner!r}")
    if base_url is None:
        base_url = _default_mock_url()
    http_client = None if chain is not None else http_client_for(client, concurrency)
    chain = chain or mock_chain(base_url, prompt, max_retries, http_client)
    if warm_up:  # open a connection, run the SDK's lazy imports and caches: not part of the figure
        await chain.abatch(list(make_inputs(prompt, warm_up, warm_up=True)))
    timer = None
    if record_intervals and runner != "raw_openai":  # the same callback for every LangChain runner
        timer = RequestTimer()
        chain = chain.with_config(callbacks=[timer])
    opts: dict[str, Any] = {"chunk_size": chunk_size, "prompt": prompt, "base_url": base_url,
                            "max_retries": max_retries, "http_client": http_client_for(client, concurrency)}
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
        outputs = await RUNNERS[runner](chain, inputs if runner in LAZY else list(inputs), concurrency, opts)

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
        result["profile"] = {"by_package": cpu_by_package(profiler), "split": cpu_split(profiler),
                             "top": cprofile_lines(profiler, 12)}
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
            # "slots_busy" is the share of the C slots busy while inputs remained (from the first
            # request's start to the last one's start): metrics.slots_busy_while_refilling.
            result["slots_busy"] = slots_busy_while_refilling(result["intervals"], result["concurrency"])
    return result


# --------------------------------------------------------------------------------------------
# 2. In a fresh process
# --------------------------------------------------------------------------------------------

# The forkserver imports these once: the harness (and so LangChain), and what the SDK imports lazily
# on its first request. Missing ones are skipped.
_PRELOAD = ["helpers.bench.measure", "helpers.bench.runners", "helpers.bench.profile", "httpcore2", "h11",
            "anyio._backends._asyncio", "jiter", "openai.resources.chat", "openai.lib.streaming.chat",
            "langchain_core.tracers.langchain", "langchain_core.tracers.stdout",
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
        options["base_url"] = _default_mock_url()
    with ProcessPoolExecutor(max_workers=1, mp_context=_context(), max_tasks_per_child=1) as pool:
        return pool.submit(_run_once_sync, dict(runner=runner, n=n, concurrency=concurrency, **options)).result()


def start_in_fresh_process(target: Callable[..., Any], *args: Any) -> multiprocessing.process.BaseProcess:
    """Start `target(*args)` (a module-level function) in a fresh, preloaded process; returns it.

    `process.pid` is its id (e.g. for os.kill), `process.join()` waits for it. On a real backend the
    child counts its requests against this kernel's request budget.
    """
    # A forkserver child keeps the environment the server started with: hand it the request budget's
    # counter (on a real backend) so that its requests count against this kernel's budget.
    process = _context().Process(target=_with_environment, args=(budget.share(), target, *args), daemon=True)
    process.start()
    return process


def _with_environment(environment: dict[str, str], target: Callable[..., Any], *args: Any) -> None:
    os.environ.update(environment)
    target(*args)


def _json_lines(path: str | os.PathLike[str]) -> Iterator[Any]:
    """The value on each line of a JSON Lines file, read lazily (one line at a time)."""
    with open(path, encoding="utf-8") as file:
        for line in file:
            yield json.loads(line)


def jsonl_job(base_url: str | None, inputs_path: str, out_path: str, concurrency: int) -> None:
    """`run_to_jsonl` of the translation chain over the inputs in `inputs_path` into `out_path`,
    resuming; meant for `start_in_fresh_process` (lesson 04 kills it half-way).

    `base_url=None` builds the chain here, in the child, with `get_llm()`: the backend `.env` chooses, as
    the notebook's own chain does (on a real backend, within the request budget), so a resume in the
    notebook continues the same backend's run. A mock's address (the notebook's mock, or a test's)
    talks to that mock instead: a `get_mock()` in the child would start a mock of its own.
    `inputs_path` is a JSON Lines file with one input dict per line ({"text": ...}), read lazily.
    """
    if base_url is None:
        from helpers.backend import get_llm, translation_chain

        chain = translation_chain(get_llm())
    else:
        chain = mock_chain(base_url, "translate")
    asyncio.run(run_to_jsonl(chain, _json_lines(inputs_path), out_path, max_concurrency=concurrency,
                             progress=False))


# --------------------------------------------------------------------------------------------
# 3. How many requests
# --------------------------------------------------------------------------------------------


def requests_for(concurrency: int, *, per_slot: int = 4, minimum: int = 40, maximum: int = 2000) -> int:
    """How many requests measure one concurrency well: `per_slot` per slot, within [minimum, maximum]."""
    return max(minimum, min(maximum, per_slot * concurrency))
