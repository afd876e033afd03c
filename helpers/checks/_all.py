"""Checks for the notebooks' exercises.

Each `check_*` function runs the learner's answer against the mock model, prints a
short pass message, or raises `ExerciseFailed` with a hint that names the mistake
("results are in completion order: write each output to its index"). The checks look
for the usual wrong answers, not only for the right one.

All checks talk to the mock (`get_llm(backend="mock")`), never to a paid API.
"""

from __future__ import annotations

import inspect
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import Runnable

from helpers.metrics import in_flight_timeline
from helpers.timing import RequestTimer


class ExerciseFailed(AssertionError):
    """Raised by a check with a hint for the learner."""


def _fail(hint: str) -> None:
    raise ExerciseFailed(hint)


def _passed(message: str) -> None:
    print(f"✓ Passed: {message}")


NOT_DONE = "Not solved yet: replace `raise NotImplementedError()` with your code, run that cell, then this one."


async def _call_learner(function: Callable[..., Any], *args: Any) -> Any:
    """Await the learner's function; an unsolved exercise becomes a clear ExerciseFailed."""
    try:
        return await function(*args)
    except NotImplementedError:
        raise ExerciseFailed(NOT_DONE) from None


def peak_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at the same moment (requests in flight at the peak)."""
    return max(in_flight_timeline(intervals)[1], default=0)


async def _mean_latency(chain: Runnable, samples: int = 5) -> float:
    latencies = []
    for i in range(samples):
        start = time.perf_counter()
        await chain.ainvoke({"text": f"测试{i}"})
        latencies.append(time.perf_counter() - start)
    return statistics.median(latencies)


async def check_concurrency_choice(
    chain: Runnable, max_concurrency: Any, *, n: int, budget_s: float
) -> None:
    """Exercise 01-1: does `max_concurrency` finish `n` calls of `chain` within `budget_s`?"""
    if max_concurrency is None:
        _fail("Set my_concurrency to your choice first. " + NOT_DONE)
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
        _fail(f"max_concurrency must be a whole number, got {max_concurrency!r} (try math.ceil)")
    if max_concurrency < 1:
        _fail("max_concurrency must be at least 1")
    latency = await _mean_latency(chain)
    minimum = math.ceil(n * latency / budget_s)  # Little's law: C = X * L
    if max_concurrency < minimum:
        _fail(
            f"Too low: Little's law says at least {n} / {budget_s} s × {latency:.3f} s = "
            f"{n * latency / budget_s:.1f} requests in flight; you chose {max_concurrency}."
        )
    if max_concurrency > 4 * minimum:
        _fail(
            f"It would finish, but {max_concurrency} is over 4× what Little's law asks for "
            f"({minimum}). Against a real API that much concurrency mostly buys rate-limit errors."
        )
    inputs = [{"text": f"测试{i}"} for i in range(n)]
    start = time.perf_counter()
    await chain.abatch(inputs, config={"max_concurrency": max_concurrency})
    elapsed = time.perf_counter() - start
    if elapsed > budget_s:
        _fail(f"Took {elapsed:.2f} s, over the {budget_s} s budget: leave more headroom above C = X × L.")
    _passed(f"{n} requests in {elapsed:.2f} s, within the {budget_s} s budget.")


async def check_ordered_progress(translate: Callable[..., Any], *, n: int = 40) -> None:
    """Exercise 01-2: ordered results, at most 10 in flight, from an async function."""
    from helpers.backend import get_llm, make_chain
    from helpers.mock import reply_for

    if not inspect.iscoroutinefunction(translate):
        _fail("Define the function with `async def`, so it can `await` the chain.")
    timer = RequestTimer()
    # Replies of very different lengths finish in a scrambled order.
    template = "Write a few sentences about topic number {text}."
    llm = get_llm(backend="mock")
    chain = make_chain(template, llm).with_config(callbacks=[timer])
    inputs = [{"text": str(i)} for i in range(n)]
    expected = [
        reply_for(llm.model_name, [{"role": "user", "content": template.format(text=i)}])
        for i in range(n)
    ]
    results = await _call_learner(translate, chain, inputs)

    if results is None:
        _fail("Your function returned None: return the list of outputs.")
    results = list(results)
    if results and isinstance(results[0], tuple):
        _fail("Return just the outputs, not (index, output) pairs: results[index] = output.")
    if len(results) != n:
        _fail(f"Expected {n} outputs, got {len(results)}: every input needs exactly one output.")
    if results != expected:
        if sorted(map(str, results)) == sorted(expected):
            _fail("The answers are all there but in completion order: write each output to its index.")
        _fail("Some outputs don't match their inputs: did you pass `inputs` to the chain unchanged?")
    peak = peak_overlap(timer.intervals())
    if peak > 10:
        _fail(f"{peak} requests were in flight at once: pass config={{'max_concurrency': 10}}.")
    _passed(f"{n} outputs in input order, never more than 10 requests in flight.")


# ----------------------------------------------------------------------------- lesson 06


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
    from helpers.backend import get_llm, make_chain
    from helpers.mock import get_mock

    mock = get_mock()
    saved = mock.settings()
    hello = "Say a quick hello to {name}."
    quick = make_chain(hello, get_llm(backend="mock", max_retries=0))
    impatient = make_chain(hello, get_llm(backend="mock", max_retries=0, timeout=0.3))
    errors: dict[str, Exception] = {}
    try:
        mock.reset()
        mock.configure(rpm_limit=1, tpm_limit=0, error_rate=0.0, hang_rate=0.0, drop_rate=0.0, speed=20)
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
    finally:
        mock.reset()
        mock.configure(**vars(saved))
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
    from helpers.backend import get_llm, make_chain
    from helpers.mock import get_mock

    if not callable(should_retry) or isinstance(should_retry, type):
        _fail("should_retry must be a function that takes an exception and returns True or False.")
    if inspect.iscoroutinefunction(should_retry):
        _fail("tenacity calls the rule without awaiting it: define it with plain `def`, not `async def`.")
    errors = await _mock_errors()
    for label, error in errors.items():
        try:
            answer = should_retry(error)
        except NotImplementedError:
            _fail(NOT_DONE)
        except Exception as exc:
            _fail(f"should_retry raised {type(exc).__name__}: {exc} (for a {label}); it must return True or False.")
        if not isinstance(answer, bool):
            _fail(f"should_retry returned {answer!r} for a {label}; return True or False.")
        if answer != (label in _SHOULD_RETRY):
            _fail(_RETRY_HINTS[label])

    # The rule in use: LangChain calls it for each failed attempt.
    mock = get_mock()
    saved = mock.settings()
    fast = {"multiplier": 0.01, "max": 0.02, "jitter": 0.0}
    try:
        mock.reset()
        mock.configure(error_rate=0.0, hang_rate=0.0, drop_rate=0.0, rpm_limit=0, tpm_limit=0, speed=20)
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
    finally:
        mock.reset()
        mock.configure(**vars(saved))
    if (sent_for_400, sent_for_500) != (1, 3):
        _fail(f"Inside .with_retry() the 400 was sent {sent_for_400} times (want 1) and the 500 "
              f"{sent_for_500} times (want 3): pass your function as retry_if_exception_type.")
    _passed(f"the rule is right for all {len(errors)} kinds of error, and with .with_retry() a 400 was "
            "sent once and a 500 three times.")


def _model_of(chain: Any) -> Any:
    """The chat model inside `prompt | model | parser` (or the chain itself)."""
    for step in getattr(chain, "steps", [chain]):
        if hasattr(step, "max_tokens") and hasattr(step, "model_name"):
            return step
    return None


async def check_tier_limiter(limiter: Any, chain: Runnable, *, rpm: int, tpm: int, scale: int = 3) -> None:
    """Exercise 06-2: a TokenRateLimiter for a tier: right units and margins, then a sped-up trial run."""
    from langchain_core.output_parsers import StrOutputParser

    from helpers.backend import get_llm
    from helpers.mock import get_mock
    from helpers.reliability import TokenRateLimiter
    from helpers.runners import run_tracked

    if limiter is None:
        _fail("Set my_limiter first. " + NOT_DONE)
    if not isinstance(limiter, TokenRateLimiter):
        _fail(f"my_limiter is a {type(limiter).__name__}: build a TokenRateLimiter(rpm=..., tpm=..., ...), which "
              "counts tokens as well as requests.")
    model = _model_of(chain)
    prompt = chain.first
    if limiter.tpm is None or limiter.rpm is None:
        missing = "tpm" if limiter.tpm is None else "rpm"
        _fail(f"Set {missing} too: a tier has two limits, and the limiter must keep both.")
    for name, yours, tier in (("rpm", limiter.rpm, rpm), ("tpm", limiter.tpm, tpm)):
        if math.isclose(yours, tier / 60, rel_tol=0.1):
            _fail(f"{name}={yours:g} is the per-second figure: {name} is per minute ({tier:,}).")
        if yours > tier:
            _fail(f"{name}={yours:g} is above your tier's {tier:,}: the server would answer 429.")
        if yours < 0.8 * tier:
            _fail(f"{name}={yours:g} is more than 20% below the tier ({tier:,}): that leaves capacity unused. "
                  "A margin of a few percent is enough.")
    if model is not None and model.max_tokens is not None and limiter.max_tokens != model.max_tokens:
        _fail(f"max_tokens={limiter.max_tokens} but the model sets max_tokens={model.max_tokens}: the server "
              "charges that up front, so reserve exactly that many tokens per request.")
    if limiter.prompt is None and limiter._estimate is None:
        _fail("Pass prompt=review_chain.first, so the estimate counts the whole formatted prompt, not only "
              "the {product} variable.")

    # A trial at the tier, `scale` times faster: limits ×scale, windows ÷scale.
    trial = TokenRateLimiter(rpm=limiter.rpm * scale, tpm=limiter.tpm * scale, max_tokens=limiter.max_tokens,
                             window_seconds=limiter.window_seconds / scale, prompt=limiter.prompt,
                             estimate_tokens=limiter._estimate)
    max_tokens = model.max_tokens if model is not None else None
    trial_chain = prompt | get_llm(backend="mock", max_retries=0, max_tokens=max_tokens) | StrOutputParser()
    inputs = [{"product": f"umbrella model {i}"} for i in range(50 * scale)]
    mock = get_mock()
    saved = mock.settings()
    try:
        mock.reset()
        mock.configure(speed=20, rpm_limit=rpm * scale, tpm_limit=tpm * scale, limit_window=1 / scale,
                       error_rate=0.0, hang_rate=0.0, drop_rate=0.0)
        report = await run_tracked(trial_chain, inputs, max_concurrency=100, limiter=trial, progress=False)
        stats = mock.stats()
    finally:
        mock.reset()
        mock.configure(**vars(saved))
    cost = stats["prompt_tokens"] / max(1, stats["ok"]) + (max_tokens or 0)
    allowed = min(rpm, tpm / cost) * scale / 60  # requests per second the tier allows, sped up
    share = report.ok / (allowed * (report.wall_time + 1 / scale))  # a full bucket at the start, then the refill
    rejected = stats["rate_limited"] / max(1, stats["requests"])
    if rejected > 0.03:
        _fail(f"{rejected:.0%} of the trial's requests got a 429: the limiter lets through more than the tier "
              "allows. Check the units and the token estimate.")
    if share < 0.6:
        _fail(f"The trial reached only {share:.0%} of the rate the tier allows: the limiter is too strict.")
    _passed(f"trial at the tier (sped up {scale}×): {share:.0%} of the allowed rate, {rejected:.1%} of "
            "requests answered 429.")


async def check_finish(finish: Callable[..., Any], *, n: int = 60) -> None:
    """Exercise 06-3: rerun only the recorded errors of a JSONL run, return one record per input in order."""
    import tempfile
    from pathlib import Path

    from helpers.backend import get_llm, make_chain
    from helpers.mock import get_mock
    from helpers.runners import run_to_jsonl

    if not inspect.iscoroutinefunction(finish):
        _fail("Define finish with `async def`, so it can await run_to_jsonl.")
    template = "What is {a} - {b}?"
    chain = make_chain(template, get_llm(backend="mock", max_retries=0))
    inputs: list[dict[str, Any]] = [{"a": 1000 + i, "b": i * 7} for i in range(n)] + [{"a": 5, "c": 3}]
    mock = get_mock()
    saved = mock.settings()
    folder = tempfile.TemporaryDirectory()
    path = Path(folder.name) / "finish.jsonl"
    try:
        mock.reset()
        mock.configure(speed=20, error_rate=0.2, drop_rate=0.05, hang_rate=0.0, rpm_limit=0, tpm_limit=0)
        first = await run_to_jsonl(chain, inputs, path, max_concurrency=20, timeout=2.0, progress=False)
        before = mock.stats()["requests"]
        records = await _call_learner(finish, chain, inputs, path)
        sent = mock.stats()["requests"] - before
    finally:
        mock.reset()
        mock.configure(**vars(saved))
        folder.cleanup()

    total = len(inputs)
    if records is None:
        _fail("finish returned None: return the final records (read_jsonl_results(path)).")
    records = list(records)
    if sent >= first.ok:
        _fail(f"{sent} requests were sent for {first.failed} recorded errors: you reran inputs that already had "
              "an answer. Keep resume=True (the default) and pass retry_errors=True.")
    if sent == 0:
        _fail("Nothing was sent: run_to_jsonl skips recorded errors too, unless you pass retry_errors=True.")
    if len(records) > total:
        _fail(f"{len(records)} records for {total} inputs: the file holds a line per run of an input; keep the "
              "last record per index (read_jsonl_results does).")
    if [r.get("index") if isinstance(r, dict) else None for r in records] != list(range(total)):
        _fail(f"Expected one record per input, in input order (indices 0 to {total - 1}): use read_jsonl_results.")
    for index, (item, record) in enumerate(zip(inputs, records)):
        if index == total - 1:
            if "error" not in record or record["error"].get("type") != "KeyError":
                _fail("The last input has a typo ('c' instead of 'b'): it must stay a recorded KeyError.")
            continue
        if "error" in record:
            _fail(f"Input {index} still ends in {record['error']['type']}, a temporary error: retry with a "
                  "RetryPolicy (retry=RetryPolicy()), with enough attempts.")
        expected = f"{item['a']} - {item['b']} = {item['a'] - item['b']}"
        if record.get("output") != expected:
            _fail(f"Input {index}'s output is {record.get('output')!r}, not {expected!r}.")
    _passed(f"{first.failed} recorded errors rerun with {sent} requests; {total - 1} answers and the one "
            "typo's KeyError, one record per input, in order.")


# ----------------------------------------------------------------------------- lesson 02


class _CallCounter(BaseCallbackHandler):
    """Counts chat-model calls started, and the most in flight at once."""

    run_inline = True

    def __init__(self) -> None:
        self.started = 0
        self.in_flight = 0
        self.peak = 0

    def on_chat_model_start(self, serialized: Any, messages: Any, **kw: Any) -> None:
        self.started += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    def on_llm_end(self, response: Any, **kw: Any) -> None:
        self.in_flight -= 1

    def on_llm_error(self, error: BaseException, **kw: Any) -> None:
        self.in_flight -= 1


_SENTENCES_TEMPLATE = "Write a few sentences about {topic}."


def _sentence_task(topics: list[str], *callbacks: Any) -> tuple[Runnable, list[dict], list[str]]:
    """A mock chain asking for a few sentences per topic, its inputs, and the answers it will give."""
    from helpers.backend import get_llm, make_chain
    from helpers.mock import reply_for

    llm = get_llm(backend="mock")
    chain = make_chain(_SENTENCES_TEMPLATE, llm).with_config(callbacks=list(callbacks))
    expected = [
        reply_for(llm.model_name, [{"role": "user", "content": _SENTENCES_TEMPLATE.format(topic=t)}])
        for t in topics
    ]
    return chain, [{"topic": t} for t in topics], expected


async def _stream_workers_left(before: set) -> int:
    """How many `stream_merged` workers started since `before` are still running.

    Waits for them to stop (an abandoned stream is closed a moment later by Python), cancelling
    only those still running after 5 s. Other tasks are left alone: they may be cleanup.
    """
    import asyncio

    def is_worker(task: asyncio.Task) -> bool:
        return getattr(task.get_coro(), "__qualname__", "") == "_merged_events.<locals>.worker"

    left = [task for task in asyncio.all_tasks() - before if not task.done() and is_worker(task)]
    if left:
        _, pending = await asyncio.wait(left, timeout=5)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return len(left)


async def check_first_answers(first_answers: Callable[..., Any], *, n: int = 40, k: int = 10) -> None:
    """Exercise 02-1: the first k whole answers to finish, stream stopped early, no task left running."""
    import asyncio

    if not inspect.iscoroutinefunction(first_answers):
        _fail("Define the function with `async def`, so it can read the stream with `async for`.")
    counter = _CallCounter()
    chain, inputs, expected = _sentence_task([f"subject {i}" for i in range(n)], counter)
    before = asyncio.all_tasks()
    try:
        found = await _call_learner(first_answers, chain, inputs, k)
    finally:
        leaked = await _stream_workers_left(before)
    if leaked:
        _fail(
            f"{leaked} of the stream's workers were still running when your function returned, calling "
            "the model for answers nobody reads. Read the stream inside `async with contextlib.aclosing(stream_merged(...)) "
            "as events:` so leaving the block (break or return) closes it at once."
        )
    if not isinstance(found, dict):
        _fail(f"Return a dict {{index: answer}}, not a {type(found).__name__}.")
    if len(found) != k:
        _fail(f"Expected {k} answers, got {len(found)}: count only 'done' events, and stop at {k}.")
    for index, text in found.items():
        if not isinstance(index, int) or not 0 <= index < n:
            _fail(f"Key {index!r} is not an input index: use event.index as the key.")
        if text != expected[index]:
            if isinstance(text, str) and text in expected[index]:
                _fail(
                    f"The answer for input {index} is cut short ({len(text)} of {len(expected[index])} "
                    "characters): that is a token, or the text so far. Keep the text of 'done' events."
                )
            _fail(f"The answer for input {index} is not that input's answer: key each event.text by event.index.")
    if counter.peak > 10:
        _fail(f"{counter.peak} requests were in flight at once: pass max_concurrency=10 to stream_merged.")
    if set(found) == set(range(k)) and counter.started <= k:
        _fail(
            f"Those are the first {k} inputs, not the first {k} to finish: stream all {n} inputs "
            "and keep the first 'done' events that arrive."
        )
    if counter.started >= n:
        _fail(
            f"All {n} inputs were sent to the model: you read the whole stream. Break out of the loop "
            f"as soon as you have {k} answers."
        )
    _passed(f"the first {k} whole answers; the stream stopped before all {n} requests were sent, "
            "and no worker was left running.")


async def check_ttft_per_input(ttft_per_input: Callable[..., Any], *, n: int = 12) -> None:
    """Exercise 02-2: per-input TTFT from the merged stream, compared with the model's own TTFT."""
    from helpers.mock import reply_for, split_into_pieces

    if not inspect.iscoroutinefunction(ttft_per_input):
        _fail("Define the function with `async def`, so it can read the stream with `async for`.")
    # Long answers, so the time to the first token and to the last one are far apart.
    long_topics = [
        topic
        for topic in (f"subject {i}" for i in range(200))
        if len(split_into_pieces(reply_for("", [{"role": "user", "content": _SENTENCES_TEMPLATE.format(topic=topic)}])))
        >= 50
    ][:n]
    timer = RequestTimer()
    chain, inputs, _ = _sentence_task(long_topics, timer)
    result = await _call_learner(ttft_per_input, chain, inputs)

    if not isinstance(result, dict):
        _fail(f"Return a dict {{index: seconds}}, not a {type(result).__name__}.")
    if sorted(result) != list(range(n)):
        _fail(f"Expected one TTFT for each of the {n} inputs (keys 0 to {n - 1}), got keys {sorted(result)}.")
    values = list(result.values())
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in values):
        _fail("Every value must be a number of seconds >= 0.")
    if peak_overlap(timer.intervals()) < n:
        _fail(f"Not all {n} inputs streamed at once: pass max_concurrency=len(inputs), so every TTFT "
              "is measured from the same start.")
    yours = statistics.median(values)
    model_ttft = statistics.median(timer.ttfts())
    model_latency = statistics.median(timer.latencies())
    if yours > 50 * model_latency:
        _fail(f"Your median is {yours:.0f}: that looks like milliseconds. Return seconds.")
    if yours > (model_ttft + model_latency) / 2:
        _fail(
            f"Your median {yours:.3f} s is close to the whole latency ({model_latency:.3f} s), not the "
            f"TTFT ({model_ttft:.3f} s): record the time of each input's FIRST token event only."
        )
    if yours < 0.5 * model_ttft:
        _fail(
            f"Your median {yours:.3f} s is far below the model's TTFT ({model_ttft:.3f} s): measure from "
            "one start time taken before the stream, not from the previous event."
        )
    if yours > 1.5 * model_ttft + 0.05:
        _fail(f"Your median {yours:.3f} s is well above the model's TTFT ({model_ttft:.3f} s): "
              "take the start time just before you start reading the stream.")
    _passed(f"median TTFT {yours:.3f} s from the events; the model measured {model_ttft:.3f} s "
            f"(total latency {model_latency:.3f} s).")


