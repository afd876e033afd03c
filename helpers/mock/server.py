"""A mock OpenAI chat-completions server: real HTTP, fake model.

The notebooks talk to this server through the real ``ChatOpenAI`` client, so every effect they
show (latency, streaming, 429s, retries, timeouts, dropped connections) comes from the code
below. Answers are a pure function of the prompt, so stored notebook outputs can be checked.

Settings (``MockSettings``). Set each one as a CLI flag (``--rpm-limit 500``), an environment
variable (``MOCK_RPM_LIMIT=500``), or from Python (``handle.configure(rpm_limit=500)``):

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
| error_rate        | 0.0     | fraction of attempts answered with a 500 or 503 error (half each)   |
| hang_rate         | 0.0     | fraction of attempts that wait hang_seconds before answering        |
| hang_seconds      | 600.0   | how long a hang lasts                                               |
| drop_rate         | 0.0     | fraction of attempts whose connection is closed half-way            |
| seed              | 0       | another seed picks other requests for faults and tails              |

How a request to ``POST /v1/chat/completions`` is handled (``MockServer._chat_completions``):

1. Read the JSON body (400 if it is not JSON or has no messages). Work out the answer with
   ``reply_for`` and the token counts with ``count_tokens``.
2. Rate limiter: one token bucket for requests and one for tokens. If a bucket is short,
   answer 429 with ``retry-after`` headers. A rejected request costs nothing.
3. Attempt count: ``attempt`` = how many times this request (same model and messages) has
   already got past the rate limiter; 0 the first time.
4. Fault roll: ``roll(seed, kind, request_key, attempt)`` is a number in [0, 1) that looks
   random but is not. Below ``error_rate`` means an error, and so on. A fresh server (or
   ``POST /mock/reset``) fails the same requests again, and a retry (next attempt) rolls anew.
5. Timing: latency = ttft + completion_tokens / tokens_per_second, times jitter (and
   tail_multiplier for a tail request), divided by speed.
6. Answer: one JSON body after the whole latency, or a stream of server-sent events: the
   first token after ttft, then one event per token.

Rate limits work like OpenAI's: a per-minute limit is enforced on a short window. The bucket
holds ``limit * limit_window / 60`` and refills at ``limit / 60`` per second, starting full. A
request costs 1 request and prompt_tokens + max_tokens (or the reply's tokens if max_tokens is
not given) tokens. A request bigger than a whole bucket gets in only when the bucket is full.

Other endpoints: ``GET /v1/models``, and for notebooks and tests ``GET/POST /mock/settings``,
``POST /mock/reset`` and ``GET /mock/stats``. Start it with
``python -m helpers.mock.server --port 8000 --ttft 0.1``; ``helpers.mock.control`` starts it for
the notebooks.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import itertools
import json
import math
import os
import random
import re
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Any

from aiohttp import web

HOST = "127.0.0.1"
DEFAULT_MODEL = "gpt-4o-mini"
MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1-nano")
MIN_SLEEP = 0.001  # shorter delays are skipped: asyncio cannot sleep that precisely anyway
STREAM_TICK = 0.05  # a stream wakes at most this often; tokens due meanwhile share one write


# ---------------------------------------------------------------- settings


@dataclass
class MockSettings:
    """Everything that shapes the mock's behaviour; see the table in the module docstring."""

    ttft: float = 0.4
    tokens_per_second: float = 60.0
    jitter: float = 0.2
    tail_fraction: float = 0.0
    tail_multiplier: float = 5.0
    speed: float = 1.0
    rpm_limit: int = 0
    tpm_limit: int = 0
    limit_window: float = 1.0
    error_rate: float = 0.0
    hang_rate: float = 0.0
    hang_seconds: float = 600.0
    drop_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = _to_number(f.name, f.type, getattr(self, f.name))
            low, high = _RANGES.get(f.name, (0.0, math.inf))
            if not low <= value <= high or (f.name in _POSITIVE and value == 0):
                raise ValueError(f"mock setting {f.name}={value} is out of range [{low}, {high}]")
            setattr(self, f.name, value)

    @classmethod
    def names(cls) -> list[str]:
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


_RANGES = {"jitter": (0.0, 1.0), "tail_fraction": (0.0, 1.0), "tail_multiplier": (1.0, math.inf),
           "error_rate": (0.0, 1.0), "hang_rate": (0.0, 1.0), "drop_rate": (0.0, 1.0),
           "seed": (-math.inf, math.inf)}
_POSITIVE = {"tokens_per_second", "speed", "limit_window"}  # must be > 0, not just >= 0


