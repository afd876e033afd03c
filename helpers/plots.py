"""Figures used by the notebooks. Each function draws one figure and returns its Axes.

A tool a learner calls; reading it is optional (it is only matplotlib).

Notebooks end a plotting cell with `plt.show()`, so no `<Figure ...>` repr (which
carries a memory address) lands in the stored outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.axes import Axes


def plot_timeline(
    intervals: Sequence[tuple[float, float]], title: str = "Requests over time", ax: Axes | None = None
) -> Axes:
    """One horizontal bar per request, from its start to its end (seconds since the first start)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(8, max(2.5, 0.12 * len(intervals))))
    for row, (start, end) in enumerate(intervals):
        ax.barh(row, end - start, left=start, height=0.8, color="tab:blue")
    ax.set(xlabel="seconds since the first request started", ylabel="request (by start time)", title=title)
    ax.invert_yaxis()
    return ax


def plot_measured_vs_ideal(
    concurrency: Sequence[int],
    measured: Sequence[float],
    ideal: Sequence[float],
    title: str = "Throughput: measured vs Little's law",
    ax: Axes | None = None,
) -> Axes:
    """Measured throughput against the ideal `concurrency / latency`, one point per concurrency."""
    ax = _measured_and_ideal(ax, (6, 4), concurrency, measured, ideal, "ideal: concurrency / latency")
    ax.set(xlabel="max_concurrency", ylabel="requests per second", title=title)
    ax.legend()
    return ax


def _measured_and_ideal(ax: Axes | None, size: tuple[float, float], concurrency: Sequence[int],
                        measured: Sequence[float], ideal: Sequence[float], ideal_label: str) -> Axes:
    """Draw measured throughput and its Little's-law ideal on `ax` (a new figure of `size` if None)."""
    if ax is None:
        _, ax = plt.subplots(figsize=size)
    ax.plot(concurrency, ideal, "--", color="gray", label=ideal_label)
    ax.plot(concurrency, measured, "o-", color="tab:blue", label="measured")
    return ax


def plot_rate_vs_limit(
    timelines: dict[str, Any],
    *,
    rpm: float,
    tpm: float | None = None,
    tokens_per_request: float | None = None,
    window_seconds: float = 1.0,
    title: str = "Requests at the server over time, against what the limits allow",
) -> list[Axes]:
    """One panel per run (a `helpers.mock.StatsTimeline`): how many requests had reached the server,
    been answered OK, and been answered 429, against the most the limits allow by then (a full bucket
    of `window_seconds` at the start, then the per-minute rate). The slope of each line is a rate."""
    fig, axes = plt.subplots(1, len(timelines), figsize=(5 * len(timelines), 4), squeeze=False)
    for ax, (name, timeline) in zip(axes[0], timelines.items()):
        times = timeline.times
        sent, limited = timeline.counts("requests"), timeline.counts("rate_limited")
        ax.plot(times, sent, color="tab:gray", label="sent")
        ax.plot(times, timeline.counts("ok"), color="tab:blue", label="answered OK")
        ax.plot(times, limited, color="tab:red", label="answered 429")
        limits = [(rpm / 60, "--", "black", "most the RPM limit allows")]
        if tpm and tokens_per_request:
            limits.append((tpm / 60 / tokens_per_request, ":", "tab:green", "most the TPM limit allows"))
        for per_second, style, color, label in limits:
            ax.plot(times, [per_second * (window_seconds + t) for t in times], style, color=color, label=label)
        ax.set(xlabel="seconds since the run started", ylabel="requests so far", title=name)
        ax.set_ylim(0, max(sent) * 1.1)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize="small")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return list(axes[0])


