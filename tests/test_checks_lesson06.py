"""Lesson 06's checks reject plausible wrong answers with the right hint, and pass the notebook's solutions.

Every module-level name carries its check's name (retry_rule_, tier_limiter_, finish_), so the
per-lesson test files can be merged into one without collisions.
"""

import openai
import pytest

from helpers.backend import get_llm, make_chain
from helpers.checks import ExerciseFailed, check_finish, check_retry_rule, check_tier_limiter
from helpers.reliability import RetryPolicy, TokenRateLimiter
from helpers.runners import run_tracked

from checks_support import chain, fast_mock, run  # noqa: F401  (fixtures)


# ---------------------------------------------------------------- 06, exercise 1: a retry rule


def retry_rule_solution(exc):  # the notebook's solution
    if isinstance(exc, openai.RateLimitError):
        return exc.code != "insufficient_quota"
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409) or exc.status_code >= 500
    return isinstance(exc, (openai.APIConnectionError, TimeoutError, ConnectionError))


def retry_rule_deny_list(exc):  # "everything but the errors I know are permanent": retries 401, 404, parser errors
    if isinstance(exc, (openai.BadRequestError, KeyError)):
        return False
    return getattr(exc, "code", None) != "insufficient_quota"


def retry_rule_every_status_but_400(exc):  # retries 401 and 404 too
    if getattr(exc, "code", None) == "insufficient_quota" or isinstance(exc, KeyError):
        return False
    status = getattr(exc, "status_code", None)
    return status != 400 if status else isinstance(exc, (openai.APIConnectionError, TimeoutError))


def retry_rule_without_builtin_timeout(exc):  # forgets what asyncio.timeout raises
    if isinstance(exc, openai.RateLimitError):
        return exc.code != "insufficient_quota"
    return isinstance(exc, (openai.InternalServerError, openai.APIConnectionError))


def retry_rule_not_solved(exc):
    raise NotImplementedError()


async def retry_rule_async(exc):
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
        (retry_rule_deny_list, r"retries a 401 .*allow-list"),
        (retry_rule_every_status_but_400, r"retries a 401"),
        (retry_rule_without_builtin_timeout, "built-in TimeoutError"),
        (lambda exc: "yes", "return True or False"),
        (retry_rule_not_solved, "Not solved yet"),
        (retry_rule_async, "plain `def`"),
    ],
)
def test_retry_rule_rejects(rule, hint):
    with pytest.raises(ExerciseFailed, match=hint):
        run(check_retry_rule(rule))


def test_retry_rule_deny_list_of_404_and_parser_errors_is_rejected():
    """A deny-list that remembers the 401 still retries a 404, then a parser error."""
    def knows_401(exc):
        return not isinstance(exc, openai.AuthenticationError) and retry_rule_deny_list(exc)

    with pytest.raises(ExerciseFailed, match=r"retries a 404"):
        run(check_retry_rule(knows_401))
    with pytest.raises(ExerciseFailed, match=r"OutputParserException"):
        run(check_retry_rule(lambda exc: not isinstance(exc, (openai.AuthenticationError, openai.NotFoundError))
                             and retry_rule_deny_list(exc)))


def test_retry_rule_accepts_the_solution(capsys):
    run(check_retry_rule(retry_rule_solution))
    assert "✓ Passed" in capsys.readouterr().out


# ---------------------------------------------------------------- 06, exercise 2: two workers, one account


@pytest.fixture(scope="module")
def tier_limiter_chain():
    return make_chain("Write a 200-word product review of: {product}", get_llm(backend="mock", max_tokens=500))


def tier_limiter_solution(prompt):  # the notebook's solution, as a factory of worker_limiter
    share = 0.95 / 2
    return lambda: TokenRateLimiter(rpm=3000 * share, tpm=1_000_000 * share, max_tokens=500, prompt=prompt)


def tier_limiter_shared(prompt):  # one limiter object for both workers
    one = TokenRateLimiter(rpm=1425, tpm=475_000, max_tokens=500, prompt=prompt)
    return lambda: one


def tier_limiter_not_solved(prompt):
    def worker_limiter():
        raise NotImplementedError()
    return worker_limiter


def tier_limiter_of(**kwargs):
    return lambda prompt: (lambda: TokenRateLimiter(**({"max_tokens": 500, "prompt": prompt} | kwargs)))


