"""Tests for helpers.runners and helpers.metrics, with fake chains (no mock server needed).

The fake chain has the same shape as the workbook's real ones, `prompt | model | parser`, but its
"model" is a RunnableLambda that sleeps and answers deterministically. The word in the prompt
decides what it does: "w7" answers "W7!" after a short delay that scrambles completion order,
"bad400" raises a 400, "flaky429:2" raises a 429 twice then answers, "hang" never answers.
Each test runs its coroutine with asyncio.run, so no pytest plugin is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import openai
import pytest
from langchain_core.exceptions import ModelInvalidRequestError, ModelRateLimitError
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

from helpers.metrics import (
    LatencyStats,
    StreamingStats,
    in_flight_timeline,
    littles_law_throughput,
    percentile,
)
from helpers.reliability import RetryPolicy, TokenRateLimiter, is_retryable, retry_after_seconds
from helpers.runners import read_jsonl_results, run_to_jsonl, run_tracked, stream_merged

try:  # the openai SDK builds its errors on httpx2 here; plain httpx elsewhere
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx

TESTS = Path(__file__).resolve().parent
PROMPT = ChatPromptTemplate.from_template("Say {word}")


# ----------------------------------------------------------------------------- fakes


def api_error(status: int, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    """A real openai error for `status`, as the SDK would raise it."""
    request = httpx.Request("POST", "http://127.0.0.1:1/v1/chat/completions")
    response = httpx.Response(status, headers=headers or {}, request=request)
    cls = {400: openai.BadRequestError, 429: openai.RateLimitError}.get(status, openai.InternalServerError)
    message = f"fake error {status}"
    return cls(message, response=response, body={"message": message, "type": "fake", "code": None})


def word_of(prompt_value) -> str:
    return prompt_value.to_messages()[-1].content.removeprefix("Say ")


def answer(word: str) -> str:
    return word.upper() + "!"


class FakeModel:
    """Stand-in for a chat model; counts calls and how many are in flight."""

    def __init__(self, delay: float = 0.01) -> None:
        self.delay = delay
        self.calls: Counter[str] = Counter()
        self.finished: list[str] = []
        self.in_flight = 0
        self.peak = 0
        self.max_tasks = 0

    def delay_for(self, word: str) -> float:
        if word.startswith("w") and word[1:].isdigit():  # scramble completion order
            return self.delay * (1 + (int(word[1:]) * 7) % 5)
        return self.delay

    async def ainvoke(self, prompt_value) -> str:
        word = word_of(prompt_value)
        self.calls[word] += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.max_tasks = max(self.max_tasks, len(asyncio.all_tasks()))
        try:
            await asyncio.sleep(30 if word == "hang" else self.delay_for(word))
            if word == "bad400":
                raise api_error(400)
            if word == "valueerror":
                raise ValueError("cannot parse that")
            if word == "cancels":  # a chain that raises CancelledError itself (nothing cancelled it)
                raise asyncio.CancelledError()
            if ":" in word:  # e.g. "flaky429:2" fails twice with a 429, then answers
                kind, times = word.split(":")
                if self.calls[word] <= int(times):
                    if kind == "flaky429":
                        raise api_error(429)
                    if kind == "flaky500":
                        raise api_error(500)
                    if kind == "slow429":
                        raise api_error(429, {"retry-after-ms": "300", "retry-after": "1"})
                    if kind == "timeout":
                        raise openai.APITimeoutError(request=httpx.Request("POST", "http://x"))
            self.finished.append(word)
            return answer(word)
        finally:
            self.in_flight -= 1

    async def astream(self, prompt_value):
        word = word_of(prompt_value)
        self.calls[word] += 1
        for i, piece in enumerate(f"{answer(word)} is the answer".split(" ")):
            await asyncio.sleep(self.delay)
            if word == "breaks" and i == 2:
                raise api_error(500)
            if word == "cancels" and i == 1:
                raise asyncio.CancelledError()
            yield piece if i == 0 else " " + piece


def fake_chain(model: FakeModel):
    return PROMPT | RunnableLambda(model.ainvoke) | StrOutputParser()


def streaming_chain(model: FakeModel):
    return PROMPT | RunnableLambda(model.astream) | StrOutputParser()


def words(*names: str) -> list[dict[str, str]]:
    return [{"word": name} for name in names]


def numbered(n: int) -> list[dict[str, str]]:
    return [{"word": f"w{i}"} for i in range(n)]


# ----------------------------------------------------------------------------- run_tracked


def test_results_in_input_order_although_completion_order_differs():
    model = FakeModel()
    report = asyncio.run(run_tracked(fake_chain(model), numbered(40), max_concurrency=10, progress=False))
    assert report.results == [f"W{i}!" for i in range(40)]
    assert model.finished != [f"w{i}" for i in range(40)]  # they did finish out of order
    assert (report.ok, report.failed, report.failures) == (40, 0, [])
    assert all(start < end for start, end in report.intervals)


def test_failures_are_collected_with_index_type_and_attempts():
    model = FakeModel()
    inputs = words("w0", "bad400", "w2", "valueerror") + [{"wrong_name": "x"}] + words("w5")
    retry = RetryPolicy(base_delay=0.001)
    report = asyncio.run(run_tracked(fake_chain(model), inputs, max_concurrency=3, progress=False, retry=retry))
    assert report.results == ["W0!", None, "W2!", None, None, "W5!"]
    assert [(f.index, f.error_type, f.attempts) for f in report.failures] == [
        (1, "BadRequestError", 1),  # a 400 is never retried
        (3, "ValueError", 1),
        (4, "KeyError", 1),  # a missing prompt variable is never retried
    ]
    assert "HTTP 400" in report.failures[0].message
    assert "missing variables {'word'}" in report.failures[2].message
    assert isinstance(report.failures[0].exception, openai.BadRequestError)
    text = report.summary()
    assert "3 failed" in text and "#4 KeyError" in text and "0x" not in text


def test_peak_in_flight_reaches_but_never_exceeds_the_limit():
    model = FakeModel()
    report = asyncio.run(run_tracked(fake_chain(model), numbered(60), max_concurrency=7, progress=False))
    assert model.peak == 7 and report.peak_in_flight == 7
    assert 0 < report.mean_in_flight <= 7
    # Little's law holds exactly for the report's own numbers
    assert math.isclose(report.mean_in_flight, report.throughput * report.latency.mean, rel_tol=1e-9)
    times, counts = in_flight_timeline(report.intervals)
    assert max(counts) == 7 and counts[-1] == 0


def test_inputs_are_pulled_lazily_not_all_created_up_front():
    model = FakeModel(delay=0.001)
    pulled = []

    def lazy_inputs():
        for i in range(500):
            pulled.append(i)
            yield {"word": f"w{i}"}

    report = asyncio.run(run_tracked(fake_chain(model), lazy_inputs(), max_concurrency=5, progress=False))
    assert report.ok == 500 and report.results[499] == "W499!"
    assert model.max_tasks < 30  # a few tasks per worker, not one per input


def test_lazy_input_that_is_not_a_mapping_becomes_a_failure():
    model = FakeModel()
    gen = (x for x in [{"word": "w0"}, None, {"word": "w2"}])
    report = asyncio.run(run_tracked(fake_chain(model), gen, max_concurrency=2, progress=False))
    assert report.results == ["W0!", None, "W2!"]
    (failure,) = report.failures
    assert (failure.index, failure.error_type, failure.attempts) == (1, "ValueError", 0)
    assert "input 1 is None" in failure.message and "'word'" in failure.message


def test_progress_bar_runs(capsys):
    report = asyncio.run(run_tracked(fake_chain(FakeModel()), numbered(5), max_concurrency=2, progress=True))
    assert report.ok == 5
    assert "5/5" in capsys.readouterr().err


def test_a_broken_input_iterable_keeps_the_results_and_a_cancel_stops_every_worker():
    def broken_inputs():
        yield from numbered(5)
        raise RuntimeError("the input file is corrupt")

    async def main():
        chain = fake_chain(FakeModel())
        with pytest.warns(UserWarning, match="run_tracked stopped early: the inputs raised RuntimeError after 5"):
            report = await run_tracked(chain, broken_inputs(), max_concurrency=3, progress=False)
        assert report.results == ["W0!", "W1!", "W2!", "W3!", "W4!"]  # what finished is kept, not thrown away
        assert "the input file is corrupt" in report.inputs_error and "stopped early" in report.summary()
        with pytest.raises(RuntimeError, match="corrupt"):
            await collect(stream_merged(streaming_chain(FakeModel()), broken_inputs(), max_concurrency=3))
        left_after_errors = asyncio.all_tasks() - {asyncio.current_task()}
        run = asyncio.create_task(run_tracked(chain, words("hang", "hang"), max_concurrency=2, progress=False))
        await asyncio.sleep(0.05)
        run.cancel()  # what a notebook's "interrupt kernel" does
        with pytest.raises(asyncio.CancelledError):
            await run
        return left_after_errors, asyncio.all_tasks() - {asyncio.current_task()}

    left_after_errors, left_after_cancel = asyncio.run(main())
    assert left_after_errors == set() and left_after_cancel == set()


def test_a_chain_that_raises_cancelled_error_itself_fails_only_its_own_input(tmp_path):
    inputs = words("w0", "cancels", "w1", "w2")
    report = asyncio.run(run_tracked(fake_chain(FakeModel()), inputs, max_concurrency=2, progress=False))
    assert report.results == ["W0!", None, "W1!", "W2!"]
    assert [(f.index, f.error_type) for f in report.failures] == [(1, "ChainCancelled")]
    summary = asyncio.run(run_to_jsonl(fake_chain(FakeModel()), inputs, tmp_path / "c.jsonl", max_concurrency=2,
                                       progress=False))
    assert (summary.ok, summary.failed) == (3, 1)
    assert read_jsonl_results(tmp_path / "c.jsonl")[1]["error"]["type"] == "ChainCancelled"
    events = asyncio.run(collect(stream_merged(streaming_chain(FakeModel()), inputs, max_concurrency=2)))
    assert [e.index for e in events if e.kind == "error"] == [1] and "ChainCancelled" in next(
        e.error for e in events if e.kind == "error")
    assert sorted(e.index for e in events if e.kind == "done") == [0, 2, 3]


# ----------------------------------------------------------------------------- robustness


def test_retry_policy_retries_what_can_succeed():
    model = FakeModel(delay=0.001)
    retry = RetryPolicy(max_attempts=3, base_delay=0.001)
    inputs = words("flaky429:2", "flaky500:5", "timeout:1", "bad400")
    report = asyncio.run(run_tracked(fake_chain(model), inputs, max_concurrency=4, progress=False, retry=retry))
    assert report.results[0] == "FLAKY429:2!" and model.calls["flaky429:2"] == 3
    assert report.results[2] == "TIMEOUT:1!" and model.calls["timeout:1"] == 2
    assert [(f.index, f.error_type, f.attempts) for f in report.failures] == [
        (1, "InternalServerError", 3),  # gave up after max_attempts
        (3, "BadRequestError", 1),
    ]
    assert model.calls["flaky500:5"] == 3 and model.calls["bad400"] == 1


def test_without_retry_policy_nothing_is_retried():
    model = FakeModel(delay=0.001)
    report = asyncio.run(run_tracked(fake_chain(model), words("flaky429:1"), max_concurrency=1, progress=False))
    (failure,) = report.failures
    assert (failure.error_type, failure.attempts) == ("RateLimitError", 1)
    assert "HTTP 429" in failure.message and "RetryPolicy" in failure.message


def test_retry_after_header_is_honoured():
    model = FakeModel(delay=0.001)
    retry = RetryPolicy(base_delay=0.001, jitter=False)
    start = time.perf_counter()
    report = asyncio.run(run_tracked(fake_chain(model), words("slow429:1"), max_concurrency=1, progress=False, retry=retry))
    assert report.ok == 1
    assert time.perf_counter() - start >= 0.3  # waited retry-after-ms, not base_delay


def test_retry_delays():
    assert retry_after_seconds(api_error(429, {"retry-after-ms": "120", "retry-after": "1"})) == pytest.approx(0.12)
    assert retry_after_seconds(api_error(429, {"retry-after": "2"})) == 2.0
    assert retry_after_seconds(api_error(429)) is None
    assert retry_after_seconds(KeyError("x")) is None
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0, jitter=False)
    assert [policy.delay(k) for k in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.delay(1, api_error(429, {"retry-after": "2"})) == 2.0
    assert policy.delay(1, api_error(429, {"retry-after": "60"})) == 60.0  # never sooner than asked
    assert policy.should_retry(1, api_error(429, {"retry-after": "2"}))
    assert not policy.should_retry(1, api_error(429, {"retry-after": "60"}))  # longer than max_delay: give up
    assert not policy.should_retry(1, api_error(400)) and not policy.should_retry(4, api_error(500))
    jittered = RetryPolicy(base_delay=1.0, max_delay=8.0)
    samples = [jittered.delay(3) for _ in range(200)]
    assert all(0 <= s <= 4.0 for s in samples) and max(samples) - min(samples) > 1  # full jitter


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (api_error(429), True),
        (api_error(500), True),
        (api_error(503), True),
        (openai.APITimeoutError(request=httpx.Request("POST", "http://x")), True),
        (openai.APIConnectionError(request=httpx.Request("POST", "http://x")), True),
        (asyncio.TimeoutError(), True),
        (ConnectionResetError(), True),
        (httpx.ReadError("connection dropped"), True),
        (ModelRateLimitError("langchain's provider-neutral 429"), True),
        (api_error(400), False),
        (ModelInvalidRequestError("langchain's provider-neutral 400"), False),
        (KeyError("Input to ChatPromptTemplate is missing variables {'text'}"), False),
        (ValueError("bad"), False),
    ],
)
def test_is_retryable(error, retryable):
    assert is_retryable(error) is retryable


def test_timeout_cuts_a_hang():
    model = FakeModel(delay=0.001)
    start = time.perf_counter()
    report = asyncio.run(
        run_tracked(fake_chain(model), words("w1", "hang"), max_concurrency=2, progress=False, timeout=0.2)
    )
    assert time.perf_counter() - start < 5
    assert report.results[0] == "W1!"
    (failure,) = report.failures
    assert (failure.index, failure.error_type) == (1, "TimeoutError")
    assert "0.2 s timeout" in failure.message


def test_token_limiter_rejects_a_request_that_can_never_fit():
    async def main():
        limiter = TokenRateLimiter(tpm=1200, max_tokens=5, window_seconds=1.0)  # 1,200 tokens in a whole minute
        with pytest.raises(ValueError, match="could never be sent"):
            await limiter.acquire({"word": "x" * 8000})  # about 2,000 tokens
        return await run_tracked(
            fake_chain(FakeModel()), words("w1", "y" * 8000), max_concurrency=2, progress=False, limiter=limiter
        )

    report = asyncio.run(main())
    assert report.results[0] == "W1!"
    (failure,) = report.failures
    assert (failure.index, failure.error_type) == (1, "ValueError") and "tpm=1200" in failure.message


def test_token_limiter_spaces_out_requests():
    async def main():
        limiter = TokenRateLimiter(rpm=1200, window_seconds=1.0)  # 20 per second, bursts of 20
        return await run_tracked(
            fake_chain(FakeModel(delay=0.001)), numbered(40), max_concurrency=40, progress=False, limiter=limiter
        )

    report = asyncio.run(main())
    assert report.ok == 40
    assert 0.85 < report.wall_time < 3  # the second 20 wait about one second


def test_token_estimate_uses_the_prompt_when_given():
    plain = TokenRateLimiter(tpm=100_000, max_tokens=10)
    formatted = TokenRateLimiter(tpm=100_000, max_tokens=10, prompt=PROMPT)
    assert plain.estimate_tokens("abcdefgh") == 2 + 3 + 3 + 10
    assert formatted.estimate_tokens({"word": "abcdefgh"}) == 3 + 3 + 3 + 10  # "Say abcdefgh": 12 bytes
    custom = TokenRateLimiter(tpm=100_000, estimate_tokens=lambda item: 42)
    assert custom.estimate_tokens({"word": "anything"}) == 42


# ----------------------------------------------------------------------------- stream_merged


async def collect(events):
    return [event async for event in events]


def test_stream_merged_merges_tokens_and_reports_done():
    model = FakeModel(delay=0.01)
    events = asyncio.run(collect(stream_merged(streaming_chain(model), numbered(6), max_concurrency=3)))
    done = {e.index: e for e in events if e.kind == "done"}
    assert sorted(done) == list(range(6))
    for index, event in done.items():
        tokens = "".join(e.text for e in events if e.index == index and e.kind == "token")
        assert event.text == tokens == f"W{index}! is the answer"
        assert 0 < event.ttft < event.latency
    kinds = [(e.index, e.kind) for e in events]
    assert kinds.index((1, "token")) < kinds.index((0, "done"))  # streams really interleave


def test_stream_merged_reports_an_error_and_goes_on():
    model = FakeModel(delay=0.005)
    events = asyncio.run(collect(stream_merged(streaming_chain(model), words("w0", "breaks", "w2"), max_concurrency=2)))
    finals = {e.index: e for e in events if e.kind in ("done", "error")}
    assert [finals[i].kind for i in range(3)] == ["done", "error", "done"]
    assert finals[1].text == "BREAKS! is" and "HTTP 500" in finals[1].error


def test_stream_merged_early_exit_leaves_no_pending_tasks():
    async def main():
        model = FakeModel(delay=0.01)
        async with contextlib.aclosing(stream_merged(streaming_chain(model), numbered(50), max_concurrency=10)) as events:
            async for event in events:
                if event.kind == "done":
                    break
        left_after_aclosing = asyncio.all_tasks() - {asyncio.current_task()}

        events = stream_merged(streaming_chain(model), numbered(50), max_concurrency=10)
        first = await anext(events)
        await events.aclose()
        await asyncio.sleep(0.01)  # let the loop finish closing garbage-collected model streams (its own tasks)
        left_after_aclose = asyncio.all_tasks() - {asyncio.current_task()}

        async for event in stream_merged(streaming_chain(model), numbered(50), max_concurrency=10):
            break  # no aclose: Python closes the generator a moment later
        await asyncio.sleep(0.05)
        left_after_break = asyncio.all_tasks() - {asyncio.current_task()}
        return first, [left_after_aclosing, left_after_aclose, left_after_break], sum(model.calls.values())

    first, left, started = asyncio.run(main())
    assert first.kind == "token"
    assert left == [set(), set(), set()]
    assert started <= 40  # the streams were cancelled, not run to the end (3 x 50 inputs)


class DeafChain:
    """A chain whose stream swallows cancellation and goes on, as asyncio.wait_for (which
    langchain-openai wraps around every chunk) can on Python 3.11 when a chunk and the cancel
    arrive together."""

    async def astream(self, item, config=None):
        for i in range(10_000):
            try:
                await asyncio.sleep(0.001)
            except asyncio.CancelledError:
                pass
            yield f"{item['word']}-{i} "


def test_stream_merged_closes_even_when_a_stream_swallows_its_cancel():
    async def main():
        async with asyncio.timeout(10):  # without the fix: workers stuck on the full queue, forever
            async with contextlib.aclosing(stream_merged(DeafChain(), numbered(8), max_concurrency=4)) as events:
                async for event in events:
                    break
        return asyncio.all_tasks() - {asyncio.current_task()}

    assert asyncio.run(main()) == set()


# ----------------------------------------------------------------------------- run_to_jsonl


def jsonl_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_run_to_jsonl_writes_one_line_per_input(tmp_path):
    path = tmp_path / "out.jsonl"
    model = FakeModel()
    summary = asyncio.run(
        run_to_jsonl(fake_chain(model), numbered(30) + words("bad400"), path, max_concurrency=8, progress=False)
    )
    assert (summary.written, summary.ok, summary.failed, summary.skipped) == (31, 30, 1, 0)
    assert summary.peak_in_flight == 8 and summary.latency.count == 31
    lines = jsonl_lines(path)
    assert sorted(line["index"] for line in lines) == list(range(31))
    records = read_jsonl_results(path)
    assert [r["output"] for r in records[:30]] == [f"W{i}!" for i in range(30)]
    assert records[30]["error"]["type"] == "BadRequestError" and records[30]["attempts"] == 1
    assert "0x" not in summary.summary()


def test_run_to_jsonl_pulls_from_an_async_generator_lazily(tmp_path):
    pulled = []
    finished = []

    async def slow_source():
        for i in range(200):
            pulled.append(i)
            ahead = len(pulled) - len(finished)
            # a window of 5, the one being pulled, and input 7, which never reaches the model
            assert ahead <= 7, f"{ahead} inputs pulled but not finished"
            yield {"word": f"w{i}"} if i != 7 else None

    class Counting(FakeModel):
        async def ainvoke(self, prompt_value):
            try:
                return await super().ainvoke(prompt_value)
            finally:
                finished.append(1)

    async def main():
        model = Counting(delay=0.001)
        return await run_to_jsonl(fake_chain(model), slow_source(), tmp_path / "a.jsonl", max_concurrency=5, progress=False)

    summary = asyncio.run(main())
    assert (summary.ok, summary.failed) == (199, 1)
    record = read_jsonl_results(tmp_path / "a.jsonl")[7]
    assert record["error"]["type"] == "ValueError" and "input 7 is None" in record["error"]["message"]


def test_resume_skips_done_inputs_and_optionally_reruns_errors(tmp_path):
    path = tmp_path / "out.jsonl"
    model = FakeModel(delay=0.001)
    path.write_text(
        '{"index": 0, "output": "W0!"}\n'
        '{"index": 2, "error": {"type": "RateLimitError", "message": "x"}, "attempts": 4}\n',
        encoding="utf-8",
    )
    first = asyncio.run(run_to_jsonl(fake_chain(model), numbered(4), path, max_concurrency=2, progress=False))
    assert (first.skipped, first.skipped_errors, first.written) == (2, 1, 2)
    assert model.calls == Counter({"w1": 1, "w3": 1})
    again = asyncio.run(
        run_to_jsonl(fake_chain(model), numbered(4), path, max_concurrency=2, progress=False, retry_errors=True)
    )
    assert (again.skipped, again.written) == (3, 1) and model.calls["w2"] == 1
    assert [r.get("output") for r in read_jsonl_results(path)] == ["W0!", "W1!", "W2!", "W3!"]
    with pytest.raises(ValueError, match="already holds results, and resume=False would erase them"):
        asyncio.run(run_to_jsonl(fake_chain(model), numbered(4), path, max_concurrency=2, progress=False,
                                 resume=False))
    assert len(jsonl_lines(path)) == 5  # refused before it touched the file
    fresh = asyncio.run(
        run_to_jsonl(fake_chain(model), numbered(4), path, max_concurrency=2, progress=False, resume=False,
                     overwrite=True)
    )
    assert (fresh.skipped, fresh.written) == (0, 4) and len(jsonl_lines(path)) == 4


def test_truncated_last_line_warns_and_is_redone(tmp_path):
    path = tmp_path / "out.jsonl"
    good = "".join(json.dumps({"index": i, "output": f"W{i}!"}) + "\n" for i in range(5))
    path.write_text(good + '{"index": 5, "outp', encoding="utf-8")
    model = FakeModel(delay=0.001)
    with pytest.warns(UserWarning, match=r"out.jsonl line 6 is not a complete record"):
        summary = asyncio.run(run_to_jsonl(fake_chain(model), numbered(8), path, max_concurrency=3, progress=False))
    assert (summary.skipped, summary.written) == (5, 3)
    lines = jsonl_lines(path)  # every line is valid JSON again
    assert sorted(line["index"] for line in lines) == list(range(8))
    assert model.calls == Counter({"w5": 1, "w6": 1, "w7": 1})


async def slow_jsonl_run(path: str, n: int, resume: bool = True):
    """The run the kill test interrupts (in a subprocess) and then resumes (in-process)."""

    async def slow_model(prompt_value):
        await asyncio.sleep(0.03)
        return answer(word_of(prompt_value))

    chain = PROMPT | RunnableLambda(slow_model) | StrOutputParser()
    inputs = ({"word": f"w{i}"} for i in range(n))  # a generator: nothing is materialised
    return await run_to_jsonl(chain, inputs, path, max_concurrency=10, progress=False, resume=resume)


def test_resume_after_sigkill_loses_and_repeats_nothing(tmp_path):
    n = 300
    path = tmp_path / "killed.jsonl"
    code = (
        "import asyncio, sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]; import test_runners as t; "
        "asyncio.run(t.slow_jsonl_run(sys.argv[3], int(sys.argv[4])))"
    )
    args = [sys.executable, "-c", code, str(TESTS), str(TESTS.parent), str(path), str(n)]
    with subprocess.Popen(args, stderr=subprocess.PIPE) as process:
        deadline = time.monotonic() + 60
        while not (path.exists() and path.read_bytes().count(b"\n") >= 60):
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the subprocess wrote too slowly"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)  # no cleanup, no flush: like a crash or `kill -9`
    with warnings.catch_warnings():  # a line cut mid-write is allowed: it gets redone
        warnings.simplefilter("ignore")
        before = len(read_jsonl_results(path))
        assert 60 <= before < n, "the kill should land mid-run"
        summary = asyncio.run(slow_jsonl_run(str(path), n))
    assert summary.skipped == before and summary.written == n - before
    indices = [line["index"] for line in jsonl_lines(path)]
    assert len(indices) == n and sorted(indices) == list(range(n))  # no gap, no duplicate


def test_read_jsonl_results_last_record_wins(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(
        '{"index": 1, "error": {"type": "X", "message": "m"}, "attempts": 1}\n'
        '{"index": 0, "output": "a"}\n'
        "not json\n"
        '{"index": 1, "output": "b"}\n',
        encoding="utf-8",
    )
    with pytest.warns(UserWarning, match="line 3"):
        records = read_jsonl_results(path)
    assert records == [{"index": 0, "output": "a"}, {"index": 1, "output": "b"}]


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3", None])
def test_bad_max_concurrency(bad, tmp_path):
    chain = fake_chain(FakeModel())
    for call in (
        lambda: asyncio.run(run_tracked(chain, numbered(2), max_concurrency=bad)),
        lambda: asyncio.run(run_to_jsonl(chain, numbered(2), tmp_path / "x.jsonl", max_concurrency=bad)),
        lambda: stream_merged(chain, numbered(2), max_concurrency=bad),
    ):
        with pytest.raises(ValueError, match="max_concurrency must be a positive int"):
            call()


@pytest.mark.parametrize("bad", [0, -1, "1", True, float("nan"), float("inf")])
def test_bad_timeout(bad, tmp_path):
    chain = fake_chain(FakeModel())
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        asyncio.run(run_tracked(chain, numbered(2), max_concurrency=2, timeout=bad))
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        asyncio.run(run_to_jsonl(chain, numbered(2), tmp_path / "x.jsonl", max_concurrency=2, timeout=bad))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs rpm, tpm or both"),
        ({"rpm": 0}, "rpm must be a positive number"),
        ({"rpm": -5}, "rpm must be a positive number"),
        ({"tpm": 0}, "tpm must be a positive number"),
        ({"tpm": 1000, "window_seconds": 0}, "window_seconds must be a positive number"),
        ({"tpm": 1000, "max_tokens": -1}, "max_tokens must be an int"),
    ],
)
def test_bad_limiter_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TokenRateLimiter(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be an int >= 1"),
        ({"base_delay": -1}, "base_delay must be"),
        ({"base_delay": 5, "max_delay": 1}, "max_delay"),
    ],
)
def test_bad_retry_policy(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)


def test_bad_options():
    chain = fake_chain(FakeModel())
    with pytest.raises(ValueError, match="retry must be a RetryPolicy"):
        asyncio.run(run_tracked(chain, numbered(2), max_concurrency=2, retry=3))
    with pytest.raises(ValueError, match="limiter must be a TokenRateLimiter"):
        asyncio.run(run_tracked(chain, numbered(2), max_concurrency=2, limiter="fast"))
    with pytest.raises(ValueError, match="config must be a dict"):
        asyncio.run(run_tracked(chain, numbered(2), max_concurrency=2, config=[1]))


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([{"word": "a"}, {"word": "b"}, None], "input 2 is None"),
        ([{"word": "a"}, "b"], r"input 1 is a str, but the chain's prompt expects a mapping like \{'word': ...\}"),
        (None, "inputs must be a list"),
        ({"word": "a"}, "got a single dict"),
        ("abc", "got a single str"),
        (42, "inputs must be a list or iterable"),
    ],
)
def test_bad_inputs(inputs, message, tmp_path):
    chain = fake_chain(FakeModel())
    with pytest.raises(ValueError, match=message):
        asyncio.run(run_tracked(chain, inputs, max_concurrency=2))
    with pytest.raises(ValueError, match=message):
        asyncio.run(run_to_jsonl(chain, inputs, tmp_path / "x.jsonl", max_concurrency=2))
    with pytest.raises(ValueError, match=message):
        stream_merged(chain, inputs, max_concurrency=2)


def test_bad_output_paths(tmp_path):
    chain = fake_chain(FakeModel())
    with pytest.raises(ValueError, match="does not exist"):
        asyncio.run(run_to_jsonl(chain, numbered(2), tmp_path / "missing" / "x.jsonl", max_concurrency=2))
    with pytest.raises(ValueError, match="is a directory"):
        asyncio.run(run_to_jsonl(chain, numbered(2), tmp_path, max_concurrency=2))
    with pytest.raises(ValueError, match="path must be a file path"):
        asyncio.run(run_to_jsonl(chain, numbered(2), 42, max_concurrency=2))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_output_path(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ValueError, match="permission denied"):
            asyncio.run(run_to_jsonl(fake_chain(FakeModel()), numbered(2), folder / "x.jsonl", max_concurrency=2))
    finally:
        folder.chmod(0o700)


def test_chain_without_a_prompt_accepts_any_input():
    async def shout(text):
        return str(text).upper()

    report = asyncio.run(run_tracked(RunnableLambda(shout), ["a", None, 3], max_concurrency=2, progress=False))
    assert report.results == ["A", "NONE", "3"]


def test_empty_input_returns_at_once(tmp_path):
    chain = fake_chain(FakeModel())
    start = time.perf_counter()
    report = asyncio.run(run_tracked(chain, [], max_concurrency=5))
    summary = asyncio.run(run_to_jsonl(chain, [], tmp_path / "e.jsonl", max_concurrency=5))
    events = asyncio.run(collect(stream_merged(chain, [], max_concurrency=5)))
    assert time.perf_counter() - start < 1
    assert (report.results, report.failures, report.ok) == ([], [], 0)
    assert (summary.written, summary.skipped) == (0, 0) and events == []
    assert "0 ok" in report.summary()


# ----------------------------------------------------------------------------- metrics


def test_percentile_and_latency_stats():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 99) == 5
    assert percentile(range(101), 95) == 95
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1], 101)
    stats = LatencyStats.from_values([0.1, 0.2, 0.3, 0.4])
    assert (stats.count, stats.max) == (4, 0.4) and stats.mean == pytest.approx(0.25)
    assert math.isnan(LatencyStats.from_values([]).p50)
    assert stats.line() == "p50 250 ms · p95 385 ms · p99 397 ms · mean 250 ms"


def test_streaming_stats_match_exact_percentiles_within_a_few_percent():
    rng = random.Random(0)
    values = [rng.lognormvariate(-1, 0.8) for _ in range(20_000)]
    stream = StreamingStats()
    for value in values:
        stream.add(value)
    assert stream.count == len(values) and stream.mean == pytest.approx(sum(values) / len(values))
    assert (stream.min, stream.max) == (min(values), max(values))
    for q in (50, 95, 99):
        assert stream.quantile(q) == pytest.approx(percentile(values, q), rel=0.03)
    assert len(stream.buckets) < 400  # constant memory, however many values
    assert math.isnan(StreamingStats().p50)


def test_in_flight_timeline():
    times, counts = in_flight_timeline([(0, 2), (1, 3), (2, 4), None])
    assert times == [0, 1, 2, 3, 4]
    assert counts == [1, 2, 2, 1, 0]  # at t=2 one ends as another starts


def test_littles_law():
    assert littles_law_throughput(10, 0.5) == 20
    assert littles_law_throughput(100, 0.5, rate_limit_per_s=38.3) == 38.3
    with pytest.raises(ValueError, match="concurrency"):
        littles_law_throughput(0, 1)
    with pytest.raises(ValueError, match="rate_limit_per_s"):
        littles_law_throughput(1, 1, rate_limit_per_s=0)