# ----------------------------------------------------------------------------- lesson 03


def _mock_made_slow(prompts: list[str], tail_fraction: float) -> list[int]:
    """Indices of the prompts the mock makes slow on their first attempt (its tail roll)."""
    from helpers.backend import DEFAULT_MODEL
    from helpers.mock import request_key, roll

    seed = 0
    try:
        from helpers.mock import get_mock

        seed = get_mock().settings().seed
    except Exception:
        pass
    return [
        i
        for i, prompt in enumerate(prompts)
        if roll(seed, "tail", request_key(DEFAULT_MODEL, [{"role": "user", "content": prompt}]), 0) < tail_fraction
    ]


async def check_find_stragglers(find_stragglers: Callable[..., Any], *, n: int = 200) -> None:
    """Exercise 03-1: indices whose latency is over factor × the median, from a BatchReport."""
    from helpers.backend import get_llm, translation_chain
    from helpers.mock import get_mock
    from helpers.runners import run_tracked

    mock = get_mock()
    before = mock.settings().tail_fraction
    mock.reset()  # attempt 0 for every prompt, so the mock's slow set is known
    mock.configure(tail_fraction=0.05)
    texts = [f"慢{i}" for i in range(n)]
    try:
        report = await run_tracked(
            translation_chain(get_llm(backend="mock")), [{"text": t} for t in texts], max_concurrency=20, progress=False
        )
    finally:
        mock.configure(tail_fraction=before)
    intervals = report.intervals
    latencies = [end - start for start, end in intervals]

    def over(values: list[float], factor: float, centre: float | None = None) -> list[int]:
        limit = factor * (statistics.median(values) if centre is None else centre)
        return [i for i, value in enumerate(values) if value > limit]

    async def call(factor: float) -> Any:
        try:
            result = find_stragglers(report, factor=factor)
            return await result if inspect.isawaitable(result) else result
        except NotImplementedError:
            raise ExerciseFailed(NOT_DONE) from None

    result = await call(3.0)
    expected = over(latencies, 3.0)
    if result is None:
        _fail("Your function returned None: return the list of indices.")
    result = list(result)
    if any(isinstance(x, float) for x in result):
        _fail("Return the inputs' indices (ints), not their latencies: use enumerate().")
    if result != expected:
        if sorted(result) == expected:
            _fail("The right inputs, but not in input order: return them sorted by index.")
        if [i - 1 for i in result] == expected:
            _fail("Every index is one too high: enumerate() starts at 0, like report.results.")
        ends = [end for _, end in intervals]
        if result == over(ends, 3.0):
            _fail("You compared end times, which grow through the run: the latency is end - start.")
        if result == over(latencies, 3.0, statistics.mean(latencies)):
            _fail("You compared with the mean, which the slow requests pull up: use the median.")
        _fail(f"Expected {len(expected)} stragglers, got {len(result)}: keep the indices whose "
              "end - start is more than factor × the median of all latencies.")
    result = list(await call(1.2))
    if result != over(latencies, 1.2):
        if result == over(latencies, 1.2, statistics.mean(latencies)):
            _fail("With factor=1.2 you compared with the mean, which the slow requests pull up: use the median.")
        _fail("With factor=1.2 your answer should change: use the factor argument, not a fixed 3.")
    slow = _mock_made_slow([f"翻译成英文：{t}" for t in texts], 0.05)
    found = sum(i in expected for i in slow)
    print(f"Of the {len(slow)} inputs the mock made 5× slower you found {found / len(slow):.0%} "
          "(on a busy machine, other requests can be slow too).")
    _passed("the right stragglers for factor 3 and for factor 1.2, in input order.")


