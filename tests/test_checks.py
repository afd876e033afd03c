"""Every exercise check rejects plausible wrong answers with the right hint (so the checks can fail)."""

import asyncio
import math

import pytest

from helpers.backend import translation_chain, get_llm
from helpers.checks import ExerciseFailed, _mean_latency, check_concurrency_choice, check_ordered_progress
from helpers.mock import get_mock

LOOP = asyncio.new_event_loop()  # one loop for all, as in a notebook (ChatOpenAI caches its client)


def run(coro):
    return LOOP.run_until_complete(coro)


@pytest.fixture(scope="module", autouse=True)
def fast_mock():
    mock = get_mock()
    mock.reset()
    mock.configure(speed=20, error_rate=0.0, hang_rate=0.0, drop_rate=0.0, rpm_limit=0, tpm_limit=0)
    yield mock


@pytest.fixture(scope="module")
def chain():
    return translation_chain(get_llm(backend="mock"))


# ---------------------------------------------------------------- 01, exercise 1: size the concurrency


@pytest.mark.parametrize(
    "choice, hint",
    [
        (None, "Set my_concurrency"),
        (12.5, "whole number"),
        (0, "at least 1"),
        (1, "Too low"),
        (10_000, "over 4×"),
    ],
)
def test_concurrency_choice_rejects(chain, choice, hint):
    with pytest.raises(ExerciseFailed, match=hint):
        run(check_concurrency_choice(chain, choice, n=300, budget_s=3.0))


def test_concurrency_choice_accepts_littles_law_with_headroom(chain, capsys):
    latency = run(_mean_latency(chain))
    choice = math.ceil(1.5 * 300 * latency / 3.0)  # Little's law, C = X * L, plus headroom
    run(check_concurrency_choice(chain, choice, n=300, budget_s=3.0))
    assert "✓ Passed" in capsys.readouterr().out


# ---------------------------------------------------------------- 01, exercise 2: progress in order


async def appends_in_completion_order(chain, inputs):
    results = []
    async for _, output in chain.abatch_as_completed(inputs, config={"max_concurrency": 10}):
        results.append(output)
    return results


async def returns_pairs(chain, inputs):
    return [pair async for pair in chain.abatch_as_completed(inputs, config={"max_concurrency": 10})]


async def no_concurrency_limit(chain, inputs):
    return await asyncio.gather(*(chain.ainvoke(x) for x in inputs))


async def drops_the_last_item(chain, inputs):
    return await chain.abatch(inputs[:-1], config={"max_concurrency": 10})


async def not_solved(chain, inputs):
    raise NotImplementedError()


def not_async(chain, inputs):
    return chain.batch(inputs, config={"max_concurrency": 10})


@pytest.mark.parametrize(
    "answer, hint",
    [
        (appends_in_completion_order, "completion order"),
        (returns_pairs, r"not \(index, output\) pairs"),
        (no_concurrency_limit, "in flight at once"),
        (drops_the_last_item, "exactly one output"),
        (not_solved, "Not solved yet"),
        (not_async, "async def"),
    ],
)
def test_ordered_progress_rejects(answer, hint):
    with pytest.raises(ExerciseFailed, match=hint):
        run(check_ordered_progress(answer))


def test_ordered_progress_accepts_a_correct_answer(capsys):
    async def correct(chain, inputs):
        results = [None] * len(inputs)
        async for index, output in chain.abatch_as_completed(inputs, config={"max_concurrency": 10}):
            results[index] = output
        return results

    run(check_ordered_progress(correct))
    assert "✓ Passed" in capsys.readouterr().out


# ---------------------------------------------------------------- 06, exercise 1: a retry rule

import json  # noqa: E402

import openai  # noqa: E402

from helpers.checks import check_finish, check_retry_rule, check_tier_limiter  # noqa: E402
from helpers.reliability import RetryPolicy, TokenRateLimiter  # noqa: E402
from helpers.runners import read_jsonl_results, run_to_jsonl  # noqa: E402


def correct_retry_rule(exc):
    if isinstance(exc, openai.RateLimitError):
        return exc.code != "insufficient_quota"
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409) or exc.status_code >= 500
    return isinstance(exc, (openai.APIConnectionError, TimeoutError, ConnectionError))


def rule_not_solved(exc):
    raise NotImplementedError()


async def rule_async(exc):
    return True


