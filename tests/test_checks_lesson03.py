"""Lesson 03's checks reject plausible wrong answers with the right hint, and pass the notebook's solutions."""

import asyncio
import statistics

import pytest

from helpers.backend import get_llm, make_chain
from helpers.checks import ExerciseFailed, check_find_stragglers, check_run_with_ttft, check_run_workers
from helpers.metrics import percentile
from helpers.runners import run_tracked
from helpers.timing import RequestTimer

from checks_support import chain, fast_mock, run  # noqa: F401  (fixtures)


# ---------------------------------------------------------------- 03, exercise 1: find the stragglers


def stragglers_latencies(report):
    return [end - start for start, end in report.intervals]


def stragglers_correctly(report, factor=3.0):  # the notebook's solution
    latencies = stragglers_latencies(report)
    limit = factor * statistics.median(latencies)
    return [index for index, latency in enumerate(latencies) if latency > limit]


def stragglers_mean(report, factor=3.0):
    latencies = stragglers_latencies(report)
    return [i for i, x in enumerate(latencies) if x > factor * statistics.mean(latencies)]


def stragglers_report_mean(report, factor=3.0):
    return [i for i, x in enumerate(stragglers_latencies(report)) if x > factor * report.latency.mean]


def stragglers_p95(report, factor=3.0):
    return [i for i, x in enumerate(stragglers_latencies(report)) if x > factor * report.latency.p95]


def stragglers_fixed_factor(report, factor=3.0):
    return stragglers_correctly(report, 3.0)


def stragglers_slowest_first(report, factor=3.0):
    latencies = stragglers_latencies(report)
    return sorted(stragglers_correctly(report, factor), key=lambda i: -latencies[i])


def stragglers_from_one(report, factor=3.0):
    return [i + 1 for i in stragglers_correctly(report, factor)]


def stragglers_end_times(report, factor=3.0):
    ends = [end for _, end in report.intervals]
    median = statistics.median(stragglers_latencies(report))
    return [i for i, end in enumerate(ends) if end > factor * median]


def stragglers_latency_values(report, factor=3.0):
    latencies = stragglers_latencies(report)
    return [latencies[i] for i in stragglers_correctly(report, factor)]


