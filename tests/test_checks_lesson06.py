"""Lesson 06's checks reject plausible wrong answers with the right hint."""

import json
import openai
import pytest

from helpers.backend import get_llm
from helpers.checks import ExerciseFailed, check_finish, check_retry_rule, check_tier_limiter
from helpers.reliability import RetryPolicy, TokenRateLimiter
from helpers.runners import read_jsonl_results, run_to_jsonl


from checks_support import chain, fast_mock, run  # noqa: F401  (fixtures)


# ---------------------------------------------------------------- 06, exercise 1: a retry rule





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
