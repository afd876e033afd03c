"""More from one core: what a LangChain request costs per layer, and what each lever saves (backstage).

Part of the measuring harness (`helpers.bench`): lesson 08's section 0 and `make bench` call it; a
learner reads the rows it returns, not the code.

- PATHS: the ways to send the seed's request, by name: the workbook's `run_tracked` on the seed's
  chain (the baseline), the same with one lever changed (LEVERS), the levers kept together
  ("kept levers"), and the references without LangChain: the raw openai SDK on each transport, and
  a plain aiohttp script like the OpenAI cookbook's `api_request_parallel_processor.py`.
- `lever_rows(base_url, ...)`: CPU ms per request of each path and its ratio to the baseline, all
  measured in one process, interleaved (A B C, A B C, ...), medians of the rounds.
- `layer_rows(base_url, ...)`: where a path's CPU goes, by *inclusive* time per layer (the workbook's
  runner, LangChain, the openai SDK, the HTTP client, the rest), from a cProfile run.
- `littles_law_rows(mock, ...)`: each path's throughput against Little's law C / L at a fixed
  latency with no jitter, and where the missing time goes (`timeline_figures`).

Every path runs in the calling process, on its event loop: one process, one loop, as a notebook has.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from langchain_core.messages import HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_openai import ChatOpenAI

from helpers.backend import DEFAULT_MODEL, SEED_PROMPTS
from helpers.bench.profile import cpu_layers
from helpers.bench.runners import RUNNERS, http_client_for, latency_settings, make_inputs
from helpers.reliability import invoke_robustly
from helpers.runners import run_pool, run_tracked

__all__ = ["PATHS", "LEVERS", "KEPT", "lever_rows", "layer_rows", "littles_law_rows", "timeline_figures",
           "lockstep_bound", "bench_rows"]

TEMPLATE = SEED_PROMPTS["translate"]
Run = Callable[[list[dict]], Awaitable[tuple[list[Any], list[tuple[float, float]]]]]


@dataclass(frozen=True)
class Path:
    """One way to send the requests: which transport, which model settings, what goes in, what runs it."""

    transport: str = "sdk"  # a helpers.bench.runners.CLIENTS name
    stream_usage: bool = True  # the seed's chain sets it (it only matters when streaming)
    shape: str = "seed"  # seed: prompt | llm | StrOutputParser; see _chain_and_inputs for the others
    runner: str = "run_tracked"  # run_tracked, or "pool": the same worker pool with no callback at all


LEVERS: dict[str, Path] = {
    "run_tracked (baseline)": Path(),
    "no callback (pool, no UsageMeter)": Path(runner="pool"),
    "stream_usage=False": Path(stream_usage=False),
    "parser: RunnableLambda(.content)": Path(shape="lambda parser"),
    "no parser (read .content)": Path(shape="no parser"),
    "prompt formatted outside (str)": Path(shape="string in"),
    "prebuilt messages, model alone": Path(shape="messages, model alone"),
    "aiohttp transport": Path(transport="aiohttp"),
}
KEPT = Path(transport="aiohttp", shape="messages, model alone")  # the levers that hold, together
PATHS: dict[str, Path | str] = {**LEVERS, "kept levers + aiohttp": KEPT,
                                "raw SDK, default transport": "raw sdk", "raw SDK, aiohttp": "raw aiohttp",
                                "cookbook-style aiohttp script": "cookbook"}
BASELINE = "run_tracked (baseline)"


def _chain_and_inputs(path: Path, llm: ChatOpenAI) -> tuple[Any, Callable[[dict], Any]]:
    """The runnable for a path's shape, and what turns one of the seed's inputs into its input."""
    prompt = ChatPromptTemplate.from_template(TEMPLATE)
    shapes: dict[str, tuple[Any, Callable[[dict], Any]]] = {
        "seed": (prompt | llm | StrOutputParser(), dict),
        "lambda parser": (prompt | llm | RunnableLambda(lambda message: message.content), dict),
        "no parser": (prompt | llm, dict),
        "string in": (llm | StrOutputParser(), lambda item: TEMPLATE.format(**item)),
        "messages, model alone": (llm, lambda item: [HumanMessage(TEMPLATE.format(**item))]),
    }
    if path.shape not in shapes:
        raise ValueError(f"shape must be one of {sorted(shapes)}, got {path.shape!r}")
    return shapes[path.shape]


def _text(output: Any) -> Any:
    return getattr(output, "content", output)  # an AIMessage where the path has no parser


async def _pool(chain: Any, items: list[Any], concurrency: int) -> tuple[list[Any], list[tuple[float, float]]]:
    """The runners' worker pool with no callback: `invoke_robustly` per input, config None."""
    outputs: list[Any] = [None] * len(items)
    intervals: list[tuple[float, float]] = [(0.0, 0.0)] * len(items)
    t0 = time.perf_counter()

    async def handle(index: int, item: Any) -> None:
        start = time.perf_counter()
        output, error, _ = await invoke_robustly(chain, item, None, None, None, None)
        outputs[index], intervals[index] = error or output, (start - t0, time.perf_counter() - t0)

    await run_pool(items, concurrency, handle)
    return outputs, intervals


