"""Tests for tools/bench_runners.py without measuring anything: the default plan is the issue's
matrix, the second lane never overlaps the CPU-bound cells, and the budget lines can fail."""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("bench_runners", Path(__file__).resolve().parents[1] / "tools" / "bench_runners.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_runners"] = bench  # dataclasses look their module up there
_spec.loader.exec_module(bench)


def test_default_plan_is_the_issues_matrix():
    plan = bench.build_plan(bench.parse_args([]))
    shape = [(g.case, g.n, g.concurrency) for g in plan]
    assert shape == [("latency-bound", 500, 10), ("latency-bound", 500, 100), ("CPU-bound", 2000, 100),
                     ("CPU-bound", 2000, 1000), ("memory", 5000, 100), ("memory", 50000, 100)]
    for group in plan:
        assert {runner for runner, _, _ in group.specs} <= set(bench.RUNNERS)
        if group.case != "memory":
            assert {runner for runner, _, _ in group.specs} == set(bench.RUNNERS)  # every runner, same inputs
    lanes = {(g.case, g.n, g.concurrency): (g.background, g.beside) for g in plan}
    assert lanes[("memory", 50000, 100)] == (True, False)
    assert lanes[("memory", 5000, 100)] == (False, True)
    assert lanes[("latency-bound", 500, 100)] == (False, True)
    assert lanes[("CPU-bound", 2000, 1000)] == (False, False)  # the CPU-bound cells run alone


def test_alone_keeps_one_lane():
    plan = bench.build_plan(bench.parse_args(["--alone"]))
    assert not any(g.background or g.beside or g.note for g in plan)


class _FakeMock:
    base_url = "http://127.0.0.1:1/v1"

    def configure(self, **settings):
        pass

    def reset(self):
        pass


def test_cpu_bound_cells_start_after_the_second_lane_ends(monkeypatch):
    plan = bench.build_plan(bench.parse_args(["--quick"]))
    log = []
    lock = threading.Lock()

    def fake_cell(group, runner, client, run, base_url):
        started = time.perf_counter()
        time.sleep(0.3 if group.background else 0.002)  # the second lane is the long one, as in a real run
        with lock:
            log.append((group.case, group.n, group.background, started, time.perf_counter()))
        return {"runner": runner, "client": client, "run": run, "n": group.n, "concurrency": group.concurrency,
                "throughput": 1.0, "cpu_ms_per_request": 1.0, "failed": 0}

    monkeypatch.setattr(bench, "_measure_cell", fake_cell)
    monkeypatch.setattr(bench, "_progress", lambda *args: None)
    bench.run_plan(plan, _FakeMock(), _FakeMock())
    background_end = max(end for case, _, background, _, end in log if background)
    cpu_starts = [start for case, _, _, start, _ in log if case == "CPU-bound"]
    assert cpu_starts and min(cpu_starts) >= background_end
    for group in plan:  # every cell ran, once per run
        assert len(group.rows) == sum(runs for _, _, runs in group.specs)


def test_second_lane_needs_its_own_mock():
    plan = bench.build_plan(bench.parse_args(["--quick"]))
    with pytest.raises(ValueError, match="second mock"):
        bench.run_plan(plan, _FakeMock())


def test_drain_bound_is_c_over_l_without_jitter_and_below_with_it():
    assert bench.drain_bound(500, 100, 1.0, 0.0) == pytest.approx(100.0)
    assert 85.0 < bench.drain_bound(500, 100, 1.0, 0.2) < 95.0


def _latency_summaries(efficiency, busy):
    return [{"case": "latency-bound", "runner": "run_tracked", "client": "sdk", "runs": 3, "efficiency": efficiency,
             "slots_busy": busy, "vs_abatch": 1.0, "concurrency": 100, "n": 500}]


@pytest.mark.parametrize("busy, met", [(0.99, True), (0.90, False)])
def test_busy_budget_line_can_fail(busy, met):
    args = bench.parse_args(["--cases", "latency", "--latency-concurrency", "100"])
    plan = bench.build_plan(args)
    plan[0].summaries = _latency_summaries(0.86, busy)
    checks = bench.budget(plan[0].summaries, plan, args)
    lines = {check["target"].split(" >=")[0]: check["met"] for check in checks}
    assert lines["efficiency = throughput / (C / L)"] is False
    assert lines["slots busy while inputs remain"] is met
