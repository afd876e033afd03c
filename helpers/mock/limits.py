"""The mock's rate limits: one token bucket per per-minute limit, as OpenAI enforces them (backstage:
a learner need not read this; ``settings.py`` says how the buckets are sized).

``RateLimiter.admit`` takes a request's cost from the requests bucket and the tokens bucket, or says
which limit it hit and how long until it would fit; ``format_duration`` writes that wait the way
OpenAI's headers and messages do ("120ms", "1.5s", "6m0s").
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from helpers.mock.settings import MockSettings

__all__ = ["Limit", "RateLimiter", "TokenBucket", "format_duration"]


@dataclass
class TokenBucket:
    """Holds up to `capacity` units and refills at `rate` units per second; starts full."""

    capacity: float
    rate: float
    level: float  # may go below 0 after a request bigger than the whole bucket
    updated: float  # time.monotonic() of the last refill

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` can be taken (0 = now). A full bucket lets anything through."""
        return max(0.0, (min(amount, self.capacity) - self.level) / self.rate)


@dataclass
class Limit:
    """One per-minute limit: kind is "requests" or "tokens"."""

    kind: str
    per_minute: int
    bucket: TokenBucket

    def remaining(self) -> int:
        """Remaining on the per-minute scale, as OpenAI reports it."""
        return max(0, math.floor(self.bucket.level / self.bucket.capacity * self.per_minute))

    def headers(self) -> dict[str, str]:
        reset = (self.bucket.capacity - self.bucket.level) / self.bucket.rate
        return {f"x-ratelimit-limit-{self.kind}": str(self.per_minute),
                f"x-ratelimit-remaining-{self.kind}": str(self.remaining()),
                f"x-ratelimit-reset-{self.kind}": format_duration(reset)}


class RateLimiter:
    """The RPM and TPM buckets; `admit` takes from both, or (count_rejected=0) a rejected request from neither."""

    def __init__(self, settings: MockSettings) -> None:
        self.count_rejected = bool(settings.count_rejected)
        self.limits = []
        for kind, per_minute in (("requests", settings.rpm_limit), ("tokens", settings.tpm_limit)):
            if per_minute > 0:
                capacity = per_minute * settings.limit_window / 60
                bucket = TokenBucket(capacity, rate=per_minute / 60, level=capacity, updated=time.monotonic())
                self.limits.append(Limit(kind, per_minute, bucket))

    def admit(self, tokens: int) -> tuple[Limit, int, float] | None:
        """None if the request may go, else (limit hit, amount requested, seconds to wait)."""
        now = time.monotonic()
        rejected = None
        for limit in self.limits:
            limit.bucket.refill(now)
            amount = 1 if limit.kind == "requests" else tokens
            wait = limit.bucket.wait_for(amount)
            if wait > 0 and rejected is None:
                rejected = limit, amount, wait
        if rejected is None or self.count_rejected:  # OpenAI counts rejected requests too
            for limit in self.limits:
                limit.bucket.level -= 1 if limit.kind == "requests" else tokens
        if rejected is not None and self.count_rejected:  # retry-after: when it fits, now that it was charged
            rejected = rejected[0], rejected[1], rejected[0].bucket.wait_for(rejected[1])
        return rejected

    def headers(self) -> dict[str, str]:
        return {key: value for limit in self.limits for key, value in limit.headers().items()}


def format_duration(seconds: float) -> str:
    """OpenAI's duration format: "120ms", "1.5s", "6m0s"."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s"