@contextlib.asynccontextmanager
async def _langchain_path(path: Path, base_url: str, concurrency: int) -> AsyncIterator[Run]:
    """A ready-to-run LangChain path (model built, transport open); closes its client at the end."""
    client = http_client_for(path.transport, concurrency)
    llm = ChatOpenAI(model=DEFAULT_MODEL, base_url=base_url, api_key="mock-key", temperature=0,
                     stream_usage=path.stream_usage, max_retries=2, http_async_client=client)
    chain, to_input = _chain_and_inputs(path, llm)

    async def run(inputs: list[dict]) -> tuple[list[Any], list[tuple[float, float]]]:
        items = [to_input(item) for item in inputs]  # inside the measured region: part of the cost
        if path.runner == "pool":
            outputs, intervals = await _pool(chain, items, concurrency)
        else:
            report = await run_tracked(chain, items, max_concurrency=concurrency, progress=False)
            outputs, intervals = list(report.results), report.intervals
        return [_text(output) for output in outputs], intervals

    try:
        yield run
    finally:
        if client is not None:
            await client.aclose()


async def _cookbook(base_url: str, inputs: list[dict], concurrency: int) -> tuple[list[Any], list]:
    """A plain aiohttp script, as the OpenAI cookbook's parallel processor sends requests: no SDK."""
    semaphore, intervals, t0 = asyncio.Semaphore(concurrency), [], time.perf_counter()
    headers = {"Authorization": "Bearer mock-key"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=max(1000, concurrency))) as session:
        async def one(item: dict) -> str:
            payload = {"model": DEFAULT_MODEL, "temperature": 0,
                       "messages": [{"role": "user", "content": TEMPLATE.format(**item)}]}
            async with semaphore:
                start = time.perf_counter()
                async with session.post(f"{base_url}/chat/completions", json=payload, headers=headers) as reply:
                    body = await reply.json()
                intervals.append((start - t0, time.perf_counter() - t0))
            return body["choices"][0]["message"]["content"]

        outputs = await asyncio.gather(*(one(item) for item in inputs), return_exceptions=True)
    return outputs, intervals


@contextlib.asynccontextmanager
async def _reference_path(kind: str, base_url: str, concurrency: int) -> AsyncIterator[Run]:
    """A path without LangChain: the raw openai SDK (helpers.bench's raw_openai) or the cookbook script."""
    if kind == "cookbook":
        yield lambda inputs: _cookbook(base_url, inputs, concurrency)
        return
    transport = kind.removeprefix("raw ")

    async def run(inputs: list[dict]) -> tuple[list[Any], list[tuple[float, float]]]:
        client = http_client_for(transport, concurrency)
        opts = {"prompt": "translate", "base_url": base_url, "max_retries": 2, "http_client": client}
        try:
            outputs = await RUNNERS["raw_openai"](None, inputs, concurrency, opts)  # type: ignore[arg-type]
        finally:
            if client is not None:
                await client.aclose()
        return outputs, opts["intervals"]

    yield run