async def check_run_with_ttft(run_with_ttft: Callable[..., Any], *, n: int = 40) -> None:
    """Exercise 03-2: run_tracked with a streaming model and a RequestTimer, returning p99 TTFT."""
    from helpers.backend import get_llm, make_chain
    from helpers.metrics import percentile
    from helpers.mock import reply_for, split_into_pieces
    from helpers.runners import BatchReport, run_tracked

    if not inspect.iscoroutinefunction(run_with_ttft):
        _fail("Define the function with `async def`, so it can `await run_tracked(...)`.")
    topics = [  # long answers, so TTFT and latency are far apart
        t
        for t in (f"subject {i}" for i in range(300))
        if len(split_into_pieces(reply_for("", [{"role": "user", "content": _SENTENCES_TEMPLATE.format(topic=t)}])))
        >= 45
    ][:n]
    try:
        result = await _call_learner(run_with_ttft, [{"topic": t} for t in topics])
    except ValueError as error:  # percentile() / statistics of an empty list
        _fail(
            f"{type(error).__name__}: {error}. The timer recorded no first tokens: `ainvoke` streams only "
            "when the model is built with get_llm(streaming=True), and the timer must be in "
            "config={'callbacks': [timer]}."
        )
    if not isinstance(result, tuple) or len(result) != 2:
        _fail("Return a pair: (report, p99_ttft).")
    report, value = result
    if not isinstance(report, BatchReport):
        _fail(f"The first item should be run_tracked's BatchReport, got a {type(report).__name__}.")
    if report.ok != n:
        _fail(f"{report.ok} of {n} inputs succeeded: pass the inputs unchanged to run_tracked.")
    if report.max_concurrency != 20:
        _fail(f"Use max_concurrency=20 (you used {report.max_concurrency}).")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        _fail(f"p99_ttft must be a positive number of seconds, got {value!r}.")
    if value > 20:
        _fail(f"p99_ttft = {value:.0f}: that looks like milliseconds. Return seconds.")
    if value >= 0.8 * report.latency.p99:
        _fail(
            f"{value:.3f} s is about the p99 latency ({report.latency.p99:.3f} s), not the TTFT: "
            "take percentile(timer.ttfts(), 99), not the latencies."
        )
    timer = RequestTimer()  # a reference run, to compare with
    reference = make_chain(_SENTENCES_TEMPLATE, get_llm(backend="mock", streaming=True))
    await run_tracked(reference, [{"topic": t} for t in topics], max_concurrency=20, progress=False,
                      config={"callbacks": [timer]})
    median_ttft = statistics.median(timer.ttfts())
    if value < 0.9 * median_ttft:
        _fail(
            f"{value:.3f} s is below the median TTFT ({median_ttft:.3f} s), so it cannot be the p99: "
            "percentile() takes q from 0 to 100 (99, not 0.99)."
        )
    _passed(f"p99 TTFT {value:.3f} s, against p99 latency {report.latency.p99:.3f} s "
            f"(median TTFT in a second run: {median_ttft:.3f} s).")


