"""One request, made robust: retries with backoff, Retry-After, request/token rate limits, timeouts.

The batch runners in `helpers.runners` call `invoke_robustly` for every input:

    wait for the limiter -> chain.ainvoke under the timeout -> retryable error? sleep, try again

- `is_retryable(exc)`: can the same request succeed later? 408/409/429/5xx, timeouts and
  dropped connections: yes. A 400 or a missing prompt variable (KeyError): never.
- `RetryPolicy`: exponential backoff with full jitter, never sooner than the server's Retry-After.
- `TokenRateLimiter`: requests- and tokens-per-minute buckets on aiolimiter. LangChain's
  `InMemoryRateLimiter` counts requests only; token limits need a weighted bucket.
- `describe_error(exc)`: one line a person can act on.

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

from aiolimiter import AsyncLimiter
from langchain_core.exceptions import ModelError


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)




@functools.cache
def _retryable_types() -> tuple[type[BaseException], ...]:
    """Exception classes meaning "try again later", from whichever HTTP libraries are installed."""
    types: list[type[BaseException]] = [TimeoutError, ConnectionError]  # asyncio.TimeoutError is TimeoutError
    try:
        import openai

        # APITimeoutError is a subclass of APIConnectionError.
        types += [openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError]
    except ImportError:
        pass
    for name in ("httpx", "httpx2"):  # the openai SDK uses httpx2; other clients use httpx
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        types += [module.TimeoutException, module.NetworkError, module.RemoteProtocolError]
    try:
        import aiohttp

        types += [aiohttp.ClientConnectionError, aiohttp.ClientPayloadError]
    except ImportError:
        pass
    return tuple(types)


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
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        return None
    milliseconds = headers.get("retry-after-ms")
    seconds = headers.get("retry-after")
    for value, scale in ((milliseconds, 0.001), (seconds, 1.0)):
        if value is None:
            continue
        try:
            delay = float(value) * scale
        except ValueError:
            continue
        if math.isfinite(delay) and delay >= 0:
            return delay
    if seconds is not None:  # Retry-After may also be an HTTP date
        try:
            return max(0.0, email.utils.parsedate_to_datetime(seconds).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
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
        if not isinstance(self.max_attempts, int) or isinstance(self.max_attempts, bool) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be an int >= 1, got {self.max_attempts!r}")
        for name in ("base_delay", "max_delay"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value < math.inf:
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
        if server_says is not None:
            return max(server_says, backoff)
        return backoff


def approx_tokens(text: str) -> int:
    """Rough token count without a tokenizer: ceil(UTF-8 bytes / 4), at least 1 (as the mock counts)."""
    return max(1, math.ceil(len(text.encode("utf-8")) / 4))


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


def _bucket(per_minute: float, window_seconds: float) -> AsyncLimiter:
    """A bucket refilled at per_minute/60 per second that holds window_seconds' worth (at least 1)."""
    per_second = per_minute / 60
    capacity = max(1.0, per_second * window_seconds)
    return AsyncLimiter(capacity, capacity / per_second)


