"""What a batch's input file may hold, checked line by line as OpenAI validates it (backstage: a learner
need not read this; ``batches.py`` runs what passes).

Each line must be a JSON object ``{"custom_id": str, "method": "POST", "url": "/v1/chat/completions",
"body": {...}}``; the custom_ids must be unique, every body must name the same model, and the file may
hold at most ``batch_max_requests`` requests (50,000 at OpenAI). What fails does not raise: it becomes
one of the batch's ``errors`` (the openai SDK's ``BatchError``: code, line, message, param), and the
batch goes from ``validating`` to ``failed``, as at OpenAI. A body's own fields (its messages, ...) are
checked only when its row runs, and a bad one gives that row a 400 in the error file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from helpers.mock.requests_in import DEFAULT_MODEL

__all__ = ["ENDPOINT", "BatchInput", "InputLine", "read_input"]

ENDPOINT = "/v1/chat/completions"  # the only endpoint the mock's batches serve
MAX_LISTED_ERRORS = 100  # a file with more errors lists the first ones


@dataclass
class InputLine:
    """One request of the input file."""

    line: int  # 1-based line number in the file
    custom_id: str
    body: dict


@dataclass
class BatchInput:
    """The requests of a valid file, or the errors that fail the batch."""

    requests: list[InputLine] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    model: str = DEFAULT_MODEL

    def fail(self, code: str, message: str, line: int | None = None, param: str | None = None) -> None:
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append({"code": code, "line": line, "message": message, "param": param})


def read_input(data: bytes, max_requests: int) -> BatchInput:
    """The file's requests and every error found in it (a valid file has no errors)."""
    found = BatchInput()
    seen: dict[str, int] = {}
    models: list[Any] = []  # the first request's model, once seen
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        item = _parse_line(raw)
        if item is None:
            found.fail("invalid_json_line", "This line is not parseable as valid JSON.", number)
            continue
        problem = _line_problem(item)
        if problem:
            code, message, param = problem
            found.fail(code, message, number, param)
            continue
        custom_id = item["custom_id"]
        if custom_id in seen:
            found.fail("duplicate_custom_id", f"The custom_id {custom_id!r} is already used on line "
                       f"{seen[custom_id]}: the custom_id of each request in a batch must be unique.",
                       number, "custom_id")
            continue
        seen[custom_id] = number
        model = item["body"].get("model", DEFAULT_MODEL)
        if models and model != models[0]:
            found.fail("model_mismatch", f"The model {model!r} differs from the batch's "
                       f"{models[0]!r}: all requests in a batch must use the same model.", number, "body.model")
            continue
        models[:1] = [model]
        found.requests.append(InputLine(number, custom_id, item["body"]))
    _check_size(found, max_requests)
    found.model = models[0] if models and isinstance(models[0], str) else DEFAULT_MODEL
    return found


def _parse_line(raw: bytes) -> dict | None:
    try:
        item = json.loads(raw)
    except (ValueError, RecursionError):  # includes UnicodeDecodeError
        return None
    return item if isinstance(item, dict) else None


def _line_problem(item: dict[str, Any]) -> tuple[str, str, str] | None:
    """(code, message, param) for a line without the fields a batch request needs, else None."""
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return ("missing_required_parameter", "Each request needs a 'custom_id': a non-empty string.",
                "custom_id")
    if item.get("method") != "POST":
        return "invalid_value", f"Invalid 'method': {item.get('method')!r}; batch requests use 'POST'.", "method"
    if item.get("url") != ENDPOINT:
        return ("url_mismatch", f"The url {item.get('url')!r} does not match the batch's endpoint "
                f"{ENDPOINT!r}.", "url")
    if not isinstance(item.get("body"), dict):
        return "invalid_value", "Each request needs a 'body': a JSON object (the chat request).", "body"
    return None


def _check_size(found: BatchInput, max_requests: int) -> None:
    if not found.requests and not found.errors:
        found.fail("empty_file", "The input file holds no requests.")
    elif len(found.requests) > max_requests:
        found.fail("too_many_tasks", f"The batch has {len(found.requests)} requests; the limit is "
                   f"{max_requests} per batch.")
