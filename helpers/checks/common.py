"""What the exercise checks share (backstage: a learner need not read this).

The exception a check raises, the pass message, calling the learner's function so that an unsolved
exercise reads "Not solved yet", and small measurements several lessons use. Every check runs the
learner's code against the local mock only, never against a paid API.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NoReturn

from helpers.metrics import in_flight_timeline
from helpers.mock import reply_for, split_into_pieces


class ExerciseFailed(AssertionError):
    """Raised by a check with a hint for the learner.

    In a notebook it shows as one red line, the hint, and no traceback: the traceback would run through
    the checker's source and show its later hints. IPython asks the exception how to show itself
    (`_render_traceback_`). The cell still fails, so Run All's `raises-exception` tag and nbgrader's
    autograder (an error output scores 0) see the failure.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[31m✗ {self}\x1b[0m"]


def fail(hint: str) -> NoReturn:
    """Stop the check with a hint that names the mistake."""
    raise ExerciseFailed(hint)


def passed(message: str) -> None:
    print(f"✓ Passed: {message}")


NOT_DONE = "Not solved yet: replace `raise NotImplementedError(...)` with your code, run that cell, then this one."


def not_done(placeholder: NotImplementedError) -> ExerciseFailed:
    """The failure for an unsolved exercise, with the placeholder's own hint ("Write ...") when it has one."""
    hint = str(placeholder).strip()
    return ExerciseFailed(f"{NOT_DONE} {hint}" if hint else NOT_DONE)

# Mock settings with no fault and no rate limit, for checks that need every request to succeed.
FAULT_FREE = {"error_rate": 0.0, "hang_rate": 0.0, "drop_rate": 0.0, "rpm_limit": 0, "tpm_limit": 0}


def require_async(function: Callable[..., Any], so_it_can: str) -> None:
    """Fail unless `function` was defined with `async def` (`so_it_can` says why it must be)."""
    if not inspect.iscoroutinefunction(function):
        fail(f"Define the function with `async def`, so it can {so_it_can}.")


async def call_learner(function: Callable[..., Any], *args: Any) -> Any:
    """Await the learner's function; an unsolved exercise becomes a clear ExerciseFailed."""
    try:
        return await function(*args)
    except NotImplementedError as placeholder:
        raise not_done(placeholder) from None


def call_sync(function: Callable[..., Any], *args: Any) -> Any:
    """Call the learner's (non-async) function; an unsolved exercise becomes a clear ExerciseFailed."""
    try:
        return function(*args)
    except NotImplementedError as placeholder:
        raise not_done(placeholder) from None


def peak_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at the same moment (requests in flight at the peak)."""
    return max(in_flight_timeline(intervals)[1], default=0)


SENTENCES_TEMPLATE = "Write a few sentences about {topic}."


def long_answer_topics(count: int, *, min_pieces: int, pool: int) -> list[str]:
    """The first `count` of "subject 0" ... "subject {pool - 1}" whose SENTENCES_TEMPLATE answer is long.

    Long means at least `min_pieces` streamed pieces, so the first token and the last are far apart.
    """
    def pieces(topic: str) -> int:
        prompt = SENTENCES_TEMPLATE.format(topic=topic)
        return len(split_into_pieces(reply_for("", [{"role": "user", "content": prompt}])))

    return [topic for topic in (f"subject {i}" for i in range(pool)) if pieces(topic) >= min_pieces][:count]
