"""Lesson 01's checks reject plausible wrong answers with the right hint, and pass the notebook's solutions."""

import asyncio
import math

import pytest

from helpers.checks import ExerciseFailed, check_concurrency_choice, check_ordered_progress


from checks_support import chain, fast_mock, run  # noqa: F401  (fixtures)


# ---------------------------------------------------------------- 01, exercise 1: size the concurrency


def concurrency_for_solution(n, budget_s, latency):  # the notebook's solution
    needed = n / budget_s * latency  # Little's law: C = X * L, with X = n / budget_s
    return math.ceil(needed * 1.4)


def concurrency_for_not_solved(n, budget_s, latency):
    raise NotImplementedError()


def concurrency_for_returns_nothing(n, budget_s, latency):
    math.ceil(n / budget_s * latency * 1.4)  # forgot the return


def concurrency_for_constant_guess(n, budget_s, latency):
    return 16  # right for the notebook's batch, by luck


def concurrency_for_no_headroom(n, budget_s, latency):
    return math.ceil(n / budget_s * latency)


def concurrency_for_four_times(n, budget_s, latency):
    return math.ceil(4 * n / budget_s * latency)  # the old check let up to 4x through


def concurrency_for_ignores_latency(n, budget_s, latency):
    return math.ceil(1.4 * n / budget_s)


def concurrency_for_inverted(n, budget_s, latency):
    return math.ceil(1.4 * n * budget_s / latency)


def concurrency_for_float(n, budget_s, latency):
    return 1.4 * n / budget_s * latency  # no math.ceil


@pytest.mark.parametrize(
    "answer, hint",
    [
        (None, "Write a function"),
        (16, "Write a function"),  # a number where a function is asked for
        (concurrency_for_not_solved, "Not solved yet"),
        (concurrency_for_returns_nothing, "returned None"),
        (concurrency_for_constant_guess, "whatever the batch: a guess"),
        (concurrency_for_no_headroom, "No headroom"),
        (concurrency_for_four_times, "Too much"),
        (concurrency_for_ignores_latency, "Too low"),
        (concurrency_for_inverted, "Too much"),
        (concurrency_for_float, "whole number"),
    ],
)
def test_concurrency_choice_rejects(answer, hint):
    with pytest.raises(ExerciseFailed, match=hint):
        run(check_concurrency_choice(answer, n=300, budget_s=3.0))


def test_concurrency_choice_accepts_the_notebooks_solution(capsys):
    run(check_concurrency_choice(concurrency_for_solution, n=300, budget_s=3.0))
    assert "✓ Passed" in capsys.readouterr().out


# ---------------------------------------------------------------- 01, exercise 2: progress that counts failures


async def progress_solution(chain, inputs, report):  # the notebook's solution
    results, done, failed = [None] * len(inputs), 0, 0
    stream = chain.abatch_as_completed(inputs, config={"max_concurrency": 10}, return_exceptions=True)
    async for index, output in stream:
        results[index] = output
        done += 1
        failed += isinstance(output, Exception)
        report(done, failed)
    return results


async def progress_plain_abatch(chain, inputs, report):
    return await chain.abatch(inputs, config={"max_concurrency": 10}, return_exceptions=True)


async def progress_reported_at_the_end(chain, inputs, report):
    results = await chain.abatch(inputs, config={"max_concurrency": 10}, return_exceptions=True)
    failed = 0
    for done, output in enumerate(results, start=1):
        failed += isinstance(output, Exception)
        report(done, failed)
    return results


async def progress_copies_the_demo(chain, inputs, report):  # the lesson's loop, without return_exceptions
    results, done, failed = [None] * len(inputs), 0, 0
    async for index, output in chain.abatch_as_completed(inputs, config={"max_concurrency": 10}):
        results[index] = output
        done += 1
        report(done, failed)
    return results


async def progress_appends_in_completion_order(chain, inputs, report):
    results, failed = [], 0
    stream = chain.abatch_as_completed(inputs, config={"max_concurrency": 10}, return_exceptions=True)
    async for _, output in stream:
        results.append(output)
        failed += isinstance(output, Exception)
        report(len(results), failed)
    return results


async def progress_drops_the_failures(chain, inputs, report):
    results = await progress_solution(chain, inputs, report)
    return [r for r in results if not isinstance(r, Exception)]


async def progress_failures_as_none(chain, inputs, report):
    results = await progress_solution(chain, inputs, report)
    return [None if isinstance(r, Exception) else r for r in results]


async def progress_never_counts_failures(chain, inputs, report):
    results, done = [None] * len(inputs), 0
    stream = chain.abatch_as_completed(inputs, config={"max_concurrency": 10}, return_exceptions=True)
    async for index, output in stream:
        results[index] = output
        done += 1
        report(done, 0)
    return results


async def progress_kwarg_concurrency(chain, inputs, report):
    results, done, failed = [None] * len(inputs), 0, 0
    stream = chain.abatch_as_completed(inputs, max_concurrency=10, return_exceptions=True)  # not in config
    async for index, output in stream:
        results[index] = output
        done += 1
        failed += isinstance(output, Exception)
        report(done, failed)
    return results


async def progress_gather_unbounded(chain, inputs, report):
    async def one(item):
        try:
            return await chain.ainvoke(item)
        except Exception as error:
            return error

    results = await asyncio.gather(*(one(item) for item in inputs))
    failed = 0
    for done, output in enumerate(results, start=1):
        failed += isinstance(output, Exception)
        report(done, failed)
    return results


async def progress_returns_pairs(chain, inputs, report):
    stream = chain.abatch_as_completed(inputs, config={"max_concurrency": 10}, return_exceptions=True)
    return [pair async for pair in stream]


async def progress_not_solved(chain, inputs, report):
    raise NotImplementedError()


def progress_not_async(chain, inputs, report):
    return chain.batch(inputs, config={"max_concurrency": 10}, return_exceptions=True)


@pytest.mark.parametrize(
    "answer, hint",
    [
        (progress_plain_abatch, "report was never called"),
        (progress_reported_at_the_end, "only when the whole batch was over"),
        (progress_copies_the_demo, "raised OpenAIAPIError at the first failed request"),
        (progress_appends_in_completion_order, "completion order"),
        (progress_drops_the_failures, "only the successes"),
        (progress_failures_as_none, "hold None"),
        (progress_never_counts_failures, "failed ended at 0, but 5 requests failed"),
        (progress_kwarg_concurrency, "Passed as a keyword argument"),
        (progress_gather_unbounded, "only when the whole batch was over"),
        (progress_returns_pairs, r"not \(index, output\) pairs"),
        (progress_not_solved, "Not solved yet"),
        (progress_not_async, "async def"),
    ],
)
def test_ordered_progress_rejects(answer, hint):
    with pytest.raises(ExerciseFailed, match=hint):
        run(check_ordered_progress(answer))


def test_ordered_progress_accepts_the_notebooks_solution(capsys):
    run(check_ordered_progress(progress_solution))
    assert "✓ Passed" in capsys.readouterr().out
