"""Checks for lesson 08's exercises, scaling out (backstage: a learner need not read this).

08-1 `check_concurrency_needed`: the requests in flight a job needs to reach the provider's ceiling,
     min(RPM / 60, TPM / 60 / tokens) * latency, rounded up; per-minute limits used as per-second,
     the TPM limit ignored, max instead of min, dividing by the latency and rounding down are named.
08-2 `check_shard`: process k's share of a job as (index, input) pairs, so that the P processes
     together take every input exactly once, evenly, with indices of the whole job: bare inputs,
     indices within the shard, inputs lost or given twice, and an uneven split are named.

Neither needs a model: each builds its own cases and sends no request anywhere.
"""

from __future__ import annotations

import math
import numbers
from collections import Counter
from collections.abc import Callable
from typing import Any

from helpers.checks.common import call_sync, fail, passed

# ---------------------------------------------------------------- 08-1: the concurrency a job needs

# (rpm, tpm, tokens per request, latency s): RPM decides, TPM decides, and a rate that is not whole.
# No case's rate x latency is within float error of a whole number, so math.ceil is safe on each.
_JOBS = [(30_000, 150_000_000, 28, 2.0), (10_000, 200_000, 1_000, 2.5), (1_000, 10_000_000, 50, 1.3),
         (500, 40_000, 200, 0.8), (90_000, 2_000_000, 400, 3.7), (6_000, 10_000_000, 50, 0.523)]


def _needed(rpm: float, tpm: float, tokens: float, latency: float) -> int:
    return math.ceil(min(rpm / 60, tpm / 60 / tokens) * latency - 1e-9)


def _slips(rpm: float, tpm: float, tokens: float, latency: float) -> dict[str, float]:
    """The usual wrong answers for one job, by the hint that names each."""
    rate = min(rpm / 60, tpm / 60 / tokens)
    return {
        "RPM and TPM are per MINUTE: divide by 60 to get requests per second before Little's law.":
            min(rpm, tpm / tokens) * latency,
        "You ignored the TPM limit: tokens per minute allow only tpm / 60 / tokens_per_request requests a "
        "second, and here that is lower than rpm / 60.": rpm / 60 * latency,
        "The job runs at the LOWER of the two limits (min, not max): the other one would reject the rest.":
            max(rpm / 60, tpm / 60 / tokens) * latency,
        "Little's law: in flight = rate × latency (multiply by the latency, do not divide).": rate / latency,
        "Round UP: with fewer in flight than rate × latency the job falls short of the rate.":
            math.floor(rate * latency + 1e-9),
    }


def check_concurrency_needed(concurrency_needed: Callable[[float, float, float, float], Any]) -> None:
    """Exercise 08-1: concurrency_needed(rpm, tpm, tokens_per_request, latency_s) -> int."""
    for job in _JOBS:
        answer, right = call_sync(concurrency_needed, *job), _needed(*job)
        if isinstance(answer, bool) or not isinstance(answer, numbers.Integral):
            fail(f"concurrency_needed{job} returned {answer!r}: return a whole number of requests (an int; "
                 "math.ceil gives one).")
        if answer == right:
            continue
        for hint, slip in _slips(*job).items():
            if not math.isclose(slip, right) and answer in (math.floor(slip), math.ceil(slip), round(slip)):
                fail(f"concurrency_needed{job} returned {answer}, but it needs {right}. {hint}")
        fail(f"concurrency_needed{job} returned {answer}, but it needs {right}: the rate is min(rpm / 60, "
             "tpm / 60 / tokens_per_request) requests a second, times the latency, rounded up.")
    passed(f"{len(_JOBS)} jobs sized right, where RPM decides and where TPM does.")


# ---------------------------------------------------------------- 08-2: shard a job across processes

_SPLITS = [(10, 2), (7, 3), (3, 4), (12, 1), (11, 4), (0, 2)]


def _shards(shard: Callable[[list, int, int], Any], n: int, processes: int) -> list[list[Any]]:
    inputs = [f"input {i}" for i in range(n)]
    shards = []
    for k in range(processes):
        got = call_sync(shard, list(inputs), k, processes)
        try:
            shards.append(list(got))
        except TypeError:
            fail(f"shard(inputs, {k}, {processes}) returned {got!r}: return a list of (index, input) pairs.")
    return shards


def _pairs(got: list[Any], n: int, k: int, processes: int) -> list[tuple[int, Any]]:
    """The shard as (index, input) pairs, or a hint for an answer of another shape."""
    if any(not isinstance(pair, (tuple, list)) or len(pair) != 2 for pair in got):
        fail(f"shard(inputs, {k}, {processes}) returned {got[:3]!r}...: return (index, input) PAIRS, e.g. "
             "(3, inputs[3]). The index is what each process records, so the shards can be merged in order.")
    if any(isinstance(i, bool) or not isinstance(i, numbers.Integral) for i, _ in got):
        fail(f"shard(inputs, {k}, {processes}) returned {got[:3]!r}...: each pair is (index, input), index first.")
    return [(int(i), item) for i, item in got]


def check_shard(shard: Callable[[list, int, int], Any]) -> None:
    """Exercise 08-2: shard(inputs, k, processes) -> process k's (index, input) pairs."""
    for n, processes in _SPLITS:
        shards = [_pairs(got, n, k, processes) for k, got in enumerate(_shards(shard, n, processes))]
        where = f"with {n} inputs and {processes} processes"
        taken = Counter(i for pairs in shards for i, _ in pairs)
        if any(i < 0 or i >= n for i in taken):
            fail(f"{where}, a shard holds index {max(taken)} (or a negative one): indices run from 0 to n - 1.")
        if sum(1 for pairs in shards if pairs) > 1 and all(sorted(i for i, _ in pairs) == list(range(len(pairs)))
                                                           for pairs in shards):
            fail(f"{where}, every shard numbers its inputs 0, 1, 2, ...: use each input's index in the WHOLE "
                 "job (i of inputs[i]), or the processes' records collide and the merge cannot order them.")
        if twice := sorted(i for i, count in taken.items() if count > 1):
            fail(f"{where}, inputs {twice[:5]} were given to two processes (or twice to one): each input goes "
                 "to exactly one process.")
        if lost := sorted(set(range(n)) - set(taken)):
            fail(f"{where}, inputs {lost[:5]} went to no process: when n is not a multiple of P, the last "
                 "inputs still need a process (inputs[k::P] takes every one).")
        if wrong := [i for pairs in shards for i, item in pairs if item != f"input {i}"]:
            fail(f"{where}, index {wrong[0]} is paired with another input: pair each index i with inputs[i].")
        sizes = [len(pairs) for pairs in shards]
        if max(sizes) - min(sizes) > 1:
            fail(f"{where}, the shards hold {sizes} inputs: split evenly (sizes differ by at most one), or "
                 "one process does most of the work while the others wait.")
    passed(f"{len(_SPLITS)} jobs split: every input in exactly one shard, evenly, with its index in the job.")