@pytest.mark.parametrize(
    "make_answer, hint",
    [
        (lambda prompt: None, "must be a function"),
        (lambda prompt: TokenRateLimiter(rpm=1425, tpm=475_000, max_tokens=500, prompt=prompt), "must be a function"),
        (lambda prompt: (lambda: "1425 RPM"), "return a TokenRateLimiter"),
        (tier_limiter_not_solved, "Not solved yet"),
        (tier_limiter_shared, "same limiter twice"),
        (tier_limiter_of(rpm=1425), "Set tpm too"),
        (tier_limiter_of(rpm=24, tpm=8_000), "per-second figure"),
        (tier_limiter_of(rpm=2850, tpm=950_000), "nearly\\) the whole tier"),  # each worker gets the whole tier
        (tier_limiter_of(rpm=1600, tpm=520_000), "above one worker's share"),
        (tier_limiter_of(rpm=1500, tpm=500_000), "no safety margin"),  # exactly half: what the issue found passing
        (tier_limiter_of(rpm=1000, tpm=300_000), "more than 20% below"),
        (tier_limiter_of(rpm=1425, tpm=475_000, max_tokens=100), "model sets max_tokens=500"),
        (lambda prompt: (lambda: TokenRateLimiter(rpm=1425, tpm=475_000, max_tokens=500)), "Pass prompt="),
    ],
)
def test_tier_limiter_rejects(tier_limiter_chain, make_answer, hint):
    answer = make_answer(tier_limiter_chain.first)
    with pytest.raises(ExerciseFailed, match=hint):
        run(check_tier_limiter(answer, tier_limiter_chain, rpm=3000, tpm=1_000_000, workers=2))


def test_tier_limiter_accepts_the_solution(tier_limiter_chain, capsys):
    answer = tier_limiter_solution(tier_limiter_chain.first)
    run(check_tier_limiter(answer, tier_limiter_chain, rpm=3000, tpm=1_000_000, workers=2))
    assert "✓ Passed" in capsys.readouterr().out


# ---------------------------------------------------------------- 06, exercise 3: fill the gaps of a report


async def finish_solution(chain, inputs, report):  # the notebook's solution
    failed = [failure.index for failure in report.failures]
    rerun = await run_tracked(chain, [inputs[i] for i in failed], max_concurrency=20,
                              retry=RetryPolicy(base_delay=0.05), timeout=5.0, progress=False)
    filled = list(report.results)
    for position, index in enumerate(failed):
        filled[index] = rerun.results[position]
    for failure in rerun.failures:
        filled[failed[failure.index]] = failure
    return filled


async def finish_rerunning_everything(chain, inputs, report):
    rerun = await run_tracked(chain, inputs, max_concurrency=20, retry=RetryPolicy(base_delay=0.05), progress=False)
    filled = list(rerun.results)
    for failure in rerun.failures:
        filled[failure.index] = failure
    return filled


async def finish_in_rerun_order(chain, inputs, report):  # the rerun's answers written to positions 0, 1, 2, ...
    failed = [failure.index for failure in report.failures]
    rerun = await run_tracked(chain, [inputs[i] for i in failed], max_concurrency=20,
                              retry=RetryPolicy(base_delay=0.05), progress=False)
    filled = list(report.results)
    for position, result in enumerate(rerun.results):
        filled[position] = result
    return filled


async def finish_appending_the_rerun(chain, inputs, report):  # answers kept, rerun results appended at the end
    failed = [failure.index for failure in report.failures]
    rerun = await run_tracked(chain, [inputs[i] for i in failed], max_concurrency=20,
                              retry=RetryPolicy(base_delay=0.05), progress=False)
    return [r for r in report.results if r is not None] + rerun.results


async def finish_without_retry_policy(chain, inputs, report):
    failed = [failure.index for failure in report.failures]
    rerun = await run_tracked(chain, [inputs[i] for i in failed], max_concurrency=20, progress=False)
    filled = list(report.results)
    for position, index in enumerate(failed):
        filled[index] = rerun.results[position] if rerun.results[position] is not None else rerun.failures[0]
    return filled


async def finish_dropping_the_failures(chain, inputs, report):  # answers mapped back, but the typo left as None
    failed = [failure.index for failure in report.failures]
    rerun = await run_tracked(chain, [inputs[i] for i in failed], max_concurrency=20,
                              retry=RetryPolicy(base_delay=0.05), progress=False)
    filled = list(report.results)
    for position, index in enumerate(failed):
        filled[index] = rerun.results[position]
    return filled


async def finish_sending_nothing(chain, inputs, report):
    return list(report.results)


async def finish_not_solved(chain, inputs, report):
    raise NotImplementedError()


def finish_not_async(chain, inputs, report):
    return []


@pytest.mark.parametrize(
    "answer, hint",
    [
        (finish_rerunning_everything, "reran inputs that already had an answer"),
        (finish_in_rerun_order, "another input's answer"),
        (finish_appending_the_rerun, "another input's answer"),
        (finish_without_retry_policy, "rerun with a RetryPolicy"),
        (finish_dropping_the_failures, "The last input has a typo"),
        (finish_sending_nothing, "Nothing was sent"),
        (finish_not_solved, "Not solved yet"),
        (finish_not_async, "async def"),
    ],
)
def test_finish_rejects(answer, hint):
    with pytest.raises(ExerciseFailed, match=hint):
        run(check_finish(answer))


def test_finish_accepts_the_solution(capsys):
    run(check_finish(finish_solution))
    assert "✓ Passed" in capsys.readouterr().out
