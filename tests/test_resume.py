"""Crash and resume: SIGKILL a `run_to_jsonl` run against the mock at several points, resume each time.

A subprocess runs `run_to_jsonl` (real ChatOpenAI, real HTTP, the mock in the test's own process
tree). The test kills it with SIGKILL (no cleanup, no flush: like a crash or `kill -9`) once the
file holds about 15%, then 45%, then 75% of the records, starting a fresh resuming subprocess after
each kill, and lets the last one finish. Afterwards the file must hold exactly one record per input:
no gap and no duplicate, whatever the kills cut.

Then the untidy cases: two runs resuming one file at once (one is refused, nothing is duplicated), a
resume with reordered inputs (refused, the records kept), and a kill during a burst of faults (resumed
with retry_errors=True, every input answered once).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from helpers.mock import start_mock
from helpers.runners import read_jsonl_results

REPO = Path(__file__).resolve().parent.parent
N = 400
KILL_AT = (0.15, 0.45, 0.75)  # fractions of N written before each kill

RUNNER = """
import asyncio, json, sys
from langchain_openai import ChatOpenAI
from helpers.backend import make_chain
from helpers.runners import run_to_jsonl

base_url, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
order, retry_errors = sys.argv[4], sys.argv[5] == "retry"
llm = ChatOpenAI(model="gpt-4o-mini", base_url=base_url, api_key="mock-key", max_retries=0, stream_usage=True)
chain = make_chain("What is {a} + {b}?", llm)
numbers = range(n) if order == "forward" else reversed(range(n))
inputs = ({"a": i, "b": 2 * i} for i in numbers)  # a generator: the inputs are never all in memory
summary = asyncio.run(run_to_jsonl(chain, inputs, path, max_concurrency=20, timeout=5.0, progress=False,
                                   retry_errors=retry_errors))
print(json.dumps({"skipped": summary.skipped, "written": summary.written}))
"""


@pytest.fixture(scope="module")
def mock():
    handle = start_mock(speed=4)  # slow enough that each kill lands mid-run
    yield handle
    handle.stop()


def complete_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def start_run(mock, path: Path, order: str = "forward", retry: str = "no-retry") -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", RUNNER, mock.base_url, str(path), str(N), order, retry], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_when_written(process: subprocess.Popen, path: Path, lines: float) -> None:
    """SIGKILL the run once the file holds `lines` complete lines."""
    deadline = time.monotonic() + 60
    while complete_lines(path) < lines:
        assert process.poll() is None, f"the run ended before the kill: {process.communicate()}"
        assert time.monotonic() < deadline, "the run wrote too slowly"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL


def records_now(path: Path) -> int:
    with warnings.catch_warnings():  # a line cut mid-write is expected here
        warnings.simplefilter("ignore")
        return len(read_jsonl_results(path)) if path.exists() else 0


@pytest.mark.timeout(120)
def test_sigkill_at_several_points_then_resume(mock, tmp_path):
    path = tmp_path / "resume.jsonl"
    killed_with = []
    for fraction in KILL_AT:
        kill_when_written(start_run(mock, path), path, fraction * N)
        killed_with.append(records_now(path))
        assert killed_with[-1] < N, "the kill should land mid-run"

    before = records_now(path)
    process = start_run(mock, path)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary == {"skipped": before, "written": N - before}  # resumed exactly where the file ended

    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    indices = [line["index"] for line in lines]
    assert len(indices) == N and sorted(indices) == list(range(N))  # exactly N unique records, no gap
    records = read_jsonl_results(path)
    assert [r["output"] for r in records] == [f"{i} + {2 * i} = {3 * i}" for i in range(N)]
    assert killed_with == sorted(killed_with) and killed_with[0] >= KILL_AT[0] * N - 1


@pytest.mark.timeout(120)
def test_two_runs_resuming_one_file_at_once_one_is_refused_and_nothing_is_duplicated(mock, tmp_path):
    path = tmp_path / "shared.jsonl"
    kill_when_written(start_run(mock, path), path, 0.2 * N)  # a half-done file, as two people would find it
    before = records_now(path)
    mock.reset()
    first, second = start_run(mock, path), start_run(mock, path)
    results = [process.communicate(timeout=60) for process in (first, second)]
    codes = sorted(process.returncode for process in (first, second))
    assert codes == [0, 1], results
    refused = next(err for (out, err), process in zip(results, (first, second)) if process.returncode)
    assert "ResultsFileBusy" in refused and "is being written by another run (PID" in refused
    indices = [json.loads(line)["index"] for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(indices) == N and sorted(indices) == list(range(N))  # zero duplicates, zero losses
    assert mock.stats()["requests"] == N - before  # the refused run sent nothing


@pytest.mark.timeout(120)
def test_resume_after_a_kill_with_reordered_inputs_is_refused(mock, tmp_path):
    path = tmp_path / "reordered.jsonl"
    kill_when_written(start_run(mock, path), path, 0.3 * N)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        before = read_jsonl_results(path)
    process = start_run(mock, path, order="reversed")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1 and "InputMismatch" in err and "same inputs in the same order" in err
    assert read_jsonl_results(path) == before  # the records already written stay valid


@pytest.mark.timeout(120)
def test_a_kill_during_a_burst_of_faults_then_resume_with_retry_errors(tmp_path):
    faulty = start_mock(speed=4, error_rate=0.5, drop_rate=0.1)
    try:
        path = tmp_path / "faults.jsonl"
        kill_when_written(start_run(faulty, path), path, 0.4 * N)
        faulty.configure(error_rate=0.0, drop_rate=0.0)
        process = start_run(faulty, path, retry="retry")
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
    finally:
        faulty.stop()
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    ok = [line["index"] for line in lines if "output" in line]
    assert sorted(ok) == list(range(N))  # every input answered exactly once: no answer duplicated
    assert any("error" in line for line in lines)  # the burst left error records, rerun on resume
    assert [r["output"] for r in read_jsonl_results(path)] == [f"{i} + {2 * i} = {3 * i}" for i in range(N)]