# ------------------------------------------------------------------ lesson 04: chunks, sliding window, resume


def _call_sync(function: Callable[..., Any], *args: Any) -> Any:
    """Call the learner's (non-async) function; an unsolved exercise becomes a clear ExerciseFailed."""
    try:
        return function(*args)
    except NotImplementedError:
        raise ExerciseFailed(NOT_DONE) from None


async def check_questions_from(questions_from: Callable[[Any], Any]) -> None:
    """Exercise 04-1: a lazy generator of {"text": line} over the non-empty lines of a file."""
    import tempfile
    from collections.abc import Iterator
    from pathlib import Path

    from helpers.backend import get_llm, translation_chain
    from helpers.mock import reply_for
    from helpers.runners import read_jsonl_results, run_to_jsonl

    lines = ["测试1\n", "\n", "  你好世界  \n", "数据\n", "   \n", "最后一行"]  # the last has no line break
    expected = [{"text": "测试1"}, {"text": "你好世界"}, {"text": "数据"}, {"text": "最后一行"}]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "questions.txt"
        path.write_text("".join(lines), encoding="utf-8")
        produced = _call_sync(questions_from, path)
        if produced is None:
            _fail("questions_from returned None: `yield` each input (a function with yield is a generator).")
        if not isinstance(produced, Iterator):
            _fail(f"questions_from returned a {type(produced).__name__}: that reads the whole file at once. "
                  "Use `yield` inside `for line in file:` so inputs are made one at a time.")
        source = inspect.getsource(questions_from) if inspect.isfunction(questions_from) else ""
        if ".readlines(" in source or ".read(" in source or "read_text(" in source:
            _fail("It yields one at a time, but reads the whole file first (read/readlines/read_text). "
                  "Iterate over the open file: `for line in file:` reads one line at a time.")
        items = list(produced)
        if items and not isinstance(items[0], dict):
            _fail(f"It yields {type(items[0]).__name__}s; the chain's prompt needs a mapping: yield {{'text': ...}}.")
        texts = [item.get("text") for item in items]
        if any(isinstance(text, str) and text.endswith("\n") for text in texts):
            _fail("The texts still end with the line break: strip it (line.strip()).")
        if any(isinstance(text, str) and not text.strip() for text in texts):
            _fail("Blank lines became inputs: skip lines that are empty after strip().")
        if any(isinstance(text, str) and text != text.strip() for text in texts):
            _fail("Some texts keep surrounding spaces: use line.strip(), not only rstrip('\\n').")
        if items != expected:
            _fail(f"Expected {expected}, got {items}. Is the last line (no line break at the end) missing?")
        chain = translation_chain(get_llm(backend="mock"))
        out = Path(folder) / "answers.jsonl"
        await run_to_jsonl(chain, questions_from(path), out, max_concurrency=4, progress=False)
        records = read_jsonl_results(out)
    answers = [record.get("output") for record in records]
    wanted = [reply_for(chain.steps[1].model_name, [{"role": "user", "content": f"翻译成英文：{item['text']}"}])
              for item in expected]
    if answers != wanted:
        _fail(f"run_to_jsonl over your generator gave {answers}, expected {wanted}.")
    _passed(f"{len(expected)} inputs from 6 lines, made one at a time; run_to_jsonl answered {answers}.")


