"""Benchmark: every batch runner of the workbook on the same inputs, against the mock, each run alone.

`make bench` runs this. It starts the mock in its own process and measures, for each case below,
these runners (`helpers.bench.RUNNERS`) on the seed's inputs ("翻译成英文：测试i"):

    chain.batch · chain.abatch · chain.abatch_as_completed · the seed's HighPerformanceBatchProcessor
    · the seed's MemoryEfficientBatchProcessor (chunks of 1,000) · run_tracked · run_to_jsonl
    (sliding window) · raw openai.AsyncOpenAI + a semaphore (no LangChain: the floor for client cost)

with ChatOpenAI's default HTTP client (httpx2, 100 connections kept alive), some of them again on
the openai SDK's aiohttp transport (`helpers.backend.aiohttp_http_client`), and chain.abatch in the
CPU-bound cells also on httpx2 with its kept-alive pool sized to the concurrency: the transport is
the lever, the pool size is not (a sized httpx2 pool costs more CPU per request, not less).

| case           | mock latency      | inputs        | concurrency | runs of each cell                   |
| -------------- | ----------------- | ------------- | ----------- | ----------------------------------- |
| latency-bound  | 1.0 s ± 20 %      | 500           | 10, 100     | 1 at 10 (side by side), 3 at 100    |
| CPU-bound      | 0.2 s ± 20 %      | 2,000         | 100, 1,000  | 3 for the budget's runners, else 1  |
| memory         | ~0 (speed 1000)   | 5,000, 50,000 | 100         | 1, tracemalloc on; at 50,000 only   |
|                |                   |               |             | run_to_jsonl (it alone takes ~7 min)|

How it measures (`helpers.bench.measure`, the same code notebooks 04 and 05 use):
- every cell runs in a fresh process forked from a preloaded server, so its peak RSS and traced
  memory belong to that runner alone; the mock's counters are reset before each cell;
- repeated cells run interleaved (A B C A B C ...), and the table shows the median with min-max;
- the latency-bound cells at concurrency 10 run side by side (each in its own process): each
  waits ~50 s for 500 requests and uses ~5 % of a core, so running them one after another would
  take 7 minutes for no extra information (their efficiency shows they did not slow each other);
- the 50,000-input memory cell runs in a second lane with its own mock, at the same time as the
  latency-bound and 5,000-input cells: its figures are memory (tracemalloc makes it ~7 min long),
  and the latency-bound clients use a fraction of a core. The CPU-bound cells, which need both
  cores, run alone after it. `--alone` runs everything one after another (~7 min longer);
- client CPU per request = the measured process's CPU time (all threads) / n.

Figures for each cell: throughput; the Little's-law ideal min(C / L, rate limit), with L the
mock's mean latency; efficiency = throughput / ideal; CPU ms per request; peak RSS (and its growth
during the run); peak traced memory (memory cells only); TCP connections the client opened; and
throughput as a ratio to chain.abatch (SDK default client) in the same round. With a finite n the last
requests drain with fewer in flight, so even a perfect client stays below C / L: each latency
case also prints that bound (simulated with the mock's jitter). So the latency-bound cells also
show "busy" (the JSON key "slots_busy"): slots busy while inputs remain, the share of the C slots
that held a request from the first request's start to the last one's *start*
(`helpers.metrics.slots_busy_while_refilling`, from each request's start and end), which a perfect
runner keeps at 100 % whatever n.

After the matrix, in the same run and against the same mock, come lesson 08's sections
(tools/bench_scale_out.py): "levers" (CPU per request of each lever that keeps a LangChain chain,
the CPU per layer, Little's law at latency 1 s and C = 100 with no jitter), "scale" (10,000 inputs at
C = 1,000: chain.abatch, run_tracked on aiohttp, run_in_processes at P = 1 and 2, with requests per
CPU-second) and "ray" (Ray Data's HTTP processor against the workbook's runner inside Ray). `--cases`
picks among latency, cpu, memory, levers, scale and ray.

The machine is shared and noisy: compare ratios within one run, and read the medians.

    .venv/bin/python tools/bench_runners.py                    # the default matrix (~30 min here)
    .venv/bin/python tools/bench_runners.py --quick            # a smaller matrix (~3 min)
    .venv/bin/python tools/bench_runners.py --update-readme    # also rewrite README's Performance section
    .venv/bin/python tools/bench_runners.py --profile          # where the client's CPU goes (cProfile)

Writes build/bench/results.md and build/bench/results.json.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import pstats
import random
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from helpers.bench import CLIENTS, RUNNERS, latency_settings, measure, prepare_fresh_processes  # noqa: E402
from helpers.metrics import littles_law_throughput  # noqa: E402
from helpers.mock import start_mock  # noqa: E402

import bench_scale_out  # noqa: E402  (tools/, beside this script)

README = REPO / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"

NAMES = {
    "batch": "chain.batch (threads)",
    "abatch": "chain.abatch",
    "abatch_as_completed": "chain.abatch_as_completed",
    "seed_processor": "seed HighPerformanceBatchProcessor",
    "seed_chunked": "seed MemoryEfficientBatchProcessor",
    "run_tracked": "run_tracked",
    "run_to_jsonl": "run_to_jsonl (sliding window)",
    "raw_openai": "raw AsyncOpenAI + semaphore",
}
CLIENT_NAMES = {"sdk": "SDK default (httpx2)", "aiohttp": "aiohttp transport", "httpx-sized": "httpx2, pool = C"}
assert set(NAMES) == set(RUNNERS) and set(CLIENT_NAMES) == set(CLIENTS), "a runner or client without a name here"
ALL_RUNNERS = list(NAMES)
POOLED = "aiohttp"  # the cheaper transport (not a bigger pool: see CLIENTS)
REFERENCE = ("abatch", "sdk")  # ratios are to chain.abatch as the seed writes it


@dataclass
class Group:
    """Cells measured together: one mock setting, one n, one concurrency, several (runner, client)."""

    case: str
    settings: dict[str, float]
    latency: float | None  # the mock's mean latency, for the ideal; None for the very fast mock
    n: int
    concurrency: int
    specs: list[tuple[str, str, int]]  # (runner, client, runs)
    trace_memory: bool = False
    side_by_side: bool = False
    background: bool = False  # runs in a second lane, alongside the cells that leave the CPU mostly idle
    beside: bool = False  # runs while the second lane does (see share_lanes)
    note: str = ""  # what else ran at the same time, for the table's title
    rows: list[dict[str, Any]] = field(default_factory=list)
    summaries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def title(self) -> str:
        mock = f"mock latency {self.latency:g} s" if self.latency else "very fast mock"
        return f"{self.case}: {mock}, {self.n:,} inputs, concurrency {self.concurrency:,}"


# --------------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def build_plan(args: argparse.Namespace) -> list[Group]:
    """The groups of cells to measure, from the command line."""
    limit = {"rpm_limit": args.rpm_limit} if args.rpm_limit else {}
    plan: list[Group] = []
    cases = set(args.cases.split(","))
    if "latency" in cases:
        settings = {**latency_settings(args.latency), "jitter": args.jitter, **limit}
        for concurrency in _ints(args.latency_concurrency):
            small = concurrency <= 10
            runs = 1 if small else args.repeats
            plan.append(Group("latency-bound", settings, args.latency, args.latency_n, concurrency,
                              [(runner, "sdk", runs) for runner in ALL_RUNNERS], side_by_side=small))
    if "cpu" in cases:
        settings = {**latency_settings(args.cpu_latency), "jitter": args.jitter, **limit}
        core = {("abatch", "sdk"), ("run_tracked", POOLED), ("run_to_jsonl", POOLED)}
        specs = [(runner, "sdk") for runner in ALL_RUNNERS]
        specs += [(runner, POOLED) for runner in ("abatch", "run_tracked", "run_to_jsonl", "raw_openai")]
        specs += [("abatch", "httpx-sized")]  # the pool size alone, on the default transport
        for concurrency in _ints(args.cpu_concurrency):
            plan.append(Group("CPU-bound", settings, args.cpu_latency, args.cpu_n, concurrency,
                              [(r, c, args.repeats if (r, c) in core else 1) for r, c in specs]))
    if "memory" in cases:
        settings = {"speed": 1000.0, "jitter": 0.0, **limit}
        sizes = _ints(args.memory_n)
        for n in sizes:
            runners = ["abatch", "seed_chunked", "run_tracked", "run_to_jsonl"] if n == min(sizes) else ["run_to_jsonl"]
            plan.append(Group("memory", settings, None, n, args.memory_concurrency,
                              [(runner, POOLED, 1) for runner in runners], trace_memory=True))
    if not args.alone:
        share_lanes(plan)
    return plan


def share_lanes(plan: list[Group]) -> None:
    """Move the largest memory group to a second lane, next to the cells that leave a core idle.

    Its figures are memory, and tracemalloc makes it the longest cell by far (~50,000 × 7 ms). The
    latency-bound clients use a fraction of a core and the other memory cells report memory too, so
    they run at the same time; the CPU-bound cells, which need both cores, wait for the lane to end.
    """
    memory = [group for group in plan if group.case == "memory"]
    if not memory:
        return
    largest = max(memory, key=lambda group: group.n)
    beside = [group for group in plan if group.case == "latency-bound" or (group.case == "memory" and group is not largest)]
    if not beside:
        return
    largest.background = True
    largest.note = "ran in a second lane, at the same time as the latency-bound and smaller memory cells"
    for group in beside:
        group.beside = True
        group.note = f"the {largest.n:,}-input memory cell ran at the same time, in another process"


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------


def _measure_cell(group: Group, runner: str, client: str, run: int, base_url: str) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        row = measure(runner, group.n, group.concurrency, base_url=base_url, client=client,
                      trace_memory=group.trace_memory, record_intervals=group.case == "latency-bound")
        row.pop("intervals", None)  # "slots_busy" is computed from them; the JSON keeps the figures only
    except Exception as exc:  # one broken cell must not lose the whole run
        row = {"runner": runner, "n": group.n, "concurrency": group.concurrency, "error": f"{type(exc).__name__}: {exc}"}
    row.update(case=group.case, client=client, run=run, cell_s=time.perf_counter() - started)
    return row


def _progress(group: Group, row: dict[str, Any], t0: float) -> None:
    where = f"[{time.perf_counter() - t0:6.0f} s] {group.case} n={group.n} C={group.concurrency}"
    what = f"{NAMES[row['runner']]} / {CLIENT_NAMES[row['client']]} #{row['run'] + 1}"
    if "error" in row:
        print(f"{where} {what}: FAILED {row['error']}", flush=True)
        return
    extra = f", traced {row['peak_traced_mb']:.1f} MB" if row.get("peak_traced_mb") is not None else ""
    print(f"{where} {what}: {row['throughput']:.1f} req/s, {row['cpu_ms_per_request']:.2f} ms CPU/req, "
          f"{row['failed']} failed{extra}", flush=True)


def run_plan(plan: list[Group], mock: Any, second_mock: Any = None) -> None:
    """Measure every group; within a group, rounds of interleaved cells.

    Background groups (see share_lanes) run in a thread against `second_mock`, next to the latency-bound
    and memory groups; the other groups (CPU-bound) start when that lane has finished.
    """
    t0 = time.perf_counter()
    background = [group for group in plan if group.background]
    beside = [group for group in plan if group.beside]
    alone = [group for group in plan if not (group.background or group.beside)]
    if not background:
        _run_groups(plan, mock, t0)
        return
    if second_mock is None:
        raise ValueError("background groups need a second mock")
    lane = threading.Thread(target=_run_groups, args=(background, second_mock, t0), name="background lane")
    lane.start()
    try:
        _run_groups(beside, mock, t0)
    finally:
        lane.join()
    _run_groups(alone, mock, t0)


def _run_groups(groups: list[Group], mock: Any, t0: float) -> None:
    for group in groups:
        mock.configure(**group.settings)
        rounds = max(runs for _, _, runs in group.specs)
        for run in range(rounds):
            cells = [(runner, client) for runner, client, runs in group.specs if runs > run]
            if group.side_by_side:
                mock.reset()
                with ThreadPoolExecutor(max_workers=len(cells)) as pool:
                    futures = [pool.submit(_measure_cell, group, r, c, run, mock.base_url) for r, c in cells]
                    rows = [future.result() for future in futures]
            else:
                rows = []
                for runner, client in cells:
                    mock.reset()
                    rows.append(_measure_cell(group, runner, client, run, mock.base_url))
                    _progress(group, rows[-1], t0)
            if group.side_by_side:
                for row in rows:
                    _progress(group, row, t0)
            group.rows.extend(rows)


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def drain_bound(n: int, concurrency: int, latency: float, jitter: float, trials: int = 100) -> float:
    """Throughput of a perfect client (no overhead, never idle while inputs remain) for n requests at
    `concurrency`, each taking latency × uniform(1 - jitter, 1 + jitter): the median of `trials`
    simulated runs. Below C / L because the last requests finish with fewer in flight."""
    rng = random.Random(0)
    results = []
    for _ in range(trials):
        free_at = [0.0] * min(concurrency, n)
        for _ in range(n):
            heapq.heappush(free_at, heapq.heappop(free_at) + latency * rng.uniform(1 - jitter, 1 + jitter))
        results.append(n / max(free_at))
    return statistics.median(results)


def ideal_for(group: Group, concurrency: int, rpm_limit: float) -> float | None:
    """Little's law: min(concurrency / mean latency, rate limit); None for the very fast mock."""
    if not group.latency:
        return None
    return littles_law_throughput(concurrency, group.latency, rpm_limit / 60 if rpm_limit else None)


