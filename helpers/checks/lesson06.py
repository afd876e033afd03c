"""Checks for lesson 06's exercises, reliability (backstage: a learner need not read this).

06-1 `check_retry_rule`: a retry predicate, on one real error of each kind from the mock, then in use.
06-2 `check_tier_limiter`: a TokenRateLimiter for a tier: units, margins, then a sped-up trial run.
06-3 `check_finish`: rerun only the recorded errors of a JSONL run, one record per input, in order.

All run the learner's code against the local mock (`get_llm(backend="mock")`), never a paid API; the
mock's settings are changed only inside `mock.temporarily(...)`, so they are put back afterwards.
"""

from __future__ import annotations

import inspect
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import Runnable

from helpers.backend import get_llm, make_chain
from helpers.checks.common import FAULT_FREE, NOT_DONE, call_learner, fail, passed
from helpers.mock import get_mock
from helpers.reliability import TokenRateLimiter
from helpers.runners import run_to_jsonl, run_tracked


def _out_of_quota_error() -> Exception:
    """An OpenAI 429 "insufficient_quota" (out of credit), as the SDK raises it; the mock never sends one."""
    import openai

    try:
        import httpx2 as httpx  # the openai SDK's own HTTP library here
    except ImportError:  # pragma: no cover
        import httpx
    request = httpx.Request("POST", "https://api.openai.com/v1/chat/completions")
    body = {"message": "You exceeded your current quota, please check your plan and billing details.",
            "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}
    return openai.RateLimitError(f"Error code: 429 - {body['message']}", response=httpx.Response(429, request=request),
                                 body=body)


async def _error_from_mock(chain: Runnable, item: dict) -> Exception:
    try:
        await chain.ainvoke(item)
    except Exception as exc:
        return exc
    raise AssertionError("the mock was expected to fail this request")  # a bug in the check, not the learner


async def _mock_errors() -> dict[str, Exception]:
    """One real error of each kind from the mock (the mock's settings are restored afterwards)."""
    mock = get_mock()
    hello = "Say a quick hello to {name}."
    quick = make_chain(hello, get_llm(backend="mock", max_retries=0))
    impatient = make_chain(hello, get_llm(backend="mock", max_retries=0, timeout=0.3))
    errors: dict[str, Exception] = {}
    with mock.temporarily(**(FAULT_FREE | {"rpm_limit": 1}), speed=20):
        await quick.ainvoke({"name": "the first in line"})  # takes the one request the bucket holds
        errors["rate limit (429)"] = await _error_from_mock(quick, {"name": "the second in line"})
        mock.configure(rpm_limit=0)
        for label, setting, chain in [("server error (5xx)", "error_rate", quick), ("timeout", "hang_rate", impatient),
                                      ("dropped connection", "drop_rate", quick)]:
            mock.configure(**{setting: 1.0})
            errors[label] = await _error_from_mock(chain, {"name": f"check {label}"})
            mock.configure(**{setting: 0.0})
        bad = make_chain(hello, get_llm(backend="mock", max_retries=0, max_tokens=-1))
        errors["bad request (400)"] = await _error_from_mock(bad, {"name": "check 400"})
        errors["missing prompt variable (KeyError)"] = await _error_from_mock(quick, {"nmae": "typo"})
    errors["out of quota (429 insufficient_quota)"] = _out_of_quota_error()
    errors["asyncio timeout (TimeoutError)"] = TimeoutError()
    return errors


_RETRY_HINTS = {
    "rate limit (429)": "A 429 rate limit is the main reason to retry: wait, then try again.",
    "server error (5xx)": "Server errors (500, 503) are usually temporary: retry them (openai.InternalServerError).",
    "timeout": "A timeout has no status code: catch openai.APITimeoutError (a subclass of APIConnectionError).",
    "dropped connection": "A dropped connection has no status code: it is openai.APIConnectionError. Retry it.",
    "asyncio timeout (TimeoutError)": "asyncio.timeout() raises the built-in TimeoutError: retry it as well.",
    "bad request (400)": "A 400 fails the same way every time: never retry it. (`.with_retry()`'s default, "
                         "retry every Exception, makes exactly this mistake.)",
    "missing prompt variable (KeyError)": "A missing prompt variable (KeyError) is a bug in the input: "
                                          "retrying only repeats it.",
    "out of quota (429 insufficient_quota)": "That 429 has exc.code == 'insufficient_quota': the account is out "
                                             "of credit, and no wait fixes that. Check exc.code before retrying.",
}
_SHOULD_RETRY = {"rate limit (429)", "server error (5xx)", "timeout", "dropped connection",
                 "asyncio timeout (TimeoutError)"}


async def check_retry_rule(should_retry: Callable[[BaseException], Any]) -> None:
    """Exercise 06-1: a retry predicate for `.with_retry(retry_if_exception_type=...)`, on real mock errors."""
    if not callable(should_retry) or isinstance(should_retry, type):
        fail("should_retry must be a function that takes an exception and returns True or False.")
    if inspect.iscoroutinefunction(should_retry):
        fail("tenacity calls the rule without awaiting it: define it with plain `def`, not `async def`.")
    errors = await _mock_errors()
    for label, error in errors.items():
        try:
            answer = should_retry(error)
        except NotImplementedError:
            fail(NOT_DONE)
        except Exception as exc:
            fail(f"should_retry raised {type(exc).__name__}: {exc} (for a {label}); it must return True or False.")
        if not isinstance(answer, bool):
            fail(f"should_retry returned {answer!r} for a {label}; return True or False.")
        if answer != (label in _SHOULD_RETRY):
            fail(_RETRY_HINTS[label])

    # The rule in use: LangChain calls it for each failed attempt.
    mock = get_mock()
    fast = {"multiplier": 0.01, "max": 0.02, "jitter": 0.0}
    with mock.temporarily(**FAULT_FREE, speed=20):
        bad = make_chain("Say a quick hello to {name}.", get_llm(backend="mock", max_retries=0, max_tokens=-1)
                         .with_retry(retry_if_exception_type=should_retry, stop_after_attempt=3,
                                     exponential_jitter_params=fast))
        await _error_from_mock(bad, {"name": "in use, 400"})
        sent_for_400 = mock.stats()["requests"]
        mock.configure(error_rate=1.0)
        flaky = make_chain("Say a quick hello to {name}.", get_llm(backend="mock", max_retries=0)
                           .with_retry(retry_if_exception_type=should_retry, stop_after_attempt=3,
                                       exponential_jitter_params=fast))
        await _error_from_mock(flaky, {"name": "in use, 500"})
        sent_for_500 = mock.stats()["requests"] - sent_for_400
    if (sent_for_400, sent_for_500) != (1, 3):
        fail(f"Inside .with_retry() the 400 was sent {sent_for_400} times (want 1) and the 500 "
             f"{sent_for_500} times (want 3): pass your function as retry_if_exception_type.")
    passed(f"the rule is right for all {len(errors)} kinds of error, and with .with_retry() a 400 was "
           "sent once and a 500 three times.")


def _model_of(chain: Any) -> Any:
    """The chat model inside `prompt | model | parser` (or the chain itself)."""
    for step in getattr(chain, "steps", [chain]):
        if hasattr(step, "max_tokens") and hasattr(step, "model_name"):
            return step
    return None


async def check_tier_limiter(limiter: Any, chain: Runnable, *, rpm: int, tpm: int, scale: int = 3) -> None:
    """Exercise 06-2: a TokenRateLimiter for a tier: right units and margins, then a sped-up trial run."""
    if limiter is None:
        fail("Set my_limiter first. " + NOT_DONE)
    if not isinstance(limiter, TokenRateLimiter):
        fail(f"my_limiter is a {type(limiter).__name__}: build a TokenRateLimiter(rpm=..., tpm=..., ...), which "
             "counts tokens as well as requests.")
    model = _model_of(chain)
    prompt = chain.first
    if limiter.tpm is None or limiter.rpm is None:
        missing = "tpm" if limiter.tpm is None else "rpm"
        fail(f"Set {missing} too: a tier has two limits, and the limiter must keep both.")
    for name, yours, tier in (("rpm", limiter.rpm, rpm), ("tpm", limiter.tpm, tpm)):
        if math.isclose(yours, tier / 60, rel_tol=0.1):
            fail(f"{name}={yours:g} is the per-second figure: {name} is per minute ({tier:,}).")
        if yours > tier:
            fail(f"{name}={yours:g} is above your tier's {tier:,}: the server would answer 429.")
        if yours < 0.8 * tier:
            fail(f"{name}={yours:g} is more than 20% below the tier ({tier:,}): that leaves capacity unused. "
                 "A margin of a few percent is enough.")
    if model is not None and model.max_tokens is not None and limiter.max_tokens != model.max_tokens:
        fail(f"max_tokens={limiter.max_tokens} but the model sets max_tokens={model.max_tokens}: the server "
             "charges that up front, so reserve exactly that many tokens per request.")
    if limiter.prompt is None and limiter.estimator is None:
        fail("Pass prompt=review_chain.first, so the estimate counts the whole formatted prompt, not only "
             "the {product} variable.")

    # A trial at the tier, `scale` times faster: limits ×scale, windows ÷scale.
    trial = TokenRateLimiter(rpm=limiter.rpm * scale, tpm=limiter.tpm * scale, max_tokens=limiter.max_tokens,
                             window_seconds=limiter.window_seconds / scale, prompt=limiter.prompt,
                             estimate_tokens=limiter.estimator)
    max_tokens = model.max_tokens if model is not None else None
    trial_chain = prompt | get_llm(backend="mock", max_retries=0, max_tokens=max_tokens) | StrOutputParser()
    inputs = [{"product": f"umbrella model {i}"} for i in range(50 * scale)]
    mock = get_mock()
    tier = {"rpm_limit": rpm * scale, "tpm_limit": tpm * scale, "limit_window": 1 / scale}
    with mock.temporarily(**(FAULT_FREE | tier), speed=20):
        report = await run_tracked(trial_chain, inputs, max_concurrency=100, limiter=trial, progress=False)
        stats = mock.stats()
    cost = stats["prompt_tokens"] / max(1, stats["ok"]) + (max_tokens or 0)
    allowed = min(rpm, tpm / cost) * scale / 60  # requests per second the tier allows, sped up
    share = report.ok / (allowed * (report.wall_time + 1 / scale))  # a full bucket at the start, then the refill
    rejected = stats["rate_limited"] / max(1, stats["requests"])
    if rejected > 0.03:
        fail(f"{rejected:.0%} of the trial's requests got a 429: the limiter lets through more than the tier "
             "allows. Check the units and the token estimate.")
    if share < 0.6:
        fail(f"The trial reached only {share:.0%} of the rate the tier allows: the limiter is too strict.")
    passed(f"trial at the tier (sped up {scale}×): {share:.0%} of the allowed rate, {rejected:.1%} of "
           "requests answered 429.")


async def check_finish(finish: Callable[..., Any], *, n: int = 60) -> None:
    """Exercise 06-3: rerun only the recorded errors of a JSONL run, return one record per input in order."""
    if not inspect.iscoroutinefunction(finish):
        fail("Define finish with `async def`, so it can await run_to_jsonl.")
    template = "What is {a} - {b}?"
    chain = make_chain(template, get_llm(backend="mock", max_retries=0))
    inputs: list[dict[str, Any]] = [{"a": 1000 + i, "b": i * 7} for i in range(n)] + [{"a": 5, "c": 3}]
    mock = get_mock()
    faults = {"error_rate": 0.2, "drop_rate": 0.05}
    with tempfile.TemporaryDirectory() as folder, mock.temporarily(**(FAULT_FREE | faults), speed=20):
        path = Path(folder) / "finish.jsonl"
        first = await run_to_jsonl(chain, inputs, path, max_concurrency=20, timeout=2.0, progress=False)
        before = mock.stats()["requests"]
        records = await call_learner(finish, chain, inputs, path)
        sent = mock.stats()["requests"] - before

    total = len(inputs)
    if records is None:
        fail("finish returned None: return the final records (read_jsonl_results(path)).")
    records = list(records)
    if sent >= first.ok:
        fail(f"{sent} requests were sent for {first.failed} recorded errors: you reran inputs that already had "
             "an answer. Keep resume=True (the default) and pass retry_errors=True.")
    if sent == 0:
        fail("Nothing was sent: run_to_jsonl skips recorded errors too, unless you pass retry_errors=True.")
    if len(records) > total:
        fail(f"{len(records)} records for {total} inputs: the file holds a line per run of an input; keep the "
             "last record per index (read_jsonl_results does).")
    if [r.get("index") if isinstance(r, dict) else None for r in records] != list(range(total)):
        fail(f"Expected one record per input, in input order (indices 0 to {total - 1}): use read_jsonl_results.")
    for index, (item, record) in enumerate(zip(inputs, records)):
        if index == total - 1:
            if "error" not in record or record["error"].get("type") != "KeyError":
                fail("The last input has a typo ('c' instead of 'b'): it must stay a recorded KeyError.")
            continue
        if "error" in record:
            fail(f"Input {index} still ends in {record['error']['type']}, a temporary error: retry with a "
                 "RetryPolicy (retry=RetryPolicy()), with enough attempts.")
        expected = f"{item['a']} - {item['b']} = {item['a'] - item['b']}"
        if record.get("output") != expected:
            fail(f"Input {index}'s output is {record.get('output')!r}, not {expected!r}.")
    passed(f"{first.failed} recorded errors rerun with {sent} requests; {total - 1} answers and the one "
           "typo's KeyError, one record per input, in order.")
