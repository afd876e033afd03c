"""Figures used by the notebooks. Each function draws one figure and returns its Axes.

Notebooks end a plotting cell with `plt.show()`, so no `<Figure ...>` repr (which
carries a memory address) lands in the stored outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    ax.plot(concurrency, ideal, "--", color="gray", label="ideal: concurrency / latency")
    ax.plot(concurrency, measured, "o-", color="tab:blue", label="measured")
    ax.set(xlabel="max_concurrency", ylabel="requests per second", title=title)
    ax.legend()
    return ax
