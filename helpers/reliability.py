"""One request, made robust: retries with backoff, Retry-After, request/token rate limits, timeouts.

A learner reads this: lesson 06 teaches it.

The batch runners in `helpers.runners` call `invoke_robustly` for every input:

    wait for the limiter -> chain.ainvoke under the timeout -> retryable error? sleep, try again
    (a 429 also pauses the limiter for its Retry-After: the server counted the rejected request)

- `is_retryable(exc)`: can the same request succeed later? 408/409/429/5xx, timeouts and
  dropped connections: yes. A 400 or a missing prompt variable (KeyError): never.
- `RetryPolicy`: exponential backoff with full jitter, never sooner than the server's Retry-After.
- `TokenRateLimiter`: requests- and tokens-per-minute token buckets. LangChain's
  `InMemoryRateLimiter` counts requests only; token limits need a weighted bucket. (aiolimiter's
  AsyncLimiter is one, but it refuses any amount above its capacity, a window's share.)

When you pass a `RetryPolicy`, build the model with `max_retries=0`: otherwise the openai SDK
also retries 429s and 5xx (twice, by default) inside each of our attempts.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import importlib
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.exceptions import ModelError

from .metrics import approx_tokens, is_number


# Exception classes that mean "try again later", by library (those not installed are skipped).
# openai.APITimeoutError is a subclass of APIConnectionError; asyncio.TimeoutError is TimeoutError.
_RETRYABLE = {"builtins": ("TimeoutError", "ConnectionError"),
              "openai": ("RateLimitError", "InternalServerError", "APIConnectionError"),
              "httpx": ("TimeoutException", "NetworkError", "RemoteProtocolError"),
              "httpx2": ("TimeoutException", "NetworkError", "RemoteProtocolError"),  # the openai SDK's
              "aiohttp": ("ClientConnectionError", "ClientPayloadError")}


@functools.cache
def _retryable_types() -> tuple[type[BaseException], ...]:
    found = []
    for module_name, names in _RETRYABLE.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        found += [getattr(module, name) for name in names]
    return tuple(found)


def _is_out_of_quota(exc: BaseException) -> bool:
    """OpenAI's 429 "insufficient_quota": the account has no credit left, so retrying cannot help."""
    body = getattr(exc, "body", None)
    codes = {getattr(exc, "code", None)}
    if isinstance(body, Mapping):
        codes |= {body.get("code"), body.get("type")}
    return getattr(exc, "status_code", None) == 429 and "insufficient_quota" in codes


def is_retryable(exc: BaseException) -> bool:
    """True if the same request can succeed later: 408/409/429/5xx, timeouts, dropped connections.

    False for everything else: a 400 or a missing prompt variable (KeyError) fails the same way every time,
    and so does a 429 whose code is "insufficient_quota" (out of credit, not too fast).
    """
    if _is_out_of_quota(exc):  # a 429 too, but no wait refills an empty account
        return False
    if isinstance(exc, ModelError):  # LangChain's provider-neutral errors say so themselves
        return exc.is_retryable
    status = getattr(exc, "status_code", None)  # openai.APIStatusError and friends
    if isinstance(status, int):
        return status in (408, 409, 429) or status >= 500  # what the openai SDK itself retries
    return isinstance(exc, _retryable_types())