def check_remaining(remaining: Callable[[Any, int], Any]) -> None:
    """Exercise 04-2: indices still to run, from a crashed run's JSONL (duplicates, errors, a cut-off line)."""
    import json
    import tempfile
    from pathlib import Path

    error = {"type": "InternalServerError", "message": "Error code: 500"}
    records = [{"index": 0, "output": "A0"}, {"index": 2, "output": "A2"}, {"index": 3, "error": error},
               {"index": 5, "output": "A5"}, {"index": 2, "output": "A2"},  # index 2 twice
               {"index": 6, "error": error}, {"index": 6, "output": "A6"}, {"index": 8, "output": "A8"}]
    text = "".join(json.dumps(record) + "\n" for record in records) + '{"index": 9, "outp'  # cut by the kill
    expected = [1, 3, 4, 7, 9]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "killed.jsonl"
        path.write_text(text, encoding="utf-8")
        try:
            answer = _call_sync(remaining, path, 10)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            raise ExerciseFailed("Your function raised on the last line, which the kill cut in half "
                                 f"({type(exc).__name__}). Skip lines that are not valid JSON.") from None
    if isinstance(answer, int):
        _fail(f"You returned a count ({answer}); return the list of indices, e.g. [1, 3, ...].")
    if answer is None:
        _fail("remaining returned None: return a sorted list of indices.")
    answer = list(answer)
    if sorted(answer) != answer:
        _fail(f"Return the indices sorted, got {answer}.")
    if 3 not in answer:
        _fail("Index 3's only record is an error, so it still needs a run: only an 'output' record means done.")
    if 6 in answer:
        _fail("Index 6 failed once and then succeeded: the LAST record for an index decides.")
    if 2 in answer or 0 in answer:
        _fail("Indices 0 and 2 have answers (2 even twice): they are done.")
    if 9 not in answer:
        _fail("Index 9's line was cut off by the kill: it is not a record, so 9 still needs a run.")
    if answer != expected:
        _fail(f"Expected {expected}, got {answer}: every index in range(n) without a final answer "
              "(never started, like 1, 4 and 7, included).")
    _passed(f"remaining = {answer}: errors rerun, duplicates counted once, the cut-off line ignored.")


