"""Checks for lesson 05's exercises, performance comparison (backstage: a learner need not read this).

05-1 `check_knee`: the smallest concurrency whose throughput is at least 90 % of the best measured.
05-2 `check_predicted_throughput`: min(C / L, rpm / 60, 1000 / cpu_ms), on known cases and the sweep.

Both are pure functions, checked on made-up rows and on the learner's own sweep (measured earlier in
the lesson against the local mock); no check here calls a model, let alone a paid API.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from helpers.checks.common import call_sync, fail, passed
from helpers.metrics import is_number


def check_knee(find_knee: Callable[[Any], Any], rows: list[dict[str, Any]]) -> None:
    """Exercise 05-1: the smallest concurrency whose throughput is >= 90 % of the best measured."""
    made_up = [(200, 255.0, 1000.0), (1, 5.0, 5.0), (1000, 262.0, 5000.0), (10, 48.0, 50.0), (100, 250.0, 500.0),
               (20, 95.0, 100.0), (50, 240.0, 250.0), (500, 258.0, 2500.0), (2, 10.0, 10.0), (5, 24.0, 25.0)]
    made_up_rows = [{"concurrency": c, "throughput": x, "ideal": ideal} for c, x, ideal in made_up]
    answer = call_sync(find_knee, [dict(row) for row in made_up_rows])
    ordered = sorted(c for c, _, _ in made_up)  # 1, 2, 5, 10, 20, 50, 100, ...; the knee is 50
    if isinstance(answer, dict):
        fail("You returned a whole row; return its concurrency (row[\"concurrency\"]).")
    if isinstance(answer, float) and answer in {x for _, x, _ in made_up}:
        fail(f"You returned a throughput ({answer}); return the concurrency of that row.")
    if answer == 1000:
        fail("You returned the concurrency with the highest throughput. On a plateau that is wherever noise "
             "put the maximum; the knee is the first concurrency that gets within 90 % of it.")
    if answer == 200:
        fail("The rows are not sorted by concurrency: take the smallest qualifying concurrency (min), "
             "not the first one in the list.")
    if answer == 1:
        fail("C = 1 is the smallest concurrency of the whole sweep: keep only the rows whose throughput is at "
             "least 90 % of the best *measured* throughput (not with the ideal C / L0), then take the smallest.")
    if answer == ordered[ordered.index(50) - 1]:
        fail("That is one row too early: its throughput is below 90 % of the best. Use >= 0.9 * best on the "
             "throughput, and take the smallest concurrency that passes.")
    if answer == ordered[ordered.index(50) + 1]:
        fail("That is one row too late: the row before it already reaches 90 % of the best (>= 0.9 * best, "
             "not a higher bar, and no step past the first row that passes).")
    if isinstance(answer, int) and answer not in ordered:
        fail(f"You returned {answer}, which is no concurrency of the sweep: a position in the list? "
             "Return the row's \"concurrency\".")
    if answer != 50:
        fail(f"On a made-up sweep (best 262 req/s, so the bar is 235.8) the knee is C = 50; you returned {answer!r}.")
    best = max(row["throughput"] for row in rows)
    expected = min(row["concurrency"] for row in rows if row["throughput"] >= 0.9 * best)
    mine = call_sync(find_knee, [dict(row) for row in rows])
    if mine != expected:
        fail(f"On the measured sweep you returned {mine!r}; by the definition it is {expected}.")
    passed("find_knee picks the first concurrency within 90 % of the best, on a made-up and on your measured sweep.")


def check_predicted_throughput(predicted: Callable[..., Any], rows: list[dict[str, Any]], *,
                               cpu_ms: float, rpm_limit: int) -> None:
    """Exercise 05-2: min(C / L, rpm / 60, 1000 / cpu_ms), on known cases and against the measured sweep."""
    cases = [((10, 0.5, 0, 2.0), 20.0), ((100, 0.5, 0, 4.0), 200.0), ((100, 0.2, 6000, 4.0), 100.0),
             ((1000, 0.2, 0, 4.0), 250.0)]
    for args, expected in cases:
        answer = call_sync(predicted, *args)
        if not is_number(answer):
            fail(f"Return a number of requests per second, got {answer!r}.")
        _known_mistake(args, answer)
        if not math.isclose(answer, expected):
            fail(f"For concurrency, latency, rpm_limit, cpu_ms = {args} expected {expected}, got {answer!r}.")
    worst = 0.0
    for row in rows:
        guess = call_sync(predicted, row["concurrency"], row["lone_latency_s"], rpm_limit, cpu_ms)
        ratio = row["throughput"] / guess
        worst = max(worst, abs(1 - ratio))
        if not 0.3 <= ratio <= 2.0:  # wide: a busy machine moves measurements; unit mistakes are 60× or 1000×
            fail(f"At C = {row['concurrency']} you predict {guess:.0f} req/s but {row['throughput']:.0f} req/s "
                 "were measured: check the units of each argument.")
    passed(f"right on 4 known cases; on your sweep every prediction is within {worst:.0%} of the measurement.")


def _known_mistake(args: tuple[int, float, int, float], answer: float) -> None:
    """Fail with a hint if `answer` is what a known mistake gives for these arguments."""
    concurrency, latency, rpm, cpu = args

    def ceilings(law: float, cpu_ceiling: float = 1000 / cpu, limit: float | None = None) -> list[float]:
        return [law, cpu_ceiling] + ([rpm / 60 if limit is None else limit] if rpm else [])

    right = min(ceilings(concurrency / latency))
    if math.isclose(answer, 60 * right):
        fail("That is requests per minute: return requests per second (the rate limit is rpm_limit / 60).")
    if rpm == 0 and math.isclose(answer, 0.0, abs_tol=1e-9):
        fail("rpm_limit=0 means no limit, not a limit of 0: leave it out of the min.")
    if rpm and math.isclose(answer, min(concurrency / latency, 1000 / cpu)) and not math.isclose(answer, right):
        fail(f"For {args}: the limit of {rpm} requests a minute allows {rpm / 60:.0f} a second; "
             "did you leave it out, or forget to divide by 60?")
    if math.isclose(answer, concurrency / latency) and concurrency / latency > 1000 / cpu:
        fail(f"For {args}: {cpu} ms of CPU per request caps one core at {1000 / cpu:.0f} req/s; "
             "add the CPU ceiling 1000 / cpu_ms to the min.")
    if math.isclose(answer, min(ceilings(concurrency / latency, 1 / cpu))):
        fail("cpu_ms is in milliseconds: the ceiling is 1000 / cpu_ms requests a second.")
    if math.isclose(answer, min(ceilings(latency / concurrency))):
        fail("Little's law is throughput = concurrency / latency, not latency / concurrency.")
    if math.isclose(answer, min(ceilings(concurrency / (latency * 1000)))):
        fail("latency_s is in seconds already: throughput = concurrency / latency_s, with no factor 1000.")
    if math.isclose(answer, min(ceilings(concurrency * latency))):
        fail("Little's law is throughput = concurrency / latency, not concurrency × latency.")
    if math.isclose(answer, max(ceilings(concurrency / latency))) and not math.isclose(answer, right):
        fail("A batch is capped by the lowest ceiling: min, not max, of C / L, the rate limit and the CPU ceiling.")