def plot_ttft_and_latency(
    ttfts: Sequence[float],
    latencies: Sequence[float],
    title: str = "Time to first token and total latency, per request",
    ax: Axes | None = None,
) -> Axes:
    """One bar per streamed request, sorted by latency: the wait for the first token, then the rest."""
    if len(ttfts) != len(latencies):
        raise ValueError(f"need one TTFT per latency, got {len(ttfts)} and {len(latencies)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(8, max(2.5, 0.12 * len(latencies))))
    pairs = sorted(zip(ttfts, latencies), key=lambda pair: pair[1])
    rows = range(len(pairs))
    ax.barh(rows, [t for t, _ in pairs], height=0.8, color="tab:orange", label="waiting for the first token (TTFT)")
    ax.barh(rows, [total - t for t, total in pairs], left=[t for t, _ in pairs], height=0.8,
            color="tab:blue", label="streaming the rest")
    ax.set(xlabel="seconds since the request started", ylabel="request (sorted by latency)", title=title)
    ax.invert_yaxis()
    ax.legend(loc="upper right")  # the shortest bars are at the top
    return ax


def plot_in_flight(
    times: Sequence[float],
    counts: Sequence[int],
    limit: int | None = None,
    title: str = "Requests in flight",
    ax: Axes | None = None,
) -> Axes:
    """The step function from `metrics.in_flight_timeline`, with the concurrency limit as a dashed line."""
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.5))
    ax.step(times, counts, where="post", color="tab:blue", label="in flight")
    if limit is not None:
        ax.axhline(limit, linestyle="--", color="gray", label=f"max_concurrency = {limit}")
    ax.set(xlabel="seconds since the run started", ylabel="requests in flight", title=title)
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower center")
    return ax


def plot_latency_histogram(
    latencies: Sequence[float],
    percentiles: dict[str, float],
    title: str = "Latency per request",
    ax: Axes | None = None,
) -> Axes:
    """Histogram of latencies (seconds) with a vertical line per percentile, e.g. {"p50": 0.12, ...}."""
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.5))
    ax.hist(latencies, bins=40, color="tab:blue", alpha=0.8)
    colors = ["tab:green", "tab:orange", "tab:red", "tab:purple"]
    for (name, value), color in zip(percentiles.items(), colors):
        ax.axvline(value, color=color, linestyle="--", label=f"{name} = {value * 1000:.0f} ms")
    ax.set(xlabel="latency (seconds)", ylabel="requests", title=title)
    ax.legend(loc="upper right")
    return ax


def plot_in_flight_runs(
    runs: dict[str, Sequence[tuple[float, float]]],
    limit: int | None = None,
    title: str = "Requests in flight over time",
) -> list[Axes]:
    """One `plot_in_flight` panel per run ({label: (start, end) intervals}), on a shared time axis."""
    from helpers.metrics import in_flight_timeline

    fig, axes = plt.subplots(len(runs), 1, figsize=(8, 2.2 * len(runs)), sharex=True, squeeze=False)
    for ax, (label, intervals) in zip(axes[:, 0], runs.items()):
        times, counts = in_flight_timeline(intervals)
        plot_in_flight(times, counts, limit=limit, title=label, ax=ax)
        ax.set_xlabel("")
        ax.get_legend().remove()
    axes[-1, 0].set_xlabel("seconds since the run started")
    fig.suptitle(title)
    fig.tight_layout()
    return list(axes[:, 0])


def plot_memory_vs_n(
    rows: Sequence[dict[str, Any]],
    key: str = "peak_rss_growth_mb",
    title: str = "Peak memory against the number of inputs",
    ax: Axes | None = None,
) -> Axes:
    """One line per runner: `key` (MB, from `helpers.bench.measure`) against n, on a log n axis."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for runner in dict.fromkeys(row["runner"] for row in rows):
        points = sorted((row["n"], row[key]) for row in rows if row["runner"] == runner)
        ax.plot(*zip(*points), "o-", label=runner)
    ax.set_xscale("log")
    sizes = sorted({row["n"] for row in rows})
    ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
    ax.minorticks_off()
    ax.set(xlabel="inputs (n)", ylabel="peak memory growth (MB)", title=title)
    ax.set_ylim(bottom=0)
    ax.legend()
    return ax


def plot_throughput_sweep(
    concurrency: Sequence[int],
    measured: Sequence[float],
    ideal: Sequence[float],
    *,
    cpu_ceiling: float | None = None,
    rate_limit: float | None = None,
    title: str = "Throughput against concurrency",
    ax: Axes | None = None,
) -> Axes:
    """Measured requests/s against Little's-law ideal, log-log, with the ceilings as horizontal lines."""
    ax = _measured_and_ideal(ax, (7, 4.5), concurrency, measured, ideal, "Little's law: C / L0")
    if rate_limit:
        ax.axhline(rate_limit, color="tab:red", linestyle=":", label="rate limit")
    if cpu_ceiling:
        ax.axhline(cpu_ceiling, color="tab:orange", linestyle="-.", label="client CPU ceiling (one core)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="max_concurrency (C)", ylabel="requests per second", title=title)
    ax.legend()
    return ax
