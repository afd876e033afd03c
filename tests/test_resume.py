"""Crash and resume: SIGKILL a `run_to_jsonl` run against the mock at several points, resume each time.

A subprocess runs `run_to_jsonl` (real ChatOpenAI, real HTTP, the mock in the test's own process
tree). The test kills it with SIGKILL (no cleanup, no flush: like a crash or `kill -9`) once the
file holds about 15%, then 45%, then 75% of the records, starting a fresh resuming subprocess after
each kill, and lets the last one finish. Afterwards the file must hold exactly one record per input:
no gap and no duplicate, whatever the kills cut.
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
llm = ChatOpenAI(model="gpt-4o-mini", base_url=base_url, api_key="mock-key", max_retries=0, stream_usage=True)
chain = make_chain("What is {a} + {b}?", llm)
inputs = ({"a": i, "b": 2 * i} for i in range(n))  # a generator: the inputs are never all in memory
summary = asyncio.run(run_to_jsonl(chain, inputs, path, max_concurrency=20, timeout=5.0, progress=False))
print(json.dumps({"skipped": summary.skipped, "written": summary.written}))
"""


@pytest.fixture(scope="module")
def mock():
    handle = start_mock(speed=4)  # slow enough that each kill lands mid-run
    yield handle
    handle.stop()


def complete_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def start_run(mock, path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", RUNNER, mock.base_url, str(path), str(N)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def records_now(path: Path) -> int:
    with warnings.catch_warnings():  # a line cut mid-write is expected here
        warnings.simplefilter("ignore")
        return len(read_jsonl_results(path)) if path.exists() else 0


@pytest.mark.timeout(120)
def test_sigkill_at_several_points_then_resume(mock, tmp_path):
    path = tmp_path / "resume.jsonl"
    killed_with = []
    for fraction in KILL_AT:
        process = start_run(mock, path)
        deadline = time.monotonic() + 60
        while complete_lines(path) < fraction * N:
            assert process.poll() is None, f"the run ended before the kill: {process.communicate()}"
            assert time.monotonic() < deadline, "the run wrote too slowly"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.communicate()
        assert process.returncode == -signal.SIGKILL
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