def summarise(group: Group, rpm_limit: float) -> list[dict[str, Any]]:
    """One summary per (runner, client) of a group: medians, min, max, ratios to the reference."""
    good = [row for row in group.rows if "error" not in row]
    reference = {row["run"]: row["throughput"] for row in good if (row["runner"], row["client"]) == REFERENCE}
    if not reference:  # e.g. the memory cells, which use one client: compare to abatch there
        reference = {row["run"]: row["throughput"] for row in good if row["runner"] == "abatch"}
    summaries = []
    for runner, client, _ in group.specs:
        rows = [row for row in good if (row["runner"], row["client"]) == (runner, client)]
        errors = [row["error"] for row in group.rows if (row["runner"], row["client"]) == (runner, client) and "error" in row]
        if not rows:
            summaries.append({"runner": runner, "client": client, "runs": 0, "errors": errors})
            continue
        speeds = [row["throughput"] for row in rows]
        concurrency = rows[0]["concurrency"]  # the seed's chunked processor always runs 100
        ideal = ideal_for(group, concurrency, rpm_limit)
        ratios = [row["throughput"] / reference[row["run"]] for row in rows if reference.get(row["run"])]

        def median_of(key: str) -> float | None:
            values = [row[key] for row in rows if row.get(key) is not None]
            return statistics.median(values) if values else None

        summaries.append({
            "case": group.case, "runner": runner, "client": client, "n": group.n, "concurrency": concurrency,
            "runs": len(rows), "errors": errors, "failed_requests": sum(row["failed"] for row in rows),
            "throughput": statistics.median(speeds), "throughput_min": min(speeds), "throughput_max": max(speeds),
            "ideal": ideal, "efficiency": statistics.median(speeds) / ideal if ideal else None,
            "vs_abatch": statistics.median(ratios) if ratios else None,
            "cpu_ms_per_request": median_of("cpu_ms_per_request"), "peak_rss_mb": median_of("peak_rss_mb"),
            "peak_rss_growth_mb": median_of("peak_rss_growth_mb"), "peak_traced_mb": median_of("peak_traced_mb"),
            "connections_opened": median_of("connections_opened"), "mean_latency_s": median_of("mean_latency_s"),
            "slots_busy": median_of("slots_busy"),  # slots busy while inputs remain (README: "busy")
        })
    return summaries


