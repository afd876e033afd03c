"""Which attempts of a request fail, and how long an answer takes (backstage: a learner need not read
this; ``settings.py`` lists the settings it reads).

A fault is decided by ``roll(seed, kind, request_key, attempt)``: a number in [0, 1) that looks
random but is fixed by its arguments, so a fresh server fails the same requests again and a retry
rolls anew. ``timing_for`` gives one answer's delays, with fresh jitter, divided by speed.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from helpers.mock.replies import stable_hash
from helpers.mock.settings import MockSettings

__all__ = ["Faults", "Timing", "request_key", "roll", "roll_faults", "rolled_seconds", "timing_for"]


def request_key(model: str, messages: list[dict]) -> str:
    """Identifies "the same request" across retries: a hash of model and messages."""
    return f"{stable_hash(json.dumps([model, messages], sort_keys=True, ensure_ascii=False)):016x}"


def roll(seed: int, kind: str, key: str, attempt: int) -> float:
    """A number in [0, 1) that looks random but is fixed by its arguments."""
    return stable_hash(seed, kind, key, attempt) / 2**64


@dataclass
class Faults:
    """What goes wrong with one attempt (each decided by its own roll)."""

    error_status: int | None  # 500 or 503, None for no error
    hang: bool
    drop: bool
    tail: bool


def roll_faults(settings: MockSettings, key: str, attempt: int) -> Faults:
    """What goes wrong with this attempt of the request `key`: one roll per kind of fault."""
    s = settings
    error = roll(s.seed, "error", key, attempt)
    return Faults(error_status=None if error >= s.error_rate else 500 if error < s.error_rate / 2 else 503,
                  hang=roll(s.seed, "hang", key, attempt) < s.hang_rate,
                  drop=roll(s.seed, "drop", key, attempt) < s.drop_rate,
                  tail=roll(s.seed, "tail", key, attempt) < s.tail_fraction)


@dataclass
class Timing:
    """The delays of one answer, already jittered and divided by speed."""

    ttft: float
    interval: float  # seconds between two tokens

    def total(self, tokens: int) -> float:
        return self.ttft + tokens * self.interval


def timing_for(settings: MockSettings, is_tail: bool, slowdown: float = 1.0) -> Timing:
    """This answer's delays: the settings' latency with fresh jitter, slower for a tail (or flex) request."""
    scale = (settings.tail_multiplier if is_tail else 1.0) * slowdown / settings.speed
    jitter = settings.jitter
    return Timing(ttft=settings.ttft * scale * random.uniform(1 - jitter, 1 + jitter),
                  interval=scale * random.uniform(1 - jitter, 1 + jitter) / settings.tokens_per_second)


def rolled_seconds(settings: MockSettings, key: str, attempt: int, is_tail: bool, tokens: int) -> float:
    """One answer's whole latency with its jitter rolled, not random: what a batch row takes."""
    s = settings
    jitter = 1 - s.jitter + 2 * s.jitter * roll(s.seed, "jitter", key, attempt)
    scale = (s.tail_multiplier if is_tail else 1.0) * jitter / s.speed
    return scale * (s.ttft + tokens / s.tokens_per_second)