def check_slot_utilisation(slot_utilisation: Callable[..., Any], runs: dict[str, dict] | None = None) -> None:
    """Exercise 04-3: busy slot-time / (max_concurrency × span), on made-up intervals and measured runs."""
    intervals = [(5.0, 6.0), (5.0, 5.5), (5.5, 7.0), (6.0, 6.5)]  # busy 3.5 s over 2 s with 2 slots
    answer = _call_sync(slot_utilisation, intervals, 2)
    if not isinstance(answer, (int, float)) or isinstance(answer, bool):
        _fail(f"Return a number (a share from 0 to 1), got {answer!r}.")
    if math.isclose(answer, 1.75):
        _fail("Got 1.75, more than 1: divide by max_concurrency too (there are that many slots).")
    if math.isclose(answer, 3.5 / (2 * 7.0)):
        _fail("Measure the span from the first start, not from 0: (last end − first start).")
    if math.isclose(answer, 1.0):
        _fail("Got 1.0: that counts requests, not their durations. Sum end − start over the intervals.")
    if not math.isclose(answer, 0.875):
        _fail(f"For {intervals} with 2 slots: busy 3.5 s / (2 × 2 s) = 0.875; you returned {answer!r}.")
    shares = []
    for name, run in (runs or {}).items():
        mine = sum(end - start for start, end in run["intervals"]) / (
            run["concurrency"] * (max(e for _, e in run["intervals"]) - min(s for s, _ in run["intervals"])))
        theirs = _call_sync(slot_utilisation, run["intervals"], run["concurrency"])
        if not math.isclose(theirs, mine, rel_tol=1e-6):
            _fail(f"On the measured {name} run you got {theirs!r}, expected {mine:.4f}.")
        shares.append(f"{name} {mine:.0%}")
    _passed("0.875 on the made-up case" + (f"; measured runs: {', '.join(shares)}" if shares else "") + ".")


