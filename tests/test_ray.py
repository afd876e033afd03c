"""The workbook's runner inside Ray Data keeps every input: one result or one error record each.

A local 2-CPU Ray cluster runs `helpers.ray_jobs.run_with_runner` against the mock with injected
faults (500/503 errors and dropped connections, few retries), so some inputs end as error records.
The test is skipped only where Ray cannot start on this machine, and never in CI (CI=true): there a
cluster that cannot start is a failure.
"""

import functools
import os

import pytest

from helpers import ray_jobs
from helpers.bench.runners import mock_chain
from helpers.mock import start_mock
from helpers.processes import seed_chain
from helpers.reliability import RetryPolicy


@pytest.fixture(scope="module")
def mock():
    handle = start_mock(ttft=0.05, jitter=0.0, tokens_per_second=1e6)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def cluster():
    try:
        ray_jobs.start_ray(2)
    except Exception as error:  # noqa: BLE001 (any reason Ray cannot start)
        if os.environ.get("CI"):
            raise
        pytest.skip(f"Ray cannot start on this machine: {type(error).__name__}: {error}")
    yield
    ray_jobs.stop_ray()


@pytest.mark.timeout(300)
def test_faults_end_as_one_result_or_one_error_per_input(cluster, mock):
    words = [{"text": f"测试{i}"} for i in range(120)]
    with mock.temporarily(error_rate=0.35, drop_rate=0.05, seed=3):
        rows = ray_jobs.run_with_runner(functools.partial(mock_chain, mock.base_url, "translate", 0), words, actors=2,
                                        max_concurrency=20, retry=RetryPolicy(max_attempts=2, base_delay=0.01),
                                        batch_size=30)
        stats = mock.stats()
    assert [row["index"] for row in rows] == list(range(len(words)))
    assert all((row["output"] is None) != (row["error"] is None) for row in rows), "each row: a result or an error"
    ok = [row for row in rows if row["error"] is None]
    failed = [row for row in rows if row["error"] is not None]
    assert ok and failed, f"the faults should leave both: {len(ok)} ok, {len(failed)} failed"
    assert all(row["output"] == f"Test{row['index']}" for row in ok), "an answer was given to another input"
    assert all(row["attempts"] == 2 for row in failed), "a failed input should have used both attempts"
    assert stats["peak_in_flight"] > 2, "the runner should keep many requests in flight, not one per actor"


def test_rows_out_of_order_or_missing_are_caught():
    rows = [{"index": 1, "output": "b"}, {"index": 0, "output": "a"}]
    assert [row["index"] for row in ray_jobs._in_order(rows, 2)] == [0, 1]
    with pytest.raises(RuntimeError, match=r"missing \[2\]"):
        ray_jobs._in_order(rows, 3)
    with pytest.raises(RuntimeError, match=r"twice \[1\]"):
        ray_jobs._in_order(rows + [{"index": 1, "output": "b"}], 2)


@pytest.mark.parametrize("change, message", [
    ({"actors": 0}, "actors must be a positive int"),
    ({"inputs": []}, "non-empty list"),
    ({"inputs": "测试"}, "non-empty list"),
    ({"make_chain": lambda: None}, "defined in the notebook"),
    ({"max_concurrency": 1}, "at least actors=2"),
])
def test_bad_arguments_are_refused_before_ray_is_used(change, message):
    arguments = {"make_chain": seed_chain, "inputs": [{"text": "x"}], "actors": 2, "max_concurrency": 4, **change}
    with pytest.raises(ValueError, match=message):
        ray_jobs.run_with_runner(arguments.pop("make_chain"), arguments.pop("inputs"), **arguments)
