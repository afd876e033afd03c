"""One job as P worker processes (helpers.processes), against a private mock.

- P = 2 writes exactly one record per input, filed under its index in the whole job, in input order;
- a SIGKILL of one worker mid-run raises WorkerDied; rerunning the same call resumes every shard and
  ends with exactly one record per input (no line written twice);
- the job's rate limit, split across the processes, holds against the mock's own RPM limit: under 1%
  of requests get a 429, at 90% or more of the allowed rate;
- bad arguments are refused before any process starts, each with a message that names the problem.
"""

from __future__ import annotations

import asyncio
import functools
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from helpers.bench.runners import mock_chain
from helpers.mock import start_mock
from helpers.processes import WorkerDied, merge_shards, read_job_results, run_in_processes, shard_paths
from helpers.reliability import RetryPolicy
from helpers.results_file import read_jsonl_results


@pytest.fixture(scope="module")
def mock():
    handle = start_mock(ttft=0.05, jitter=0.0, tokens_per_second=1e6)
    yield handle
    handle.stop()


def inputs(n: int) -> list[dict[str, str]]:
    return [{"text": f"测试{i}"} for i in range(n)]


def chain_of(mock, max_retries: int = 0):
    return functools.partial(mock_chain, mock.base_url, "translate", max_retries)


