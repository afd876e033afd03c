"""Token usage and cost in every runner (helpers.usage, helpers.prices), and the client's totals against
the mock's own billing ledger.

Most tests use a fake chat model (a real `BaseChatModel`, so LangChain sends it through the same
callbacks as ChatOpenAI) that reports usage like OpenAI: prompt tokens = words in the prompt + 10,
of which 8 "cached" when the word starts with "cache", completion tokens = 3. The ledger test talks
to the mock itself and compares with what the *server* says it billed, not with the client's sums.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import openai
import pytest
from langchain_core.callbacks import AsyncCallbackManager
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

from helpers import prices
from helpers.prices import PRICES, describe_table, price_for
from helpers.reliability import RetryPolicy
from helpers.results_file import ResultsFile, read_jsonl_results
from helpers.runners import run_to_jsonl, run_tracked, stream_merged
from helpers.timing import RequestTimer
from helpers.usage import (InputUsage, Usage, UsageMeter, UsageTotals, cost, file_usage, format_cost, record_usage,
                           usage_from_message)

try:
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx

PROMPT = ChatPromptTemplate.from_template("Say {word}")


def rate_limited() -> openai.RateLimitError:
    response = httpx.Response(429, request=httpx.Request("POST", "http://127.0.0.1:1/v1/chat/completions"))
    return openai.RateLimitError("fake 429", response=response, body={"message": "fake 429"})


def expected_usage(word: str) -> Usage:
    prompt = len(f"Say {word}".split()) + 10
    return Usage(prompt, 8 if word.startswith("cache") else 0, 3, calls=1, model="gpt-4o-mini")


class UsageModel(BaseChatModel):
    """Answers the word upper-cased, reporting usage the way langchain-openai does. "flaky" fails once (429)."""

    calls: Counter = Counter()
    tier: str | None = None

    @property
    def _llm_type(self) -> str:
        return "usage-fake"

    def _generate(self, messages: list[Any], stop: Any = None, run_manager: Any = None, **kw: Any) -> ChatResult:
        word = messages[-1].content.removeprefix("Say ")
        self.calls[word] += 1
        if word.startswith("flaky") and self.calls[word] == 1:
            raise rate_limited()
        if word == "bad":
            raise ValueError("the model refuses this one")
        usage = expected_usage(word)
        details = {f"{self.tier}_cache_read" if self.tier else "cache_read": usage.cached_tokens}
        metadata = {"input_tokens": usage.prompt_tokens, "output_tokens": 3, "total_tokens": usage.prompt_tokens + 3,
                    "input_token_details": details}
        response = {"model_name": "gpt-4o-mini", **({"service_tier": self.tier} if self.tier else {})}
        message = AIMessage(content=word.upper(), usage_metadata=metadata, response_metadata=response)
        return ChatResult(generations=[ChatGeneration(message=message)])


def chain(model: BaseChatModel | None = None):
    return PROMPT | (model or UsageModel(calls=Counter())) | StrOutputParser()


def words(*names: str) -> list[dict[str, str]]:
    return [{"word": name} for name in names]


def run(coro):
    return asyncio.run(coro)


# ---------------------------------------------------------------- reading usage off an answer


def test_usage_is_read_from_usage_metadata_with_cached_tokens_in_every_tier():
    message = AIMessage("x", usage_metadata={"input_tokens": 1500, "output_tokens": 7, "total_tokens": 1507,
                                             "input_token_details": {"cache_read": 1024}},
                        response_metadata={"model_name": "gpt-4o-mini"})
    assert usage_from_message(message) == Usage(1500, 1024, 7, calls=1, model="gpt-4o-mini", tier="default")
    flex = AIMessage("x", usage_metadata={"input_tokens": 1500, "output_tokens": 7, "total_tokens": 1507,
                                          "input_token_details": {"flex_cache_read": 1024, "flex": 476}})
    assert (usage_from_message(flex).cached_tokens, usage_from_message(flex).tier) == (1024, "flex")
    assert usage_from_message(AIMessage("no usage")) == Usage(unreported=1)
    priority = AIMessage("x", usage_metadata={"input_tokens": 10, "output_tokens": 1, "total_tokens": 11},
                         response_metadata={"model_name": "gpt-4o-mini", "service_tier": "priority"})
    assert usage_from_message(priority).tier == "priority" and cost(usage_from_message(priority)) is None


def test_the_meter_adds_itself_to_any_config_without_changing_the_callers():
    theirs = RequestTimer()
    config = {"callbacks": [theirs], "tags": ["t"]}
    meter = UsageMeter()
    assert meter.config(config) == {"callbacks": [theirs, meter], "tags": ["t"]}
    assert config["callbacks"] == [theirs]  # the caller's list is not changed
    assert meter.config(None) == {"callbacks": [meter]}
    manager = AsyncCallbackManager(handlers=[theirs])
    assert meter.config({"callbacks": manager})["callbacks"].handlers == [theirs, meter]
    assert manager.handlers == [theirs]


# ---------------------------------------------------------------- prices and cost


def test_cost_is_tokens_times_the_tables_prices_with_cached_tokens_at_the_cached_price():
    row = PRICES["gpt-4o-mini"]
    usage = Usage(2_000_000, 1_000_000, 500_000, calls=3, model="gpt-4o-mini")
    by_hand = 1_000_000 * row.input / 1e6 + 1_000_000 * row.cached_input / 1e6 + 500_000 * row.output / 1e6
    assert cost(usage) == pytest.approx(by_hand)
    assert by_hand == pytest.approx(0.15 + 0.075 + 0.30)  # the table's figures, read 2026-12-02
    for tier in ("batch", "flex"):
        assert cost(Usage(2_000_000, 1_000_000, 500_000, calls=3, model="gpt-4o-mini", tier=tier)) == pytest.approx(
            by_hand * (1 - prices.BATCH_DISCOUNT))


def test_an_unknown_model_is_price_unknown_never_a_guess():
    usage = Usage(100, 0, 10, calls=1, model="my-local-llama")
    assert cost(usage) is None
    assert format_cost(cost(usage), usage.model) == (
        "price unknown (no price for model 'my-local-llama' in helpers/prices.py)")
    assert cost(Usage(100, 0, 10, calls=1, model=None)) is None  # the server said no model name
    assert cost(Usage(unreported=2)) == 0.0  # only failed calls: no tokens the client knows of
    assert cost(Usage(100, 0, 10, calls=1, model="gpt-4o-mini") + Usage(5, 0, 1, calls=1, model="gpt-4o")) is None


def test_the_price_table_has_its_date_and_a_source_on_every_row_and_knows_snapshots():
    assert price_for("gpt-4o-mini-2024-07-18") is PRICES["gpt-4o-mini"]
    assert price_for("gpt-4o-audio-preview") is None  # not a snapshot of gpt-4o: no price borrowed from it
    assert price_for(None) is None and price_for("") is None
    assert all(row.source and row.read_on == prices.TABLE_DATE for row in PRICES.values())
    assert prices.TABLE_DATE in describe_table() and "gpt-4.1-nano" in describe_table()
    assert prices.BATCH_DISCOUNT_SOURCE


def test_totals_keep_models_apart_and_price_each():
    totals = UsageTotals()
    totals.add(InputUsage(Usage(1_000_000, 0, 0, calls=1, model="gpt-4o-mini")))
    totals.add(InputUsage(Usage(1_000_000, 0, 0, calls=1, model="gpt-4o")))
    totals.add(InputUsage(Usage(), Usage(unreported=1)))
    assert totals.cost() == pytest.approx(0.15 + 2.50)
    assert totals.total() == Usage(2_000_000, 0, 0, calls=2, unreported=1)
    assert "price unknown" not in " ".join(totals.lines())


# ---------------------------------------------------------------- in every runner


def test_run_tracked_gives_each_inputs_usage_and_the_runs_totals_and_cost():
    names = ["alpha", "cache me", "gamma"]
    report = run(run_tracked(chain(), words(*names), max_concurrency=3, progress=False))
    assert [u.answer for u in report.usage] == [expected_usage(n) for n in names]
    totals = report.usage_totals
    assert totals.total() == sum((expected_usage(n) for n in names), Usage())
    assert totals.cost() == pytest.approx(sum(cost(expected_usage(n)) for n in names))
    assert "usage" in report.summary() and "$0.0000" in report.summary()


def test_failed_attempts_are_counted_apart_from_the_answer():
    report = run(run_tracked(chain(), words("flaky", "bad", "ok"), max_concurrency=1, progress=False,
                             retry=RetryPolicy(max_attempts=2, base_delay=0)))
    flaky, bad, ok = report.usage
    assert (flaky.answer, flaky.failed) == (expected_usage("flaky"), Usage(unreported=1))
    assert (bad.answer, bad.failed) == (Usage(), Usage(unreported=1))
    assert (ok.answer, ok.failed) == (expected_usage("ok"), Usage())
    assert report.usage_totals.failed_attempts() == Usage(unreported=2)
    assert "failed attempts: 2 calls with no usage reported" in report.summary()


def test_an_attempt_that_was_answered_and_then_failed_is_billed_as_a_failed_attempt():
    """The model answered (and billed), then the parser failed: those tokens are the failed attempt's."""
    tries = Counter()

    def picky(text: str) -> str:
        tries[text] += 1
        if tries[text] == 1:
            raise TimeoutError("parser gave up")  # retryable, so the input is tried again
        return text

    picky_chain = PROMPT | UsageModel(calls=Counter()) | StrOutputParser() | RunnableLambda(picky)
    report = run(run_tracked(picky_chain, words("twice"), max_concurrency=1, progress=False,
                             retry=RetryPolicy(max_attempts=2, base_delay=0)))
    assert report.usage[0] == InputUsage(expected_usage("twice"), expected_usage("twice"))


