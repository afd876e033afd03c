"""Small, dependency-free measurements for batch runs: percentiles, latency summaries,
in-flight counts and Little's law.

A learner reads this: every figure the lessons print is defined here.

Structure
- `percentile(values, q)`: the q-th percentile of a list, linear interpolation (like numpy's default).
- `LatencyStats`: count, mean, p50/p95/p99 and max of a list of latencies (exact; keeps the list).
- `StreamingStats`: the same summary in constant memory, for runs too long to keep every value.
  It keeps count, sum, min and max exactly, and a histogram with log-spaced buckets
  (each 5 % wider than the last), so its percentiles are within about 2.5 % of the true value.
- `in_flight_timeline(intervals)`: how many requests were in flight over time, from (start, end) pairs.
- Three figures from the same (start, end) pairs, each named for what it means:
  `mean_in_flight` (busy time / wall time: the average number in flight, Little's L),
  `slots_busy` (the share of C slots holding a request from the first start to the last end) and
  `slots_busy_while_refilling` (the same share, but only until the last request started: the part a
  runner controls; after that the slots drain however good the runner is).
- `littles_law_throughput(concurrency, mean_latency, rate_limit_per_s)`: the ideal throughput,
  L = λ·W rearranged to λ = L / W, capped by a rate limit.
- `approx_tokens(text)`: a token count without a tokenizer (the mock counts the same way).
- `is_number(value)`: an int or float, but not a bool (True is an int in Python).
- `format_seconds(s)`: "412 ms" or "1.23 s", for readable tables.

All times are in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "percentile",
    "format_seconds",
    "LatencyStats",
    "StreamingStats",
    "in_flight_timeline",
    "mean_in_flight",
    "slots_busy",
    "slots_busy_while_refilling",
    "littles_law_throughput",
    "approx_tokens",
    "is_number",
]


def is_number(value: object) -> bool:
    """True for an int or a float, False for a bool (which Python counts as an int) and anything else."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def approx_tokens(text: str) -> int:
    """Rough token count without a tokenizer: ceil(UTF-8 bytes / 4), at least 1. The mock counts so too."""
    return max(1, math.ceil(len(text.encode("utf-8")) / 4))


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0 <= q <= 100) of `values`, interpolating linearly between neighbours."""
    if not is_number(q) or not 0 <= q <= 100:
        raise ValueError(f"q must be a number from 0 to 100, got {q!r}")
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of an empty list is undefined")
    position = (len(ordered) - 1) * q / 100
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def format_seconds(seconds: float) -> str:
    """'412 ms' below one second, '1.23 s' above; 'n/a' for NaN."""
    if math.isnan(seconds):
        return "n/a"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


@dataclass(frozen=True)
class LatencyStats:
    """Exact latency summary of a list of per-request latencies (NaN when there are none)."""

    count: int
    mean: float
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def from_values(cls, values: Sequence[float]) -> LatencyStats:
        """Summarise a list of latencies in seconds."""
        if not values:
            nan = float("nan")
            return cls(0, nan, nan, nan, nan, nan)
        ordered = sorted(values)
        return cls(
            count=len(ordered),
            mean=sum(ordered) / len(ordered),
            p50=percentile(ordered, 50),
            p95=percentile(ordered, 95),
            p99=percentile(ordered, 99),
            max=ordered[-1],
        )

    def line(self) -> str:
        """One readable line: 'p50 410 ms · p95 780 ms · p99 950 ms · mean 450 ms'."""
        return " · ".join(
            f"{name} {format_seconds(getattr(self, name))}" for name in ("p50", "p95", "p99", "mean")
        )


@dataclass
class StreamingStats:
    """Constant-memory summary of a stream of non-negative values (latencies).

    `add(x)` is O(1). count, total, min and max are exact; percentiles come from a histogram
    whose bucket k >= 1 holds values in [smallest·growth^(k-1), smallest·growth^k).
    """

    growth: float = 1.05  # each bucket is 5 % wider than the previous one
    smallest: float = 1e-4  # values below 0.1 ms share bucket 0
    count: int = 0
    total: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    buckets: dict[int, int] = field(default_factory=dict, repr=False)

    def add(self, value: float) -> None:
        """Record one value."""
        self.count += 1
        self.total += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        key = 0 if value <= self.smallest else 1 + int(math.log(value / self.smallest, self.growth))
        self.buckets[key] = self.buckets.get(key, 0) + 1

    @property
    def mean(self) -> float:
        """Exact mean (NaN when empty)."""
        return self.total / self.count if self.count else float("nan")

    def quantile(self, q: float) -> float:
        """Approximate q-th percentile (0..100): the geometric middle of the bucket holding it."""
        if not 0 <= q <= 100:
            raise ValueError(f"q must be from 0 to 100, got {q!r}")
        if not self.count:
            return float("nan")
        rank = q / 100 * (self.count - 1)  # same rank convention as percentile()
        seen = 0
        for key in sorted(self.buckets):
            seen += self.buckets[key]
            if seen > rank:
                if key == 0:
                    estimate = self.min
                else:
                    estimate = self.smallest * self.growth ** (key - 0.5)
                return min(max(estimate, self.min), self.max)  # never outside what was seen
        return self.max

    @property
    def p50(self) -> float:
        return self.quantile(50)

    @property
    def p95(self) -> float:
        return self.quantile(95)

    @property
    def p99(self) -> float:
        return self.quantile(99)

    def line(self) -> str:
        """One readable line, like LatencyStats.line()."""
        return " · ".join(
            f"{name} {format_seconds(getattr(self, name))}" for name in ("p50", "p95", "p99", "mean")
        )


def in_flight_timeline(
    intervals: Iterable[tuple[float, float] | None],
) -> tuple[list[float], list[int]]:
    """Step function of requests in flight: at times[i] the count becomes counts[i].

    Starts at (earliest start, ...) and ends at 0. A request ending at the same instant
    another starts is not counted twice. `None` entries (never finished) are ignored.
    """
    events: list[tuple[float, int]] = []
    for pair in intervals:
        if pair is None:
            continue
        start, end = pair
        events.append((start, +1))
        events.append((end, -1))
    events.sort()  # at equal times, -1 sorts before +1
    times: list[float] = []
    counts: list[int] = []
    current = 0
    for time, delta in events:
        current += delta
        if times and times[-1] == time:
            counts[-1] = current  # merge events at the same instant
        else:
            times.append(time)
            counts.append(current)
    return times, counts


def _finished(intervals: Iterable[tuple[float, float] | None]) -> list[tuple[float, float]]:
    return [pair for pair in intervals if pair is not None]


def mean_in_flight(intervals: Iterable[tuple[float, float] | None], wall_time: float) -> float:
    """Average number of requests in flight over `wall_time` seconds: total busy time / wall time.

    This is L in Little's law (L = throughput × mean latency). `None` entries are ignored.
    """
    busy = sum(end - start for start, end in _finished(intervals))
    return busy / wall_time if wall_time > 0 else 0.0


def slots_busy(intervals: Iterable[tuple[float, float] | None], concurrency: int) -> float:
    """Share of `concurrency` slots that held a request from the first start to the last end (0 to 1).

    Busy time / (concurrency × span). It counts the ramp-up and the drain at the end, so a short batch
    scores below 1 even with a perfect runner. 0.0 when there is nothing to measure.
    """
    done = _finished(intervals)
    if not done:
        return 0.0
    span = max(end for _, end in done) - min(start for start, _ in done)
    busy = sum(end - start for start, end in done)
    return busy / (concurrency * span) if span > 0 else 0.0


def slots_busy_while_refilling(intervals: Iterable[tuple[float, float] | None], concurrency: int) -> float | None:
    """Share of `concurrency` slots that held a request from the first start to the *last start*.

    Until the last request starts, a perfect runner refills a slot the moment it frees, so 1.0 means
    no slot ever waited for the runner; the drain after the last start is left out. None when every
    request started at the same instant (no window to measure).
    """
    done = _finished(intervals)
    if not done:
        return None
    first = min(start for start, _ in done)
    last = max(start for start, _ in done)
    if last <= first:
        return None
    busy = sum(max(0.0, min(end, last) - start) for start, end in done)
    return busy / (concurrency * (last - first))


def littles_law_throughput(
    concurrency: float, mean_latency: float, rate_limit_per_s: float | None = None
) -> float:
    """Ideal requests/s with `concurrency` requests always in flight: concurrency / mean_latency,
    capped at `rate_limit_per_s` when given."""
    for name, value in (("concurrency", concurrency), ("mean_latency", mean_latency)):
        if not is_number(value) or not value > 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    ideal = concurrency / mean_latency
    if rate_limit_per_s is None:
        return ideal
    if not is_number(rate_limit_per_s) or not rate_limit_per_s > 0:
        raise ValueError(f"rate_limit_per_s must be a positive number or None, got {rate_limit_per_s!r}")
    return min(ideal, rate_limit_per_s)
