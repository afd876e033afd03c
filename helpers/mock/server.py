"""The mock OpenAI chat-completions server: real HTTP, fake model (backstage: a learner need not
read this to follow the lessons; every setting and its effect is listed in ``settings.py``).

The notebooks talk to this server through the real ``ChatOpenAI`` client, so every effect they
show (latency, streaming, 429s, retries, timeouts, dropped connections) comes from the code
below. Answers are a pure function of the prompt (``replies.py``), so stored outputs can be checked.

How a request to ``POST /v1/chat/completions`` is handled (``MockServer._chat_completions``):

1. Read the JSON body (400 if it is not JSON or has no messages). Work out the answer with
   ``reply_for`` and the token counts with ``count_tokens``.
2. Rate limiter: one token bucket for requests and one for tokens (sized as ``settings.py``
   explains). If a bucket is short, answer 429 with ``retry-after`` headers. A rejected request
   is charged all the same, as at OpenAI (unless ``count_rejected=0``).
3. Attempt count: ``attempt`` = how many times this request (same model and messages) has
   already got past the rate limiter; 0 the first time.
4. Fault roll: ``roll(seed, kind, request_key, attempt)`` is a number in [0, 1) that looks
   random but is not (``faults.py``). Below ``error_rate`` means an error, and so on. A fresh server
   (or ``POST /mock/reset``) fails the same requests again, and a retry (next attempt) rolls anew.
   A flex request (``service_tier="flex"``) rolls once more, for a 429 "resource unavailable".
5. Timing: latency = ttft + completion_tokens / tokens_per_second, times jitter (and
   tail_multiplier for a tail request, flex_slowdown for flex), divided by speed.
6. Billing: past the rolls the request starts generating, and the ledger bills it in full
   (``billing.py``; the rule is in ``settings.py``). Its ``cached_tokens`` come from the prompt cache.
7. Answer: one JSON body after the whole latency, or a stream of server-sent events: the
   first token after ttft, then one event per token (their JSON shapes: ``wire.py``). Once it has
   all been sent, its prompt counts as cached.

Other endpoints: ``GET /v1/models``; the Batch API (``/v1/files``: ``files.py``, ``/v1/batches``:
``batches.py``); and for notebooks and tests ``GET/POST /mock/settings``, ``POST /mock/reset`` and
``GET /mock/stats`` (the counters, and ``billed``: the ledger). Start it with
``python -m helpers.mock --port 8000 --ttft 0.1``; ``helpers.mock.control`` starts it for the
notebooks.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

from aiohttp import web

from helpers.mock.batches import BatchService
from helpers.mock.billing import Ledger, PromptCache
from helpers.mock.faults import Faults, Timing, request_key, roll, roll_faults, timing_for
from helpers.mock.files import FileStore
from helpers.mock.limits import Limit, RateLimiter, TokenBucket, format_duration
from helpers.mock.requests_in import parse_chat_request
from helpers.mock.settings import MockSettings
from helpers.mock.wire import error_response, flex_unavailable, json_answer, server_error, stream_events

__all__ = ["Faults", "Limit", "MockServer", "RateLimiter", "Stats", "Timing", "TokenBucket", "format_duration",
           "main", "make_app", "request_key", "roll", "roll_faults", "serve", "timing_for"]

HOST = "127.0.0.1"
MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1-nano")
MIN_SLEEP = 0.001  # shorter delays are skipped: asyncio cannot sleep that precisely anyway
STREAM_TICK = 0.05  # a stream wakes at most this often; tokens due meanwhile share one write


@dataclass
class Stats:
    """Counters served at GET /mock/stats, since the last reset."""

    requests: int = 0
    ok: int = 0
    rate_limited: int = 0
    errors_injected: int = 0
    hangs_injected: int = 0
    drops_injected: int = 0
    flex_unavailable: int = 0  # flex requests answered 429 "resource unavailable"
    in_flight: int = 0
    peak_in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


# ---------------------------------------------------------------- the server


async def sleep(seconds: float) -> None:
    if seconds >= MIN_SLEEP:
        await asyncio.sleep(seconds)


class MockServer:
    """The state (settings, rate limiter, attempt counts, stats, ledger, prompt cache, files, batches)
    and the chat handlers; files.py and batches.py hold the Batch API's."""

    def __init__(self, settings: MockSettings) -> None:
        self.settings = settings
        self.ids = itertools.count(1)
        self.stats = Stats()
        self.files = FileStore(self)
        self.batches = BatchService(self)
        self.ledger = Ledger()
        self.reset()

    def reset(self) -> None:
        """Forget attempts, refill the buckets, zero the stats and the ledger, empty the prompt cache.

        Requests in flight stay counted; files and batches stay (rows finishing later bill anew)."""
        self.batches.advance()  # rows that finished before the reset belong to the old ledger
        self.ledger = Ledger()
        self.cache = PromptCache()
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
        faults, flex = roll_faults(self.settings, key, attempt), chat.service_tier == "flex"
        timing = timing_for(self.settings, faults.tail, self.settings.flex_slowdown if flex else 1.0)
        if faults.error_status:
            self.stats.errors_injected += 1
            await sleep(timing.ttft)
            return server_error(faults.error_status, headers)
        if flex and roll(self.settings.seed, "flex", key, attempt) < self.settings.flex_unavailable_rate:
            self.stats.flex_unavailable += 1
            await sleep(timing.ttft)
            return flex_unavailable(headers)
        # 6. It starts generating: billed now, in full, whatever happens to its delivery.
        self.batches.advance()  # batch rows finished by now have warmed the cache
        chat.cached_tokens = self.cache.cached_tokens(chat.model, chat.messages, chat.prompt_tokens)
        self.ledger.bill(chat.service_tier, chat.prompt_tokens, chat.cached_tokens, len(chat.pieces))
        if faults.hang:
            self.stats.hangs_injected += 1
            await asyncio.sleep(self.settings.hang_seconds)
        # 7. Answer.
        common = {"id": f"chatcmpl-mock{next(self.ids)}", "created": int(time.time()),
                  "model": chat.model, "service_tier": chat.service_tier, "system_fingerprint": "fp_mock"}
        if chat.stream:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                                   "Cache-Control": "no-cache", **headers})
            await response.prepare(request)
            events = stream_events(common, chat.pieces, chat.finish_reason,
                                   chat.usage() if chat.include_usage else None)
            if faults.drop:  # only the first half of the tokens
                events = events[:len(chat.pieces) // 2] or events[:1]
            try:
                await write_on_time(response, events, timing)
            except ConnectionError:  # the client went away
                return response
        else:
            await sleep(timing.total(len(chat.pieces)) / (2 if faults.drop else 1))
            response = json_answer(common, chat.pieces, chat.finish_reason, chat.usage(), headers)
        if faults.drop:
            self.stats.drops_injected += 1
            request.protocol.force_close()  # close the TCP connection without ending the HTTP response
            return response
        self.stats.ok += 1
        self.cache.remember(chat.model, chat.messages)
        self.stats.prompt_tokens += chat.prompt_tokens
        self.stats.completion_tokens += len(chat.pieces)
        return response

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
        except RecursionError:
            return error_response(400, "settings: the JSON nests too deep", "invalid_request_error")
        except ValueError as error:
            return error_response(400, str(error), "invalid_request_error")
        self.limiter = RateLimiter(self.settings)
        return web.json_response(asdict(self.settings))

    async def post_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"reset": True})

    async def get_stats(self, request: web.Request) -> web.Response:
        """The counters, and under "billed" the ledger: {tier: {requests, prompt_tokens, cached_tokens, ...}}."""
        self.batches.advance()
        return web.json_response({**asdict(self.stats), "billed": self.ledger.as_dict()})

    async def not_found(self, request: web.Request) -> web.Response:
        return error_response(404, f"Invalid URL ({request.method} {request.path})", "invalid_request_error")


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


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error as OpenAI's JSON body, never aiohttp's plain text: a 405, a too-large body, a bug."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason, "invalid_request_error")
    except Exception as exc:  # noqa: BLE001 - a bug in the mock must still answer like an API
        return error_response(500, f"The mock failed on this request ({type(exc).__name__}: {exc}).", "server_error")


def make_app(settings: MockSettings | None = None) -> web.Application:
    """The aiohttp application; the MockServer is at app["mock"]."""
    server = MockServer(settings or MockSettings())
    app = web.Application(client_max_size=32 * 1024 * 1024, middlewares=[json_errors])
    app["mock"] = server
    app.router.add_post("/v1/chat/completions", server.chat_completions)
    app.router.add_get("/v1/models", server.models)
    app.router.add_post("/v1/files", server.files.upload)
    app.router.add_get("/v1/files", server.files.list)
    app.router.add_get("/v1/files/{file_id}", server.files.retrieve)
    app.router.add_delete("/v1/files/{file_id}", server.files.delete)
    app.router.add_get("/v1/files/{file_id}/content", server.files.content)
    app.router.add_post("/v1/batches", server.batches.create)
    app.router.add_get("/v1/batches", server.batches.list)
    app.router.add_get("/v1/batches/{batch_id}", server.batches.retrieve)
    app.router.add_post("/v1/batches/{batch_id}/cancel", server.batches.cancel)
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
