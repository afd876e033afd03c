"""Checks for lesson 06's exercises, reliability (backstage: a learner need not read this).

06-1 `check_retry_rule`: a retry predicate, on one error of each kind (real ones from the mock where
     the mock can send them), then in use inside `.with_retry()`. A deny-list rule is rejected.
06-2 `check_tier_limiter`: a function that builds one of two workers' TokenRateLimiters for a shared
     tier: half the tier each, a safety margin, the right units, then both workers in a sped-up trial.
06-3 `check_finish`: fill the gaps of a `run_tracked` report: rerun only the failures, with retries,
     and put every rerun answer back at its own input's index.

Each check runs the learner's code against a mock started for it (`start_mock`), never a paid API,
so its settings and request counts are the check's own.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable
from langchain_openai import ChatOpenAI

from helpers.backend import DEFAULT_MODEL
from helpers.checks.common import FAULT_FREE, call_learner, call_sync, fail, not_done, passed, require_async
from helpers.mock import MockHandle, start_mock
from helpers.reliability import TokenRateLimiter
from helpers.reports import Failure
from helpers.runners import run_tracked


def _model(mock: MockHandle, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(model=DEFAULT_MODEL, base_url=mock.base_url, api_key="mock-key", temperature=0,
                      stream_usage=True, max_retries=0, **kwargs)


def _chain(template: str, llm: Any) -> Runnable:
    return ChatPromptTemplate.from_template(template) | llm | StrOutputParser()


def _sdk_error(status: int, body: dict[str, Any]) -> Exception:
    """An openai SDK error for `status`, as the SDK raises it (for errors the mock never sends)."""
    import openai

    try:
        import httpx2 as httpx  # the openai SDK's own HTTP library here
    except ImportError:  # pragma: no cover
        import httpx
    request = httpx.Request("POST", "https://api.openai.com/v1/chat/completions")
    kind = {401: openai.AuthenticationError, 404: openai.NotFoundError, 429: openai.RateLimitError}[status]
    return kind(f"Error code: {status} - {body['message']}", response=httpx.Response(status, request=request), body=body)


async def _error_from(chain: Runnable, item: dict) -> Exception:
    try:
        await chain.ainvoke(item)
    except Exception as exc:
        return exc
    raise AssertionError("the mock was expected to fail this request")  # a bug in the check, not the learner


async def _mock_errors(mock: MockHandle) -> dict[str, Exception]:
    """One error of each kind: real ones from the (private) mock, then the ones it never sends."""
    from langchain_core.exceptions import OutputParserException

    hello = "Say a quick hello to {name}."
    quick, impatient = _chain(hello, _model(mock)), _chain(hello, _model(mock, timeout=0.3))
    errors: dict[str, Exception] = {}
    mock.configure(rpm_limit=1)
    await quick.ainvoke({"name": "the first in line"})  # takes the one request the bucket holds
    errors["rate limit (429)"] = await _error_from(quick, {"name": "the second in line"})
    mock.configure(rpm_limit=0)
    for label, setting, chain in [("server error (5xx)", "error_rate", quick), ("timeout", "hang_rate", impatient),
                                  ("dropped connection", "drop_rate", quick)]:
        mock.configure(**{setting: 1.0})
        errors[label] = await _error_from(chain, {"name": f"check {label}"})
        mock.configure(**{setting: 0.0})
    errors["asyncio timeout (TimeoutError)"] = TimeoutError()
    errors["bad request (400)"] = await _error_from(_chain(hello, _model(mock, max_tokens=-1)), {"name": "check 400"})
    errors["missing prompt variable (KeyError)"] = await _error_from(quick, {"nmae": "typo"})
    errors["out of quota (429 insufficient_quota)"] = _sdk_error(429, {
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "type": "insufficient_quota", "param": None, "code": "insufficient_quota"})
    errors["wrong API key (401)"] = _sdk_error(401, {"message": "Incorrect API key provided: sk-...",
                                                     "type": "invalid_request_error", "code": "invalid_api_key"})
    errors["unknown model (404)"] = _sdk_error(404, {"message": "The model `gpt-4o-mimi` does not exist.",
                                                     "type": "invalid_request_error", "code": "model_not_found"})
    errors["parser error (OutputParserException)"] = OutputParserException("Invalid json output: Sure! Here is")
    return errors


_DENY_LIST = ("Retry only what you know is temporary (an allow-list: 429, 5xx, timeouts, dropped connections), "
              "not everything except a few errors you thought of.")
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
    "wrong API key (401)": "Your rule retries a 401 (wrong API key): every retry fails the same way. " + _DENY_LIST,
    "unknown model (404)": "Your rule retries a 404 (no such model): it will not appear by waiting. " + _DENY_LIST,
    "parser error (OutputParserException)": "Your rule retries an OutputParserException: the call succeeded but "
                                            "the answer did not parse, and at temperature 0 a retry gets the same "
                                            "answer. " + _DENY_LIST,
}
_SHOULD_RETRY = {"rate limit (429)", "server error (5xx)", "timeout", "dropped connection",
                 "asyncio timeout (TimeoutError)"}


def _judge_rule(should_retry: Callable[[BaseException], Any], errors: dict[str, Exception]) -> None:
    for label, error in errors.items():
        try:
            answer = should_retry(error)
        except NotImplementedError as placeholder:
            raise not_done(placeholder) from None
        except Exception as exc:
            fail(f"should_retry raised {type(exc).__name__}: {exc} (for a {label}); it must return True or False.")
        if not isinstance(answer, bool):
            fail(f"should_retry returned {answer!r} for a {label}; return True or False.")
        if answer != (label in _SHOULD_RETRY):
            fail(_RETRY_HINTS[label])


async def check_retry_rule(should_retry: Callable[[BaseException], Any]) -> None:
    """Exercise 06-1: a retry predicate for `.with_retry(retry_if_exception_type=...)`, on mock errors."""
    if not callable(should_retry) or isinstance(should_retry, type):
        fail("should_retry must be a function that takes an exception and returns True or False.")
    if inspect.iscoroutinefunction(should_retry):
        fail("tenacity calls the rule without awaiting it: define it with plain `def`, not `async def`.")
    mock = start_mock(speed=20, **FAULT_FREE)
    try:
        errors = await _mock_errors(mock)
        _judge_rule(should_retry, errors)
        # The rule in use: LangChain calls it for each failed attempt.
        fast = {"multiplier": 0.01, "max": 0.02, "jitter": 0.0}
        hello = "Say a quick hello to {name}."
        mock.reset()
        bad = _chain(hello, _model(mock, max_tokens=-1).with_retry(
            retry_if_exception_type=should_retry, stop_after_attempt=3, exponential_jitter_params=fast))
        await _error_from(bad, {"name": "in use, 400"})
        sent_for_400 = mock.stats()["requests"]
        mock.configure(error_rate=1.0)
        flaky = _chain(hello, _model(mock).with_retry(
            retry_if_exception_type=should_retry, stop_after_attempt=3, exponential_jitter_params=fast))
        await _error_from(flaky, {"name": "in use, 500"})
        sent_for_500 = mock.stats()["requests"] - sent_for_400
    finally:
        mock.stop()
    if (sent_for_400, sent_for_500) != (1, 3):
        fail(f"Inside .with_retry() the 400 was sent {sent_for_400} times (want 1) and the 500 "
             f"{sent_for_500} times (want 3): pass your function as retry_if_exception_type.")
    passed(f"the rule is right for all {len(errors)} kinds of error, and with .with_retry() a 400 was "
           "sent once and a 500 three times.")


# ---------------------------------------------------------------- 06-2: limiters for two workers


def _model_of(chain: Any) -> Any:
    """The chat model inside `prompt | model | parser` (or the chain itself)."""
    for step in getattr(chain, "steps", [chain]):
        if hasattr(step, "max_tokens") and hasattr(step, "model_name"):
            return step
    return None


def _judge_rates(limiter: TokenRateLimiter, rpm: int, tpm: int, workers: int) -> None:
    if limiter.tpm is None or limiter.rpm is None:
        missing = "tpm" if limiter.tpm is None else "rpm"
        fail(f"Set {missing} too: a tier has two limits, and the limiter must keep both.")
    for name, yours, tier in (("rpm", limiter.rpm, rpm), ("tpm", limiter.tpm, tpm)):
        share = tier / workers
        if yours < tier / 30:  # the per-second figure, of the tier or of a share
            fail(f"{name}={yours:g} looks like a per-second figure: {name} is per minute (the tier: {tier:,}).")
        if yours > 0.8 * tier:
            fail(f"{name}={yours:g} gives each worker (nearly) the whole tier: {workers} workers then send "
                 f"{workers}× what the account allows. Each gets its share: {tier:,} / {workers}.")
        if yours > share:
            fail(f"{name}={yours:g} is above one worker's share ({share:,.0f}): together they exceed the tier.")
        if yours > 0.99 * share:
            fail(f"{name}={yours:g} is one worker's share with no safety margin. Any jitter between sending and "
                 "arriving then gets a 429, and a rejected request counts against the limit too, so it never "
                 "catches up: stay a few percent below the share.")
        if yours < 0.8 * share:
            fail(f"{name}={yours:g} is more than 20% below one worker's share ({share:,.0f}): that leaves capacity "
                 "unused. A margin of a few percent is enough.")


def _judge_limiter(limiter: TokenRateLimiter, model: Any, rpm: int, tpm: int, workers: int) -> None:
    _judge_rates(limiter, rpm, tpm, workers)
    if model is not None and model.max_tokens is not None and limiter.max_tokens != model.max_tokens:
        fail(f"max_tokens={limiter.max_tokens} but the model sets max_tokens={model.max_tokens}: the server "
             "charges that up front, so reserve exactly that many tokens per request.")
    if limiter.prompt is None and limiter.estimator is None:
        fail("Pass prompt=review_chain.first, so the estimate counts the whole formatted prompt, not only "
             "the {product} variable.")


def _sped_up(limiter: TokenRateLimiter, scale: int) -> TokenRateLimiter:
    return TokenRateLimiter(rpm=limiter.rpm * scale, tpm=limiter.tpm * scale, max_tokens=limiter.max_tokens,
                            window_seconds=limiter.window_seconds / scale, prompt=limiter.prompt,
                            estimate_tokens=limiter.estimator)


async def check_tier_limiter(worker_limiter: Callable[[], Any], chain: Runnable, *, rpm: int, tpm: int,
                             workers: int = 2, scale: int = 2) -> None:
    """Exercise 06-2: one of `workers` workers' limiter for a shared tier, then all workers in a sped-up trial."""
    if worker_limiter is None or isinstance(worker_limiter, TokenRateLimiter) or not callable(worker_limiter):
        fail("worker_limiter must be a function that returns a new TokenRateLimiter each time it is called "
             "(each worker calls it once).")
    limiters = [call_sync(worker_limiter) for _ in range(workers)]
    for limiter in limiters:
        if not isinstance(limiter, TokenRateLimiter):
            fail(f"worker_limiter returned a {type(limiter).__name__}: return a TokenRateLimiter(rpm=..., tpm=..., "
                 "...), which counts tokens as well as requests.")
    if any(limiter is limiters[0] for limiter in limiters[1:]):
        fail("worker_limiter returned the same limiter twice: each worker is its own process with its own "
             "limiter, so return a new TokenRateLimiter on every call.")
    model = _model_of(chain)
    for limiter in limiters:
        _judge_limiter(limiter, model, rpm, tpm, workers)

    # A trial at the tier, `scale` times faster (limits ×scale, windows ÷scale), all workers at once.
    max_tokens = model.max_tokens if model is not None else None
    tier = {"rpm_limit": rpm * scale, "tpm_limit": tpm * scale, "limit_window": 1 / scale}
    mock = start_mock(speed=20, **(FAULT_FREE | tier))
    try:
        trial_chain = chain.first | _model(mock, max_tokens=max_tokens) | StrOutputParser()
        inputs = [[{"product": f"umbrella model {w}-{i}"} for i in range(25 * scale)] for w in range(workers)]
        reports = await asyncio.gather(*(run_tracked(trial_chain, part, max_concurrency=50,
                                                     limiter=_sped_up(limiter, scale), progress=False)
                                         for limiter, part in zip(limiters, inputs)))
        stats = mock.stats()
    finally:
        mock.stop()
    cost = stats["prompt_tokens"] / max(1, stats["ok"]) + (max_tokens or 0)
    allowed = min(rpm, tpm / cost) * scale / 60  # requests per second the tier allows, sped up
    wall = max(report.wall_time for report in reports)
    share = sum(report.ok for report in reports) / (allowed * (wall + 1 / scale))  # a full bucket, then the refill
    rejected = stats["rate_limited"] / max(1, stats["requests"])
    if rejected > 0.05:
        fail(f"{rejected:.0%} of the trial's requests got a 429: together the limiters let through more than the "
             "tier allows. Check the units and the token estimate.")
    if share < 0.4:  # low bars: the machine may be busy; the static checks above caught a too strict rate
        fail(f"The trial reached only {share:.0%} of the rate the tier allows: the limiters are too strict.")
    passed(f"{workers} workers at the tier (sped up {scale}×): {share:.0%} of the allowed rate together, "
           f"{rejected:.1%} of requests answered 429.")


