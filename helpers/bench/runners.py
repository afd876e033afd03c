"""The runners the workbook compares: every way to push n inputs through one chain (backstage).

Part of the measuring harness (`helpers.bench`): lessons 04 and 05 and `make bench` call it through
`helpers.bench.measure`; a learner need not read it.

- RUNNERS: name -> async function (chain, inputs, concurrency, options) -> list of outputs, an
  Exception where one failed. batch, abatch, abatch_as_completed, the seed's two processors,
  run_tracked, run_to_jsonl and raw_openai (the openai SDK alone, no LangChain). A runner that times
  its own requests puts their (start, end) pairs in options["intervals"].
- LAZY: the runners that take their inputs as a generator (the others get a list).
- `make_inputs`, `mock_chain`: the seed's inputs and chain (its prompts are
  `helpers.backend.SEED_PROMPTS`), against the mock.
- CLIENTS, `http_client_for`: the HTTP clients a measurement can give the chain.
- `latency_settings`: mock settings for a given mean latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import openai
from langchain_core.runnables import Runnable
from langchain_openai import ChatOpenAI

from helpers.backend import DEFAULT_MODEL, SEED_PROMPTS, aiohttp_http_client, make_chain, pooled_http_client
from helpers.runners import run_to_jsonl, run_tracked
from helpers.seed_tutorial import HighPerformanceBatchProcessor, MemoryEfficientBatchProcessor

__all__ = ["RUNNERS", "LAZY", "CLIENTS", "PROMPTS", "make_inputs", "mock_chain", "http_client_for",
           "latency_settings"]

PROMPTS = SEED_PROMPTS  # the seed's two prompts, by name: "translate" and "add"


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
    raise ValueError(f"prompt must be one of {sorted(SEED_PROMPTS)}, got {prompt!r}")


def mock_chain(base_url: str, prompt: str = "translate", max_retries: int = 2, http_client: Any = None) -> Runnable:
    """The seed's `prompt | ChatOpenAI | StrOutputParser()` chain, talking to the mock at `base_url`.

    `http_client` (e.g. `helpers.backend.aiohttp_http_client()`) replaces ChatOpenAI's own async one.
    """
    llm = ChatOpenAI(model=DEFAULT_MODEL, base_url=base_url, api_key="mock-key", temperature=0,
                     stream_usage=True, max_retries=max_retries, http_async_client=http_client)
    return make_chain(SEED_PROMPTS[prompt], llm)


# The HTTP clients `run_once(client=...)` can give the chain (and raw_openai). The lever is the
# transport: aiohttp costs less CPU per request than httpx2; sizing httpx2's kept-alive pool to the
# concurrency costs more, not less (helpers.backend.pooled_http_client says why).
CLIENTS = {
    "sdk": "ChatOpenAI's default: httpx2, up to 1,000 connections, 100 kept alive",
    "httpx-sized": "httpx2, connections kept alive = concurrency",
    "aiohttp": "the openai SDK's aiohttp transport (keeps every connection alive, up to 1,000)",
}


def http_client_for(client: str, concurrency: int) -> Any:
    """A new async HTTP client for a CLIENTS name (None for "sdk": the SDK's own); close it when done."""
    if client not in CLIENTS:
        raise ValueError(f"client must be one of {sorted(CLIENTS)}, got {client!r}")
    if client == "aiohttp":
        return aiohttp_http_client(max(1000, concurrency))
    return None if client == "sdk" else pooled_http_client(concurrency, "httpx")


def latency_settings(latency: float) -> dict[str, float]:
    """Mock settings that make a short reply take `latency` seconds on average (±20 % jitter)."""
    return {"ttft": latency, "tokens_per_second": 1e6, "speed": 1.0, "jitter": 0.2, "tail_fraction": 0.0}


# --------------------------------------------------------------------------------------------
# The runners
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


def _counted(ok: int, failed: int) -> Outputs:
    """Outputs for a runner that reports only counts: "?" per success, an exception per failure."""
    return ["?"] * ok + [RuntimeError("failed")] * failed


async def _seed_processor(chain: Runnable, inputs: Iterable[dict], concurrency: int, opts: dict) -> Outputs:
    inputs = list(inputs)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints a banner and every error
        metrics = await HighPerformanceBatchProcessor(chain, max_concurrency=concurrency).batch(inputs)
    # It returns only counts; the answers are dropped inside. Report failures as exceptions.
    return _counted(metrics.success_count, metrics.failure_count)


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
    return _counted(summary.ok, summary.failed)


async def _raw_openai(chain: Runnable, inputs: Iterable[dict], concurrency: int, opts: dict) -> Outputs:
    """The openai SDK alone: one `asyncio.gather` over n coroutines, a semaphore for the limit."""
    template = SEED_PROMPTS[opts["prompt"]]
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
LAZY = {"run_to_jsonl"}  # runners that take the inputs as a generator
