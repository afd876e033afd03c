"""Soak test: 2,000 inputs through the robust runner while the mock misbehaves in every way at once.

The mock (its own process, sped up) answers 5% of attempts with 500/503, hangs on 2% (for 600 s),
drops the connection on 2% and enforces an RPM limit. Half the inputs go through a streaming model,
so a drop cuts a stream half-way; the other half are plain calls, where a drop closes the connection
before the response. `run_to_jsonl` runs them with a RetryPolicy, a per-attempt timeout and a
TokenRateLimiter set 15% above the mock's RPM, so some 429s still happen and must be retried. The mock
charges each rejected request against the limit, as OpenAI does, so a limiter that kept sending at
115% would sink the server's bucket for good; each 429 pauses the limiter for its Retry-After instead.

Checks: the run stops by itself within a bound; the file holds every index exactly once; read back
in input order, every output is that input's answer; and every fault the mock injected shows up as
exactly one failed attempt that was retried (mock /mock/stats against the attempts in the file).
Run with `-s` to see the figures.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from langchain_core.runnables import RunnableLambda
from langchain_openai import ChatOpenAI

from helpers.backend import make_chain
from helpers.mock import start_mock
from helpers.mock import reply_for
from helpers.reliability import RetryPolicy, TokenRateLimiter
from helpers.runners import read_jsonl_results, run_to_jsonl

N = 2000
RPM = 3_600  # 60 requests per second: well below what the client can send, so the limit always binds
MAX_ATTEMPTS = 8
TEMPLATE = "What is {a} + {b}?"
WALL_BOUND = 90.0  # seconds; about 35 s here (2,000 inputs plus retries at the 60-a-second limit)


@pytest.fixture(scope="module")
def mock():
    handle = start_mock(speed=50, rpm_limit=RPM, error_rate=0.05, hang_rate=0.02, drop_rate=0.02)
    yield handle
    handle.stop()


def soak_chain(base_url: str):
    """Odd inputs through a streaming model, even ones through a plain call."""

    def model(streaming: bool) -> ChatOpenAI:
        return ChatOpenAI(model="gpt-4o-mini", base_url=base_url, api_key="mock-key", max_retries=0,
                          streaming=streaming, stream_usage=True, temperature=0)

    plain, streamed = make_chain(TEMPLATE, model(False)), make_chain(TEMPLATE, model(True))
    return RunnableLambda(lambda item: streamed if item["a"] % 2 else plain)


@pytest.mark.timeout(180)
def test_soak(mock, tmp_path):
    path = tmp_path / "soak.jsonl"
    inputs = [{"a": i, "b": 1000 + 7 * i} for i in range(N)]
    retry = RetryPolicy(max_attempts=MAX_ATTEMPTS, base_delay=0.02, max_delay=1.0)
    limiter = TokenRateLimiter(rpm=RPM * 1.15)
    mock.reset()
    start = time.perf_counter()
    summary = asyncio.run(run_to_jsonl(soak_chain(mock.base_url), inputs, path, max_concurrency=64, retry=retry,
                                       timeout=2.0, limiter=limiter, progress=False))
    wall = time.perf_counter() - start
    stats = mock.stats()

    # It stopped by itself, in time, with nothing left in flight at the server.
    assert wall < WALL_BOUND
    assert stats["in_flight"] == 0

    # Every index exactly once in the file, and in input order when read back, each with its own answer.
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert sorted(line["index"] for line in lines) == list(range(N))
    records = read_jsonl_results(path)
    assert [r["index"] for r in records] == list(range(N))
    expected = [reply_for("gpt-4o-mini", [{"role": "user", "content": TEMPLATE.format(**item)}]) for item in inputs]
    failed = [r for r in records if "error" in r]
    assert [r.get("output") for r in records if "output" in r] == [e for e, r in zip(expected, records) if "output" in r]

    # Every injected fault is one failed attempt, and every failed attempt was retried unless attempts ran out.
    attempts = sum(r["attempts"] for r in records)
    faults = stats["rate_limited"] + stats["errors_injected"] + stats["hangs_injected"] + stats["drops_injected"]
    retries = attempts - N
    assert attempts == stats["requests"]  # each attempt reached the server once
    assert attempts - summary.ok == faults  # failed attempts == injected faults: nothing else went wrong
    assert retries == faults - len(failed)  # every fault was retried, except an input's last attempt
    assert all(r["attempts"] == MAX_ATTEMPTS for r in failed)
    assert stats["errors_injected"] and stats["hangs_injected"] and stats["drops_injected"] and stats["rate_limited"]

    print(
        f"\nsoak: {N} inputs, {stats['requests']} requests in {wall:.1f} s; faults injected: {faults} "
        f"({stats['errors_injected']} 500/503, {stats['hangs_injected']} hangs, {stats['drops_injected']} drops, "
        f"{stats['rate_limited']} 429s); retries: {retries}; final: {summary.ok} ok, {summary.failed} failed"
    )
