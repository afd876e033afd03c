"""Lesson 01's checks reject plausible wrong answers with the right hint."""

import asyncio
import math

import pytest

from helpers.checks import ExerciseFailed, check_concurrency_choice, check_ordered_progress
from helpers.checks.lesson01 import mean_latency


from checks_support import chain, fast_mock, run  # noqa: F401  (fixtures)


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


