"""Lesson 02's checks reject plausible wrong answers with the right hint."""

import asyncio
import contextlib
import pytest

from helpers.checks import ExerciseFailed, check_first_answers
from helpers.runners import stream_merged


from checks_support import chain, fast_mock, run  # noqa: F401  (fixtures)


# ---------------------------------------------------------------- 02, exercise 1: the first ten answers




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


