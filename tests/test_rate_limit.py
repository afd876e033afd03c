"""The request/token limiter and the retry rules, against the mock and with fakes.

- With TokenRateLimiter on, a tier-limited mock answers fewer than 1% of requests with 429.
  (How close the limiter gets to the allowed rate is a benchmark, not a test: tools/bench_rate_limit.py.)
- The limiter lets waiters through first come, first served: a long prompt is not starved by short ones.
- A 429 "insufficient_quota" (out of credit) is not retried; a Retry-After longer than max_delay ends
  the retries instead of retrying early.
"""

from __future__ import annotations

import asyncio
import time

import openai
import pytest
from langchain_openai import ChatOpenAI

from helpers.backend import make_chain
from helpers.mock import start_mock
from helpers.reliability import RetryPolicy, TokenRateLimiter, is_retryable
from helpers.reports import describe_error
from helpers.runners import run_tracked

try:
    import httpx2 as httpx  # what the openai SDK uses here
except ImportError:  # pragma: no cover
    import httpx

SCALE = 10  # the tier 500 RPM / 200k TPM, sped up 10×: limits ×10, delays and window ÷10
RPM, TPM = 500 * SCALE, 200_000 * SCALE
TEMPLATE = "Summarise this support ticket in one sentence: {ticket}"
TICKET = "Since the last update the CSV export stops with a timeout after a minute. " * 32


@pytest.fixture(scope="module")
def mock():
    handle = start_mock(speed=SCALE, rpm_limit=RPM, tpm_limit=TPM, limit_window=1 / SCALE)
    yield handle
    handle.stop()


@pytest.mark.timeout(60)
def test_limiter_keeps_429s_under_one_percent(mock):
    llm = ChatOpenAI(model="gpt-4o-mini", base_url=mock.base_url, api_key="mock-key", max_retries=0,
                     max_tokens=100, stream_usage=True)
    chain = make_chain(TEMPLATE, llm)
    limiter = TokenRateLimiter(rpm=RPM, tpm=TPM, max_tokens=100, window_seconds=0.5 / SCALE, prompt=chain.first)
    inputs = [{"ticket": f"[limit{i}] {TICKET}"} for i in range(300)]  # TPM-bound: about 6 s
    mock.reset()
    report = asyncio.run(run_tracked(chain, inputs, max_concurrency=100, limiter=limiter, progress=False))
    stats = mock.stats()
    assert stats["requests"] == len(inputs) and report.ok == stats["ok"]
    assert stats["rate_limited"] / stats["requests"] < 0.01, stats


def test_long_prompt_is_not_starved_by_short_ones():
    """aiolimiter alone wakes the smallest waiter first; TokenRateLimiter must serve in arrival order."""

    async def main() -> list[str]:
        limiter = TokenRateLimiter(tpm=60_000, window_seconds=0.1, estimate_tokens=len)  # 100 tokens/0.1 s
        order: list[str] = []

        async def request(name: str) -> None:
            await limiter.acquire(name)
            order.append(name)

        tasks = [asyncio.create_task(request("s" * 20)) for _ in range(5)]  # fills the bucket
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(request("L" * 90)))  # waits for almost a whole bucket
        await asyncio.sleep(0)
        tasks += [asyncio.create_task(request("s" * 20)) for _ in range(20)]  # short ones keep arriving
        await asyncio.gather(*tasks)
        return order

    start = time.perf_counter()
    order = asyncio.run(main())
    assert time.perf_counter() - start < 5
    assert order.index("L" * 90) == 5  # right after the five that were there first


def api_error(status: int, body: dict | None = None, headers: dict | None = None) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://127.0.0.1:1/v1/chat/completions")
    response = httpx.Response(status, headers=headers or {}, request=request)
    cls = {429: openai.RateLimitError}.get(status, openai.InternalServerError)
    body = body or {"message": f"error {status}", "type": "x", "code": None}
    return cls(f"Error code: {status} - {body['message']}", response=response, body=body)


def test_out_of_quota_is_not_retried():
    quota = api_error(429, {"message": "You exceeded your current quota, please check your plan and billing details.",
                            "type": "insufficient_quota", "code": "insufficient_quota"})
    assert not is_retryable(quota)
    assert "Retrying will not help" in describe_error(quota)
    assert is_retryable(api_error(429, {"message": "Rate limit reached", "type": "tokens", "code": "rate_limit_exceeded"}))


def test_retry_after_longer_than_max_delay_ends_the_retries():
    calls = []

    async def always_429(_):
        calls.append(1)
        raise api_error(429, headers={"retry-after": "30"})

    from langchain_core.runnables import RunnableLambda

    start = time.perf_counter()
    report = asyncio.run(run_tracked(RunnableLambda(always_429), ["x"], max_concurrency=1, progress=False,
                                     retry=RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=2.0)))
    assert time.perf_counter() - start < 1  # neither waited 30 s nor retried after 2 s
    assert len(calls) == 1 and report.failures[0].attempts == 1
