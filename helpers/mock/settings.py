"""Every setting of the mock OpenAI server, and what each one does (backstage: a learner need not
read this to follow the lessons, but every effect the notebooks show is listed here).

Set each one as a CLI flag (``--rpm-limit 500``), an environment variable (``MOCK_RPM_LIMIT=500``),
or from Python (``handle.configure(rpm_limit=500)`` or ``with handle.temporarily(rpm_limit=500):``):

| setting                | default   | what it does                                                         |
| ---------------------- | --------- | -------------------------------------------------------------------- |
| ttft                   | 0.4       | seconds until the first token (time to first token)                  |
| tokens_per_second      | 60.0      | how fast the tokens after the first one come                         |
| jitter                 | 0.2       | each delay is multiplied by uniform(1 - jitter, 1 + jitter)          |
| tail_fraction          | 0.0       | fraction of requests that are slow (the "long tail")                 |
| tail_multiplier        | 5.0       | how many times slower such a tail request is                         |
| speed                  | 1.0       | divides every delay above (not rate limits, not hang_seconds)        |
| rpm_limit              | 0         | requests per minute (0 = no limit)                                   |
| tpm_limit              | 0         | tokens per minute (0 = no limit)                                     |
| limit_window           | 1.0       | the per-minute limits are enforced on this many seconds (see below)  |
| count_rejected         | 1         | 1: a rejected (429) request still counts against both limits, as at  |
|                        |           | OpenAI; 0: a rejected request costs nothing (kinder than OpenAI)     |
| error_rate             | 0.0       | fraction of attempts answered with a 500 or 503 error (half each)    |
| hang_rate              | 0.0       | fraction of attempts that wait hang_seconds before answering         |
| hang_seconds           | 600.0     | how long a hang lasts                                                |
| drop_rate              | 0.0       | fraction of attempts whose connection is closed half-way             |
| seed                   | 0         | another seed picks other requests for faults and tails               |
| flex_slowdown          | 3.0       | service_tier="flex": every delay above is this many times longer     |
| flex_unavailable_rate  | 0.05      | fraction of flex attempts answered 429 "resource unavailable"        |
| batch_validate_seconds | 2.0       | a batch stays "validating" this long (divided by speed)              |
| batch_concurrency      | 20        | how many rows of one batch run at once                               |
| batch_finalize_seconds | 2.0       | "finalizing" (and "cancelling") last this long (divided by speed)    |
| batch_window_seconds   | 86400     | a batch expires this many seconds after it was created: its real     |
|                        |           | completion window, NOT divided by speed (OpenAI's "24h" = 86400)     |
| batch_max_requests     | 50000     | a batch file with more requests fails validation (too_many_tasks)    |
| batch_max_bytes        | 209715200 | a batch file upload larger than this is refused (400, 200 MB)        |

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

Billing (``GET /mock/stats``, ``stats["billed"]``, per tier "default", "flex" and "batch"; zeroed by
reset). The rule: a 429 (rate limit or flex "resource unavailable") and any 4xx are not billed, nor is
an injected 500/503. A request that gets past those starts generating, and is billed at that moment
for its prompt and its WHOLE completion: the mock's model writes the whole answer at once, and what
a hang, a client timeout or a drop cuts is only its delivery, so they are billed in full. A batch row
is billed when it finishes (a row that hangs finishes as ``request_timeout``, billed like a hang);
rows that never ran because the batch expired or was cancelled are not billed.

Prompt caching, as OpenAI reports it: a prompt whose first 1,024 tokens or more match a prompt that
has already FINISHED (same model, same messages up to there) gets ``cached_tokens`` = the longest
such prefix, in steps of 128 tokens from 1,024 (a prefix token = 4 bytes of the messages' text). A
prompt counts once a request with it has finished, never when one merely arrived, so requests sent
together after one warm-up request all hit whatever order they arrive in (with no warm-up, which of
them hit would depend on which finished first). A batch's rows see the cache as it was when the
batch was created. The cache holds at most 100,000 prefixes (oldest forgotten first) and is emptied
by reset. Flex: service_tier="flex" is slower by flex_slowdown, sometimes 429 (its own roll per
attempt), and billed under "flex" (batch prices); "auto" and "default" mean the default tier; any
other value is a 400.

Batches (``/v1/files``, ``/v1/batches``: ``batches.py``): validating -> in_progress -> finalizing ->
completed, or failed (validation), expired (its window ran out), cancelling -> cancelled. Rows run
batch_concurrency at a time, each taking the latency above (its jitter rolled, not random), with the
same fault rolls as a live request: error_rate gives HTTP-error rows, hang_rate rows that time out
after hang_seconds; drop_rate does not apply (a batch row has no connection to drop). Batch rows
do not count against rpm_limit and tpm_limit, nor in the request counters of ``/mock/stats``
(OpenAI gives the Batch API limits of its own); they do bill into "batch". The settings in force
when a batch is created fix its whole schedule.
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
    flex_slowdown: float = _setting(3.0, low=1.0, high=100.0)
    flex_unavailable_rate: float = _setting(0.05, high=1.0)
    batch_validate_seconds: float = _setting(2.0, high=3600.0)
    batch_concurrency: int = _setting(20, high=10_000, above_zero=True)
    batch_finalize_seconds: float = _setting(2.0, high=3600.0)
    batch_window_seconds: float = _setting(86400.0, high=86400.0, above_zero=True)
    batch_max_requests: int = _setting(50_000, high=50_000, above_zero=True)
    batch_max_bytes: int = _setting(209_715_200, high=209_715_200, above_zero=True)

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