# ---------------------------------------------------------------- 06-3: fill the gaps of a report

_GAPS_SEED = 5  # a seed whose rolls fail some of the rerun's first attempts, so a rerun without retries fails


def _gaps_task(mock: MockHandle, n: int) -> tuple[Runnable, list[dict[str, Any]], list[str]]:
    chain = _chain("What is {a} - {b}?", _model(mock))
    inputs: list[dict[str, Any]] = [{"a": 1000 + i, "b": i * 7} for i in range(n)] + [{"a": 5, "c": 3}]
    expected = [f"{x['a']} - {x['b']} = {x['a'] - x['b']}" for x in inputs[:-1]]
    return chain, inputs, expected


def _judge_filled(filled: list[Any], expected: list[str]) -> None:
    total = len(expected) + 1
    if len(filled) != total:
        fail(f"{len(filled)} entries for {total} inputs: return one entry per input, in input order.")
    for index, (value, want) in enumerate(zip(filled, expected)):
        if value == want:
            continue
        if isinstance(value, str):
            fail(f"Input {index} holds {value!r}, another input's answer. The rerun's results come back in the "
                 "order of the inputs you reran: put each back at the index of its input (report.failures[k].index).")
        if value is None:
            fail(f"Input {index} is None: its rerun answer was not put back in its slot.")
        if isinstance(value, (Failure, BaseException)):
            fail(f"Input {index} still ends in a failure, a temporary error: rerun with a RetryPolicy "
                 "(retry=RetryPolicy()), with enough attempts.")
        fail(f"Input {index} holds {value!r}: expected its answer, {want!r}.")
    typo = filled[-1]
    if not (isinstance(typo, Failure) and typo.error_type == "KeyError"):
        fail(f"The last input has a typo ('c' instead of 'b'), so it fails every time: its entry must be its "
             f"Failure (a KeyError), not {typo!r}.")


