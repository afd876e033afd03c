"""Tests for helpers.bench: every runner runs and counts right, a fresh process works, jsonl_job reads
JSON Lines inputs, the profile summary adds up, and slots busy while inputs remain
(helpers.metrics.slots_busy_while_refilling). Against a very fast mock (a few seconds)."""

from __future__ import annotations

import asyncio
import cProfile
import json

import pytest

from helpers.bench import (
    RUNNERS,
    cpu_by_package,
    cpu_split,
    cprofile_lines,
    jsonl_job,
    make_inputs,
    measure,
    run_once,
    start_in_fresh_process,
)
from helpers.metrics import slots_busy_while_refilling
from helpers.mock import start_mock


@pytest.fixture(scope="module")
def mock():
    handle = start_mock(speed=1000.0, jitter=0.0)
    yield handle
    handle.stop()


def test_make_inputs_are_the_seeds_and_warm_up_inputs_differ():
    assert list(make_inputs("add", 2)) == [{"a": 0, "b": 1}, {"a": 1, "b": 2}]
    assert list(make_inputs("translate", 1)) == [{"text": "测试0"}]
    assert list(make_inputs("translate", 1, warm_up=True)) != list(make_inputs("translate", 1))
    with pytest.raises(ValueError, match="prompt must be one of"):
        make_inputs("poem", 1)


def test_every_runner_answers_every_input(mock):
    # One event loop for all: langchain-openai shares one HTTP client per base URL, tied to its loop.
    async def all_runners():
        return [await run_once(runner, 20, 5, base_url=mock.base_url, chunk_size=8, record_intervals=True)
                for runner in RUNNERS]

    for row in asyncio.run(all_runners()):
        assert (row["runner"], row["ok"], row["failed"]) == (row["runner"], 20, 0)
        assert row["throughput"] > 0 and row["cpu_ms_per_request"] > 0
        assert len(row["intervals"]) == 20 and row["mean_latency_s"] > 0
        assert 0 < row["slots_busy"] <= 1.0
        assert row["concurrency"] == (100 if row["runner"] == "seed_chunked" else 5)


def test_unknown_runner_is_refused(mock):
    with pytest.raises(ValueError, match="runner must be one of"):
        asyncio.run(run_once("gather_everything", 1, 1, base_url=mock.base_url))


def test_measure_runs_in_a_fresh_process_and_reports_memory(mock):
    row = measure("run_to_jsonl", 30, 10, base_url=mock.base_url, trace_memory=True)
    assert row["ok"] == 30
    assert row["peak_traced_mb"] > 0
    assert row["peak_rss_growth_mb"] is not None


def test_jsonl_job_reads_one_input_dict_per_line(mock, tmp_path):
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text("".join(json.dumps({"text": f"行{i}"}, ensure_ascii=False) + "\n" for i in range(7)),
                      encoding="utf-8")
    out = tmp_path / "results.jsonl"
    # In a fresh process, as lesson 04 runs it (one event loop per process: see helpers.bench.measure).
    process = start_in_fresh_process(jsonl_job, mock.base_url, str(inputs), str(out), 3)
    process.join(60)
    assert process.exitcode == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sorted(record["index"] for record in records) == list(range(7))
    assert all("output" in record for record in records)


def test_profile_summaries():
    profile = cProfile.Profile()
    profile.enable()
    sum(json.loads(json.dumps({"i": i}))["i"] for i in range(2000))  # library code (json) and built-ins
    profile.disable()
    shares = cpu_by_package(profile)
    assert abs(sum(shares.values()) - 1) < 1e-9
    lines = cprofile_lines(profile, top=3)
    assert 1 <= len(lines) <= 3 and all(0 < share <= 1 for _, share in lines)


def test_slots_busy_counts_only_the_window_while_inputs_remain():
    refilled = [(0.0, 1.0), (0.0, 1.0), (1.0, 2.0), (1.0, 2.5)]  # both slots refilled at once, then a drain
    assert slots_busy_while_refilling(refilled, 2) == 1.0
    waits_for_straggler = [(0.0, 1.0), (0.0, 3.0), (3.0, 4.0), (3.0, 4.0)]  # a chunk of 2 waits for its slowest
    assert slots_busy_while_refilling(waits_for_straggler, 2) == pytest.approx(4 / 6)
    assert slots_busy_while_refilling([(0.0, 1.0), (0.0, 2.0)], 2) is None  # everything started at once: no window
    assert slots_busy_while_refilling([], 2) is None


def test_cpu_split_counts_what_a_layer_calls():
    import openai._utils  # an SDK module: its time counts for the SDK layer, with what it calls

    profile = cProfile.Profile()
    profile.enable()
    for i in range(3000):
        openai._utils.is_mapping({"i": i})
        json.loads(json.dumps({"i": i}))  # not under the SDK: the rest
    profile.disable()
    split = cpu_split(profile)
    assert abs(sum(split.values()) - 1) < 1e-9
    shares = list(split.values())
    assert shares[0] == 0.0  # no LangChain code ran
    assert 0 < shares[1] < 1 and shares[2] > 0