def _path(name: str, base_url: str, concurrency: int) -> contextlib.AbstractAsyncContextManager[Run]:
    if name not in PATHS:
        raise ValueError(f"path must be one of {list(PATHS)}, got {name!r}")
    spec = PATHS[name]
    return _reference_path(spec, base_url, concurrency) if isinstance(spec, str) else \
        _langchain_path(spec, base_url, concurrency)


async def _timed(run: Run, n: int, profiler: cProfile.Profile | None = None) -> dict[str, Any]:
    """One measured run of `n` of the seed's inputs: CPU ms per request, wall, throughput, intervals."""
    inputs = list(make_inputs("translate", n))
    cpu, start = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    outputs, intervals = await run(inputs)
    if profiler:
        profiler.disable()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    failed = sum(isinstance(output, BaseException) or not isinstance(output, str) for output in outputs)
    if failed:
        raise RuntimeError(f"{failed} of {n} requests failed or gave no text; the figures would be wrong")
    return {"cpu_ms_per_request": 1000 * cpu / n, "wall_s": wall, "throughput": n / wall, "intervals": intervals}


async def _interleaved(names: list[str], base_url: str, n: int, concurrency: int, rounds: int,
                       warm_up: int = 4) -> dict[str, list[dict[str, Any]]]:
    """Every path once per round, in turn (A B C, A B C, ...): each path's runs, in round order."""
    if rounds < 3:
        raise ValueError(f"rounds={rounds}: a comparison needs the median of at least 3 runs")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    async with contextlib.AsyncExitStack() as stack:
        ready = {name: await stack.enter_async_context(_path(name, base_url, concurrency)) for name in names}
        for name in names:  # warm up: lazy imports, caches, the first connections
            await _timed(ready[name], warm_up)
        for _ in range(rounds):
            for name in names:
                runs[name].append(await _timed(ready[name], n))
    return runs


async def lever_rows(base_url: str, names: list[str] | None = None, *, n: int = 1000, concurrency: int = 100,
                     rounds: int = 3) -> list[dict[str, Any]]:
    """(path, cpu_ms_per_request, ratio to the baseline, throughput) per path; medians of interleaved rounds.

    Run it at a latency where the client's CPU matters (latency_settings(0.2)). `names` defaults to
    every PATHS entry; the baseline (run_tracked on the seed's chain) is always measured.
    """
    names = list(PATHS) if names is None else [BASELINE, *(name for name in names if name != BASELINE)]
    runs = await _interleaved(names, base_url, n, concurrency, rounds)
    medians = {name: {key: statistics.median(run[key] for run in runs[name])
                      for key in ("cpu_ms_per_request", "throughput")} for name in names}
    base = medians[BASELINE]["cpu_ms_per_request"]
    return [{"path": name, "cpu_ms_per_request": figures["cpu_ms_per_request"],
             "ratio": figures["cpu_ms_per_request"] / base, "throughput": figures["throughput"],
             "cpu_ms_runs": [run["cpu_ms_per_request"] for run in runs[name]]}
            for name, figures in medians.items()]