def _find(summaries: list[dict[str, Any]], case: str, runner: str, client: str, **where: int) -> dict[str, Any] | None:
    for item in summaries:
        if (item.get("case"), item["runner"], item["client"]) == (case, runner, client) and item.get("runs") and all(
                item.get(key) == value for key, value in where.items()):
            return item
    return None


def budget(summaries: list[dict[str, Any]], plan: list[Group], args: argparse.Namespace) -> list[dict[str, Any]]:
    """The issue's targets, each with the figure from this run and whether it was met."""
    checks: list[dict[str, Any]] = []

    def ratio_check(runner: str, concurrency: int, target: float, label: str) -> None:
        for client, how in ((POOLED, "on the aiohttp transport"), ("sdk", "same SDK default client as abatch")):
            item = _find(summaries, "CPU-bound", runner, client, concurrency=concurrency)
            if item and item["vs_abatch"] is not None:
                runs = f" (median of {item['runs']} rounds)" if item["runs"] > 1 else " (1 run)"
                checks.append({"target": f"{label} ({how})", "figure": f"{item['vs_abatch']:.2f}x{runs}",
                               "value": item["vs_abatch"], "met": item["vs_abatch"] >= target})

    for concurrency in _ints(args.cpu_concurrency):
        ratio_check("run_tracked", concurrency, 1.0, f"run_tracked >= 1.0x abatch at C={concurrency:,}")
    for concurrency in _ints(args.cpu_concurrency):
        if concurrency >= 1000:
            ratio_check("run_to_jsonl", concurrency, 1.3, f"run_to_jsonl >= 1.3x abatch at C={concurrency:,}")
    for group in plan:
        if group.case == "latency-bound" and group.concurrency == 100:
            cells = [s for s in group.summaries if s.get("efficiency") is not None]
            if cells:
                worst = min(cells, key=lambda s: s["efficiency"])
                bound = drain_bound(group.n, 100, group.latency or 1.0, group.settings.get("jitter", 0.0))
                ideal = ideal_for(group, 100, args.rpm_limit) or 1.0
                values = ", ".join(f"{NAMES[s['runner']]} {s['efficiency']:.0%}" for s in cells)
                checks.append({"target": "efficiency = throughput / (C / L) >= 95% in the latency-bound cells at C=100",
                               "figure": f"lowest {worst['efficiency']:.1%} ({NAMES[worst['runner']]}); "
                                         f"a perfect client reaches {bound / ideal:.1%} at n={group.n:,} "
                                         f"(drain of the last round); all: {values}",
                               "value": worst["efficiency"], "met": worst["efficiency"] >= 0.95})
                busy = [s for s in cells if s.get("slots_busy") is not None]
                if busy:
                    least = min(busy, key=lambda s: s["slots_busy"])
                    values = ", ".join(f"{NAMES[s['runner']]} {s['slots_busy']:.1%}" for s in busy)
                    checks.append({"target": "slots busy while inputs remain >= 95% in the latency-bound cells at C=100",
                                   "figure": f"lowest {least['slots_busy']:.1%} ({NAMES[least['runner']]}); all: {values}",
                                   "value": least["slots_busy"], "met": least["slots_busy"] >= 0.95})
    traced = {s["n"]: s["peak_traced_mb"] for s in summaries
              if s.get("case") == "memory" and s["runner"] == "run_to_jsonl" and s.get("peak_traced_mb")}
    sizes = sorted(traced)
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        growth = traced[large] / traced[small]
        checks.append({"target": f"run_to_jsonl traced memory at {large:,} <= 1.2x at {small:,}",
                       "figure": f"{traced[large]:.1f} MB vs {traced[small]:.1f} MB = {growth:.2f}x",
                       "value": growth, "met": growth <= 1.2})
    return checks


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """nproc, CPU model (lscpu), Python version, load average."""
    model = None
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), None)
    except (OSError, subprocess.SubprocessError):
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model or platform.processor() or "unknown",
            "python": platform.python_version(), "load_average": [round(x, 2) for x in os.getloadavg()]}


