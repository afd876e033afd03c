"""OpenAI's wire format, as the mock sends it (backstage: a learner need not read this to follow
the lessons).

What a real client sees of an answer: the error body ``{"error": {...}}`` with OpenAI's own
messages, the ``chat.completion`` JSON body, and the ``chat.completion.chunk`` server-sent events
of a stream (a role chunk, one chunk per token, a finish chunk, an optional usage chunk, then
``data: [DONE]``). What the answer says is in ``replies.py``; when it is sent, in ``server.py``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from aiohttp import web

__all__ = ["completion_body", "error_body", "error_response", "flex_unavailable", "json_answer", "server_error",
           "server_error_body", "sse", "stream_events"]

_SERVER_ERRORS = {500: "The server had an error while processing your request. Sorry about that!",
                  503: "The server is overloaded or not ready yet."}


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict:
    """An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(status: int, message: str, kind: str, code: str | None = None,
                   param: str | None = None, headers: dict[str, str] | None = None) -> web.Response:
    """An error response with OpenAI's error body."""
    return web.json_response(error_body(message, kind, code, param), status=status, headers=headers)


def server_error_body(status: int) -> dict:
    """The body of an injected 500 or 503, with OpenAI's message for it."""
    return error_body(_SERVER_ERRORS[status], "server_error")


def server_error(status: int, headers: dict[str, str]) -> web.Response:
    """An injected 500 or 503."""
    return web.json_response(server_error_body(status), status=status, headers=headers)


def flex_unavailable(headers: dict[str, str]) -> web.Response:
    """The flex tier's 429 "Resource Unavailable" (OpenAI documents the status and the phrase; the
    mock's wording and code are its own). Not billed, like every 429."""
    message = ("Resource Unavailable: the flex tier has no capacity for this request right now. "
               "Retry with backoff, or send it on the default tier.")
    return error_response(429, message, "rate_limit_error", code="resource_unavailable", headers=headers)


def sse(data: dict) -> bytes:
    """One server-sent event."""
    return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"


def completion_body(common: dict, pieces: Sequence[str], finish_reason: str, usage: dict) -> dict:
    """A chat.completion body; `common` holds id, created, model (and service_tier)."""
    message = {"role": "assistant", "content": "".join(pieces), "refusal": None}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
    return {**common, "object": "chat.completion", "choices": [choice], "usage": usage}


def json_answer(common: dict, pieces: Sequence[str], finish_reason: str, usage: dict,
                headers: dict[str, str]) -> web.Response:
    """The whole answer as one chat.completion JSON body."""
    body = completion_body(common, pieces, finish_reason, usage)
    return web.Response(body=json.dumps(body, ensure_ascii=False).encode(), content_type="application/json",
                        headers=headers)


def stream_events(common: dict, pieces: Sequence[str], finish_reason: str,
                  usage: dict | None) -> list[bytes]:
    """The SSE events of a streamed answer, one per token (the first and last carry the framing).

    With `usage` (the client asked for stream_options.include_usage) the last event also carries
    a chunk with no choices and the token counts, as OpenAI sends it.
    """
    def chunk(delta: dict, finish: str | None = None) -> dict:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**common, "object": "chat.completion.chunk", "choices": [choice]}

    events = [sse(chunk({"content": piece})) for piece in pieces]
    last = sse(chunk({}, finish_reason))
    if usage is not None:
        last += sse({**common, "object": "chat.completion.chunk", "choices": [], "usage": usage})
    events.append(last + b"data: [DONE]\n\n")
    events[0] = sse(chunk({"role": "assistant", "content": ""})) + events[0]
    return events
