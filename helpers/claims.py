"""Print each conclusion a lesson draws from a measurement as a checked verdict.

A learner reads this: every lesson ends its measurements with `claim(...)` lines.

nbval masks every measured number (they move from run to run), so the sentence that draws a
conclusion from them would go unchecked. `claim` prints that conclusion as one line that nbval
does compare, and raises when the measurement disagrees with what the lesson says:

    claim("the mock saw 10 requests, not 40", seen == 10)
    # Claim: the mock saw 10 requests, not 40 — holds

On a real backend (`.env`) a verdict that differs from the lesson's is printed, not raised: the
lesson's numbers were measured on the mock, and another server may well behave otherwise.

A claim the lesson expects to fail (the seed's promises, for example) says so with
`expected=False`, and then it raises if the claim unexpectedly holds.

Timing comparisons must not rest on one run: `interleaved_medians` runs each variant in turn,
several rounds (A B C, A B C, A B C), and returns the median of each, so a burst of load on the
machine hits every variant alike.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable, Mapping

HOLDS, FAILS = "holds", "does not hold"


def on_real_backend() -> bool:
    from helpers.budget import is_active  # the budget is active exactly when .env picks a real backend
    return is_active()


class ClaimContradicted(AssertionError):
    """The measurement says the opposite of what the lesson's prose says."""


def claim(text: str, ok: object, expected: bool = True) -> None:
    """Print `Claim: <text> — holds|does not hold`; raise if that is not the verdict `expected`.

    Returns None, so a cell that ends with a claim shows only the printed line.
    """
    is_numpy_bool = type(ok).__module__ == "numpy" and type(ok).__name__.startswith("bool")
    if not (isinstance(ok, bool) or is_numpy_bool):
        raise TypeError(f"claim({text!r}, ok=...) needs a True/False verdict, got {type(ok).__name__}: {ok!r}")
    holds = bool(ok)
    verdict = HOLDS if holds else FAILS
    if holds != expected and on_real_backend():  # the prose was measured on the mock: report, don't stop
        print(f"Claim: {text} — {verdict} on this backend (the lesson says it {HOLDS if expected else FAILS} "
              "on the mock)")
        return
    if holds != expected:
        said = HOLDS if expected else FAILS
        raise ClaimContradicted(f"Claim: {text} — {verdict}, but the lesson says it {said}. "
                                "Re-run the cell; if it persists, the measurement and the prose disagree.")
    print(f"Claim: {text} — {verdict}")


async def interleaved_medians(variants: Mapping[str, Callable[[], Awaitable[float]]],
                              rounds: int = 3) -> dict[str, float]:
    """Run each variant once per round, in turn, `rounds` times; return each one's median result.

    Each variant is an async function returning one measurement (seconds, req/s, ...).
    """
    if rounds < 3:
        raise ValueError(f"rounds={rounds}: a timing claim needs the median of at least 3 runs")
    if not variants:
        raise ValueError("interleaved_medians needs at least one variant")
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, measure in variants.items():
            results[name].append(float(await measure()))
    return {name: statistics.median(values) for name, values in results.items()}
