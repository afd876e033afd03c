"""Every exercise check rejects plausible wrong answers with the right hint (so the checks can fail)."""

import asyncio
import math

import pytest

from helpers.backend import translation_chain, get_llm
from helpers.checks import ExerciseFailed, check_concurrency_choice, check_ordered_progress
from helpers.checks.lesson01 import mean_latency
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
    latency = run(mean_latency(chain))
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


# ---------------------------------------------------------------- 02, exercise 1: the first ten answers

import contextlib  # noqa: E402

from helpers.checks import check_first_answers  # noqa: E402
from helpers.runners import stream_merged  # noqa: E402


async def first_answers_correctly(chain, inputs, k=10):  # the notebook's solution
    found = {}
    async with contextlib.aclosing(stream_merged(chain, inputs, max_concurrency=10)) as events:
        async for event in events:
            if event.kind == "done":
                found[event.index] = event.text
                if len(found) == k:
                    break
    return found


async def first_answers_plain_break(chain, inputs, k=10):
    found = {}
    async for event in stream_merged(chain, inputs, max_concurrency=10):  # no aclosing: closed only later
        found.update({event.index: event.text} if event.kind == "done" else {})
        if len(found) == k:
            break
    return found


async def first_answers_task_per_input(chain, inputs, k=10):
    slots = asyncio.Semaphore(10)

    async def one(index, item):
        async with slots:
            return index, await chain.ainvoke(item)

    found = {}
    for next_done in asyncio.as_completed([asyncio.create_task(one(i, item)) for i, item in enumerate(inputs)]):
        index, text = await next_done
        found[index] = text
        if len(found) == k:
            break  # the other tasks go on calling the model
    return found


async def first_answers_whole_stream(chain, inputs, k=10):
    done = [event async for event in stream_merged(chain, inputs, max_concurrency=10) if event.kind == "done"]
    return {event.index: event.text for event in done[:k]}


async def first_answers_first_inputs(chain, inputs, k=10):
    return await first_answers_correctly(chain, inputs[:k], k)


async def first_answers_tokens(chain, inputs, k=10):
    first_text, found = {}, {}
    async with contextlib.aclosing(stream_merged(chain, inputs, max_concurrency=10)) as events:
        async for event in events:
            first_text.setdefault(event.index, event.text)  # the first token, not the whole answer
            if event.kind == "done":
                found[event.index] = first_text[event.index]
                if len(found) == k:
                    break
    return found


async def first_answers_reads_on(chain, inputs, k=10):
    found = await first_answers_correctly(chain, inputs, 2 * k + 5)  # reads on well past the k-th answer
    return dict(list(found.items())[:k])


async def first_answers_not_solved(chain, inputs, k=10):
    raise NotImplementedError()


@pytest.mark.parametrize(
    "answer, hint",
    [
        (first_answers_plain_break, "after your function returned.*contextlib.aclosing"),
        (first_answers_task_per_input, "after your function returned"),
        (first_answers_whole_stream, "you read the whole stream"),
        (first_answers_reads_on, "requests were sent for 10 answers"),
        (first_answers_first_inputs, "not the first 10 to finish"),
        (first_answers_tokens, "cut short"),
        (first_answers_not_solved, "Not solved yet"),
        (lambda chain, inputs, k=10: {}, "async def"),
    ],
)
def test_first_answers_rejects(answer, hint):
    with pytest.raises(ExerciseFailed, match=hint):
        run(check_first_answers(answer))


def test_first_answers_accepts_the_notebooks_solution(capsys):
    run(check_first_answers(first_answers_correctly))
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