def retry_after_seconds(exc: BaseException | None) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, else `retry-after`), or None."""
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            delay = float(headers.get(name)) * scale
        except (TypeError, ValueError):
            continue
        if math.isfinite(delay) and delay >= 0:
            return delay
    try:  # Retry-After may also be an HTTP date
        return max(0.0, email.utils.parsedate_to_datetime(headers.get("retry-after")).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts to make and how long to wait between them.

    The wait after attempt k is random in [0, min(max_delay, base_delay * 2**(k-1))]
    ("full jitter"), so workers that failed together do not retry together. If the server sent
    Retry-After, we never retry sooner than that: Retry-After says when *one* request may pass,
    so a crowd of workers waiting exactly that long would mostly fail again. A server that asks
    for a longer wait than max_delay gets no retry: the input fails instead of being retried too
    early (the openai SDK likewise gives up above 120 s). Only errors that `is_retryable` accepts
    are retried (`should_retry`).
    """

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 20.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if not is_number(self.max_attempts) or self.max_attempts != int(self.max_attempts) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be an int >= 1, got {self.max_attempts!r}")
        for name in ("base_delay", "max_delay"):
            value = getattr(self, name)
            if not is_number(value) or not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
        if self.max_delay < self.base_delay:
            raise ValueError(f"max_delay ({self.max_delay}) must be >= base_delay ({self.base_delay})")

    def should_retry(self, attempt: int, exc: BaseException) -> bool:
        """Retry after failed attempt number `attempt`? Only a retryable error, within max_attempts,
        and only if the server's Retry-After (if any) is at most max_delay."""
        if attempt >= self.max_attempts or not is_retryable(exc):
            return False
        server_says = retry_after_seconds(exc)
        return server_says is None or server_says <= self.max_delay

    def delay(self, attempt: int, exc: BaseException | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1 = the first try) that raised `exc`:
        the jittered backoff, but never less than the server's Retry-After."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** min(attempt - 1, 60))
        backoff = random.uniform(0, ceiling) if self.jitter else ceiling
        server_says = retry_after_seconds(exc)
        return backoff if server_says is None else max(server_says, backoff)


def _message_texts(value: Any) -> list[str]:
    """The text of each message in a prompt value, message list, string or mapping of variables."""
    if hasattr(value, "to_messages"):  # a PromptValue, e.g. what a ChatPromptTemplate returns
        value = value.to_messages()
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):  # unformatted prompt variables: count their values
        return [" ".join(str(v) for v in value.values())]
    if isinstance(value, Sequence):
        return [m.content if isinstance(getattr(m, "content", None), str) else str(m) for m in value]
    return [str(value)]