@pytest.mark.parametrize(
    "rule, hint",
    [
        (lambda exc: True, "A 400 fails the same way"),  # what .with_retry() does by default
        (lambda exc: getattr(exc, "status_code", 0) == 429 or getattr(exc, "status_code", 0) >= 500, "timeout has no status"),
        (lambda exc: isinstance(exc, openai.RateLimitError), "Server errors"),
        (lambda exc: isinstance(exc, (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError,
                                      TimeoutError)), "insufficient_quota"),
        (lambda exc: not isinstance(exc, openai.BadRequestError), "missing prompt variable"),
        (lambda exc: "yes", "return True or False"),
        (rule_not_solved, "Not solved yet"),
        (rule_async, "plain `def`"),
    ],
)
def test_retry_rule_rejects(rule, hint):
    with pytest.raises(ExerciseFailed, match=hint):
        run(check_retry_rule(rule))


def test_retry_rule_accepts_a_correct_rule(capsys):
    run(check_retry_rule(correct_retry_rule))
    assert "✓ Passed" in capsys.readouterr().out


# ---------------------------------------------------------------- 06, exercise 2: limiter settings for a tier


@pytest.fixture(scope="module")
def review_chain():
    from helpers.backend import make_chain

    return make_chain("Write a 200-word product review of: {product}", get_llm(backend="mock", max_tokens=500))


@pytest.mark.parametrize(
    "make_limiter, hint",
    [
        (lambda prompt: None, "Set my_limiter first"),
        (lambda prompt: "3000 RPM", "build a TokenRateLimiter"),
        (lambda prompt: TokenRateLimiter(rpm=2900, max_tokens=500, prompt=prompt), "Set tpm too"),
        (lambda prompt: TokenRateLimiter(rpm=50, tpm=16_000, max_tokens=500, prompt=prompt), "per-second figure"),
        (lambda prompt: TokenRateLimiter(rpm=3000, tpm=1_200_000, max_tokens=500, prompt=prompt), "above your tier"),
        (lambda prompt: TokenRateLimiter(rpm=1500, tpm=500_000, max_tokens=500, prompt=prompt), "more than 20% below"),
        (lambda prompt: TokenRateLimiter(rpm=2900, tpm=970_000, prompt=prompt), "model sets max_tokens=500"),
        (lambda prompt: TokenRateLimiter(rpm=2900, tpm=970_000, max_tokens=500), "Pass prompt="),
    ],
)
def test_tier_limiter_rejects(review_chain, make_limiter, hint):
    with pytest.raises(ExerciseFailed, match=hint):
        run(check_tier_limiter(make_limiter(review_chain.first), review_chain, rpm=3000, tpm=1_000_000))


def test_tier_limiter_accepts_a_good_limiter(review_chain, capsys):
    limiter = TokenRateLimiter(rpm=2900, tpm=970_000, max_tokens=500, prompt=review_chain.first)
    run(check_tier_limiter(limiter, review_chain, rpm=3000, tpm=1_000_000))
    assert "✓ Passed" in capsys.readouterr().out


# ---------------------------------------------------------------- 06, exercise 3: finish the job


async def finish_correctly(chain, inputs, path):
    await run_to_jsonl(chain, inputs, path, max_concurrency=20, retry=RetryPolicy(base_delay=0.01), timeout=2.0,
                       retry_errors=True, progress=False)
    return read_jsonl_results(path)


async def finish_by_rerunning_everything(chain, inputs, path):
    await run_to_jsonl(chain, inputs, path, max_concurrency=20, retry=RetryPolicy(base_delay=0.01), resume=False,
                       progress=False)
    return read_jsonl_results(path)


async def finish_without_retry_errors(chain, inputs, path):
    await run_to_jsonl(chain, inputs, path, max_concurrency=20, retry=RetryPolicy(base_delay=0.01), progress=False)
    return read_jsonl_results(path)


async def finish_without_retry_policy(chain, inputs, path):
    await run_to_jsonl(chain, inputs, path, max_concurrency=20, retry_errors=True, progress=False)
    return read_jsonl_results(path)


async def finish_returning_every_line(chain, inputs, path):
    await finish_correctly(chain, inputs, path)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def finish_not_solved(chain, inputs, path):
    raise NotImplementedError()


def finish_not_async(chain, inputs, path):
    return []


@pytest.mark.parametrize(
    "answer, hint",
    [
        (finish_by_rerunning_everything, "reran inputs that already had an answer"),
        (finish_without_retry_errors, "unless you pass retry_errors=True"),
        (finish_without_retry_policy, "retry with a RetryPolicy"),
        (finish_returning_every_line, "keep the last record per index"),
        (finish_not_solved, "Not solved yet"),
        (finish_not_async, "async def"),
    ],
)
def test_finish_rejects(answer, hint):
    with pytest.raises(ExerciseFailed, match=hint):
        run(check_finish(answer))


def test_finish_accepts_a_correct_answer(capsys):
    run(check_finish(finish_correctly))
    assert "✓ Passed" in capsys.readouterr().out