def test_stream_merged_done_events_carry_usage():
    events = run(_collect(stream_merged(chain(UsageModel(calls=Counter(), tier="flex")), words("cache it"),
                                        max_concurrency=1)))
    done = [e for e in events if e.kind == "done"]
    assert len(done) == 1 and done[0].usage.answer == Usage(13, 8, 3, calls=1, model="gpt-4o-mini", tier="flex")


async def _collect(events):
    return [event async for event in events]


def test_run_to_jsonl_writes_usage_in_each_v3_record_and_sums_it(tmp_path):
    path = tmp_path / "out.jsonl"
    summary = run(run_to_jsonl(chain(), words("alpha", "flaky", "bad"), path, max_concurrency=1, progress=False,
                               retry=RetryPolicy(max_attempts=2, base_delay=0)))
    records = read_jsonl_results(path)
    assert [r["v"] for r in records] == [3, 3, 3]
    assert records[0]["usage"] == {"model": "gpt-4o-mini", "tier": "default", "prompt_tokens": 12,
                                   "cached_tokens": 0, "completion_tokens": 3, "calls": 1, "unreported": 0}
    assert "failed_usage" not in records[0] and records[1]["failed_usage"]["unreported"] == 1
    assert [record_usage(r) for r in records] == [InputUsage(expected_usage("alpha")),
                                                  InputUsage(expected_usage("flaky"), Usage(unreported=1)),
                                                  InputUsage(Usage(), Usage(unreported=1))]
    assert summary.usage.total() == expected_usage("alpha") + expected_usage("flaky") + Usage(unreported=2)
    assert "failed attempts: 2 calls with no usage reported" in summary.summary()


