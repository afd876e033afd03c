"""What the batch runners return, and how each shows itself as a short readable table.

A learner may read this; the runners in `helpers.runners` are the lesson, this is their output.

- `BatchReport` (from `run_tracked`): results in input order, `Failure` records, per-input (start,
  end) intervals, latency percentiles, peak and mean in flight, and each input's token usage.
- `StreamEvent` (from `stream_merged`): a token, or one "done" / "error" per input (with its usage).
- `JsonlSummary` (from `run_to_jsonl`): counts, tokens and cost for the run; the results are in the file.

Usage and cost (`helpers.usage`): `report.usage[i]` is input i's `InputUsage` (the answer's tokens, and
failed attempts' apart); `report.usage_totals` / `summary.usage` sum them per model and price them.

- `Progress`: a run's progress bar, and its count of requests in flight.
- `describe_error(exc)`: one line a person can act on, for a Failure or an error record.

`print(report)`, or a report as the last line of a notebook cell, shows its `summary()` table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from collections.abc import Awaitable, Mapping

from .metrics import LatencyStats, StreamingStats, format_seconds, mean_in_flight
from .progress_bars import tqdm  # tqdm.auto's, whose saved text (an unrun notebook's) is the final bar
from .reliability import _is_out_of_quota, is_retryable
from .usage import InputUsage, UsageTotals

__all__ = ["describe_error", "Progress", "Failure", "BatchReport", "StreamEvent", "JsonlSummary"]


def describe_error(exc: BaseException, timeout: float | None = None) -> str:
    """One line a person can act on: what went wrong and, where it helps, what to change."""
    if isinstance(exc, TimeoutError) and not str(exc):
        waited = f"no answer within the {timeout:g} s timeout" if timeout else "timed out"
        return f"{waited}. Usually a stalled request: retry with a RetryPolicy (or raise timeout= for long replies)."
    text = str(exc)
    body = getattr(exc, "body", None)  # openai errors keep the server's JSON error here
    if isinstance(body, Mapping) and isinstance(body.get("message"), str):
        text = body["message"]
    elif isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
        text = exc.args[0]  # str(KeyError) would add quotes
    text = " ".join(text.split()) or type(exc).__name__
    if len(text) > 300:
        text = text[:297] + "..."
    retry_hint = "Usually temporary: retry with a RetryPolicy."
    status = getattr(exc, "status_code", None)
    if _is_out_of_quota(exc):
        return f"out of quota (HTTP 429 insufficient_quota): {text} Retrying will not help; check the account's billing."
    if status == 429:
        return f"rate limited (HTTP 429): {text} Lower max_concurrency, add a limiter, or retry with a RetryPolicy."
    if isinstance(status, int):
        kind = "server error" if status >= 500 else "request failed"
        advice = retry_hint if is_retryable(exc) else "Retrying will not help; fix the request."
        return f"{kind} (HTTP {status}): {text} {advice}"
    if is_retryable(exc):
        root = exc
        while root.__cause__ is not None:  # e.g. "Connection error." caused by a dropped stream
            root = root.__cause__
        if root is not exc and str(root):
            text += f" ({type(root).__name__}: {' '.join(str(root).split())[:200]})"
        return f"{text} {retry_hint}"
    return text



class Progress:
    """A run's tqdm progress bar, plus how many requests are in flight and the peak."""

    def __init__(self, show: bool, total: int | None, desc: str) -> None:
        self.bar = tqdm(total=total, desc=desc, unit="req", disable=not show, dynamic_ncols=True)
        self.in_flight = self.peak = 0

    async def track(self, request: Awaitable[Any]) -> Any:
        """Await one request, counted in flight meanwhile and on the bar when it ends."""
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await request
        finally:
            self.in_flight -= 1
            self.bar.update(1)


def _table(rows: list[tuple[str, str | list[str]]]) -> str:
    """Two-column text table; a list value continues on indented lines."""
    width = max(len(label) for label, _ in rows) + 2
    return "\n".join(f"{label if i == 0 else '':<{width}}{text}" for label, value in rows
                     for i, text in enumerate(value if isinstance(value, list) else [value]))