async def check_finish(fill_gaps: Callable[..., Any], *, n: int = 40) -> None:
    """Exercise 06-3: rerun only a report's failures, with retries; one entry per input, each in its own slot."""
    require_async(fill_gaps, "await run_tracked")
    mock = start_mock(speed=20, **(FAULT_FREE | {"error_rate": 0.25}), seed=_GAPS_SEED)
    try:
        chain, inputs, expected = _gaps_task(mock, n)
        first = await run_tracked(chain, inputs, max_concurrency=20, progress=False)
        before = mock.stats()["requests"]
        filled = await call_learner(fill_gaps, chain, inputs, first)
        sent = mock.stats()["requests"] - before
    finally:
        mock.stop()
    if filled is None:
        fail("fill_gaps returned None: return the list, one entry per input.")
    if sent >= first.ok:
        fail(f"{sent} requests were sent for {first.failed} failed inputs: you reran inputs that already had an "
             "answer. Rerun only the inputs in report.failures.")
    if sent == 0:
        fail("Nothing was sent: rerun the failed inputs (report.failures holds their indices).")
    _judge_filled(list(filled), expected)
    passed(f"{first.failed} failed inputs rerun with {sent} requests; {len(expected)} answers, each in its own "
           "slot, and the typo's KeyError.")