def test_file_usage_counts_every_record_across_reruns(tmp_path):
    """A rerun of a failed input writes a second record: both runs' calls were made, so both count."""
    path = tmp_path / "out.jsonl"
    model = UsageModel(calls=Counter())
    run(run_to_jsonl(chain(model), words("alpha", "flaky"), path, max_concurrency=1, progress=False))
    run(run_to_jsonl(chain(model), words("alpha", "flaky"), path, max_concurrency=1, progress=False,
                     retry_errors=True))
    assert file_usage(path).total() == expected_usage("alpha") + expected_usage("flaky") + Usage(unreported=1)
    assert len(path.read_text().splitlines()) == 3


def test_a_record_with_broken_usage_is_a_clear_error():
    with pytest.raises(ValueError, match="usage field 'prompt_tokens' must be a whole number >= 0, got -3"):
        record_usage({"index": 0, "output": "x", "usage": {"prompt_tokens": -3}})
    with pytest.raises(ValueError, match="usage must be an object, got str"):
        record_usage({"index": 0, "output": "x", "usage": "lots"})
    assert record_usage({"v": 2, "index": 0, "output": "x"}) is None  # version 2: no usage recorded


def test_version_2_records_are_still_read_and_resumed(tmp_path):
    path = tmp_path / "v2.jsonl"
    path.write_text(json.dumps({"v": 2, "index": 0, "input_sha": None, "output": "ALPHA", "attempts": 1,
                                "latency": 0.1}) + "\n", encoding="utf-8")
    summary = run(run_to_jsonl(chain(), words("alpha", "beta"), path, max_concurrency=1, progress=False))
    assert (summary.skipped, summary.written) == (1, 1)
    assert summary.usage.total() == expected_usage("beta")
    with ResultsFile(path) as results:
        assert results.recorded(0) == "ok" and results.recorded(1) == "ok"


# ---------------------------------------------------------------- against the mock's billing ledger


def _mock_with_ledger():
    from helpers.mock import get_mock

    mock = get_mock()
    mock.reset()
    if "billed" not in mock.stats():
        pytest.skip("the mock's /mock/stats has no billing ledger ('billed') yet: that is the mock's part of issue 14")
    return mock


def _client_totals(path) -> Usage:
    return file_usage(path).total()


