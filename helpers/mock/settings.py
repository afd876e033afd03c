"""Every setting of the mock OpenAI server, and what each one does (backstage: a learner need not
read this to follow the lessons, but every effect the notebooks show is listed here).

Set each one as a CLI flag (``--rpm-limit 500``), an environment variable (``MOCK_RPM_LIMIT=500``),
or from Python (``handle.configure(rpm_limit=500)`` or ``with handle.temporarily(rpm_limit=500):``):

| setting           | default | what it does                                                        |
| ----------------- | ------- | ------------------------------------------------------------------- |
| ttft              | 0.4     | seconds until the first token (time to first token)                 |
| tokens_per_second | 60.0    | how fast the tokens after the first one come                        |
| jitter            | 0.2     | each delay is multiplied by uniform(1 - jitter, 1 + jitter)         |
| tail_fraction     | 0.0     | fraction of requests that are slow (the "long tail")                |
| tail_multiplier   | 5.0     | how many times slower such a tail request is                        |
| speed             | 1.0     | divides every delay above (not rate limits, not hang_seconds)       |
| rpm_limit         | 0       | requests per minute (0 = no limit)                                  |
| tpm_limit         | 0       | tokens per minute (0 = no limit)                                    |
| limit_window      | 1.0     | the per-minute limits are enforced on this many seconds (see below) |
| count_rejected    | 1       | 1: a rejected (429) request still counts against both limits, as at |
|                   |         | OpenAI; 0: a rejected request costs nothing (kinder than OpenAI)    |
| error_rate        | 0.0     | fraction of attempts answered with a 500 or 503 error (half each)   |
| hang_rate         | 0.0     | fraction of attempts that wait hang_seconds before answering        |
| hang_seconds      | 600.0   | how long a hang lasts                                               |
| drop_rate         | 0.0     | fraction of attempts whose connection is closed half-way            |
| seed              | 0       | another seed picks other requests for faults and tails              |

Each field of ``MockSettings`` also declares its valid range, finite for every one (no duration may
be infinite, so no setting can make the mock hang for ever); a bad value raises ValueError naming the
setting and its range.

Latency: ttft + completion_tokens / tokens_per_second, times jitter (and tail_multiplier for a
tail request), divided by speed. A streamed answer sends its first token after ttft, then one
event per token; a plain answer comes whole after the full latency.

Rate limits work like OpenAI's: a per-minute limit is enforced on a short window. The bucket
holds ``limit * limit_window / 60`` and refills at ``limit / 60`` per second, starting full. A
request costs 1 request and prompt_tokens + max_tokens (or the reply's tokens if max_tokens is
not given) tokens. A request bigger than a whole bucket gets in only when the bucket is full.
A rejected request (429 with ``retry-after`` headers) is charged too, as OpenAI does ("unsuccessful
requests contribute to your per-minute limit"): the bucket may go below zero, so a crowd that keeps
retrying pushes its own next chance further away. Its ``retry-after`` says when it would fit, that
charge included. ``count_rejected=0`` makes rejections free.

Faults (errors, hangs, drops) and tails are decided per attempt by a roll that looks random but
is fixed by (seed, request, attempt number): a fresh server (or ``POST /mock/reset``) fails the
same requests again, and a retry rolls anew. How a request is handled: ``server.py``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any

from helpers.metrics import is_number

__all__ = ["MockSettings"]


def _setting(default: float, low: float = 0.0, high: float = math.inf, *, above_zero: bool = False) -> Any:
    """A setting's default and its valid range [low, high]; with above_zero, 0 itself is not allowed."""
    return field(default=default, metadata={"range": (low, high), "above_zero": above_zero})


@dataclass
class MockSettings:
    """Everything that shapes the mock's behaviour; see the table in the module docstring."""

    ttft: float = _setting(0.4, high=60.0)
    tokens_per_second: float = _setting(60.0, high=1e6, above_zero=True)
    jitter: float = _setting(0.2, high=1.0)
    tail_fraction: float = _setting(0.0, high=1.0)
    tail_multiplier: float = _setting(5.0, low=1.0, high=100.0)
    speed: float = _setting(1.0, high=1000.0, above_zero=True)
    rpm_limit: int = _setting(0, high=1e9)
    tpm_limit: int = _setting(0, high=1e12)
    limit_window: float = _setting(1.0, high=60.0, above_zero=True)
    count_rejected: int = _setting(1, high=1)
    error_rate: float = _setting(0.0, high=1.0)
    hang_rate: float = _setting(0.0, high=1.0)
    hang_seconds: float = _setting(600.0, high=3600.0)
    drop_rate: float = _setting(0.0, high=1.0)
    seed: int = _setting(0, low=-(2**63), high=2**63 - 1)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = _to_number(f.name, f.type, getattr(self, f.name))
            low, high = f.metadata["range"]
            if not low <= value <= high or (f.metadata["above_zero"] and value == 0):
                above = " (above 0)" if f.metadata["above_zero"] else ""
                raise ValueError(f"mock setting {f.name}={value!r} is out of range [{low:g}, {high:g}]{above}")
            setattr(self, f.name, value)

    @classmethod
    def names(cls) -> list[str]:
        """The settings' names, in the table's order."""
        return [f.name for f in fields(cls)]

    @classmethod
    def from_env(cls, environ: dict[str, str]) -> MockSettings:
        """Settings from MOCK_* variables (MOCK_TTFT, MOCK_RPM_LIMIT, ...); defaults for the rest."""
        found = {name: environ[f"MOCK_{name.upper()}"] for name in cls.names()
                 if f"MOCK_{name.upper()}" in environ}
        return cls(**found)

    def updated(self, **changes: Any) -> MockSettings:
        """A copy with some settings changed; unknown names or bad values raise ValueError."""
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            raise ValueError(f"unknown mock setting(s) {unknown}; valid names: {', '.join(self.names())}")
        return dataclasses.replace(self, **changes)


def _to_number(name: str, kind: str, value: Any) -> float | int:
    """Turn "0.4", 0.4 or 500.0 into the setting's type (float or int), or raise ValueError."""
    try:
        number = float(value) if is_number(value) or isinstance(value, str) else math.nan
    except ValueError:  # a string that is not a number
        number = math.nan
    if not math.isfinite(number) or (kind == "int" and number != int(number)):
        raise ValueError(f"mock setting {name} must be a finite {'integer' if kind == 'int' else 'number'}, "
                         f"got {value!r}")
    return int(number) if kind == "int" else number