def lines_in(folder: Path, processes: int) -> list[dict]:
    return [json.loads(line) for path in shard_paths(folder, processes) if path.exists()
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.timeout(120)
def test_two_processes_write_one_record_per_input_in_input_order(mock, tmp_path):
    mock.reset()
    summary = asyncio.run(run_in_processes(chain_of(mock), inputs(300), tmp_path, processes=2, max_concurrency=40,
                                           progress=False))
    assert (summary.written, summary.ok, summary.failed, summary.processes) == (300, 300, 0, 2)
    assert [part.written for part in summary.parts] == [150, 150]
    records = read_job_results(tmp_path)
    assert [r["index"] for r in records] == list(range(300))
    assert all(r["output"] == f"Test{r['index']}" for r in records), "an answer is filed under another input"
    shard0 = read_jsonl_results(shard_paths(tmp_path, 2)[0])
    assert {r["index"] % 2 for r in shard0} == {0}, "process 0 holds only the even indices"
    assert len(lines_in(tmp_path, 2)) == 300
    assert merge_shards(tmp_path, tmp_path / "all.jsonl") == 300
    assert [r["index"] for r in read_jsonl_results(tmp_path / "all.jsonl")] == list(range(300))
    assert summary.cpu_seconds > 0 and mock.stats()["peak_in_flight"] <= 40


async def kill_one_worker_when(folder: Path, lines: int) -> int:
    """SIGKILL worker process 1 once its shard holds `lines` lines; returns its PID."""
    shard, deadline = shard_paths(folder, 2)[1], time.monotonic() + 60
    while not (shard.exists() and shard.read_bytes().count(b"\n") >= lines):
        assert time.monotonic() < deadline, "the worker wrote too slowly"
        await asyncio.sleep(0.005)
    (worker,) = [p for p in multiprocessing.active_children() if p.name.endswith("part-1")]
    os.kill(worker.pid, signal.SIGKILL)
    return worker.pid


@pytest.mark.timeout(120)
def test_a_killed_worker_then_a_rerun_leaves_exactly_one_record_per_input(mock, tmp_path):
    n, job = 600, chain_of(mock)

    async def run_and_kill():
        run = asyncio.create_task(run_in_processes(job, inputs(n), tmp_path, processes=2, max_concurrency=20,
                                                   progress=False))
        await kill_one_worker_when(tmp_path, 60)
        with pytest.raises(WorkerDied, match="worker process 1 .*killed by signal 9.*run the same call again"):
            await run

    with mock.temporarily(ttft=0.1, jitter=0.0, tokens_per_second=1e6):
        asyncio.run(run_and_kill())
    partial = len(lines_in(tmp_path, 2))
    assert n // 2 < partial < n, "process 0 finished its shard; process 1 stopped part-way"
    summary = asyncio.run(run_in_processes(job, inputs(n), tmp_path, processes=2, max_concurrency=20, progress=False))
    assert summary.skipped + summary.written == n and summary.skipped >= partial - 2  # a torn last line is redone
    written = lines_in(tmp_path, 2)
    assert sorted(r["index"] for r in written) == list(range(n)), "a record is missing or written twice"
    assert all(r["output"] == f"Test{r['index']}" for r in read_job_results(tmp_path))


@pytest.mark.timeout(120)
def test_the_split_rate_limit_holds_against_the_servers_limit(mock, tmp_path):
    rpm, n = 6000, 600  # 100 requests a second, in all
    with mock.temporarily(rpm_limit=rpm, limit_window=1.0, ttft=0.05, jitter=0.0, tokens_per_second=1e6):
        summary = asyncio.run(run_in_processes(chain_of(mock), inputs(n), tmp_path, processes=2, max_concurrency=100,
                                               rpm=rpm, retry=RetryPolicy(max_attempts=5), progress=False))
        stats = mock.stats()
    assert summary.ok == n
    assert stats["rate_limited"] / stats["requests"] < 0.01, f"{stats['rate_limited']} of {stats['requests']} got 429"
    rate = n / summary.wall_time
    assert rate >= 0.9 * rpm / 60, f"{rate:.1f} req/s is under 90% of the allowed {rpm / 60:.0f}/s"


def test_a_rerun_with_another_number_of_processes_is_refused(mock, tmp_path):
    asyncio.run(run_in_processes(chain_of(mock), inputs(20), tmp_path, processes=2, max_concurrency=4,
                                 progress=False))
    with pytest.raises(ValueError, match="split across 2 processes; resume it with processes=2"):
        asyncio.run(run_in_processes(chain_of(mock), inputs(20), tmp_path, processes=3, max_concurrency=6,
                                     progress=False))
    with pytest.raises(ValueError, match="already holds a job, and resume=False would erase it"):
        asyncio.run(run_in_processes(chain_of(mock), inputs(20), tmp_path, processes=3, max_concurrency=6,
                                     resume=False, progress=False))
    summary = asyncio.run(run_in_processes(chain_of(mock), inputs(20), tmp_path, processes=3, max_concurrency=6,
                                           resume=False, overwrite=True, progress=False))
    assert summary.written == 20 and not shard_paths(tmp_path, 2)[0].exists()


def chain_in_this_test():  # defined in a test module a worker process can import, but inside __main__ in a notebook
    raise AssertionError("never called")


@pytest.mark.parametrize(("arguments", "message"), [
    ({"processes": 0}, "processes must be a positive int"),
    ({"processes": 2, "max_concurrency": 1}, "max_concurrency=1 is below processes=2"),
    ({"inputs": ({"text": "x"} for _ in range(3))}, "inputs must be a list"),
    ({"inputs": [{"text": "a"}, "b"]}, "input 1 is a str, but the chain's prompt expects a mapping"),
    ({"folder": "missing"}, "does not exist: create it first"),
    ({"make_chain": lambda: None}, "is defined in the notebook, and a worker process cannot import it"),
    ({"rpm": -5}, "rpm must be a positive number"),
])
def test_bad_arguments_are_refused_before_any_process_starts(mock, tmp_path, arguments, message):
    call = {"make_chain": chain_of(mock), "inputs": inputs(4), "folder": tmp_path, "processes": 2,
            "max_concurrency": 4, "progress": False, **arguments}
    if call["folder"] == "missing":
        call["folder"] = tmp_path / "missing"
    before = mock.stats()["requests"]
    with pytest.raises(ValueError, match=message):
        asyncio.run(run_in_processes(call.pop("make_chain"), call.pop("inputs"), call.pop("folder"), **call))
    assert mock.stats()["requests"] == before and not (tmp_path / "job.json").exists()