# ------------------------------------------------------------------ lesson 05: performance comparison


def check_knee(find_knee: Callable[[Any], Any], rows: list[dict[str, Any]]) -> None:
    """Exercise 05-1: the smallest concurrency whose throughput is >= 90 % of the best measured."""
    made_up = [(200, 255.0, 1000.0), (1, 5.0, 5.0), (1000, 262.0, 5000.0), (10, 48.0, 50.0), (100, 250.0, 500.0),
               (20, 95.0, 100.0), (50, 240.0, 250.0), (500, 258.0, 2500.0), (2, 10.0, 10.0), (5, 24.0, 25.0)]
    made_up_rows = [{"concurrency": c, "throughput": x, "ideal": ideal} for c, x, ideal in made_up]
    answer = _call_sync(find_knee, [dict(row) for row in made_up_rows])
    if answer == 1000:
        _fail("You returned the concurrency with the highest throughput. On a plateau that is wherever noise "
              "put the maximum; the knee is the first concurrency that gets within 90 % of it.")
    if isinstance(answer, float) and answer in {x for _, x, _ in made_up}:
        _fail(f"You returned a throughput ({answer}); return the concurrency of that row.")
    if answer == 200:
        _fail("The rows are not sorted by concurrency: take the smallest qualifying concurrency (min), "
              "not the first one in the list.")
    if answer == 100:
        _fail("Compare each throughput with 90 % of the best *measured* throughput, not with the ideal "
              "C / L0, and not with > 90 % of the ideal.")
    if answer != 50:
        _fail(f"On a made-up sweep (best 262 req/s, so the bar is 235.8) the knee is C = 50; you returned {answer!r}.")
    best = max(row["throughput"] for row in rows)
    expected = min(row["concurrency"] for row in rows if row["throughput"] >= 0.9 * best)
    mine = _call_sync(find_knee, [dict(row) for row in rows])
    if mine != expected:
        _fail(f"On the measured sweep you returned {mine!r}; by the definition it is {expected}.")
    _passed("find_knee picks the first concurrency within 90 % of the best, on a made-up and on your measured sweep.")