def _to_number(name: str, kind: str, value: Any) -> float | int:
    """Turn "0.4", 0.4 or 500.0 into the setting's type (float or int), or raise ValueError."""
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if math.isnan(number) or (kind == "int" and number != int(number)):
        raise ValueError(f"mock setting {name} must be a{'n integer' if kind == 'int' else ' number'}, "
                         f"got {value!r}")
    return int(number) if kind == "int" else number


# ---------------------------------------------------------------- answers


_WORDS = {"测试": "test", "你好": "hello", "世界": "world", "谢谢": "thank you", "早上好": "good morning",
          "晚安": "good night", "苹果": "apple", "数据": "data", "模型": "model", "批处理": "batch processing",
          "异步": "asynchronous", "并发": "concurrency", "文本": "text", "问题": "question", "答案": "answer",
          "我": "I", "你": "you", "是": "am", "好": "good", "猫": "cat", "狗": "dog", "书": "book"}
_LONGEST_FIRST = sorted(_WORDS, key=len, reverse=True)  # so "早上好" wins over "好"
_PUNCTUATION = {"，": ",", "。": ".", "？": "?", "！": "!", "：": ":", "；": ";", "、": ","}
_MADE_UP = ("river", "morning", "light", "story", "garden", "system", "friend", "market", "window",
            "quiet", "travel", "letter", "music", "city", "paper", "bridge")
_SENTENCES = (
    "Here is a short answer to your question.",
    "The main idea is simple once you see it in one example.",
    "It helps to start small and measure before changing anything.",
    "Most of the time the first step is the hardest one.",
    "A good rule of thumb is to keep each part easy to check.",
    "There are a few ways to look at this, and each has trade-offs.",
    "In practice, the details depend on what you need it for.",
    "If you try it, write down what happened so you can compare later.",
    "The same approach works for larger cases with little change.",
    "That is the short version; the long version adds more examples.",
    "Keep the inputs the same and the results will be the same too.",
    "Let me know if you want a step by step explanation.",
)
_TRANSLATE = re.compile(r"^(?:翻译成英文|翻译|translate(?: this)? (?:in)?to english)\s*[:：]\s*(.+)$", re.I | re.S)
_ARITHMETIC = re.compile(r"^(?:计算|compute|calculate|what is|what's)?\s*(-?\d+)\s*([-+*×])\s*(-?\d+)\s*[?？]?$", re.I)
_PIECE = re.compile(r"\s?[A-Za-z]+|\s?\d{1,3}|\s?[^\sA-Za-z\d]|\s+")  # word-ish pieces, like tokens


def stable_hash(*parts: object) -> int:
    """A 64-bit hash that is the same in every process (Python's hash() of a str is not)."""
    data = "\x1f".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def reply_for(model: str, messages: list[dict]) -> str:
    """The mock's answer: a pure function of the last user message (the model is ignored)."""
    return _answer(_last_user_text(messages).strip())[0]


def count_tokens(text: str) -> int:
    """Approximate tokens: one per 4 bytes of UTF-8, at least 1 (consistent, not tiktoken)."""
    return max(1, math.ceil(len(text.encode("utf-8")) / 4))


def count_prompt_tokens(messages: list[dict]) -> int:
    """Prompt tokens: each message's content plus 3 for its framing, plus 3 for the reply's priming."""
    return sum(count_tokens(_text_of(m)) + 3 for m in messages) + 3


def split_into_pieces(text: str) -> list[str]:
    """Split a reply into word-ish pieces; one piece = one streamed token (they join back to text)."""
    return _PIECE.findall(text)


@lru_cache(maxsize=8192)
def _answer(text: str) -> tuple[str, tuple[str, ...]]:
    """(reply, pieces) for the last user message; cached because batches repeat prompts."""
    if match := _TRANSLATE.match(text):
        reply = translate(match.group(1))
    elif match := _ARITHMETIC.match(text):
        a, op, b = int(match.group(1)), match.group(2), int(match.group(3))
        result = a + b if op == "+" else a - b if op == "-" else a * b
        reply = f"{a} {op} {b} = {result}"
    else:
        reply = _plausible_reply(text)
    return reply, tuple(split_into_pieces(reply))


def translate(text: str) -> str:
    """Word-by-word 'translation': known Chinese words from a small dict, others made up."""
    parts, i = [], 0
    while i < len(text):
        word = next((w for w in _LONGEST_FIRST if text.startswith(w, i)), None)
        if word:
            parts.append(" " + _WORDS[word])
            i += len(word)
        elif "\u4e00" <= text[i] <= "\u9fff":  # an unknown Chinese character: 2 chars -> 1 word
            parts.append(" " + _MADE_UP[stable_hash(text[i:i + 2]) % len(_MADE_UP)])
            i += 2
        else:  # digits, Latin letters, spaces and punctuation pass through
            parts.append(_PUNCTUATION.get(text[i], text[i]))
            i += 1
    result = re.sub(r"\s+", " ", "".join(parts)).strip()
    return result[:1].upper() + result[1:]