class TokenRateLimiter:
    """Client-side limit on requests per minute (rpm) and tokens per minute (tpm).

    Two aiolimiter buckets: each request takes 1 from the request bucket and its estimated
    tokens from the token bucket, waiting until both have room. Like OpenAI (and the mock), the
    per-minute budget applies over a short window: a bucket holds `window_seconds` of it and
    refills continuously, so rpm=600 lets about 5 requests through at once (window 0.5 s), then
    10 per second, not 600 at once. Keep the window below the server's (about 1 s at OpenAI and
    the mock): the server's bucket then always has the difference to spare, which absorbs the
    jitter between when we send a request and when it arrives. With equal windows a request that
    arrives a few milliseconds early gets a 429 (see tools/bench_rate_limit.py).

    A request's estimate is its prompt tokens (see `estimate_tokens`) plus `max_tokens`, the
    tokens to reserve for the reply: the model's own max_tokens if it sets one (servers charge
    that up front), else a typical reply length. Pass `prompt=` (e.g. `chain.first`) to count the
    formatted prompt rather than only the variables, or `estimate_tokens=` to replace the estimate.

    Requests are let through first come, first served. (aiolimiter alone wakes the waiter asking
    for the fewest tokens first, so under steady load a long prompt could wait until every
    shorter one is done.)
    """

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        max_tokens: int = 100,
        window_seconds: float = 0.5,
        prompt: Any = None,
        estimate_tokens: Callable[[Any], int] | None = None,
    ) -> None:
        if rpm is None and tpm is None:
            raise ValueError("TokenRateLimiter needs rpm, tpm or both")
        for name, value in (("rpm", rpm), ("tpm", tpm), ("window_seconds", window_seconds)):
            if value is not None and (not _is_number(value) or not 0 < value < math.inf):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
            raise ValueError(f"max_tokens must be an int >= 0, got {max_tokens!r}")
        self.rpm, self.tpm = rpm, tpm
        self.max_tokens = max_tokens
        self.window_seconds = window_seconds
        self.prompt = prompt
        self._estimate = estimate_tokens
        self._requests = _bucket(rpm, window_seconds) if rpm else None
        self._tokens = _bucket(tpm, window_seconds) if tpm else None
        self._queue = asyncio.Lock()  # FIFO: one waiter at a time at the buckets, in arrival order

    @property
    def token_capacity(self) -> float | None:
        """The most tokens one request can ever get (the token bucket's size), or None without tpm."""
        return self._tokens.max_rate if self._tokens else None

    def estimate_tokens(self, input: Any) -> int:
        """Tokens a request for `input` will be charged: per message its text + 3, plus 3, plus max_tokens."""
        if self._estimate is not None:
            return int(self._estimate(input))
        if self.prompt is not None and isinstance(input, Mapping):
            input = self.prompt.format_prompt(**input)
        return sum(approx_tokens(text) + 3 for text in _message_texts(input)) + 3 + self.max_tokens

    async def acquire(self, input: Any) -> int:
        """Wait until a request for `input` fits both budgets, take its share, and return its token estimate.

        Raises ValueError if the estimate exceeds the token bucket: such a request could never be sent.
        """
        tokens = self.estimate_tokens(input)
        if self._tokens is not None and tokens > self._tokens.max_rate:
            raise ValueError(
                f"request needs about {tokens} tokens (prompt + max_tokens={self.max_tokens}) but the token "
                f"bucket holds only {self._tokens.max_rate:.0f} (tpm={self.tpm:.0f} over {self.window_seconds:g} s), "
                "so it could never be sent: shorten the input, lower max_tokens or raise window_seconds"
            )
        async with self._queue:
            if self._requests is not None:
                await self._requests.acquire(1)
            if self._tokens is not None:
                await self._tokens.acquire(tokens)
        return tokens

    def __repr__(self) -> str:
        return f"TokenRateLimiter(rpm={self.rpm}, tpm={self.tpm}, max_tokens={self.max_tokens})"


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


async def invoke_robustly(
    chain: Any,
    item: Any,
    config: Any,
    retry: RetryPolicy | None,
    timeout: float | None,
    limiter: TokenRateLimiter | None,
) -> tuple[Any, Exception | None, int]:
    """Run one input through the chain; returns (output, error, attempts) and never raises an Exception."""
    attempt = 0
    while True:
        attempt += 1
        try:
            if limiter is not None:
                await limiter.acquire(item)
            if timeout is None:
                return await chain.ainvoke(item, config), None, attempt
            async with asyncio.timeout(timeout):  # cancels the call and raises TimeoutError
                return await chain.ainvoke(item, config), None, attempt
        except Exception as exc:  # CancelledError is not an Exception, so cancelling still works
            if retry is None or not retry.should_retry(attempt, exc):
                return None, exc, attempt
            await asyncio.sleep(retry.delay(attempt, exc))