@dataclass
class _Bucket:
    """A per-minute budget held `window_seconds` at a time: holds up to `capacity`, refills at `rate`/s.

    It starts full. A request larger than the whole bucket (but within the per-minute limit) waits
    until the bucket is full, then takes it all and leaves a debt (a level below zero) that the
    refill pays back before anything else fits: so it gets through, and the rate stays kept.
    """

    capacity: float
    rate: float  # units per second
    level: float
    updated: float  # time.monotonic() of the last refill

    @classmethod
    def per_minute(cls, per_minute: float, window_seconds: float) -> _Bucket:
        capacity = max(1.0, per_minute / 60 * window_seconds)
        return cls(capacity, per_minute / 60, capacity, time.monotonic())

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` fits (0 = now); more than the bucket holds fits when it is full."""
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now
        return max(0.0, (min(amount, self.capacity) - self.level) / self.rate)


class TokenRateLimiter:
    """Client-side limit on requests per minute (rpm) and tokens per minute (tpm), first come first served.

    Two token buckets: a request takes 1 from one and its estimated tokens from the other,
    waiting until both have room. Like OpenAI's (and the mock's), each bucket holds only
    `window_seconds` of the per-minute budget and refills continuously: rpm=600 lets about 5
    requests through at once, then 10 a second. Keep the window below the server's (about 1 s):
    the difference absorbs the jitter between sending a request and its arrival; with equal
    windows an early arrival gets a 429 (tools/bench_rate_limit.py measures both).

    A request bigger than one window's share still goes, eventually: it waits for a full bucket
    and leaves a debt the next requests wait for. Only a request bigger than the per-minute
    limit itself (which the server would never accept) raises ValueError.

    A request's estimate is its prompt tokens plus `max_tokens` reserved for the reply (servers
    charge the model's max_tokens up front). Pass `prompt=` (e.g. `chain.first`) to count the
    formatted prompt, not only the variables, or `estimate_tokens=` to replace the estimate.
    """

    def __init__(self, rpm: float | None = None, tpm: float | None = None, *, max_tokens: int = 100,
                 window_seconds: float = 0.5, prompt: Any = None,
                 estimate_tokens: Callable[[Any], int] | None = None) -> None:
        if rpm is None and tpm is None:
            raise ValueError("TokenRateLimiter needs rpm, tpm or both")
        for name, value in (("rpm", rpm), ("tpm", tpm), ("window_seconds", window_seconds)):
            if value is not None and (not is_number(value) or not 0 < value < math.inf):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not is_number(max_tokens) or max_tokens != int(max_tokens) or max_tokens < 0:
            raise ValueError(f"max_tokens must be an int >= 0, got {max_tokens!r}")
        self.rpm, self.tpm, self.max_tokens, self.window_seconds, self.prompt = rpm, tpm, max_tokens, window_seconds, prompt
        self.estimator = estimate_tokens  # replaces the estimate below when given
        self._requests = _Bucket.per_minute(rpm, window_seconds) if rpm else None
        self._tokens = _Bucket.per_minute(tpm, window_seconds) if tpm else None
        # FIFO: one waiter at a time at the buckets, so a long prompt never waits behind every short one.
        self._queue = asyncio.Lock()

    @property
    def token_capacity(self) -> float | None:
        """Tokens the token bucket holds when full (one window's share of tpm), or None without tpm."""
        return self._tokens.capacity if self._tokens else None

    def estimate_tokens(self, input: Any) -> int:
        """Tokens a request for `input` will be charged: per message its text + 3, plus 3, plus max_tokens."""
        if self.estimator is not None:
            return int(self.estimator(input))
        if self.prompt is not None and isinstance(input, Mapping):
            input = self.prompt.format_prompt(**input)
        return sum(approx_tokens(text) + 3 for text in _message_texts(input)) + 3 + self.max_tokens

    async def acquire(self, input: Any) -> int:
        """Wait until a request for `input` fits both budgets, take its share, and return its token estimate.

        Raises ValueError if the estimate exceeds tpm: the server would refuse such a request every time.
        """
        tokens = self.estimate_tokens(input)
        if self.tpm is not None and tokens > self.tpm:
            raise ValueError(
                f"request needs about {tokens} tokens (prompt + max_tokens={self.max_tokens}) but tpm={self.tpm:g} "
                "allows fewer in a whole minute, so it could never be sent: shorten the input or lower max_tokens"
            )
        wanted = [(bucket, amount) for bucket, amount in ((self._requests, 1), (self._tokens, tokens)) if bucket]
        async with self._queue:
            while (wait := max(bucket.wait_for(amount) for bucket, amount in wanted)) > 0:
                await asyncio.sleep(wait)
            for bucket, amount in wanted:
                bucket.level -= amount
        return tokens

    def pause(self, seconds: float) -> None:
        """After a 429 whose Retry-After is `seconds`: let nothing through for that long, then refill from empty.

        The server charges rejected requests too, so its bucket is emptier than ours; without this the
        limiter would go on sending at the full rate into a bucket that is short, and every one of a
        crowd of retries would be rejected (and charged) again.
        """
        for bucket in (self._requests, self._tokens):
            if bucket is not None:
                bucket.wait_for(0)  # refill to now
                bucket.level = min(bucket.level, -seconds * bucket.rate)

    def __repr__(self) -> str:
        return f"TokenRateLimiter(rpm={self.rpm}, tpm={self.tpm}, max_tokens={self.max_tokens})"


async def invoke_robustly(chain: Any, item: Any, config: Any, retry: RetryPolicy | None, timeout: float | None,
                          limiter: TokenRateLimiter | None) -> tuple[Any, Exception | None, int]:
    """Run one input through the chain; returns (output, error, attempts) and never raises an Exception."""
    attempt = 0
    while True:
        attempt += 1
        try:
            if limiter is not None:
                await limiter.acquire(item)
            async with asyncio.timeout(timeout):  # cancels the call and raises TimeoutError (None: no limit)
                return await chain.ainvoke(item, config), None, attempt
        except Exception as exc:  # CancelledError is not an Exception, so cancelling still works
            if limiter is not None and getattr(exc, "status_code", None) == 429 and not _is_out_of_quota(exc):
                limiter.pause(retry_after_seconds(exc) or 0.0)  # the whole crowd waits, not this request alone
            if retry is None or not retry.should_retry(attempt, exc):
                return None, exc, attempt
            await asyncio.sleep(retry.delay(attempt, exc))