def check_predicted_throughput(predicted: Callable[..., Any], rows: list[dict[str, Any]], *,
                               cpu_ms: float, rpm_limit: int) -> None:
    """Exercise 05-2: min(C / L, rpm / 60, 1000 / cpu_ms), on known cases and against the measured sweep."""
    cases = [((10, 0.5, 0, 2.0), 20.0), ((100, 0.5, 0, 4.0), 200.0), ((100, 0.2, 6000, 4.0), 100.0),
             ((1000, 0.2, 0, 4.0), 250.0)]
    for args, expected in cases:
        answer = _call_sync(predicted, *args)
        if not isinstance(answer, (int, float)) or isinstance(answer, bool):
            _fail(f"Return a number of requests per second, got {answer!r}.")
        concurrency, latency, rpm, cpu = args
        if rpm == 0 and math.isclose(answer, 0.0, abs_tol=1e-9):
            _fail("rpm_limit=0 means no limit, not a limit of 0: leave it out of the min.")
        if rpm and math.isclose(answer, min(concurrency / latency, 1000 / cpu)):
            _fail(f"For {args}: the limit of {rpm} requests a minute allows {rpm / 60:.0f} a second; "
                  "did you leave it out, or forget to divide by 60?")
        if math.isclose(answer, concurrency / latency) and concurrency / latency > 1000 / cpu:
            _fail(f"For {args}: {cpu} ms of CPU per request caps one core at {1000 / cpu:.0f} req/s; "
                  "add the CPU ceiling 1000 / cpu_ms to the min.")
        if math.isclose(answer, min(concurrency / latency, 1 / cpu)):
            _fail("cpu_ms is in milliseconds: the ceiling is 1000 / cpu_ms requests a second.")
        if math.isclose(answer, latency / concurrency):
            _fail("Little's law is throughput = concurrency / latency, not latency / concurrency.")
        if not math.isclose(answer, expected):
            _fail(f"For concurrency, latency, rpm_limit, cpu_ms = {args} expected {expected}, got {answer!r}.")
    worst = 0.0
    for row in rows:
        guess = _call_sync(predicted, row["concurrency"], row["lone_latency_s"], rpm_limit, cpu_ms)
        ratio = row["throughput"] / guess
        worst = max(worst, abs(1 - ratio))
        if not 0.3 <= ratio <= 2.0:  # wide: a busy machine moves measurements; unit mistakes are 60× or 1000×
            _fail(f"At C = {row['concurrency']} you predict {guess:.0f} req/s but {row['throughput']:.0f} req/s "
                  "were measured: check the units of each argument.")
    _passed(f"right on 4 known cases; on your sweep every prediction is within {worst:.0%} of the measurement.")