def _num(value: float | None, form: str = "{:,.1f}") -> str:
    return "-" if value is None else form.format(value)


def markdown(plan: list[Group], summaries: list[dict[str, Any]], checks: list[dict[str, Any]],
             info: dict[str, Any]) -> str:
    """The results as Markdown: how it ran, one table per group, the budget."""
    m = info["machine"]
    lines = [
        f"Command: `{info['command']}` · run time {info['duration_s'] / 60:.1f} min · {info['date']}",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']}, load average "
        f"{m['load_average'][0]:g} at the start and {info['load_after'][0]:g} at the end (a shared machine: "
        "compare ratios within the run).",
        "",
        "Throughput is the median of the runs, with (min-max); × abatch is the median, over rounds, of the "
        "ratio to chain.abatch with the SDK default client measured in the same round (in the memory cells: with the "
        "same client). Efficiency = throughput / "
        "ideal, ideal = C / mock latency (Little's law). CPU = client CPU ms per request. RSS: peak "
        "(growth during the run). Conns: TCP connections the client opened (- for threads). The seed's "
        "MemoryEfficientBatchProcessor always runs 100 at a time, whatever the group's concurrency (its C column).",
        "",
        "Busy (latency-bound cells): slots busy while inputs remain, the share of the C slots holding a request "
        "from the first request's start to the last one's start, from each request's start and end (a LangChain callback; the raw SDK times its "
        "own), so 100% means the runner refilled every slot at once while it had inputs. Efficiency also "
        "counts the drain after the last start, which no runner can avoid with a finite batch.",
    ]
    for group in plan:
        items = group.summaries
        lines += ["", f"**{group.title}**"]
        if group.latency:
            bound = drain_bound(group.n, group.concurrency, group.latency, group.settings.get("jitter", 0.0))
            ideal = ideal_for(group, group.concurrency, info["rpm_limit"]) or 0.0
            lines[-1] += (f" · ideal {ideal:,.0f} req/s; a perfect client reaches {bound:,.1f} req/s "
                          f"({bound / ideal:.0%}) with n = {group.n:,} (the last requests drain)")
        if group.side_by_side:
            lines[-1] += " · cells run side by side"
        if group.note:
            lines[-1] += f" · {group.note}"
        if group.trace_memory:
            lines[-1] += " · tracemalloc on (about 3× slower; RSS includes its tables)"
        lines += ["", "| runner | HTTP client | C | req/s (min-max) | ideal | eff. | busy | × abatch | CPU ms/req "
                  "| RSS MB (growth) | traced MB | conns | runs |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for s in items:
            if not s.get("runs"):
                lines.append(f"| {NAMES[s['runner']]} | {CLIENT_NAMES[s['client']]} | | failed: "
                             f"{'; '.join(s['errors'])[:120]} | | | | | | | | | 0 |")
                continue
            speed = f"{s['throughput']:,.1f}" + (f" ({s['throughput_min']:,.0f}-{s['throughput_max']:,.0f})"
                                                  if s["runs"] > 1 else "")
            rss = "-" if s["peak_rss_mb"] is None else f"{s['peak_rss_mb']:,.0f} (+{s['peak_rss_growth_mb']:,.0f})"
            failed = f" ⚠ {s['failed_requests']} failed" if s["failed_requests"] else ""
            lines.append(
                f"| {NAMES[s['runner']]} | {CLIENT_NAMES[s['client']]} | {s['concurrency']:,} | {speed}{failed} "
                f"| {_num(s['ideal'], '{:,.0f}')} | {_num(s['efficiency'], '{:.0%}')} "
                f"| {_num(s.get('slots_busy'), '{:.1%}')} | {_num(s['vs_abatch'], '{:.2f}')} | {_num(s['cpu_ms_per_request'], '{:.2f}')} | {rss} "
                f"| {_num(s['peak_traced_mb'])} | {_num(s['connections_opened'], '{:,.0f}')} | {s['runs']} |")
    lines += bench_scale_out.markdown(info.get("scale_out", {}))
    lines += ["", "**Budget** (from this run)", ""]
    for check in checks:
        lines.append(f"- {'met' if check['met'] else 'NOT met'}: {check['target']}: {check['figure']}")
    return "\n".join(lines) + "\n"


def update_readme(section: str) -> None:
    """Rewrite README's Performance section between the bench markers (add the section if missing)."""
    text = README.read_text()
    block = f"{START}\n{section.rstrip()}\n{END}"
    if START in text and END in text:
        text = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        intro = ("## Performance\n\n"
                 "`make bench` measures every batch runner against the mock on the same inputs, each cell in a\n"
                 "fresh process (`tools/bench_runners.py`; its docstring explains the cases). Add\n"
                 "`BENCH_ARGS=--quick` for a smaller matrix, or run the script with `--profile` to see where\n"
                 "the client's CPU goes. Everything between the markers below is written by `make bench`;\n"
                 "do not edit it by hand.\n\n")
        anchor = "## For instructors"
        text = text.replace(anchor, intro + block + "\n\n" + anchor, 1) if anchor in text else text + "\n" + intro + block + "\n"
    README.write_text(text)


# --------------------------------------------------------------------------------------------
# Profile mode
# --------------------------------------------------------------------------------------------

PROFILE_CELLS = [  # (runner, client, concurrency)
    ("raw_openai", "sdk", 100), ("abatch", "sdk", 100), ("run_tracked", "sdk", 100), ("run_to_jsonl", "sdk", 100),
    ("raw_openai", POOLED, 100), ("abatch", POOLED, 100),
    ("abatch", "sdk", 1000), ("abatch", "httpx-sized", 1000), ("abatch", POOLED, 1000),
]


def _own_share(stats: pstats.Stats, marker: str) -> float:
    """Share of own time spent in functions whose file path contains `marker`."""
    total = sum(entry[2] for entry in stats.stats.values()) or 1.0  # type: ignore[attr-defined]
    return sum(entry[2] for (filename, _, _), entry in stats.stats.items() if marker in filename) / total  # type: ignore[attr-defined]


def _cumulative(stats: pstats.Stats, file_part: str, function: str) -> float:
    total = sum(entry[2] for entry in stats.stats.values()) or 1.0  # type: ignore[attr-defined]
    return max((entry[3] for (filename, _, name), entry in stats.stats.items()  # type: ignore[attr-defined]
                if file_part in filename and name == function), default=0.0) / total


def profile_mode(args: argparse.Namespace, mock: Any) -> list[dict[str, Any]]:
    """cProfile a few runners at the CPU-bound setting; print where the CPU goes per request."""
    mock.configure(**{**latency_settings(args.cpu_latency), "jitter": args.jitter})
    n = args.profile_n
    results = []
    print(f"\nWhere the client's CPU goes (cProfile; mock latency {args.cpu_latency:g} s, {n:,} requests; "
          "profiling itself roughly doubles the CPU figures, so compare rows, not with the table):", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for runner, client, concurrency in PROFILE_CELLS:
            mock.reset()
            path = str(Path(folder) / f"{runner}-{client}-{concurrency}.prof")
            row = measure(runner, n, concurrency, base_url=mock.base_url, client=client, profile=path)
            stats = pstats.Stats(path)
            cpu = row["cpu_ms_per_request"]
            shares = row["profile"]["by_package"]
            extra = {
                "workbook runner (helpers/runners.py, reliability.py)": _own_share(stats, "/helpers/runners.py")
                + _own_share(stats, "/helpers/reliability.py"),
                "httpcore2 pool: assign requests to connections": _cumulative(
                    stats, "httpcore2/_async/connection_pool.py", "_assign_requests_to_connections"),
            }
            item = {"runner": runner, "client": client, "concurrency": concurrency, "n": n,
                    "cpu_ms_per_request_profiled": cpu, "throughput": row["throughput"],
                    "connections_opened": row["connections_opened"], "by_package": shares,
                    "split": row["profile"]["split"], "details": extra,
                    "top": row["profile"]["top"][:6]}
            results.append(item)
            print(f"\n{NAMES[runner]} / {CLIENT_NAMES[client]} at C={concurrency:,}: {cpu:.2f} ms CPU per request "
                  f"(profiled), {row['connections_opened']} connections opened")
            for name, share in sorted(shares.items(), key=lambda kv: -kv[1]):
                print(f"    {share:5.1%}  {share * cpu:5.2f} ms  {name} (own time)")
            for name, share in row["profile"]["split"].items():  # inclusive: what each layer costs
                print(f"    {share:5.1%}  {share * cpu:5.2f} ms  {name} (inclusive, busy time)")
            sys.stdout.flush()
            for name, share in extra.items():
                if share >= 0.001:
                    print(f"    {share:5.1%}  {share * cpu:5.2f} ms  {name} (cumulative)" if "runner" not in name
                          else f"    {share:5.1%}  {share * cpu:5.2f} ms  {name}")
    return results


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smaller matrix (~3 min): fewer inputs, 1 run each")
    parser.add_argument("--cases", default="latency,cpu,memory,levers,scale,ray",
                        help="which cases (comma-separated; levers, scale and ray are lesson 08's)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the repeated cells (default 3)")
    parser.add_argument("--latency", type=float, default=1.0, help="latency-bound case: mock latency, s")
    parser.add_argument("--latency-n", type=int, default=500)
    parser.add_argument("--latency-concurrency", default="10,100")
    parser.add_argument("--cpu-latency", type=float, default=0.2, help="CPU-bound case: mock latency, s")
    parser.add_argument("--cpu-n", type=int, default=2000)
    parser.add_argument("--cpu-concurrency", default="100,1000")
    parser.add_argument("--memory-n", default="5000,50000")
    parser.add_argument("--memory-concurrency", type=int, default=100)
    parser.add_argument("--jitter", type=float, default=0.2, help="the mock's jitter (its default: 0.2)")
    parser.add_argument("--alone", action="store_true", help="run every cell alone (no second lane; ~7 min longer)")
    parser.add_argument("--rpm-limit", type=float, default=0, help="the mock's requests-per-minute limit (0: none)")
    parser.add_argument("--out", default=str(REPO / "build" / "bench"), help="folder for results.md/.json")
    parser.add_argument("--update-readme", action="store_true", help="rewrite README's Performance section")
    parser.add_argument("--profile", action="store_true", help="only profile where the client's CPU goes")
    parser.add_argument("--profile-n", type=int, default=1000)
    parser.add_argument("--from-json", metavar="PATH", help="measure nothing: render results.md (and README with "
                        "--update-readme) again from a results.json this script wrote")
    bench_scale_out.add_arguments(parser)
    if "--quick" in (argv if argv is not None else sys.argv[1:]):  # smaller defaults; explicit flags still win
        parser.set_defaults(repeats=1, latency=0.5, latency_n=200, cpu_n=1000, memory_n="1000,5000", scale_n=2000)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    given = argv if argv is not None else sys.argv[1:]
    command = shlex.join([".venv/bin/python", "tools/bench_runners.py", *given])
    if os.environ.get("BENCH_FROM_MAKE"):  # show what was typed: make bench [BENCH_ARGS=...]
        extra = [arg for arg in given if arg != "--update-readme"]
        if "--out" in extra:
            del extra[extra.index("--out"):extra.index("--out") + 2]
        command = "make bench" + (f" BENCH_ARGS={shlex.quote(' '.join(extra))}" if extra else "")
    os.environ["PYTHONWARNINGS"] = "ignore::RuntimeWarning:runpy"  # fresh processes re-import this module
    info: dict[str, Any] = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                            "machine": machine(), "rpm_limit": args.rpm_limit, "args": vars(args)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.from_json:
        render_saved(Path(args.from_json), out, args.update_readme)
        return
    prepare_fresh_processes()
    mock, second_mock = start_mock(), None
    started = time.perf_counter()
    try:
        if args.profile:
            profile = profile_mode(args, mock)
            (out / "profile.json").write_text(json.dumps(profile, indent=1))
            print(f"\nWrote {out / 'profile.json'}")
            return
        plan = build_plan(args)
        cells = sum(runs for group in plan for _, _, runs in group.specs)
        print(f"{cells} cells in {len(plan)} groups; each in a fresh process. Mock at {mock.base_url}", flush=True)
        if any(group.background for group in plan):
            second_mock = start_mock()  # the background lane's own mock, with its own settings and counters
            print(f"A second lane (the largest memory cell) uses the mock at {second_mock.base_url}", flush=True)
        run_plan(plan, mock, second_mock)
        info["scale_out"] = bench_scale_out.measure_sections(args, mock)  # same run, same mock: the ratios hold
    finally:
        mock.stop()
        if second_mock is not None:
            second_mock.stop()
    info["duration_s"] = time.perf_counter() - started
    info["load_after"] = [round(x, 2) for x in os.getloadavg()]
    write_results(plan, info, args, out, update=args.update_readme and not args.quick)
    if args.update_readme and args.quick:
        print("Not updating README from a --quick run.")


def write_results(plan: list[Group], info: dict[str, Any], args: argparse.Namespace, out: Path, update: bool) -> None:
    """Summarise, check the budget, write results.md and results.json, and maybe README's section."""
    summaries = []
    for group in plan:
        group.summaries = summarise(group, args.rpm_limit)
        summaries += group.summaries
    checks = budget(summaries, plan, args) + bench_scale_out.checks(info.get("scale_out", {}))
    text = markdown(plan, summaries, checks, info)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(
        {**info, "groups": [{k: v for k, v in asdict(g).items() if k not in ("rows", "summaries")} for g in plan],
         "summary": summaries, "budget": checks, "rows": [row for g in plan for row in g.rows]}, indent=1))
    print("\n" + text)
    print(f"Wrote {out / 'results.md'} and {out / 'results.json'}")
    if update:
        update_readme(text)
        print(f"Updated the Performance section of {README.name}")


def render_saved(path: Path, out: Path, update: bool) -> None:
    """Rebuild the groups of a saved run (its rows are stored in plan order) and write its results again."""
    saved = json.loads(path.read_text())
    renamed = {"aiohttp-sized": "aiohttp"}  # a results.json written before the aiohttp client was renamed
    for row in saved["rows"]:
        row["client"] = renamed.get(row.get("client"), row.get("client"))
    for fields in saved["groups"]:
        fields["specs"] = [[runner, renamed.get(client, client), runs] for runner, client, runs in fields["specs"]]
    rows = iter(saved["rows"])
    plan = []
    for fields in saved["groups"]:
        group = Group(**{**fields, "specs": [tuple(spec) for spec in fields["specs"]]})
        group.rows = [next(rows) for _ in range(sum(runs for _, _, runs in group.specs))]
        plan.append(group)
    args = argparse.Namespace(**saved["args"])
    info = {key: saved[key] for key in ("command", "date", "machine", "rpm_limit", "args", "duration_s", "load_after")}
    info["scale_out"] = saved.get("scale_out", {})
    write_results(plan, info, args, out, update)


if __name__ == "__main__":
    main()
