"""Measure the CPU-bound case: one job as P worker processes against `chain.abatch` (backstage).

Part of the measuring harness (`helpers.bench`) that lesson 08 and `make bench` call; a learner
need not read it. At mock latency 0.2 s and 1,000 requests in flight, Little's law allows 5,000
requests a second: far more than one client core can send, so the client's CPU sets the pace.

    rows = await compare_scaling(mock, n=10_000, concurrency=1000, processes=(1, 2), rounds=3)

Each round runs every variant once, in turn (A B C, A B C, ...), and a row gives each variant's
medians: throughput, the client CPU per request (every worker process together), and requests per
CPU-second, the figure that carries over to a bigger machine. The variants:
- "abatch": `chain.abatch` on ChatOpenAI's default transport, in a fresh process (`measure`);
- "run_tracked aiohttp": the workbook's runner on the aiohttp transport, one fresh process;
- "processes P aiohttp": `run_in_processes` with P processes on the aiohttp transport.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from helpers.backend import aiohttp_http_client
from helpers.bench.measure import measure
from helpers.bench.runners import latency_settings, make_inputs, mock_chain
from helpers.processes import run_in_processes

__all__ = ["compare_scaling", "aiohttp_mock_chain"]


def aiohttp_mock_chain(base_url: str, prompt: str = "translate") -> Any:
    """The seed's chain against the mock at `base_url`, on the aiohttp transport (a `make_chain`)."""
    return mock_chain(base_url, prompt, 2, aiohttp_http_client())


async def _in_fresh_process(runner: str, n: int, concurrency: int, base_url: str, client: str) -> dict[str, Any]:
    row = await asyncio.to_thread(measure, runner, n, concurrency, base_url=base_url, client=client, warm_up=20)
    return {"throughput": row["throughput"], "cpu_ms_per_request": row["cpu_ms_per_request"],
            "failed": row["failed"]}


async def _in_processes(processes: int, n: int, concurrency: int, base_url: str) -> dict[str, Any]:
    inputs = list(make_inputs("translate", n))
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        job = await run_in_processes(functools.partial(aiohttp_mock_chain, base_url), inputs, folder,
                                     processes=processes, max_concurrency=concurrency, progress=False)
        wall = time.perf_counter() - t0  # from before the first process starts: starting them counts
    return {"throughput": n / wall, "cpu_ms_per_request": 1000 * job.cpu_seconds / n, "failed": job.failed}


def _variants(n: int, concurrency: int, processes: Sequence[int],
              base_url: str) -> dict[str, Callable[[], Awaitable[dict[str, Any]]]]:
    variants: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
        "abatch": lambda: _in_fresh_process("abatch", n, concurrency, base_url, "sdk"),
        "run_tracked aiohttp": lambda: _in_fresh_process("run_tracked", n, concurrency, base_url, "aiohttp")}
    for p in processes:
        variants[f"processes {p} aiohttp"] = functools.partial(_in_processes, p, n, concurrency, base_url)
    return variants


async def compare_scaling(mock: Any, *, n: int = 10_000, concurrency: int = 1000, latency: float = 0.2,
                          processes: Sequence[int] = (1, 2), rounds: int = 3) -> list[dict[str, Any]]:
    """Each variant's medians over `rounds` interleaved rounds, against `mock` at `latency` s; one row each.

    A row: name, processes, n, concurrency, throughput (req/s), cpu_ms_per_request,
    requests_per_cpu_second, vs_abatch (throughput ratio), failed (the most in any round).
    """
    if rounds < 3:
        raise ValueError(f"rounds={rounds}: a comparison needs the median of at least 3 interleaved runs")
    variants = _variants(n, concurrency, processes, mock.base_url)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    with mock.temporarily(**latency_settings(latency)):
        for _ in range(rounds):
            for name, variant in variants.items():
                runs[name].append(await variant())
    rows = []
    for name, results in runs.items():
        throughput = statistics.median(r["throughput"] for r in results)
        cpu = statistics.median(r["cpu_ms_per_request"] for r in results)
        rows.append({"name": name, "processes": int(name.split()[1]) if name.startswith("processes") else 1,
                     "n": n, "concurrency": concurrency, "throughput": throughput, "cpu_ms_per_request": cpu,
                     "requests_per_cpu_second": 1000 / cpu if cpu else 0.0,
                     "failed": max(r["failed"] for r in results)})
    base = rows[0]["throughput"]
    for row in rows:
        row["vs_abatch"] = row["throughput"] / base if base else 0.0
    return rows