async def _with_mock_llm(work: Any, **llm_options: Any) -> Any:
    """Await `work(llm)` with a model on an HTTP client of this event loop. langchain-openai shares one default
    client per process, and its connections belong to the loop of an earlier asyncio.run: a request sent on one
    is billed, then fails "Event loop is closed", and the client never sees its usage."""
    from openai import DefaultAsyncHttpxClient

    from helpers.backend import get_llm

    client = DefaultAsyncHttpxClient()
    try:
        return await work(get_llm(backend="mock", max_retries=0, http_async_client=client, **llm_options))
    finally:
        await client.aclose()


def test_the_clients_totals_equal_the_servers_ledger_when_failures_are_429s_and_5xx(tmp_path):
    """429s and injected 500s are not billed, and report no usage: so client and server must agree exactly."""
    from helpers.backend import make_chain

    mock = _mock_with_ledger()
    inputs = [{"word": f"w{i} " * (i % 7)} for i in range(40)]
    retry = RetryPolicy(max_attempts=8, base_delay=0.01, max_delay=0.5)
    with mock.temporarily(speed=100, error_rate=0.25, rpm_limit=600, limit_window=0.2):
        run(_with_mock_llm(lambda llm: run_to_jsonl(make_chain("Say {word}", llm), inputs, tmp_path / "out.jsonl",
                                                    max_concurrency=8, progress=False, retry=retry)))
        stats = mock.stats()
    billed, client = stats["billed"]["default"], _client_totals(tmp_path / "out.jsonl")
    assert client.unreported > 0, "no attempt failed: the test would not show failed attempts are left out"
    assert stats.get("rate_limited", 0) + stats.get("errors_injected", 0) > 0
    assert (client.calls, client.prompt_tokens, client.cached_tokens, client.completion_tokens) == (
        billed["requests"], billed["prompt_tokens"], billed["cached_tokens"], billed["completion_tokens"])


def test_a_request_that_timed_out_after_it_started_is_billed_though_the_client_saw_no_usage(tmp_path):
    """Hangs end in the client's timeout: the server billed them, the client counted them as unreported."""
    from helpers.backend import make_chain

    mock = _mock_with_ledger()
    inputs = [{"word": f"w{i}"} for i in range(20)]
    with mock.temporarily(speed=100, hang_rate=0.3, hang_seconds=30):
        run(_with_mock_llm(lambda llm: run_to_jsonl(make_chain("Say {word}", llm), inputs, tmp_path / "out.jsonl",
                                                    max_concurrency=20, progress=False, timeout=1.0)))
        billed = mock.stats()["billed"]["default"]
    client = _client_totals(tmp_path / "out.jsonl")
    assert client.unreported > 0
    assert client.calls <= billed["requests"] <= client.calls + client.unreported
    assert client.prompt_tokens <= billed["prompt_tokens"]


def test_flex_calls_and_cached_prefix_tokens_match_the_flex_ledger_at_batch_prices(tmp_path):
    """A long shared prefix, warmed by one request, comes back as cached_tokens; flex is billed in its own tier."""
    from helpers.backend import make_chain

    mock = _mock_with_ledger()
    path, retry = tmp_path / "out.jsonl", RetryPolicy(max_attempts=10, base_delay=0.01, max_delay=0.2)

    async def warm_then_run(llm: Any) -> None:
        chain = make_chain("Read these notes first. " + "note " * 1500 + "Now say {word}", llm)
        await run_to_jsonl(chain, words("warm"), path, max_concurrency=1, progress=False, retry=retry)
        await run_to_jsonl(chain, words("warm", *(f"w{i}" for i in range(12))), path, max_concurrency=6,
                           progress=False, retry=retry)

    with mock.temporarily(speed=100, flex_unavailable_rate=0.3):
        run(_with_mock_llm(warm_then_run, service_tier="flex"))
        billed = mock.stats()["billed"]
    totals = file_usage(path)
    client = totals.total()
    assert client.tier == "flex" and client.cached_tokens > 0 and client.unreported > 0
    assert (client.calls, client.prompt_tokens, client.cached_tokens, client.completion_tokens) == (
        billed["flex"]["requests"], billed["flex"]["prompt_tokens"], billed["flex"]["cached_tokens"],
        billed["flex"]["completion_tokens"])
    assert billed["default"]["requests"] == 0
    row = PRICES["gpt-4o-mini"]
    by_hand = ((client.prompt_tokens - client.cached_tokens) * row.input + client.cached_tokens * row.cached_input
               + client.completion_tokens * row.output) / 1e6 * (1 - prices.BATCH_DISCOUNT)
    assert totals.cost() == pytest.approx(by_hand)