def _plausible_reply(text: str) -> str:
    """10 to 60 words of hash-chosen sentences: the same text always gets the same reply."""
    target, words, k = 10 + stable_hash(text) % 51, [], 0
    while len(words) < target:
        sentence = _SENTENCES[stable_hash(text, k) % len(_SENTENCES)].split()
        if len(words) >= 10 and len(words) + len(sentence) > 60:
            break
        words += sentence
        k += 1
    return " ".join(words)


def _text_of(message: dict) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):  # content parts: [{"type": "text", "text": "..."}, ...]
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def _last_user_text(messages: list[dict]) -> str:
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return _text_of(users[-1]) if users else ""


# ---------------------------------------------------------------- rate limits, faults, timing


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
    """The RPM and TPM buckets; `admit` takes from both or from neither."""

    def __init__(self, settings: MockSettings) -> None:
        self.limits = []
        for kind, per_minute in (("requests", settings.rpm_limit), ("tokens", settings.tpm_limit)):
            if per_minute > 0:
                capacity = per_minute * settings.limit_window / 60
                bucket = TokenBucket(capacity, rate=per_minute / 60, level=capacity, updated=time.monotonic())
                self.limits.append(Limit(kind, per_minute, bucket))

    def admit(self, tokens: int) -> tuple[Limit, int, float] | None:
        """None if the request may go, else (limit hit, amount requested, seconds to wait)."""
        now = time.monotonic()
        for limit in self.limits:
            limit.bucket.refill(now)
            amount = 1 if limit.kind == "requests" else tokens
            wait = limit.bucket.wait_for(amount)
            if wait > 0:
                return limit, amount, wait
        for limit in self.limits:
            limit.bucket.level -= 1 if limit.kind == "requests" else tokens
        return None

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


def timing_for(settings: MockSettings, is_tail: bool) -> Timing:
    scale = (settings.tail_multiplier if is_tail else 1.0) / settings.speed
    jitter = settings.jitter
    return Timing(ttft=settings.ttft * scale * random.uniform(1 - jitter, 1 + jitter),
                  interval=scale * random.uniform(1 - jitter, 1 + jitter) / settings.tokens_per_second)


@dataclass
class Stats:
    """Counters served at GET /mock/stats."""

    requests: int = 0
    ok: int = 0
    rate_limited: int = 0
    errors_injected: int = 0
    hangs_injected: int = 0
    drops_injected: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


# ---------------------------------------------------------------- the server


@dataclass
class ChatRequest:
    """What the mock needs from a request body, and the answer it will give."""

    model: str
    messages: list[dict]
    stream: bool
    include_usage: bool
    max_tokens: int | None
    pieces: tuple[str, ...]  # the reply, one piece per token (cut at max_tokens)
    finish_reason: str  # "stop", or "length" when cut
    prompt_tokens: int

    def rate_limit_cost(self) -> int:
        return self.prompt_tokens + (self.max_tokens or len(self.pieces))

    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": len(self.pieces),
                "total_tokens": self.prompt_tokens + len(self.pieces)}


def parse_chat_request(raw: bytes) -> ChatRequest | web.Response:
    """The request, or a 400 error response saying what is wrong with it."""
    try:
        body = json.loads(raw)
    except ValueError:
        return error_response(400, "We could not parse the JSON body of your request.", "invalid_request_error")
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        return error_response(400, "Missing required parameter: 'messages'.", "invalid_request_error",
                              code="missing_required_parameter", param="messages")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        return error_response(400, f"Invalid 'max_tokens': {max_tokens!r}.", "invalid_request_error",
                              param="max_tokens")
    pieces = _answer(_last_user_text(body["messages"]).strip())[1]
    cut = max_tokens is not None and len(pieces) > max_tokens
    return ChatRequest(model=str(body.get("model") or DEFAULT_MODEL), messages=body["messages"],
                       stream=bool(body.get("stream")),
                       include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
                       max_tokens=max_tokens, pieces=pieces[:max_tokens] if cut else pieces,
                       finish_reason="length" if cut else "stop",
                       prompt_tokens=count_prompt_tokens(body["messages"]))


