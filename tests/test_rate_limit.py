"""The request/token limiter and the retry rules, against the mock and with fakes.

- With TokenRateLimiter on, a few percent below the tier, a tier-limited mock (which, like OpenAI,
  charges the requests it rejects) answers fewer than 3% of requests with 429. (How close the limiter
  gets to the allowed rate is a benchmark, not a test: tools/bench_rate_limit.py.)
- A request above one window's share but within tpm is admitted; one above tpm raises ValueError.
- A 429 pauses the limiter for its Retry-After, so a crowd does not go on sending into an empty bucket.
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
def test_limiter_keeps_429s_under_three_percent(mock):
    llm = ChatOpenAI(model="gpt-4o-mini", base_url=mock.base_url, api_key="mock-key", max_retries=0,
                     max_tokens=100, stream_usage=True)
    chain = make_chain(TEMPLATE, llm)
    limiter = TokenRateLimiter(rpm=RPM * 0.95, tpm=TPM * 0.95, max_tokens=100, window_seconds=0.5 / SCALE,
                               prompt=chain.first)
    inputs = [{"ticket": f"[limit{i}] {TICKET}"} for i in range(300)]  # TPM-bound: about 6 s
    mock.reset()
    report = asyncio.run(run_tracked(chain, inputs, max_concurrency=100, limiter=limiter, progress=False))
    stats = mock.stats()
    assert stats["requests"] == len(inputs) and report.ok == stats["ok"]
    assert stats["rate_limited"] / stats["requests"] < 0.03, stats


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


def test_request_bigger_than_a_window_waits_and_leaves_a_debt():
    """A request above one window's share but within tpm is admitted (issue #11): it waits for a full
    bucket, takes more than the bucket holds, and the next request waits until that debt is paid."""

    async def main() -> tuple[float, float, float]:
        limiter = TokenRateLimiter(tpm=60_000, window_seconds=0.1, estimate_tokens=len)  # 100 now, 1,000/s
        assert limiter.token_capacity == 100
        start = time.perf_counter()
        await limiter.acquire("s" * 50)  # half the bucket
        await limiter.acquire("B" * 300)  # three buckets: waits for a full one (about 0.05 s), then goes
        big_done = time.perf_counter() - start
        await limiter.acquire("s" * 100)  # waits for the 200-token debt plus a full bucket: about 0.3 s
        return big_done, time.perf_counter() - start, limiter._tokens.level

    big_done, after, level = asyncio.run(main())
    assert 0.03 < big_done < 0.5
    assert 0.3 <= after - 0.02 and after < 1.5, after  # the debt was paid before the next one went
    assert level <= 1  # nothing left over: the rate was kept


def test_request_bigger_than_tpm_raises_naming_the_sizes():
    limiter = TokenRateLimiter(rpm=RPM, tpm=60_000, estimate_tokens=len)
    with pytest.raises(ValueError, match=r"about 70000 tokens .* tpm=60000 allows fewer in a whole minute"):
        asyncio.run(limiter.acquire("x" * 70_000))


@pytest.mark.timeout(30)
def test_a_large_request_at_the_lessons_tier_gets_through():
    """At 200k TPM (the lesson's tier, not sped up) the limiter's window holds about 1,667 tokens; a
    2,000-token request used to raise ValueError. OpenAI accepts it, and so must the limiter and the mock."""
    handle = start_mock(speed=50, rpm_limit=500, tpm_limit=200_000)  # server window 1 s: 3,333 tokens
    try:
        llm = ChatOpenAI(model="gpt-4o-mini", base_url=handle.base_url, api_key="mock-key", max_retries=0,
                         max_tokens=100, stream_usage=True)
        chain = make_chain(TEMPLATE, llm)
        limiter = TokenRateLimiter(rpm=500, tpm=200_000, max_tokens=100, prompt=chain.first)
        item = {"ticket": "Please read all of this. " * 300}
        assert limiter.token_capacity < limiter.estimate_tokens(item) <= 3_000
        report = asyncio.run(run_tracked(chain, [item, {"ticket": "short"}], max_concurrency=2, limiter=limiter,
                                         progress=False))
        assert report.ok == 2 and handle.stats()["rate_limited"] == 0, (report.failures, handle.stats())
    finally:
        handle.stop()


def test_a_429_pauses_the_limiter_for_its_retry_after():
    """invoke_robustly tells the limiter about a 429: nothing is sent until the server's Retry-After is over."""
    from langchain_core.runnables import RunnableLambda

    sent: list[float] = []

    async def first_one_rejected(item):
        sent.append(time.perf_counter())
        if len(sent) == 1:
            raise api_error(429, headers={"retry-after-ms": "300"})
        return item

    async def main():
        limiter = TokenRateLimiter(rpm=6_000, window_seconds=0.01, estimate_tokens=len)  # one every 10 ms
        return await run_tracked(RunnableLambda(first_one_rejected), ["a", "b", "c"], max_concurrency=3,
                                 limiter=limiter, progress=False, retry=RetryPolicy(base_delay=0.01, max_delay=1.0))

    report = asyncio.run(main())
    assert report.ok == 3
    # Without the pause "b" and "c" would go 10 and 20 ms after "a"; with it, nothing goes for 300 ms.
    assert len(sent) == 4 and all(t - sent[0] >= 0.29 for t in sent[1:]), [t - sent[0] for t in sent]
