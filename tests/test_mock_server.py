"""Tests for the mock OpenAI server (helpers/mock/): its settings, replies, server and control.

One mock server runs for the whole module (started through helpers.mock.control, like the notebooks do),
and every test talks to it through the real clients: the openai SDK and langchain's ChatOpenAI.
Each test starts from the FAST settings below and zeroed stats.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict
from pathlib import Path

import openai
import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_openai import ChatOpenAI

import helpers.mock
from helpers.metrics import approx_tokens
from helpers.mock import (
    MockSettings,
    count_tokens,
    get_mock,
    reply_for,
    request_key,
    roll,
    split_into_pieces,
    start_mock,
)
from helpers.mock import control as mock_control
from helpers.mock.server import format_duration

REPO = Path(__file__).resolve().parent.parent
MODEL = "gpt-4o-mini"
FAST = asdict(MockSettings(speed=1000.0, jitter=0.0))  # every setting given, so .env and MOCK_* don't matter

# One event loop for all async tests, as in a notebook: ChatOpenAI caches its async HTTP client, which
# then belongs to the loop it was first used on (so a fresh asyncio.run per test would break it).
LOOP = asyncio.new_event_loop()
run = LOOP.run_until_complete


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def mock():
    handle = start_mock(**FAST)
    yield handle
    handle.stop()


@pytest.fixture(autouse=True)
def fresh(request):
    if "mock" in request.fixturenames:
        handle = request.getfixturevalue("mock")
        handle.configure(**FAST)
        handle.reset()


@pytest.fixture
def client(mock):
    return openai.OpenAI(base_url=mock.base_url, api_key="mock", max_retries=0)


@pytest.fixture
def llm(mock):
    return ChatOpenAI(model=MODEL, base_url=mock.base_url, api_key="mock", stream_usage=True, max_retries=0)


def control(mock, method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
    """A raw HTTP call to the server: (status, JSON body)."""
    url = mock.base_url.removesuffix("/v1") + path
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, method=method), timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


# ---------------------------------------------------------------- answers (pure functions)


@pytest.mark.parametrize("prompt, answer", [
    ("翻译成英文：测试3", "Test3"),
    ("翻译：测试3", "Test3"),
    ("Translate to English: 测试3", "Test3"),
    ("翻译成英文：你好，世界", "Hello, world"),
    ("计算 3 + 4", "3 + 4 = 7"),
    ("What is 3 + 4?", "3 + 4 = 7"),
    ("计算 -5 + 12", "-5 + 12 = 7"),
    ("计算 123456789012345678901234567890 + 1", "123456789012345678901234567890 + 1 = 123456789012345678901234567891"),
])
def test_reply_for_known_prompts(prompt, answer):
    assert reply_for(MODEL, [{"role": "system", "content": "Be brief."}, *user(prompt)]) == answer


def test_reply_for_other_prompts_is_deterministic_and_10_to_60_words():
    for i in range(200):
        reply = reply_for(MODEL, user(f"Tell me something about topic {i}"))
        assert reply == reply_for(MODEL, user(f"Tell me something about topic {i}"))
        assert 10 <= len(reply.split()) <= 60, reply
    assert reply_for(MODEL, user("翻译成英文：未知的句子")) == reply_for(MODEL, user("翻译成英文：未知的句子"))


def test_count_tokens_and_pieces():
    assert [count_tokens(t) for t in ["", "abcd", "abcde", "测试"]] == [1, 1, 2, 2]
    text = reply_for(MODEL, user("Tell me a story"))
    assert "".join(split_into_pieces(text)) == text
    assert split_into_pieces("3 + 4 = 7") == ["3", " +", " 4", " =", " 7"]


def test_the_package_exports_what_other_code_imports():
    wanted = {"MockHandle", "StatsTimeline", "get_mock", "record_stats", "start_mock", "MockSettings",
              "count_prompt_tokens", "count_tokens", "reply_for", "request_key", "roll", "split_into_pieces"}
    assert wanted <= set(helpers.mock.__all__)
    assert all(hasattr(helpers.mock, name) for name in helpers.mock.__all__)
    assert count_tokens is approx_tokens  # one token estimate, for the mock and the lessons


def test_settings_validation():
    assert MockSettings.from_env({"MOCK_TTFT": "0.1", "MOCK_RPM_LIMIT": "500"}) == MockSettings(ttft=0.1, rpm_limit=500)
    for bad in [dict(ttft=-1), dict(speed=0), dict(error_rate=1.5), dict(rpm_limit=1.5), dict(ttft="fast"),
                dict(seed=True), dict(ttft=None)]:
        with pytest.raises(ValueError):
            MockSettings(**bad)
    with pytest.raises(ValueError, match="valid names: ttft, tokens_per_second"):
        MockSettings().updated(tfft=0.1)


def test_format_duration():
    assert [format_duration(s) for s in [0.12, 1.5, 12.3456, 360]] == ["120ms", "1.5s", "12.346s", "6m0s"]


# ---------------------------------------------------------------- through the openai SDK


def test_openai_sdk_answer_and_usage(client):
    response = client.chat.completions.create(model=MODEL, messages=user("翻译成英文：测试3"))
    assert response.choices[0].message.content == "Test3"
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.completion_tokens == 2  # "Test", "3"
    assert response.usage.prompt_tokens == count_tokens("翻译成英文：测试3") + 3 + 3


def test_async_openai_sdk(mock):
    async def main():
        async with openai.AsyncOpenAI(base_url=mock.base_url, api_key="mock", max_retries=0) as client:  # closed on the loop, never by the GC
            response = await client.chat.completions.create(model=MODEL, messages=user("What is 3 + 4?"))
            return response.choices[0].message.content

    assert run(main()) == "3 + 4 = 7"


def test_stream_chunks_and_usage_match_non_stream(client):
    messages = user("Tell me about streaming")
    whole = client.chat.completions.create(model=MODEL, messages=messages)
    chunks = list(client.chat.completions.create(model=MODEL, messages=messages, stream=True,
                                                 stream_options={"include_usage": True}))
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len(texts) == whole.usage.completion_tokens > 5
    assert "".join(texts) == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage


def test_max_tokens_cuts_the_answer(client):
    response = client.chat.completions.create(model=MODEL, messages=user("Tell me a story"), max_tokens=3)
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 3


def test_models_and_openai_shaped_errors(mock, client):
    assert MODEL in [m.id for m in client.models.list()]
    status, body = control(mock, "POST", "/v1/chat/completions", b"not json")
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    status, body = control(mock, "POST", "/v1/chat/completions", b'{"model": "gpt-4o-mini"}')
    assert status == 400 and body["error"]["param"] == "messages"
    status, body = control(mock, "GET", "/v1/nothing")
    assert status == 404 and body["error"]["message"] == "Invalid URL (GET /v1/nothing)"


# ---------------------------------------------------------------- through langchain's ChatOpenAI


def test_seed_translation_chain_abatch(llm):
    chain = ChatPromptTemplate.from_template("翻译成英文：{text}") | llm | StrOutputParser()
    inputs = [{"text": f"测试{i}"} for i in range(10)]
    results = run(chain.abatch(inputs, config={"max_concurrency": 5}))
    assert results[:3] == ["Test0", "Test1", "Test2"]
    assert results == [f"Test{i}" for i in range(10)]


def test_addition_chain_invoke_ainvoke_batch(llm):
    chain = ChatPromptTemplate.from_template("计算 {a} + {b}") | llm | StrOutputParser()
    assert "7" in chain.invoke({"a": 3, "b": 4})
    assert run(chain.ainvoke({"a": 10, "b": -3})) == "10 + -3 = 7"
    assert chain.batch([{"a": i, "b": i + 1} for i in range(5)]) == [f"{i} + {i + 1} = {2 * i + 1}" for i in range(5)]


def test_abatch_as_completed_covers_every_input(llm):
    async def main():
        return [pair async for pair in llm.abatch_as_completed([f"计算 {i} + 1" for i in range(8)])]

    results = dict(run(main()))
    assert sorted(results) == list(range(8))
    assert all(results[i].content == f"{i} + 1 = {i + 1}" for i in range(8))


def test_langchain_stream_and_astream_usage(llm):
    prompt = "Tell me about batching"
    whole = llm.invoke(prompt)
    chunks = list(llm.stream(prompt))
    assert len([c for c in chunks if c.content]) > 5
    merged = sum(chunks[1:], chunks[0])
    assert merged.content == whole.content
    assert merged.usage_metadata == whole.usage_metadata

    async def collect():
        return [c async for c in llm.astream(prompt)]

    async_chunks = run(collect())
    assert sum(async_chunks[1:], async_chunks[0]).usage_metadata == whole.usage_metadata


# ---------------------------------------------------------------- timing


def test_stream_timing_follows_ttft_and_tokens_per_second(mock, client):
    mock.configure(speed=1.0, ttft=0.2, tokens_per_second=200.0)
    start = time.perf_counter()
    first, n = None, 0
    for chunk in client.chat.completions.create(model=MODEL, messages=user("Tell me a story"), stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.perf_counter() - start
            n += 1
    total = time.perf_counter() - start
    assert 0.19 <= first < 0.6
    assert 0.19 + n / 200 <= total < 0.6 + n / 200
    start = time.perf_counter()  # not streamed: the whole latency before the answer
    client.chat.completions.create(model=MODEL, messages=user("Tell me a story"))
    assert 0.19 + n / 200 <= time.perf_counter() - start < 0.6 + n / 200


def test_tail_requests_are_the_rolled_ones(mock):
    mock.configure(speed=1.0, ttft=0.1, tokens_per_second=10_000.0, tail_fraction=0.5, tail_multiplier=6.0, seed=7)
    prompts = [f"tail question {i}" for i in range(8)]
    slow = [roll(7, "tail", request_key(MODEL, user(p)), 0) < 0.5 for p in prompts]

    async def timed(client, prompt):
        start = time.perf_counter()
        await client.chat.completions.create(model=MODEL, messages=user(prompt))
        return time.perf_counter() - start

    async def main():
        async with openai.AsyncOpenAI(base_url=mock.base_url, api_key="mock", max_retries=0) as client:  # closed on the loop, never by the GC
            return await asyncio.gather(*(timed(client, p) for p in prompts))

    seconds = run(main())
    assert [s > 0.35 for s in seconds] == slow and 0 < sum(slow) < len(slow)


# ---------------------------------------------------------------- rate limits


def test_rpm_limit_answers_429_with_openai_headers(mock, client):
    mock.configure(rpm_limit=60)  # limit_window 1 s: a bucket of 1 request, refilled at 1 per second
    ok = client.chat.completions.with_raw_response.create(model=MODEL, messages=user("hi"))
    assert ok.headers["x-ratelimit-limit-requests"] == "60"
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=MODEL, messages=user("hi again"))
    headers, error = caught.value.response.headers, caught.value.body
    # The rejected request was charged too (count_rejected=1, as at OpenAI): the bucket is at -1, so the
    # next request fits only after two refills, not one.
    assert int(headers["retry-after"]) >= 2 and 1000 < int(headers["retry-after-ms"]) <= 2000
    assert headers["x-ratelimit-limit-requests"] == "60" and headers["x-ratelimit-remaining-requests"] == "0"
    assert re.fullmatch(r"\d+ms|[\d.]+s", headers["x-ratelimit-reset-requests"])
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
    assert re.fullmatch(r"Rate limit reached for gpt-4o-mini in organization org-mock on requests per min \(RPM\): "
                        r"Limit 60, Used 60, Requested 1\. Please try again in (\d+ms|[\d.]+s)\.", error["message"])
    assert mock.stats()["rate_limited"] == 1 and mock.stats()["ok"] == 1


def test_rejected_requests_count_against_the_limit_unless_turned_off(mock, client):
    mock.configure(rpm_limit=600, limit_window=0.1)  # a bucket of 1 request, refilled at 10 per second
    assert mock.settings().count_rejected == 1  # the default: never kinder than OpenAI
    client.chat.completions.create(model=MODEL, messages=user("first"))
    for _ in range(5):  # resending at once: each rejection is charged, so the bucket sinks
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model=MODEL, messages=user("again"))
    assert int(caught.value.response.headers["retry-after-ms"]) > 500  # 6 requests behind: about 0.6 s
    mock.configure(count_rejected=0)  # kinder than OpenAI: a rejection costs nothing
    client.chat.completions.create(model=MODEL, messages=user("first"))
    for _ in range(5):
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model=MODEL, messages=user("again"))
    assert int(caught.value.response.headers["retry-after-ms"]) <= 100  # still one refill away
    time.sleep(0.12)
    client.chat.completions.create(model=MODEL, messages=user("in after one refill"))


def test_tpm_limit_counts_prompt_plus_max_tokens(mock, client):
    mock.configure(tpm_limit=6000)  # a bucket of 100 tokens
    client.chat.completions.create(model=MODEL, messages=user("hi"), max_tokens=60)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=MODEL, messages=user("hi"), max_tokens=60)
    assert caught.value.body["type"] == "tokens" and "(TPM): Limit 6000" in caught.value.body["message"]
    assert caught.value.response.headers["x-ratelimit-limit-tokens"] == "6000"


def sdk_crowd(mock, max_retries: int, n: int = 15) -> list:
    """n requests at once through the openai SDK, which waits exactly retry-after-ms before each retry."""
    async def main():
        async with openai.AsyncOpenAI(base_url=mock.base_url, api_key="mock", max_retries=max_retries) as client:
            return await asyncio.gather(*(client.chat.completions.create(model=MODEL, messages=user(f"计算 {i} + 1"))
                                          for i in range(n)), return_exceptions=True)  # closed on the loop

    return run(main())


def test_sdk_retries_get_through_the_rate_limit_when_rejections_are_free(mock):
    mock.configure(rpm_limit=1200, limit_window=0.5, count_rejected=0)  # bursts of 10, then 20 per second
    # The SDK waits exactly retry-after-ms, so the rejected requests retry together and only about one
    # gets in per round: hence many retries for a few extra requests.
    responses = sdk_crowd(mock, max_retries=20)
    assert [r.choices[0].message.content for r in responses] == [f"{i} + 1 = {i + 1}" for i in range(15)]
    stats = mock.stats()
    assert stats["ok"] == 15 and stats["rate_limited"] > 0 and stats["requests"] == 15 + stats["rate_limited"]


def test_a_crowd_of_sdk_retries_starves_when_rejections_count(mock):
    mock.configure(rpm_limit=1200, limit_window=0.5)  # count_rejected=1, the default
    # Each retry is charged, and each comes back when the bucket would fit *it*: the others' retries
    # have taken that room by then, so the crowd keeps the bucket below zero.
    responses = sdk_crowd(mock, max_retries=3)
    failed = [r for r in responses if isinstance(r, openai.RateLimitError)]
    stats = mock.stats()
    assert stats["ok"] == 15 - len(failed) and len(failed) >= 3, stats
    assert stats["requests"] == stats["ok"] + stats["rate_limited"]


# ---------------------------------------------------------------- faults


def failure_pattern(client, prompts):
    pattern = []
    for prompt in prompts:
        try:
            client.chat.completions.create(model=MODEL, messages=user(prompt))
            pattern.append(None)
        except openai.APIStatusError as error:
            pattern.append(error.status_code)
    return pattern


def test_injected_errors_are_reproducible(mock, client):
    mock.configure(error_rate=0.6, seed=3)  # a roll below 0.3 gives a 500, from 0.3 to 0.6 a 503
    prompts = [f"question {i}" for i in range(20)]
    first = failure_pattern(client, prompts)
    mock.reset()
    assert failure_pattern(client, prompts) == first
    assert {500, 503, None} == set(first)
    rolls = [roll(3, "error", request_key(MODEL, user(p)), 0) for p in prompts]
    assert first == [500 if u < 0.3 else 503 if u < 0.6 else None for u in rolls]
    mock.reset()
    mock.configure(seed=4)
    assert failure_pattern(client, prompts) != first


def test_a_retry_gets_past_an_injected_error(mock):
    mock.configure(error_rate=0.5, seed=3)
    fails_once = next(p for p in (f"计算 {i} + 1" for i in range(100))
                      if roll(3, "error", request_key(MODEL, user(p)), 0) < 0.5
                      and roll(3, "error", request_key(MODEL, user(p)), 1) >= 0.5)
    llm = ChatOpenAI(model=MODEL, base_url=mock.base_url, api_key="mock", max_retries=2)
    assert "=" in llm.invoke(fails_once).content
    stats = mock.stats()
    assert (stats["requests"], stats["errors_injected"], stats["ok"]) == (2, 1, 1)


def test_a_drop_mid_stream_raises_on_the_client(mock, client):
    mock.configure(drop_rate=1.0)
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model=MODEL, messages=user("Tell me a story"), stream=True):
            received.append(chunk)
    assert len(received) >= 2  # about half the answer came before the connection closed
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model=MODEL, messages=user("Tell me a story"))
    assert mock.stats()["drops_injected"] == 2 and mock.stats()["ok"] == 0


def test_a_hang_is_cut_by_the_client_timeout(mock):
    mock.configure(hang_rate=1.0, hang_seconds=600)
    llm = ChatOpenAI(model=MODEL, base_url=mock.base_url, api_key="mock", timeout=0.3, max_retries=0)
    start = time.perf_counter()
    with pytest.raises(openai.APITimeoutError):
        llm.invoke("hello?")
    assert time.perf_counter() - start < 2
    deadline = time.time() + 3
    while mock.stats()["in_flight"] and time.time() < deadline:  # the server cancels the abandoned handler
        time.sleep(0.02)
    assert mock.stats()["in_flight"] == 0 and mock.stats()["hangs_injected"] == 1


# ---------------------------------------------------------------- concurrency, control, process


def test_200_concurrent_requests(mock):
    mock.configure(speed=1.0, ttft=1.0, tokens_per_second=10_000.0)

    async def main():
        async with openai.AsyncOpenAI(base_url=mock.base_url, api_key="mock", max_retries=0) as client:  # closed on the loop, never by the GC
            return await asyncio.gather(*(client.chat.completions.create(model=MODEL, messages=user(f"翻译：测试{i}"))
                                          for i in range(200)))

    responses = run(main())
    assert [r.choices[0].message.content for r in responses] == [f"Test{i}" for i in range(200)]
    stats = mock.stats()
    assert stats["ok"] == 200 and stats["peak_in_flight"] >= 190 and stats["in_flight"] == 0


def test_settings_control(mock):
    assert mock.configure(ttft=0.25, rpm_limit=500).ttft == 0.25
    assert mock.settings() == MockSettings(**{**FAST, "ttft": 0.25, "rpm_limit": 500})
    with pytest.raises(ValueError, match="valid names"):
        mock.configure(tfft=0.1)
    with pytest.raises(ValueError, match="ttft"):
        mock.configure(ttft=-1)  # checked by the server
    status, body = control(mock, "POST", "/mock/settings", b'{"bogus": 1}')
    assert status == 400 and "bogus" in body["error"]["message"]


def test_server_listens_on_loopback_only(mock):
    port = int(mock.base_url.rsplit(":", 1)[1].split("/")[0])
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            pytest.skip("needs Linux /proc/net/tcp")
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                listening.append(local.rsplit(":", 1)[0])
    assert listening == ["0100007F"]  # 127.0.0.1, and nothing on IPv6 or other addresses


def test_cli_ready_line_and_exit_with_parent():
    process = subprocess.Popen([sys.executable, "-m", "helpers.mock", "--port", "0", "--exit-with-parent"],
                               cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = process.stdout.readline().decode()
    assert re.fullmatch(r"Mock OpenAI server: http://127\.0\.0\.1:\d+/v1\n", line)
    process.stdin.close()
    assert process.wait(timeout=5) == 0
    bad = subprocess.run([sys.executable, "-m", "helpers.mock", "--ttft", "-1"], cwd=REPO,
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "ttft" in bad.stderr


def test_get_mock_is_one_shared_server(monkeypatch):
    monkeypatch.setattr(mock_control, "_mock", None)  # leave any server other tests share alone
    handle = get_mock()
    try:
        assert get_mock() is handle and handle.running()
        assert handle.stats()["requests"] == 0
    finally:
        handle.stop()
    assert not handle.running()
    replacement = get_mock()  # a dead server is replaced
    assert replacement is not handle and replacement.running()
    replacement.stop()


# ---------------------------------------------------------------- malformed requests get OpenAI's JSON 400s

GOOD_MESSAGE = '{"role": "user", "content": "hi"}'


@pytest.mark.parametrize("body, param, says", [
    ('{"messages": [{"role": "user", "content": "\\ud800"}]}', "messages[0].content", "lone surrogate"),
    ("[" * 100_000 + "]" * 100_000, None, "nests deeper than"),
    ('{"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}', "messages[0].content[0].text",
     "expected a string"),
    ('{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}',
     "messages[0].content[0]", "only text parts"),
    ('{"messages": [' + GOOD_MESSAGE + '], "stream_options": "yes"}', "stream_options", "expected an object"),
    ('{"messages": [' + GOOD_MESSAGE + '], "stream_options": {"include_usage": "yes"}}',
     "stream_options.include_usage", "expected a boolean"),
    ('{"messages": [' + GOOD_MESSAGE + '], "stream": "yes"}', "stream", "expected a boolean"),
    ('{"messages": [{"role": "wizard", "content": "hi"}]}', "messages[0].role", "Supported values"),
    ('{"messages": ["hi"]}', "messages[0]", "expected an object"),
    ('{"messages": [{"role": "user", "content": 7}]}', "messages[0].content", "expected a string"),
    ('{"messages": [{"role": "user"}]}', "messages[0].content", "expected a string"),
    ('{"model": 4, "messages": [' + GOOD_MESSAGE + ']}', "model", "expected a string"),
    ('{"messages": [' + GOOD_MESSAGE + '], "max_tokens": true}', "max_tokens", "Invalid 'max_tokens'"),
    ('{"messages": [' + GOOD_MESSAGE + '], "max_tokens": 1.5}', "max_tokens", "Invalid 'max_tokens'"),
    ("null", None, "must be a JSON object"),
    (b"\xff\xfe{", None, "could not parse the JSON body"),
])
def test_a_malformed_request_gets_a_json_400_naming_the_field(mock, body, param, says):
    raw = body if isinstance(body, bytes) else body.encode()
    status, answer = control(mock, "POST", "/v1/chat/completions", raw)
    assert status == 400 and answer["error"]["type"] == "invalid_request_error"
    assert answer["error"]["param"] == param and says in answer["error"]["message"]
    assert mock.stats()["requests"] == 1  # counted, answered, and the server lives on
    status, _ = control(mock, "POST", "/v1/chat/completions", ('{"messages": [' + GOOD_MESSAGE + ']}').encode())
    assert status == 200


def test_an_assistant_message_without_content_is_fine(mock):
    body = '{"messages": [' + GOOD_MESSAGE + ', {"role": "assistant", "content": null}, ' + GOOD_MESSAGE + ']}'
    status, answer = control(mock, "POST", "/v1/chat/completions", body.encode())
    assert status == 200 and answer["choices"][0]["message"]["content"]


def test_a_wrong_method_gets_json_not_plain_text(mock):
    status, answer = control(mock, "DELETE", "/mock/settings")
    assert status in (404, 405) and answer["error"]["message"]


@pytest.mark.parametrize("changes, says", [
    ({"ttft": "inf"}, "ttft must be a finite number"),
    ({"ttft": 1e9}, "ttft=1000000000.0 is out of range [0, 60]"),
    ({"seed": "inf"}, "seed must be a finite integer"),
    ({"seed": 2**70}, "seed="),
    ({"hang_seconds": 1e6}, "hang_seconds=1000000.0 is out of range [0, 3600]"),
    ({"speed": 0}, "speed=0.0 is out of range [0, 1000] (above 0)"),
    ({"tokens_per_second": "nan"}, "tokens_per_second must be a finite number"),
    ({"rpm_limit": 2.5}, "rpm_limit must be a finite integer"),
    ({"limit_window": 3600}, "limit_window=3600.0 is out of range"),
    ({"error_rate": [1]}, "error_rate must be a finite number"),
    ({"no_such": 1}, "unknown mock setting"),
])
def test_a_setting_that_would_hang_or_crash_the_mock_is_refused_by_name(mock, changes, says):
    before = control(mock, "GET", "/mock/settings")[1]
    status, answer = control(mock, "POST", "/mock/settings", json.dumps(changes).encode())
    assert status == 400 and says in answer["error"]["message"]
    assert control(mock, "GET", "/mock/settings")[1] == before  # nothing changed
    with pytest.raises(ValueError, match=re.escape(says.split("=")[0])):
        MockSettings().updated(**changes)


def test_settings_that_nest_too_deep_are_refused(mock):
    status, answer = control(mock, "POST", "/mock/settings", ("[" * 100_000 + "]" * 100_000).encode())
    assert status == 400 and "nests too deep" in answer["error"]["message"]