def error_response(status: int, message: str, kind: str, code: str | None = None,
                   param: str | None = None, headers: dict[str, str] | None = None) -> web.Response:
    """An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def sse(data: dict) -> bytes:
    """One server-sent event."""
    return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"


async def sleep(seconds: float) -> None:
    if seconds >= MIN_SLEEP:
        await asyncio.sleep(seconds)


class MockServer:
    """The state (settings, rate limiter, attempt counts, stats) and the HTTP handlers."""

    def __init__(self, settings: MockSettings) -> None:
        self.settings = settings
        self.ids = itertools.count(1)
        self.stats = Stats()
        self.reset()

    def reset(self) -> None:
        """Forget attempts, refill the buckets and zero the stats (requests in flight stay counted)."""
        self.limiter = RateLimiter(self.settings)
        self.attempts: dict[str, int] = {}
        in_flight = self.stats.in_flight
        self.stats = Stats(in_flight=in_flight, peak_in_flight=in_flight)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        self.stats.requests += 1
        self.stats.in_flight += 1
        self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.stats.in_flight)
        try:
            return await self._chat_completions(request)
        finally:  # also when the client gives up: aiohttp then cancels this handler
            self.stats.in_flight -= 1

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        # 1. Read the request; the answer is worked out with it.
        chat = parse_chat_request(await request.read())
        if isinstance(chat, web.Response):
            return chat
        # 2. Rate limiter.
        rejected = self.limiter.admit(chat.rate_limit_cost())
        if rejected:
            self.stats.rate_limited += 1
            return self._rate_limited(chat.model, *rejected)
        headers = self.limiter.headers()
        # 3. Attempt count.
        key = request_key(chat.model, chat.messages)
        attempt = self.attempts.get(key, 0)
        self.attempts[key] = attempt + 1
        # 4. Fault roll, 5. timing.
        faults = roll_faults(self.settings, key, attempt)
        timing = timing_for(self.settings, faults.tail)
        if faults.error_status:
            self.stats.errors_injected += 1
            await sleep(timing.ttft)
            return self._server_error(faults.error_status, headers)
        if faults.hang:
            self.stats.hangs_injected += 1
            await asyncio.sleep(self.settings.hang_seconds)
        # 6. Answer.
        common = {"id": f"chatcmpl-mock{next(self.ids)}", "created": int(time.time()),
                  "model": chat.model, "system_fingerprint": "fp_mock"}
        if chat.stream:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                                   "Cache-Control": "no-cache", **headers})
            await response.prepare(request)
            events = stream_events(chat, common)
            if faults.drop:  # only the first half of the tokens
                events = events[:len(chat.pieces) // 2] or events[:1]
            try:
                await write_on_time(response, events, timing)
            except ConnectionError:  # the client went away
                return response
        else:
            await sleep(timing.total(len(chat.pieces)) / (2 if faults.drop else 1))
            response = json_answer(chat, common, headers)
        if faults.drop:
            self.stats.drops_injected += 1
            request.protocol.force_close()  # close the TCP connection without ending the HTTP response
            return response
        self.stats.ok += 1
        self.stats.prompt_tokens += chat.prompt_tokens
        self.stats.completion_tokens += len(chat.pieces)
        return response

    def _server_error(self, status: int, headers: dict[str, str]) -> web.Response:
        if status == 500:
            return error_response(500, "The server had an error while processing your request. Sorry about that!",
                                  "server_error", headers=headers)
        return error_response(503, "The server is overloaded or not ready yet.", "server_error", headers=headers)

    def _rate_limited(self, model: str, limit: Limit, amount: int, wait: float) -> web.Response:
        unit = "RPM" if limit.kind == "requests" else "TPM"
        message = (f"Rate limit reached for {model} in organization org-mock on {limit.kind} per min ({unit}): "
                   f"Limit {limit.per_minute}, Used {limit.per_minute - limit.remaining()}, Requested {amount}. "
                   f"Please try again in {format_duration(wait)}.")
        headers = {"retry-after": str(max(1, math.ceil(wait))), "retry-after-ms": str(math.ceil(wait * 1000)),
                   **self.limiter.headers()}
        return error_response(429, message, limit.kind, code="rate_limit_exceeded", headers=headers)

    async def models(self, request: web.Request) -> web.Response:
        data = [{"id": name, "object": "model", "created": 1700000000, "owned_by": "mock"} for name in MODELS]
        return web.json_response({"object": "list", "data": data})

    async def get_settings(self, request: web.Request) -> web.Response:
        return web.json_response(asdict(self.settings))

    async def post_settings(self, request: web.Request) -> web.Response:
        """Change some settings (partial JSON update); returns all settings. Refills the buckets."""
        try:
            changes = json.loads(await request.read())
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object of settings")
            self.settings = self.settings.updated(**changes)
        except ValueError as error:
            return error_response(400, str(error), "invalid_request_error")
        self.limiter = RateLimiter(self.settings)
        return web.json_response(asdict(self.settings))

    async def post_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"reset": True})

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(asdict(self.stats))

    async def not_found(self, request: web.Request) -> web.Response:
        return error_response(404, f"Invalid URL ({request.method} {request.path})", "invalid_request_error")


def json_answer(chat: ChatRequest, common: dict, headers: dict[str, str]) -> web.Response:
    """The whole answer as one chat.completion JSON body."""
    message = {"role": "assistant", "content": "".join(chat.pieces), "refusal": None}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": chat.finish_reason}
    body = {**common, "object": "chat.completion", "choices": [choice], "usage": chat.usage()}
    return web.Response(body=json.dumps(body, ensure_ascii=False).encode(), content_type="application/json",
                        headers=headers)


def stream_events(chat: ChatRequest, common: dict) -> list[bytes]:
    """The SSE events of a streamed answer, one per token; event i is due at ttft + i * interval."""
    def chunk(delta: dict, finish_reason: str | None = None) -> dict:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**common, "object": "chat.completion.chunk", "choices": [choice]}

    events = [sse(chunk({"content": piece})) for piece in chat.pieces]
    last = sse(chunk({}, chat.finish_reason))
    if chat.include_usage:
        last += sse({**common, "object": "chat.completion.chunk", "choices": [], "usage": chat.usage()})
    events.append(last + b"data: [DONE]\n\n")
    events[0] = sse(chunk({"role": "assistant", "content": ""})) + events[0]
    return events


async def write_on_time(response: web.StreamResponse, events: list[bytes], timing: Timing) -> None:
    """Write each event when it is due; events that fall due together go out in one write."""
    loop = asyncio.get_running_loop()
    start = loop.time() + timing.ttft
    end = start + (len(events) - 1) * timing.interval
    i = 0
    while i < len(events):
        wait = start + i * timing.interval - loop.time()
        if i > 0 and wait > 0:  # wake at most every STREAM_TICK, but never after the last event is due
            wait = min(max(wait, STREAM_TICK), end - loop.time())
        await sleep(wait)
        now, j = loop.time(), i + 1
        while j < len(events) and start + j * timing.interval <= now:
            j += 1
        await response.write(b"".join(events[i:j]))
        i = j


def make_app(settings: MockSettings | None = None) -> web.Application:
    """The aiohttp application; the MockServer is at app["mock"]."""
    server = MockServer(settings or MockSettings())
    app = web.Application(client_max_size=32 * 1024 * 1024)
    app["mock"] = server
    app.router.add_post("/v1/chat/completions", server.chat_completions)
    app.router.add_get("/v1/models", server.models)
    app.router.add_get("/mock/settings", server.get_settings)
    app.router.add_post("/mock/settings", server.post_settings)
    app.router.add_post("/mock/reset", server.post_reset)
    app.router.add_get("/mock/stats", server.get_stats)
    app.router.add_route("*", "/{path:.*}", server.not_found)
    return app


async def serve(settings: MockSettings, port: int, exit_with_parent: bool = False) -> None:
    """Serve on 127.0.0.1:port (0 = a free port), print the ready line, run until killed."""
    runner = web.AppRunner(make_app(settings), handler_cancellation=True, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, port, backlog=4096).start()
    print(f"Mock OpenAI server: http://{HOST}:{runner.addresses[0][1]}/v1", flush=True)
    if exit_with_parent:
        threading.Thread(target=_exit_when_stdin_closes, daemon=True).start()
    await asyncio.Event().wait()


def _exit_when_stdin_closes() -> None:
    """The parent holds our stdin open; when it closes it or dies, read() returns and we exit."""
    sys.stdin.buffer.read()
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Mock OpenAI chat-completions server (see module docstring).")
    parser.add_argument("--port", type=int, default=8000, help="0 = pick a free port")
    parser.add_argument("--exit-with-parent", action="store_true", help="exit when stdin reaches EOF")
    for f in fields(MockSettings):
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, metavar=f.type.upper(),
                            help=f"default {f.default} (env MOCK_{f.name.upper()})")
    args = vars(parser.parse_args(argv))
    flags = {name: args[name] for name in MockSettings.names() if args[name] is not None}
    try:
        settings = MockSettings.from_env(dict(os.environ)).updated(**flags)
    except ValueError as error:
        parser.error(str(error))
    try:
        asyncio.run(serve(settings, args["port"], args["exit_with_parent"]))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