class _Readable:
    """Shows a report as its `summary()` table, in print() and in Jupyter."""

    def summary(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.summary()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # how IPython/Jupyter shows it
        printer.text(self.summary())


@dataclass(frozen=True)
class Failure:
    """One input that failed: which one, what went wrong, and how many attempts were made."""

    index: int
    error_type: str
    message: str
    attempts: int
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return f"#{self.index} {self.error_type} after {self.attempts} attempt{'s' * (self.attempts != 1)}: {self.message}"


@dataclass
class BatchReport(_Readable):
    """What `run_tracked` returns: results in input order (None where an input failed) and run metrics.

    `intervals[i]` is (start, end) of input i in seconds since the run began: from when a worker took
    it to when it finished, so limiter waits and retry sleeps count as in flight.
    """

    results: list[Any] = field(repr=False)
    failures: list[Failure] = field(repr=False)
    intervals: list[tuple[float, float] | None] = field(repr=False)
    wall_time: float
    peak_in_flight: int
    max_concurrency: int
    latency: LatencyStats
    inputs_error: str | None = None  # set when the inputs iterable raised: results hold what finished before
    usage: list[InputUsage | None] = field(default_factory=list, repr=False)  # per input, in input order

    @property
    def ok(self) -> int:
        return len(self.results) - len(self.failures)

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def throughput(self) -> float:
        """Finished inputs (ok or failed) per second of wall time."""
        return len(self.results) / self.wall_time if self.wall_time > 0 else 0.0

    @property
    def usage_totals(self) -> UsageTotals:
        """The run's tokens and cost (`.total()`, `.cost()`), failed attempts apart (`.failed_attempts()`)."""
        totals = UsageTotals()
        for usage in self.usage:
            totals.add(usage)
        return totals

    @property
    def mean_in_flight(self) -> float:
        """Average requests in flight: busy time / wall time (= throughput × mean latency, Little's law)."""
        return mean_in_flight(self.intervals, self.wall_time)

    def summary(self) -> str:
        """A short readable table of the run."""
        failures = [str(f) for f in self.failures[:5]]
        if self.failed > 5:
            failures.append(f"... and {self.failed - 5} more (see .failures)")
        return _table([("inputs", f"{len(self.results)}: {self.ok} ok, {self.failed} failed"),
                       ("wall time", format_seconds(self.wall_time)), ("throughput", f"{self.throughput:.1f} req/s"),
                       ("latency", self.latency.line()),
                       ("in flight", f"peak {self.peak_in_flight} (limit {self.max_concurrency}) · mean {self.mean_in_flight:.1f}"),
                       *([("usage", self.usage_totals.lines())] if self.usage_totals else []),
                       *([("failures", failures)] if failures else []),
                       *([("stopped early", self.inputs_error)] if self.inputs_error else [])])


@dataclass(frozen=True)
class StreamEvent:
    """One event from `stream_merged`.

    kind "token": `text` is the next piece of input `index`'s answer. "done": `text` is the whole
    answer. "error": `text` is what arrived before the failure and `error` says what went wrong. Done
    and error events carry `ttft` (seconds to the first token, None if none came) and `latency`.
    """

    index: int
    kind: Literal["token", "done", "error"]
    text: str = ""
    error: str | None = None
    ttft: float | None = None
    latency: float | None = None
    usage: InputUsage | None = None  # on done and error events: the input's tokens


@dataclass
class JsonlSummary(_Readable):
    """What `run_to_jsonl` returns: counts for this run. The results themselves are in the file."""

    path: Path
    written: int  # lines written by this run (ok + failed)
    skipped: int  # inputs the file already held a record for
    skipped_errors: int  # of those, how many were recorded errors (rerun them with retry_errors=True)
    ok: int
    failed: int
    wall_time: float
    peak_in_flight: int
    max_concurrency: int
    latency: StreamingStats = field(repr=False)
    usage: UsageTotals = field(default_factory=UsageTotals, repr=False)  # what this run's calls used and cost

    @property
    def throughput(self) -> float:
        """Lines written per second of wall time."""
        return self.written / self.wall_time if self.wall_time > 0 else 0.0

    def add_skipped(self, recorded: str) -> None:
        """Count an input the file already held ("ok" or "error")."""
        self.skipped += 1
        self.skipped_errors += recorded == "error"

    def add_written(self, latency: float, ok: bool, usage: InputUsage | None = None) -> None:
        """Count an input this run finished and wrote, and the tokens it used."""
        self.written += 1
        self.ok, self.failed = self.ok + ok, self.failed + (not ok)
        self.latency.add(latency)
        self.usage.add(usage)

    def summary(self) -> str:
        """A short readable table of the run."""
        skipped = f"{self.skipped} already in the file" + (
            f" ({self.skipped_errors} of them errors; retry_errors=True reruns those)" if self.skipped_errors else "")
        return _table([("file", self.path.name), ("written", f"{self.written}: {self.ok} ok, {self.failed} failed"),
                       ("skipped", skipped), ("wall time", format_seconds(self.wall_time)),
                       ("throughput", f"{self.throughput:.1f} req/s"), ("latency", self.latency.line()),
                       ("in flight", f"peak {self.peak_in_flight} (limit {self.max_concurrency})"),
                       *([("usage", self.usage.lines())] if self.usage else [])])
