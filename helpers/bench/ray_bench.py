"""Measure Ray Data's HTTP processor against the workbook's runner inside Ray (backstage).

Part of the measuring harness (`helpers.bench`) that `make bench` calls; a learner reads lesson 08
and the rows this returns, not the code. In one local 2-CPU Ray cluster, at mock latency 0.2 s with
no jitter, each round runs both engines once, in turn, with the same 2 actors (a quarter of a CPU
each): `run_http_processor` (Ray Data's `build_processor`) and `run_with_runner` (run_tracked in each
actor, 40 in flight in all), 600 inputs. Medians of 3 rounds; each Ray Data job's time includes starting its actors.
"""

from __future__ import annotations

import functools
import statistics
import time
from typing import Any

from helpers.backend import SEED_PROMPTS
from helpers.bench.runners import latency_settings, make_inputs, mock_chain
from helpers.ray_jobs import run_http_processor, run_with_runner, start_ray, stop_ray

__all__ = ["bench_rows"]

ACTORS, CONCURRENCY = 2, 40


def _http_processor(mock: Any, inputs: list[dict]) -> dict[str, Any]:
    rows = run_http_processor(mock.base_url, inputs, template=SEED_PROMPTS["translate"], actors=ACTORS,
                              batch_size=16, max_retries=2, retry_wait_s=0.2)
    return {"failed": sum(row.get("output") is None for row in rows)}


def _runner(mock: Any, inputs: list[dict]) -> dict[str, Any]:
    chain = functools.partial(mock_chain, mock.base_url, "translate", 2)
    rows = run_with_runner(chain, inputs, actors=ACTORS, max_concurrency=CONCURRENCY, batch_size=100)
    return {"failed": sum(row["error"] is not None for row in rows)}


def bench_rows(mock: Any, quick: bool = False) -> dict[str, Any]:
    """`make bench`'s Ray table: one row per engine, throughput (median of 3 interleaved rounds), peak in
    flight, failures; as {"tables": [{"title", "rows"}], "checks": []}."""
    n = 200 if quick else 600
    engines = {"Ray Data HTTP processor": _http_processor, "workbook runner in Ray (map_batches)": _runner}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in engines}
    inputs = list(make_inputs("translate", n))
    start_ray(2)
    try:
        for _ in range(3):
            for name, engine in engines.items():
                with mock.temporarily(**{**latency_settings(0.2), "jitter": 0.0}):
                    started = time.perf_counter()
                    figures = engine(mock, inputs)
                    figures["throughput"] = n / (time.perf_counter() - started)
                    figures["peak_in_flight"] = mock.stats()["peak_in_flight"]
                runs[name].append(figures)
    finally:
        stop_ray()
    base = statistics.median(run["throughput"] for run in runs["Ray Data HTTP processor"])
    rows = []
    for name, found in runs.items():
        throughput = statistics.median(run["throughput"] for run in found)
        rows.append({"name": name, "actors": ACTORS, "n": n, "throughput": throughput,
                     "peak_in_flight": max(run["peak_in_flight"] for run in found),
                     "failed": max(run["failed"] for run in found), "vs_http_processor": throughput / base})
    title = (f"Ray Data (lesson 08): {n:,} inputs, mock latency 0.2 s, {ACTORS} actors at a quarter of a CPU, "
             "local 2-CPU cluster; medians of 3 interleaved rounds, each job's actor start-up included")
    return {"tables": [{"title": title, "rows": rows}], "checks": []}