async def layer_rows(base_url: str, *, n: int = 1000, concurrency: int = 100) -> list[dict[str, Any]]:
    """Inclusive CPU ms per request per layer (runner, LangChain, openai SDK, HTTP client, the rest) for
    chain.abatch, run_tracked, the kept levers and the raw SDK, on each transport, from one cProfile run each.

    Each row: path, transport, cpu_ms_per_request (the profiled run's, cProfile's overhead included) and
    one key per layer (`helpers.bench.profile.LAYERS`), in ms per request; they add up to the total.
    """
    rows = []
    for label in ("chain.abatch", "run_tracked", "raw SDK"):
        for transport in ("sdk", "aiohttp"):
            name = _profiled_name(label, transport)
            async with _profiled_path(label, name, base_url, concurrency, transport) as run:
                await _timed(run, 4)
                profiler = cProfile.Profile()
                figures = await _timed(run, n, profiler)
            total = figures["cpu_ms_per_request"]
            rows.append({"path": label, "transport": transport, "cpu_ms_per_request": total,
                         **{layer: share * total for layer, share in cpu_layers(profiler).items()}})
    return rows


def _profiled_name(label: str, transport: str) -> str:
    if label == "raw SDK":
        return "raw SDK, default transport" if transport == "sdk" else "raw SDK, aiohttp"
    return BASELINE if transport == "sdk" else "aiohttp transport"


@contextlib.asynccontextmanager
async def _profiled_path(label: str, name: str, base_url: str, concurrency: int, transport: str) -> AsyncIterator[Run]:
    """The path to profile; chain.abatch runs the seed's chain through `abatch` with max_concurrency."""
    if label != "chain.abatch":
        async with _path(name, base_url, concurrency) as run:
            yield run
        return
    client = http_client_for(transport, concurrency)
    llm = ChatOpenAI(model=DEFAULT_MODEL, base_url=base_url, api_key="mock-key", temperature=0,
                     stream_usage=True, max_retries=2, http_async_client=client)
    chain = ChatPromptTemplate.from_template(TEMPLATE) | llm | StrOutputParser()

    async def run(inputs: list[dict]) -> tuple[list[Any], list]:
        outputs = await chain.abatch(inputs, config={"max_concurrency": concurrency}, return_exceptions=True)
        return outputs, []

    try:
        yield run
    finally:
        if client is not None:
            await client.aclose()


def timeline_figures(intervals: list[tuple[float, float]], concurrency: int, latency: float) -> dict[str, float]:
    """Where a run's wall time goes against n / C waves of `latency` each (no jitter), from its intervals.

    first_wave_excess_s: how much longer than `latency` the first C requests took (connection setup,
    first-request costs, and the CPU of sending C requests one after another); later_excess_s: the
    same per request afterwards (the client's and the mock's time per request); refill_gap_s: mean
    time from a slot's request ending to its next starting; tail_s: from the last start to the last end.
    """
    ordered = sorted(intervals)
    first, later = ordered[:concurrency], ordered[concurrency:]
    ends = sorted(end for _, end in ordered)
    gaps = [ordered[i + concurrency][0] - ends[i] for i in range(len(ordered) - concurrency)]
    mean = statistics.fmean
    return {"first_wave_excess_s": mean(e - s for s, e in first) - latency,
            "later_excess_s": mean(e - s for s, e in later) - latency if later else 0.0,
            "refill_gap_s": mean(gaps) if gaps else 0.0,
            "tail_s": ends[-1] - ordered[-1][0], "last_end_s": ends[-1]}