def stragglers_slowest_tenth(report, factor=3.0):  # "stragglers" read as the slowest 10%, whatever the factor
    latencies = stragglers_latencies(report)
    slowest = sorted(range(len(latencies)), key=lambda i: -latencies[i])[: max(1, len(latencies) // 10)]
    return sorted(slowest)


def stragglers_not_solved(report, factor=3.0):
    raise NotImplementedError()


@pytest.mark.parametrize(
    "answer, hint",
    [
        (stragglers_mean, "compared with the mean"),
        (stragglers_report_mean, "compared with the mean"),
        (stragglers_p95, "compared with p95"),
        (stragglers_fixed_factor, "use the factor argument"),
        (stragglers_slowest_first, "not in input order"),
        (stragglers_from_one, "one too high"),
        (stragglers_end_times, "compared end times"),
        (stragglers_latency_values, "not their latencies"),
        (stragglers_slowest_tenth, "expected .* stragglers"),
        (lambda report, factor=3.0: None, "returned None"),
        (stragglers_not_solved, "Not solved yet"),
    ],
)
def test_find_stragglers_rejects(answer, hint):
    with pytest.raises(ExerciseFailed, match=hint):
        run(check_find_stragglers(answer, n=60))


def test_find_stragglers_accepts_the_notebooks_solution(capsys):
    run(check_find_stragglers(stragglers_correctly, n=60))
    assert "✓ Passed" in capsys.readouterr().out


# ---------------------------------------------------------------- 03, exercise 2: p99 TTFT in the tracker

TTFT_TEMPLATE = "Write a few sentences about {topic}."


def ttft_with(statistic, streaming=True, use_latencies=False):
    async def run_with_ttft(inputs):
        timer = RequestTimer()
        streaming_chain = make_chain(TTFT_TEMPLATE, get_llm(streaming=streaming))
        report = await run_tracked(streaming_chain, inputs, max_concurrency=20, progress=False,
                                   config={"callbacks": [timer]})
        return report, statistic(timer.latencies() if use_latencies else timer.ttfts())
    return run_with_ttft


ttft_correctly = ttft_with(lambda values: percentile(values, 99))  # the notebook's solution


async def ttft_report_latency(inputs):
    report, _ = await ttft_correctly(inputs)
    return report, report.latency.p99


async def ttft_milliseconds(inputs):
    report, value = await ttft_correctly(inputs)
    return report, value * 1000


async def ttft_no_timer(inputs):
    report = await run_tracked(make_chain(TTFT_TEMPLATE, get_llm(streaming=True)), inputs, max_concurrency=20,
                               progress=False)
    return report, percentile(RequestTimer().ttfts(), 99)


async def ttft_only_the_number(inputs):
    _, value = await ttft_correctly(inputs)
    return value


def ttft_sorted_index(values):  # a hand-made "p99": the value at index int(0.99 * n), here the max
    return sorted(values)[int(0.99 * len(values))]


@pytest.mark.parametrize(
    "answer, hint",
    [
        (ttft_with(statistics.median), "the median TTFT"),
        (ttft_with(lambda values: percentile(values, 50)), "the median TTFT"),
        (ttft_with(statistics.mean), "the mean TTFT"),
        (ttft_with(max), "the max"),
        (ttft_with(ttft_sorted_index), "the max"),
        (ttft_with(lambda values: percentile(values, 95)), "the p95 TTFT"),
        (ttft_with(lambda values: percentile(values, 0.99)), "99, not 0.99"),
        (ttft_with(lambda values: percentile(values, 99), use_latencies=True), "p99 latency"),
        (ttft_report_latency, "p99 latency"),
        (ttft_milliseconds, "milliseconds"),
        (ttft_with(lambda values: percentile(values, 99), streaming=False), "streaming=True"),
        (ttft_no_timer, "no first tokens"),
        (ttft_only_the_number, "Return a pair"),
        (lambda inputs: None, "async def"),
    ],
)
def test_run_with_ttft_rejects(answer, hint):
    with pytest.raises(ExerciseFailed, match=hint):
        run(check_run_with_ttft(answer))


def test_run_with_ttft_accepts_the_notebooks_solution(capsys):
    run(check_run_with_ttft(ttft_correctly))
    assert "✓ Passed" in capsys.readouterr().out


# ---------------------------------------------------------------- 03, exercise 3: the core loop


async def workers_correctly(chain, inputs, n_workers):  # the notebook's solution
    numbered = enumerate(inputs)
    outputs = {}

    async def worker():
        for index, item in numbered:
            outputs[index] = await chain.ainvoke(item)

    async with asyncio.TaskGroup() as group:
        for _ in range(n_workers):
            group.create_task(worker())
    return [outputs[i] for i in range(len(outputs))]


async def workers_like_run_pool(chain, inputs, n_workers):  # gather, and cancel the rest in a finally
    numbered, outputs = enumerate(inputs), {}

    async def worker():
        while (pulled := next(numbered, None)) is not None:
            outputs[pulled[0]] = await chain.ainvoke(pulled[1])

    tasks = [asyncio.create_task(worker()) for _ in range(n_workers)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return [outputs[i] for i in sorted(outputs)]


async def workers_unbounded_gather(chain, inputs, n_workers):
    return await asyncio.gather(*(chain.ainvoke(item) for item in inputs))


async def workers_task_per_input(chain, inputs, n_workers):
    slots = asyncio.Semaphore(n_workers)

    async def one(item):
        async with slots:
            return await chain.ainvoke(item)

    return await asyncio.gather(*(one(item) for item in inputs))


async def workers_abatch(chain, inputs, n_workers):
    return await chain.abatch(list(inputs), config={"max_concurrency": n_workers})


async def workers_own_slices(chain, inputs, n_workers):
    inputs, outputs = list(inputs), {}

    async def worker(k):
        for index in range(k, len(inputs), n_workers):  # worker k takes inputs k, k + n, k + 2n, ...
            outputs[index] = await chain.ainvoke(inputs[index])

    await asyncio.gather(*(worker(k) for k in range(n_workers)))
    return [outputs[i] for i in range(len(inputs))]


async def workers_chunks(chain, inputs, n_workers):
    inputs, outputs = list(inputs), []
    for start in range(0, len(inputs), n_workers):
        outputs += await asyncio.gather(*(chain.ainvoke(item) for item in inputs[start:start + n_workers]))
    return outputs


async def workers_completion_order(chain, inputs, n_workers):
    numbered, outputs = iter(inputs), []

    async def worker():
        for item in numbered:
            outputs.append(await chain.ainvoke(item))

    await asyncio.gather(*(worker() for _ in range(n_workers)))
    return outputs


async def workers_each_own_iterator(chain, inputs, n_workers):
    inputs, outputs = list(inputs), {}

    async def worker():
        for index, item in enumerate(inputs):  # every worker walks all the inputs
            outputs[index] = await chain.ainvoke(item)

    await asyncio.gather(*(worker() for _ in range(n_workers)))
    return [outputs[i] for i in range(len(inputs))]


async def workers_fixed_count(chain, inputs, n_workers):
    inputs = list(inputs)
    numbered, outputs = enumerate(inputs), {}

    async def worker():
        for _ in range(len(inputs) // n_workers):  # 30 inputs, 4 workers: 7 each, 2 never sent
            index, item = next(numbered)
            outputs[index] = await chain.ainvoke(item)

    await asyncio.gather(*(worker() for _ in range(n_workers)))
    return [outputs[i] for i in sorted(outputs)]


async def workers_one_at_a_time(chain, inputs, n_workers):
    return [await chain.ainvoke(item) for item in inputs]


async def workers_passes_pairs(chain, inputs, n_workers):
    numbered, outputs = enumerate(inputs), {}

    async def worker():
        for pair in numbered:
            outputs[pair[0]] = await chain.ainvoke(pair)

    await asyncio.gather(*(worker() for _ in range(n_workers)))
    return [outputs[i] for i in range(len(outputs))]


async def workers_sync_invoke(chain, inputs, n_workers):
    return [chain.invoke(item) for item in inputs]


async def workers_queue_never_stopped(chain, inputs, n_workers):
    queue, outputs = asyncio.Queue(), {}
    for pair in enumerate(inputs):
        queue.put_nowait(pair)

    async def worker():
        while True:
            index, item = await queue.get()
            outputs[index] = await chain.ainvoke(item)
            queue.task_done()

    workers = [asyncio.create_task(worker()) for _ in range(n_workers)]
    await queue.join()  # every input done, but the workers still wait on queue.get(): never cancelled
    return [outputs[i] for i in range(len(outputs))]


async def workers_queue_waits_forever(chain, inputs, n_workers):
    queue, outputs = asyncio.Queue(), {}
    for pair in enumerate(inputs):
        queue.put_nowait(pair)

    async def worker():
        while True:
            index, item = await queue.get()
            outputs[index] = await chain.ainvoke(item)

    await asyncio.gather(*(worker() for _ in range(n_workers)))
    return [outputs[i] for i in range(len(outputs))]


async def workers_plain_gather_on_failure(chain, inputs, n_workers):  # right, until one input fails
    numbered, outputs = enumerate(inputs), {}

    async def worker():
        for index, item in numbered:
            outputs[index] = await chain.ainvoke(item)

    await asyncio.gather(*(worker() for _ in range(n_workers)))  # one raises: the others go on
    return [outputs[i] for i in range(len(outputs))]


async def workers_swallow_errors(chain, inputs, n_workers):
    numbered, outputs = enumerate(inputs), {}

    async def worker():
        for index, item in numbered:
            try:
                outputs[index] = await chain.ainvoke(item)
            except Exception as error:  # noqa: BLE001
                outputs[index] = error

    async with asyncio.TaskGroup() as group:
        for _ in range(n_workers):
            group.create_task(worker())
    return [outputs[i] for i in range(len(outputs))]


async def workers_not_solved(chain, inputs, n_workers):
    raise NotImplementedError()


@pytest.mark.parametrize(
    "answer, hint",
    [
        (workers_unbounded_gather, "in flight at once"),
        (workers_task_per_input, "one task per input"),
        (workers_abatch, "one task per input"),
        (workers_own_slices, "a fixed share of the inputs"),
        (workers_chunks, "a fixed share of the inputs"),
        (workers_completion_order, "in the order they finished"),
        (workers_each_own_iterator, "sent 4 times"),
        (workers_fixed_count, "never sent"),
        (workers_one_at_a_time, "Only 1 call"),
        (workers_passes_pairs, "not \\(index, input\\)"),
        (workers_sync_invoke, "await chain.ainvoke"),
        (workers_queue_never_stopped, "still running after your function returned"),
        (workers_queue_waits_forever, "did not return within"),
        (workers_plain_gather_on_failure, "asyncio.gather does not stop them"),
        (workers_swallow_errors, "let that error propagate"),
        (workers_not_solved, "Not solved yet"),
        (lambda chain, inputs, n_workers: [], "async def"),
    ],
)
def test_run_workers_rejects(answer, hint):
    with pytest.raises(ExerciseFailed, match=hint):
        run(check_run_workers(answer, patience=2.0))


@pytest.mark.parametrize("answer", [workers_correctly, workers_like_run_pool])
def test_run_workers_accepts_a_pool(answer, capsys):
    run(check_run_workers(answer))
    assert "✓ Passed" in capsys.readouterr().out
