"""Tests for what the mock bills and reports (helpers/mock/billing.py and the chat endpoint): the ledger's
rule, cached_tokens under OpenAI's prompt-caching rule, and the flex tier.

The ledger at GET /mock/stats ("billed") is compared with what the client saw, or with what the rule
says a failed request costs: never with numbers the test summed from the ledger itself.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict

import httpx
import openai
import pytest
from langchain_openai import ChatOpenAI

from helpers.mock import MockSettings, reply_for, split_into_pieces, start_mock
from helpers.mock.billing import PromptCache, usage_body
from helpers.mock.faults import timing_for

MODEL = "gpt-4o-mini"
FAST = asdict(MockSettings(speed=1000.0, jitter=0.0, flex_unavailable_rate=0.0))
LONG = ("You are a careful assistant who answers in one short sentence. " * 100)[:6000]  # about 1,500 tokens
SHARED_LONG_PREFIX = 1408  # 6,008 shared bytes ("system\x1f" + LONG) = 11 whole blocks of 128 tokens
LOOP = asyncio.new_event_loop()
run = LOOP.run_until_complete


def asked(question: str, system: str = LONG) -> list[dict]:
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def mock():
    handle = start_mock(**FAST)
    yield handle
    handle.stop()


@pytest.fixture(autouse=True)
def fresh(mock):
    mock.configure(**FAST)
    mock.reset()


@pytest.fixture
def client(mock):
    return openai.OpenAI(base_url=mock.base_url, api_key="mock", max_retries=0)


def billed(mock, tier: str = "default") -> dict:
    return mock.stats()["billed"][tier]


def nothing_billed(mock) -> bool:
    return all(not any(entry.values()) for entry in mock.stats()["billed"].values())


def cached(response) -> int:
    return response.usage.prompt_tokens_details.cached_tokens


# ---------------------------------------------------------------- the ledger's rule


def test_the_ledger_has_its_shape_and_a_reset_zeroes_it(mock, client):
    assert nothing_billed(mock)
    client.chat.completions.create(model=MODEL, messages=user("计算 1 + 2"))
    stats = mock.stats()
    assert set(stats["billed"]) == {"default", "flex", "batch"}
    assert set(stats["billed"]["default"]) == {"requests", "prompt_tokens", "cached_tokens", "completion_tokens"}
    assert stats["billed"]["default"]["requests"] == 1
    mock.reset()
    assert nothing_billed(mock)


def test_the_ledger_equals_the_usage_the_client_was_sent(mock, client):
    mock.configure(error_rate=0.3)
    seen = {"prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0, "requests": 0}
    failures = 0
    for i in range(20):
        try:
            usage = client.chat.completions.create(model=MODEL, messages=asked(f"Question {i}?")).usage
        except openai.InternalServerError:
            failures += 1
            continue
        seen["requests"] += 1
        seen["prompt_tokens"] += usage.prompt_tokens
        seen["completion_tokens"] += usage.completion_tokens
        seen["cached_tokens"] += usage.prompt_tokens_details.cached_tokens
    assert failures > 0 and seen["cached_tokens"] > 0  # errors (not billed) and cache hits both happened
    assert billed(mock) == seen


def test_a_rate_limited_request_is_not_billed(mock, client):
    mock.configure(rpm_limit=60)  # a bucket of 1 request on the 1 s window
    client.chat.completions.create(model=MODEL, messages=user("计算 1 + 2"))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=MODEL, messages=user("计算 1 + 3"))
    assert billed(mock)["requests"] == 1 and mock.stats()["rate_limited"] == 1


def test_a_4xx_and_an_injected_5xx_are_not_billed(mock, client):
    assert httpx.post(mock.base_url + "/chat/completions", content=b"{not json").status_code == 400
    with pytest.raises(openai.BadRequestError, match="service_tier"):
        client.chat.completions.create(model=MODEL, messages=user("hi"), service_tier="priority")
    mock.configure(error_rate=1.0)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=MODEL, messages=user("hi"))
    assert mock.stats()["errors_injected"] == 1 and nothing_billed(mock)


@pytest.mark.parametrize("stream", [True, False])
def test_a_dropped_request_is_billed_for_its_prompt_and_its_whole_completion(mock, client, stream):
    text = "Tell me a long story about rivers."
    whole = client.chat.completions.create(model=MODEL, messages=user(text))
    mock.reset()
    mock.configure(drop_rate=1.0)
    with pytest.raises((openai.APIConnectionError, httpx.HTTPError)):
        response = client.chat.completions.create(model=MODEL, messages=user(text), stream=stream)
        if stream:
            list(response)
    assert mock.stats()["drops_injected"] == 1 and mock.stats()["ok"] == 0
    assert billed(mock) == {"requests": 1, "prompt_tokens": whole.usage.prompt_tokens, "cached_tokens": 0,
                            "completion_tokens": len(split_into_pieces(reply_for(MODEL, user(text))))}


def test_a_hung_request_that_the_client_gave_up_on_is_billed(mock):
    mock.configure(hang_rate=1.0, hang_seconds=30.0)
    impatient = openai.OpenAI(base_url=mock.base_url, api_key="mock", max_retries=0, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        impatient.chat.completions.create(model=MODEL, messages=user("计算 2 + 2"))
    assert billed(mock)["requests"] == 1 and billed(mock)["completion_tokens"] == 5  # "2 + 2 = 4"


# ---------------------------------------------------------------- prompt caching


def test_usage_has_openais_details_and_langchain_reads_cache_read(mock, client):
    response = client.chat.completions.create(model=MODEL, messages=user("hi"))
    assert response.usage.model_dump(exclude_none=True) == usage_body(response.usage.prompt_tokens,
                                                                      response.usage.completion_tokens)
    llm = ChatOpenAI(model=MODEL, base_url=mock.base_url, api_key="mock", max_retries=0)
    llm.invoke(asked("warm up"))
    details = llm.invoke(asked("What is a batch?")).usage_metadata["input_token_details"]
    assert details["cache_read"] == SHARED_LONG_PREFIX


def test_a_long_shared_prefix_is_cached_once_one_request_has_finished(mock, client):
    first = client.chat.completions.create(model=MODEL, messages=asked("Question 0?"))
    assert cached(first) == 0  # nothing had finished yet
    later = [client.chat.completions.create(model=MODEL, messages=asked(f"Question {i}?")) for i in (1, 2)]
    assert [cached(r) for r in later] == [SHARED_LONG_PREFIX] * 2
    assert all(r.usage.prompt_tokens > SHARED_LONG_PREFIX for r in later)
    streamed = list(client.chat.completions.create(model=MODEL, messages=asked("Question 1?"), stream=True,
                                                   stream_options={"include_usage": True}))
    assert streamed[-1].usage == later[0].usage


def test_a_request_that_never_finished_does_not_warm_the_cache(mock, client):
    mock.configure(hang_rate=1.0, hang_seconds=30.0)
    impatient = openai.OpenAI(base_url=mock.base_url, api_key="mock", max_retries=0, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        impatient.chat.completions.create(model=MODEL, messages=asked("Question 0?"))
    mock.configure(hang_rate=0.0, drop_rate=1.0)
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model=MODEL, messages=asked("Question 1?"))
    mock.configure(drop_rate=0.0)
    assert cached(client.chat.completions.create(model=MODEL, messages=asked("Question 2?"))) == 0
    assert cached(client.chat.completions.create(model=MODEL, messages=asked("Question 3?"))) == SHARED_LONG_PREFIX


def test_a_short_prompt_or_a_short_shared_prefix_is_never_cached(mock, client):
    for _ in range(2):
        assert cached(client.chat.completions.create(model=MODEL, messages=user("计算 1 + 2"))) == 0
        short = client.chat.completions.create(model=MODEL, messages=asked("Why?", system=LONG[:3000]))
        assert cached(short) == 0  # 750 tokens in common: below OpenAI's 1,024
    client.chat.completions.create(model=MODEL, messages=asked("Why?"))
    other_model = client.chat.completions.create(model="gpt-4o", messages=asked("Why?"))
    assert cached(other_model) == 0  # the cache is per model


def test_only_the_shared_part_of_a_prefix_is_cached_in_steps_of_128(mock, client):
    client.chat.completions.create(model=MODEL, messages=asked("Why?", system=LONG[:5000] + "A" * 1000))
    response = client.chat.completions.create(model=MODEL, messages=asked("Why?", system=LONG[:5000] + "B" * 1000))
    assert cached(response) == 1152  # 5,007 shared bytes hold 9 whole blocks of 128 tokens


def test_cache_hits_do_not_depend_on_the_order_requests_arrive(mock):
    async def crowd(order: list[int]) -> dict[int, int]:
        mock.reset()
        aclient = openai.AsyncOpenAI(base_url=mock.base_url, api_key="mock", max_retries=0)
        await aclient.chat.completions.create(model=MODEL, messages=asked("Warm up."))
        responses = await asyncio.gather(*(aclient.chat.completions.create(
            model=MODEL, messages=asked(f"Question {i}?")) for i in order))
        await aclient.close()
        return {i: cached(r) for i, r in zip(order, responses)}
    forward, backward = run(crowd(list(range(8)))), run(crowd(list(range(8))[::-1]))
    assert forward == backward == {i: SHARED_LONG_PREFIX for i in range(8)}


def test_the_prompt_cache_is_bounded_and_forgets_the_oldest_first():
    cache = PromptCache(max_prefixes=5)
    prompts = [asked("Why?", system=f"{i:04d}" + LONG) for i in range(10)]  # 11 prefixes each, all different
    for messages in prompts:
        cache.remember(MODEL, messages)
    assert len(cache) == 5
    assert cache.cached_tokens(MODEL, prompts[0], 10_000) == 0 and cache.cached_tokens(MODEL, prompts[-1], 10_000) > 0


def test_batch_rows_see_the_cache_as_it_was_when_the_batch_was_created(mock, client):
    import json

    def batch_of(questions: list[str]):
        lines = [json.dumps({"custom_id": q, "method": "POST", "url": "/v1/chat/completions",
                             "body": {"model": MODEL, "messages": asked(q)}}) for q in questions]
        file_id = client.files.create(file=("b.jsonl", "\n".join(lines).encode()), purpose="batch").id
        batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
        deadline = time.monotonic() + 30
        while batch.status != "completed":
            assert time.monotonic() < deadline, batch.status
            time.sleep(0.01)
            batch = client.batches.retrieve(batch.id)
        return [json.loads(text) for text in client.files.content(batch.output_file_id).text.splitlines()]
    cold = batch_of([f"Cold {i}?" for i in range(4)])
    assert [row["response"]["body"]["usage"]["prompt_tokens_details"]["cached_tokens"] for row in cold] == [0] * 4
    warm = batch_of([f"Warm {i}?" for i in range(4)])  # the cold batch's rows have finished: the prefix is cached
    assert {row["response"]["body"]["usage"]["prompt_tokens_details"]["cached_tokens"] for row in warm} == {
        SHARED_LONG_PREFIX}
    assert billed(mock, "batch")["cached_tokens"] == 4 * SHARED_LONG_PREFIX and billed(mock)["requests"] == 0


# ---------------------------------------------------------------- the flex tier


def test_flex_is_billed_under_flex_and_says_so(mock, client):
    response = client.chat.completions.create(model=MODEL, messages=user("计算 1 + 2"), service_tier="flex")
    assert response.service_tier == "flex"
    assert billed(mock, "flex")["requests"] == 1 and billed(mock)["requests"] == 0
    auto = client.chat.completions.create(model=MODEL, messages=user("hi"), service_tier="auto")
    assert auto.service_tier == "default"
    llm = ChatOpenAI(model=MODEL, base_url=mock.base_url, api_key="mock", max_retries=0, service_tier="flex")
    assert llm.invoke("计算 1 + 2").content == "1 + 2 = 3" and billed(mock, "flex")["requests"] == 2


def test_flex_is_slower_by_its_factor(mock, client):
    settings = MockSettings(jitter=0.0)
    assert timing_for(settings, False, 4.0).total(10) == pytest.approx(4 * timing_for(settings, False).total(10))
    mock.configure(speed=10.0, ttft=0.5, tokens_per_second=1e6, flex_slowdown=6.0)
    start = time.perf_counter()
    client.chat.completions.create(model=MODEL, messages=user("计算 1 + 2"), service_tier="flex")
    assert time.perf_counter() - start >= 0.5 * 6.0 / 10.0  # a lower bound: a sleep never ends early


def test_flex_sometimes_answers_429_resource_unavailable_and_that_is_not_billed(mock, client):
    mock.configure(flex_unavailable_rate=1.0)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=MODEL, messages=user("hi"), service_tier="flex")
    assert caught.value.code == "resource_unavailable" and "Resource Unavailable" in caught.value.message
    assert mock.stats()["flex_unavailable"] == 1 and nothing_billed(mock)
    mock.configure(flex_unavailable_rate=0.5)
    answered = 0
    for i in range(20):
        try:
            client.chat.completions.create(model=MODEL, messages=user(f"计算 {i} + 1"), service_tier="flex")
            answered += 1
        except openai.RateLimitError:
            pass
    assert 0 < answered < 20 and billed(mock, "flex")["requests"] == answered
    assert mock.stats()["flex_unavailable"] == 1 + 20 - answered
