"""Benchmark: how close does TokenRateLimiter get to a tier's limits, and how many 429s does it cause?

Runs `run_tracked` with a `TokenRateLimiter` against the mock set to a tier (RPM + TPM), sped up
by --scale (limits ×scale, delays and the limit window ÷scale), several times, and prints for each
run and as medians:

- 429 share: rate-limited requests / all requests the server saw;
- achieved: tokens the server charged for accepted requests / tokens the tier allowed in that time
  (one full bucket at the start plus the refill over the wall time).

The mock charges a rejected request against the limit, as OpenAI does (its `count_rejected=1`); pass
--count-rejected 0 to compare with a server where a 429 costs nothing. With rejections charged, a
limiter at 100% of the tier never wins back what a late or bunched arrival cost, so compare
--margin 1.0 with --margin 0.95 (the lesson's choice).

A figure, not a test: the machine is shared, so read the medians.

    .venv/bin/python tools/bench_rate_limit.py                      # defaults below
    .venv/bin/python tools/bench_rate_limit.py --margin 0.95 --runs 5
    .venv/bin/python tools/bench_rate_limit.py --count-rejected 0   # a kinder server than OpenAI
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers.backend import make_chain  # noqa: E402
from helpers.mock import start_mock  # noqa: E402
from helpers.reliability import TokenRateLimiter  # noqa: E402
from helpers.runners import run_tracked  # noqa: E402
from langchain_openai import ChatOpenAI  # noqa: E402

TEMPLATE = "Summarise this support ticket in one sentence: {ticket}"
TICKET = "Since the last update the CSV export stops with a timeout after a minute. " * 32
MAX_TOKENS = 100


async def one_run(mock, args, run: int) -> tuple[float, float, int, float]:
    """(429 share, achieved share of the allowed tokens, requests, wall time) of one run."""
    window = 1.0 / args.scale
    llm = ChatOpenAI(model="gpt-4o-mini", base_url=mock.base_url, api_key="mock-key", max_retries=0,
                     max_tokens=MAX_TOKENS, stream_usage=True)
    chain = make_chain(TEMPLATE, llm)
    limiter = TokenRateLimiter(rpm=args.rpm * args.scale * args.margin, tpm=args.tpm * args.scale * args.margin,
                               max_tokens=MAX_TOKENS, window_seconds=window * args.window_ratio, prompt=chain.first)
    inputs = [{"ticket": f"[bench{run}-{i}] {TICKET}"} for i in range(args.n)]
    mock.reset()
    # No llm.root_async_client.close(): ChatOpenAI shares one cached HTTP client per base_url (and
    # timeout), so closing it would break every later ChatOpenAI with the same settings.
    report = await run_tracked(chain, inputs, max_concurrency=args.concurrency, limiter=limiter, progress=False)
    stats = mock.stats()
    charged = stats["prompt_tokens"] + MAX_TOKENS * stats["ok"]
    allowed = args.tpm * args.scale / 60 * (report.wall_time + window)
    return stats["rate_limited"] / stats["requests"], charged / allowed, stats["requests"], report.wall_time


async def main(args) -> None:
    mock = start_mock(speed=args.scale, rpm_limit=args.rpm * args.scale, tpm_limit=args.tpm * args.scale,
                      limit_window=1.0 / args.scale, count_rejected=args.count_rejected)
    print(f"tier {args.rpm} RPM / {args.tpm} TPM, sped up {args.scale}×; limiter at {args.margin:.0%} of it, "
          f"window {args.window_ratio:g}× the server's; {args.n} requests of ~{MAX_TOKENS + 600} tokens, "
          f"concurrency {args.concurrency}; rejected requests {'count' if args.count_rejected else 'are free'}")
    rejected, achieved = [], []
    try:
        for run in range(args.runs):
            share, got, requests, wall = await one_run(mock, args, run)
            rejected.append(share)
            achieved.append(got)
            print(f"  run {run + 1}: {requests} requests in {wall:.2f} s · 429s {share:.2%} · achieved {got:.1%}")
    finally:
        mock.stop()
    print(f"median: 429s {statistics.median(rejected):.2%} of requests · "
          f"achieved {statistics.median(achieved):.1%} of the allowed token rate")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rpm", type=int, default=500)
    parser.add_argument("--tpm", type=int, default=200_000)
    parser.add_argument("--scale", type=int, default=10, help="speed-up: limits ×scale, delays ÷scale")
    parser.add_argument("--margin", type=float, default=1.0, help="limiter rate as a fraction of the tier")
    parser.add_argument("--window-ratio", type=float, default=0.5, help="limiter window / server window")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--count-rejected", type=int, choices=(0, 1), default=1,
                        help="1: the mock charges a 429'd request against the limit, as OpenAI does")
    asyncio.run(main(parser.parse_args()))
