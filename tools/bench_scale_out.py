"""`make bench`'s lesson-08 rows: more from one core, P processes, and Ray, beside chain.abatch.

Called by tools/bench_runners.py after its matrix, in the same run, so the ratios hold:
- "levers" (`helpers.bench.levers`): what each lever that keeps a LangChain chain saves in client CPU
  per request, and the two targets of section 0;
- "scale" (`helpers.bench.scale.compare_scaling`): the CPU-bound case, mock latency 0.2 s, C = 1,000,
  10,000 inputs: chain.abatch, run_tracked on aiohttp, and run_in_processes at P = 1 and 2, medians of
  interleaved rounds, with requests per CPU-second;
- "ray" (`helpers.bench.ray_bench`): Ray Data's HTTP processor against the workbook's runner inside Ray.

Each section is a list of plain row dicts, saved in results.json under "scale_out" and rendered here.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
from typing import Any

SECTIONS = ("levers", "scale", "ray")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale-n", type=int, default=10_000, help="scale case: inputs (10 per slot at C=1,000)")
    parser.add_argument("--scale-concurrency", type=int, default=1000)
    parser.add_argument("--scale-processes", default="1,2", help="scale case: the process counts to run")


def measure_sections(args: argparse.Namespace, mock: Any) -> dict[str, Any]:
    """Run the lesson-08 sections that `args.cases` names; {section: rows}."""
    cases, found = set(args.cases.split(",")), {}
    if "scale" in cases:
        from helpers.bench.scale import compare_scaling

        processes = [int(p) for p in args.scale_processes.split(",")]
        print(f"scale: {args.scale_n:,} inputs at C={args.scale_concurrency:,}, P={processes}", flush=True)
        found["scale"] = asyncio.run(compare_scaling(mock, n=args.scale_n, concurrency=args.scale_concurrency,
                                                     processes=processes, rounds=max(3, args.repeats)))
    for section in ("levers", "ray"):
        if section in cases:
            module = importlib.import_module(f"helpers.bench.{'levers' if section == 'levers' else 'ray_bench'}")
            print(f"{section}: measuring", flush=True)
            found[section] = _as_tables(module.bench_rows(mock, quick=args.quick), section)
    return found


def _as_tables(result: Any, section: str) -> dict[str, Any]:
    """A section's result as {"tables": [{"title", "rows"}], "checks": [...]} (a bare list: one table)."""
    if isinstance(result, list):
        return {"tables": [{"title": f"{section} (lesson 08)", "rows": result}], "checks": []}
    return result


def markdown(found: dict[str, Any]) -> list[str]:
    """The sections as Markdown tables."""
    lines: list[str] = []
    if rows := found.get("scale"):
        first = rows[0]
        lines += ["", f"**Scale out (lesson 08): mock latency 0.2 s, {first['n']:,} inputs, C = {first['concurrency']:,} "
                      "in all** · medians of interleaved rounds; client CPU is every worker process's",
                  "", "| variant | processes | req/s | × abatch | CPU ms/req | req per CPU-second | failed |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {r['name']} | {r['processes']} | {r['throughput']:,.1f} | {r['vs_abatch']:.2f} "
                  f"| {r['cpu_ms_per_request']:.2f} | {r['requests_per_cpu_second']:,.0f} | {r['failed']} |" for r in rows]
    for section in ("levers", "ray"):
        for table in found.get(section, {}).get("tables", []):
            columns = list(table["rows"][0]) if table["rows"] else []
            lines += ["", f"**{table['title']}**", "", "| " + " | ".join(columns) + " |",
                      "| " + " | ".join("---" for _ in columns) + " |"]
            lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in table["rows"]]
    return lines


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    return "-" if value is None else str(value)


def checks(found: dict[str, Any]) -> list[dict[str, Any]]:
    """Lesson 08's targets, each with this run's figure."""
    out: list[dict[str, Any]] = []
    rows = {r["name"]: r for r in found.get("scale", [])}
    fastest = max((r for name, r in rows.items() if name.startswith("processes")), key=lambda r: r["throughput"],
                  default=None)
    if fastest is not None:
        out.append({"target": f"aiohttp + processes >= 2.5x chain.abatch at C={fastest['concurrency']:,}",
                    "figure": f"{fastest['vs_abatch']:.2f}x ({fastest['name']}: {fastest['throughput']:,.0f} req/s)",
                    "value": fastest["vs_abatch"], "met": fastest["vs_abatch"] >= 2.5})
    for section in ("levers", "ray"):
        out += found.get(section, {}).get("checks", [])
    return out
