"""What the mock accepts in a chat request, checked field by field (backstage: a learner need not read this).

A learner will send the mock malformed requests, by hand or by bug. Like OpenAI, it answers each with
a JSON error body and status 400 that names the field, never with a crash: `parse_chat_request`
returns either the `ChatRequest` the server works from, or that error response.

Checked: the body is JSON (not nested absurdly deep) and an object; `model` is a string; `messages`
is a non-empty list of {"role": one of OpenAI's roles, "content": a string or a list of text parts};
every text is valid Unicode (no lone surrogate such as a `\\ud800` escape); `stream` is true or
false; `stream_options` is an object whose `include_usage` is true or false; `max_tokens` and
`max_completion_tokens` are whole numbers >= 1; `service_tier` is "auto", "default" or "flex" (the
tiers the mock serves). Other fields are ignored, as OpenAI ignores what a
model does not use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from helpers.mock.billing import usage_body
from helpers.mock.replies import count_prompt_tokens, reply_pieces
from helpers.mock.wire import error_response

__all__ = ["ChatRequest", "DEFAULT_MODEL", "SERVICE_TIERS", "chat_request_from", "parse_chat_request"]

DEFAULT_MODEL = "gpt-4o-mini"
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
SERVICE_TIERS = {"auto": "default", "default": "default", "flex": "flex"}  # as sent -> as served
MAX_DEPTH = 64  # deeper JSON than this is refused before Python's parser could recurse too far


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
    service_tier: str = "default"  # "default" or "flex"
    cached_tokens: int = 0  # set by the server from its prompt cache

    def rate_limit_cost(self) -> int:
        return self.prompt_tokens + (self.max_tokens or len(self.pieces))

    def usage(self) -> dict:
        return usage_body(self.prompt_tokens, len(self.pieces), self.cached_tokens)


class _Invalid(ValueError):
    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param, self.code = param, code


def _too_deep(raw: bytes) -> bool:
    """True if brackets nest deeper than MAX_DEPTH (counted outside strings, without parsing)."""
    depth, in_string, escaped = 0, False, False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash: the next byte is escaped
                escaped = True
            elif byte == 0x22:  # closing quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"Invalid type for '{where}': expected a string, but got {type(value).__name__}.", where,
                       "invalid_type")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Invalid(f"Invalid '{where}': the string is not valid Unicode (it holds a lone surrogate).",
                       where) from None
    return value


def _check_message(message: Any, i: int) -> None:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise _Invalid(f"Invalid type for '{where}': expected an object, but got {type(message).__name__}.", where,
                       "invalid_type")
    role = message.get("role")
    if role not in ROLES:
        raise _Invalid(f"Invalid value for '{where}.role': {role!r}. Supported values are: "
                       + ", ".join(f"'{r}'" for r in ROLES) + ".", f"{where}.role", "invalid_value")
    content = message.get("content")
    if isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise _Invalid(f"Invalid '{where}.content[{j}]': the mock takes only text parts "
                               '({"type": "text", "text": "..."}).', f"{where}.content[{j}]")
            _text(part.get("text"), f"{where}.content[{j}].text")
    elif content is not None or role not in ("assistant", "tool", "function"):
        _text(content, f"{where}.content")


def _flag(body: dict, name: str, value: Any) -> bool:
    if value is not None and not isinstance(value, bool):
        raise _Invalid(f"Invalid type for '{name}': expected a boolean, but got {type(value).__name__}.", name,
                       "invalid_type")
    return bool(value)


def _service_tier(value: Any) -> str:
    if value is None:
        return "default"
    if not isinstance(value, str) or value not in SERVICE_TIERS:
        raise _Invalid(f"Invalid value for 'service_tier': {value!r}. The mock serves: "
                       + ", ".join(f"'{t}'" for t in SERVICE_TIERS) + ".", "service_tier", "invalid_value")
    return SERVICE_TIERS[value]


def _checked(body: Any) -> tuple[str, list[dict], bool, bool, int | None]:
    """(model, messages, stream, include_usage, max_tokens) from a body, or _Invalid naming the field."""
    if not isinstance(body, dict):
        raise _Invalid("The body of your request must be a JSON object.")
    model = _text(body.get("model", DEFAULT_MODEL), "model") or DEFAULT_MODEL
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Invalid("Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
    for i, message in enumerate(messages):
        _check_message(message, i)
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _Invalid(f"Invalid type for 'stream_options': expected an object, but got {type(options).__name__}.",
                       "stream_options", "invalid_type")
    include_usage = _flag(body, "stream_options.include_usage", (options or {}).get("include_usage"))
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise _Invalid(f"Invalid 'max_tokens': {max_tokens!r}.", "max_tokens")
    return model, messages, _flag(body, "stream", body.get("stream")), include_usage, max_tokens


def parse_chat_request(raw: bytes) -> ChatRequest | web.Response:
    """The request, or a 400 error response (OpenAI's JSON shape) saying what is wrong with it."""
    try:
        if _too_deep(raw):
            raise _Invalid(f"We could not parse the JSON body of your request: it nests deeper than {MAX_DEPTH} levels.")
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # includes UnicodeDecodeError and json.JSONDecodeError
            raise _Invalid("We could not parse the JSON body of your request. (HINT: send valid JSON.)") from None
    except _Invalid as invalid:
        return error_response(400, str(invalid), "invalid_request_error", code=invalid.code, param=invalid.param)
    return chat_request_from(body)


def chat_request_from(body: Any) -> ChatRequest | web.Response:
    """The request from a parsed body (a batch row's), or a 400 error response naming the field."""
    try:
        model, messages, stream, include_usage, max_tokens = _checked(body)
        tier = _service_tier(body.get("service_tier"))
    except _Invalid as invalid:
        return error_response(400, str(invalid), "invalid_request_error", code=invalid.code, param=invalid.param)
    pieces = reply_pieces(messages)
    cut = max_tokens is not None and len(pieces) > max_tokens
    return ChatRequest(model=model, messages=messages, stream=stream, include_usage=include_usage,
                       max_tokens=max_tokens, pieces=pieces[:max_tokens] if cut else pieces,
                       finish_reason="length" if cut else "stop", prompt_tokens=count_prompt_tokens(messages),
                       service_tier=tier)
