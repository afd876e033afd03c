"""The measuring harness that lessons 04 and 05 and `make bench` call; a learner need not read it (backstage).

| module      | what it holds                                                                   |
| ----------- | ------------------------------------------------------------------------------- |
| runners.py  | RUNNERS: every way to push n inputs through one chain that the workbook compares |
|             | (batch, abatch, abatch_as_completed, the seed's processors, run_tracked,         |
|             | run_to_jsonl, raw_openai); CLIENTS, mock_chain, make_inputs, latency_settings    |
| measure.py  | run_once (here), measure (in a fresh forkserver process), prepare_fresh_processes, |
|             | start_in_fresh_process, jsonl_job, requests_for; peak RSS, connection counts      |
| profile.py  | cprofile_lines, cpu_by_package, cpu_split: where the client's CPU goes, per library |

    from helpers.bench import measure, run_once, latency_settings, requests_for

The figures it computes from request times come from `helpers.metrics` (its "slots_busy" key is
`slots_busy_while_refilling`: slots busy while inputs remain). `make bench` is `tools/bench_runners.py`.
"""

from helpers.bench.measure import (
    jsonl_job,
    measure,
    prepare_fresh_processes,
    requests_for,
    run_once,
    start_in_fresh_process,
)
from helpers.bench.profile import cpu_by_package, cpu_split, cprofile_lines
from helpers.bench.runners import CLIENTS, RUNNERS, latency_settings, make_inputs, mock_chain

__all__ = [
    "run_once",
    "measure",
    "prepare_fresh_processes",
    "start_in_fresh_process",
    "jsonl_job",
    "latency_settings",
    "requests_for",
    "cprofile_lines",
    "cpu_by_package",
    "cpu_split",
    "RUNNERS",
    "CLIENTS",
    "make_inputs",
    "mock_chain",
]