async def littles_law_rows(mock: Any, names: list[str] | None = None, *, latency: float = 1.0, n: int = 500,
                           concurrency: int = 100, rounds: int = 3) -> list[dict[str, Any]]:
    """Each path's throughput as a share of Little's law C / L, at `latency` s with no jitter; medians.

    `mock` is a `helpers.mock` handle: it is set to the latency for the run and put back after.
    Each row: path, efficiency (throughput / (C / L)), throughput, and `timeline_figures` of the median run.
    """
    names = names or [BASELINE, "aiohttp transport", "kept levers + aiohttp", "raw SDK, default transport",
                      "cookbook-style aiohttp script"]
    with mock.temporarily(**{**latency_settings(latency), "jitter": 0.0}):
        runs = await _interleaved(names, mock.base_url, n, concurrency, rounds)
    ideal, rows = concurrency / latency, []
    for name in names:
        middle = sorted(runs[name], key=lambda run: run["throughput"])[len(runs[name]) // 2]
        rows.append({"path": name, "efficiency": middle["throughput"] / ideal, "throughput": middle["throughput"],
                     "cpu_ms_per_request": middle["cpu_ms_per_request"],
                     **timeline_figures(middle["intervals"], concurrency, latency)})
    return rows


def lockstep_bound(cpu_ms_per_request: float, concurrency: int, latency: float) -> float:
    """The share of Little's law C / L one event loop can reach when C requests answer together.

    With no jitter, each wave's C answers arrive at once and one loop handles them one after another:
    a wave lasts about L + C * c (c: the client's CPU per request), so throughput / (C / L) is at most
    L / (L + C * c). At C = 100 and L = 1 s, 95 % needs c <= 0.53 ms.
    """
    return latency / (latency + concurrency * cpu_ms_per_request / 1000)


def bench_rows(mock: Any, quick: bool = False) -> dict[str, Any]:
    """`make bench`'s section 0: {"tables": [{"title", "rows"}], "checks": [...]}, all in this process.

    Levers at mock latency 0.2 s, C = 100 (n = 1,000, or 300 with quick), medians of 3 interleaved
    rounds; the inclusive CPU per layer; and Little's law at latency 1 s, C = 100, 500 inputs, no jitter.
    """
    n = 300 if quick else 1000

    async def measure() -> tuple[list, list, list]:
        with mock.temporarily(**latency_settings(0.2)):
            levers = await lever_rows(mock.base_url, n=n, concurrency=100, rounds=3)
            layers = await layer_rows(mock.base_url, n=n, concurrency=100)
        little = await littles_law_rows(mock, latency=1.0, n=500, concurrency=100, rounds=3)
        return levers, layers, little

    levers, layers, little = asyncio.run(measure())
    by_path = {row["path"]: row for row in levers}
    raw, best = by_path["raw SDK, default transport"], by_path["kept levers + aiohttp"]
    base, tracked = by_path[BASELINE], next(row for row in little if row["path"] == BASELINE)
    checks = [
        {"target": "LangChain path's CPU/request <= the raw SDK's on the default transport (kept levers + aiohttp)",
         "figure": f"{best['cpu_ms_per_request']:.2f} vs {raw['cpu_ms_per_request']:.2f} ms "
                   f"({best['cpu_ms_per_request'] / raw['cpu_ms_per_request']:.2f}x); the seed's chain on the "
                   f"default transport: {base['cpu_ms_per_request'] / raw['cpu_ms_per_request']:.2f}x",
         "value": best["cpu_ms_per_request"] / raw["cpu_ms_per_request"],
         "met": best["cpu_ms_per_request"] <= raw["cpu_ms_per_request"]},
        {"target": "run_tracked >= 95% of C/L at latency 1 s, C=100, 500 inputs, no jitter",
         "figure": f"{tracked['efficiency']:.0%} (the lockstep bound L/(L+C*c) at its "
                   f"{tracked['cpu_ms_per_request']:.2f} ms: "
                   f"{lockstep_bound(tracked['cpu_ms_per_request'], 100, 1.0):.0%})",
         "value": tracked["efficiency"], "met": tracked["efficiency"] >= 0.95},
    ]
    for row in little:
        row["lockstep_bound"] = lockstep_bound(row["cpu_ms_per_request"], 100, 1.0)
    for row in levers:
        row.pop("cpu_ms_runs", None)
    return {"tables": [
        {"title": f"Levers (lesson 08 section 0): mock latency 0.2 s, C = 100, {n:,} inputs, medians of 3 "
                  "interleaved rounds; ratio = CPU per request / the baseline's", "rows": levers},
        {"title": "Inclusive CPU ms per request by layer (one cProfile run each; cProfile's overhead included)",
         "rows": layers},
        {"title": "Little's law at latency 1 s, C = 100, 500 inputs, no jitter (efficiency = throughput / (C/L))",
         "rows": little}], "checks": checks}
