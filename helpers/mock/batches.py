"""The mock's Batch API: ``/v1/batches`` over the files of ``files.py`` (backstage: a learner need not
read this to follow lesson 07; its settings and rules are in ``settings.py``).

Served, with the fields of the openai SDK's ``Batch``: ``POST /v1/batches``, ``GET /v1/batches/{id}``,
``GET /v1/batches`` (newest first, paged with ``limit`` and ``after``) and
``POST /v1/batches/{id}/cancel``.

How a batch runs. When it is created, the mock validates its file (``batch_input.py``) and works out
its whole schedule at once: each row's answer and usage (the same reply, fault rolls and prompt
cache as ``POST /v1/chat/completions``), and when the row starts and finishes, running
``batch_concurrency`` rows at a time in an order scrambled by a hash of the custom_id, once
validating is over (``batch_validate_seconds`` / speed, or longer if working out a big file's rows
takes longer: a fraction of a millisecond a row). Nothing then runs in the background: every call
reads the batch's state at the current time from that schedule (``Batch.status_at``), and bills the
rows finished by then. So which rows a batch answers, how, and in what order is deterministic from
its file, the settings and the server's history since the last reset; only the moment a client
cancels is up to the client.

The status paths: validating -> in_progress -> finalizing -> completed; validating -> failed (the
file is invalid: ``errors``); -> expired (``batch_window_seconds`` after creation, rows still to
run: the finished ones are in the output file and billed, the others are error rows
``batch_expired``); cancel -> cancelling (the rows already running finish, for at least
``batch_finalize_seconds``) -> cancelled (rows never started: ``batch_cancelled``). Error rows come
in OpenAI's two shapes: an HTTP error carries ``response.status_code`` and a body; a row that never
ran or timed out carries ``"response": null`` and an ``error`` (batch_expired, batch_cancelled,
request_timeout).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from helpers.mock.batch_input import ENDPOINT, InputLine, read_input
from helpers.mock.faults import request_key, roll_faults, rolled_seconds
from helpers.mock.replies import stable_hash
from helpers.mock.requests_in import ChatRequest, chat_request_from
from helpers.mock.settings import MockSettings
from helpers.mock.wire import completion_body, error_response, server_error_body

if TYPE_CHECKING:
    from helpers.mock.server import MockServer

__all__ = ["Batch", "BatchService", "Row"]

YIELD_EVERY = 500  # rows worked out between two turns of the event loop
TIMED_OUT = 0  # a row's status_code when it hung: it ends as "request_timeout"
NOT_RUN = {"expired": ("batch_expired", "This request could not be executed before the completion window expired."),
           "cancelled": ("batch_cancelled", "This request was not executed because the batch was cancelled.")}
TIMEOUT_ERROR = ("request_timeout", "The request to the model timed out.")


@dataclass
class Row:
    """One request of a batch: its outcome, and when it starts and finishes (time.monotonic())."""

    custom_id: str
    status_code: int  # 200, 400, 500, 503, or TIMED_OUT
    body: dict | None  # the chat completion or the error body (None when it timed out)
    usage: tuple[int, int, int] | None  # (prompt, cached, completion) billed when it finishes; None: not billed
    chat: ChatRequest | None  # kept to warm the prompt cache when it finishes
    start: float = 0.0
    finish: float = 0.0


@dataclass
class Batch:
    """One batch: its request, its schedule, and what has been billed and written so far."""

    id: str
    input_file_id: str
    model: str
    metadata: dict | None
    created_wall: float  # time.time() at creation
    t0: float  # time.monotonic() at creation
    validated: float  # when validating ends
    finalize: float  # seconds of finalizing (and at least of cancelling)
    window_end: float
    rows: list[Row]  # in the order they finish
    errors: list[dict]
    cancel_at: float | None = None
    cancel_done: float = 0.0  # when cancelling ends: the rows already running have finished
    billed: int = 0  # rows[:billed] have been looked at for billing (by BatchService.advance)
    done_ok: int = 0  # rows that ran to their end so far: answered (200) ...
    done_failed: int = 0  # ... or failed (an HTTP error, or timed out)
    usage: list[int] = field(default_factory=lambda: [0, 0, 0])  # billed prompt, cached, completion
    output_file_id: str | None = None
    error_file_id: str | None = None
    written: bool = False

    def wall(self, moment: float) -> int:
        return int(self.created_wall + (moment - self.t0))

    def outcome(self) -> tuple[str, float]:
        """(final status, when it is reached) as the schedule stands now."""
        if self.cancel_at is not None:
            return "cancelled", self.cancel_done
        if self.window_end < self.validated:
            return "expired", self.window_end
        if self.errors:
            return "failed", self.validated
        last = self.rows[-1].finish
        return ("completed", last + self.finalize) if last <= self.window_end else ("expired", self.window_end)

    def cancel(self, now: float) -> None:
        """Stop starting rows; the rows already running finish, for at least `finalize` seconds."""
        self.cancel_at = now
        self.cancel_done = max([now + self.finalize, *(row.finish for row in self.rows if row.start < now)])

    def included(self, row: Row, final: str) -> bool:
        """Does this row run to its end, given the batch's final status (see outcome)?"""
        if final == "cancelled":
            return row.start < self.cancel_at
        return final == "completed" or (final == "expired" and row.finish <= self.window_end)

    def status_at(self, now: float) -> str:
        final, end = self.outcome()
        if now >= end:
            return final
        if final == "cancelled":
            return "cancelling"
        if now < self.validated:
            return "validating"
        return "finalizing" if final == "completed" and now >= self.rows[-1].finish else "in_progress"

    def as_object(self, now: float) -> dict:
        """The openai SDK's ``Batch`` fields at `now`: the time BatchService.advance last billed up to."""
        status = self.status_at(now)
        final, end = self.outcome()
        never_ran = len(self.rows) - self.done_ok - self.done_failed if status in ("expired", "cancelled") else 0
        stamps = {key: None for key in ("in_progress_at", "finalizing_at", "completed_at", "failed_at",
                                        "expired_at", "cancelling_at", "cancelled_at")}
        if not self.errors and self.validated <= min(now, end, self.cancel_at or end):
            stamps["in_progress_at"] = self.wall(self.validated)
        if status in ("finalizing", "completed"):
            stamps["finalizing_at"] = self.wall(self.rows[-1].finish)
        if self.cancel_at is not None:
            stamps["cancelling_at"] = self.wall(self.cancel_at)
        if status in ("completed", "failed", "expired", "cancelled"):
            stamps[f"{status}_at"] = self.wall(end)
        prompt, cached, completion = self.usage
        return {"id": self.id, "object": "batch", "endpoint": ENDPOINT, "model": self.model,
                "errors": {"object": "list", "data": self.errors} if self.errors else None,
                "input_file_id": self.input_file_id, "completion_window": "24h", "status": status,
                "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
                "created_at": self.wall(self.t0), "expires_at": self.wall(self.window_end), **stamps,
                "request_counts": {"total": len(self.rows), "completed": self.done_ok,
                                   "failed": self.done_failed + never_ran},
                "usage": {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
                          "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
                          "total_tokens": prompt + completion},
                "metadata": self.metadata}


class BatchService:
    """The batches, by id, and the handlers of /v1/batches."""

    def __init__(self, server: MockServer) -> None:
        self.server = server
        self.batches: dict[str, Batch] = {}
        self.active: list[Batch] = []  # not yet finished and written
        self._numbers = itertools.count(1)

    # ------------------------------------------------------------ the schedule, billing, output

    def advance(self) -> float:
        """Bill every row finished by now, write the files of every batch that has ended; returns now."""
        now = time.monotonic()
        for batch in list(self.active):
            final, end = batch.outcome()
            while batch.billed < len(batch.rows) and batch.rows[batch.billed].finish <= min(now, end):
                row = batch.rows[batch.billed]
                batch.billed += 1
                if batch.included(row, final):
                    self._bill(batch, row)
                    batch.done_ok += row.status_code == 200
                    batch.done_failed += row.status_code != 200
            if now >= end:
                self._write_files(batch, final)
                self.active.remove(batch)
        return now

    def _bill(self, batch: Batch, row: Row) -> None:
        if row.usage is not None:
            self.server.ledger.bill("batch", *row.usage)
            batch.usage = [total + part for total, part in zip(batch.usage, row.usage)]
        if row.status_code == 200 and row.chat is not None:
            self.server.cache.remember(row.chat.model, row.chat.messages)

    def _write_files(self, batch: Batch, final: str) -> None:
        output, errors = [], []
        for row in batch.rows:
            line = {"id": f"batch_req_{stable_hash(batch.id, row.custom_id):016x}", "custom_id": row.custom_id}
            if not batch.included(row, final):
                code, message = NOT_RUN[final]
                errors.append({**line, "response": None, "error": {"code": code, "message": message}})
            elif row.status_code == TIMED_OUT:
                code, message = TIMEOUT_ERROR
                errors.append({**line, "response": None, "error": {"code": code, "message": message}})
            else:
                response = {"status_code": row.status_code, "request_id": f"req_{stable_hash(line['id']):016x}",
                            "body": row.body}
                (output if row.status_code == 200 else errors).append({**line, "response": response, "error": None})
        files = self.server.files
        if output:
            batch.output_file_id = files.add(f"{batch.id}_output.jsonl", "batch_output", _jsonl(output)).id
        if errors:
            batch.error_file_id = files.add(f"{batch.id}_error.jsonl", "batch_output", _jsonl(errors)).id
        batch.written = True
        for row in batch.rows:  # they are in the files now: keep only what the counts need
            row.body, row.chat = None, None

    async def _schedule(self, requests: list[InputLine], settings: MockSettings) -> list[Row]:
        """Every row's outcome and times (from 0 = when it starts running), rows in the order they finish."""
        runs = []
        for line in requests:  # in the file's order
            runs.append(self._run_row(line.custom_id, line.body, settings))
            if len(runs) % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # a 50,000-row file takes seconds: let other requests through
        runs.sort(key=lambda run: stable_hash(settings.seed, "batch_order", run[0].custom_id))
        slots = [0.0] * min(settings.batch_concurrency, len(runs))
        for row, seconds in runs:
            row.start = heapq.heappop(slots)
            row.finish = row.start + seconds
            heapq.heappush(slots, row.finish)
        return sorted((row for row, _ in runs), key=lambda row: row.finish)  # stable: ties keep the run order

    def _run_row(self, custom_id: str, body: dict, settings: MockSettings) -> tuple[Row, float]:
        """A row's outcome as POST /v1/chat/completions would answer it, and how long it takes."""
        server = self.server
        chat = chat_request_from(body)
        quick = settings.ttft / settings.speed
        if isinstance(chat, web.Response):
            return Row(custom_id, 400, json.loads(chat.body), None, None), quick
        key = request_key(chat.model, chat.messages)
        attempt = server.attempts.get(key, 0)
        server.attempts[key] = attempt + 1
        faults = roll_faults(settings, key, attempt)
        if faults.error_status:
            return Row(custom_id, faults.error_status, server_error_body(faults.error_status), None, None), quick
        chat.cached_tokens = server.cache.cached_tokens(chat.model, chat.messages, chat.prompt_tokens)
        usage = (chat.prompt_tokens, chat.cached_tokens, len(chat.pieces))
        if faults.hang:
            return Row(custom_id, TIMED_OUT, None, usage, None), settings.hang_seconds
        common = {"id": f"chatcmpl-{stable_hash(key, attempt):016x}", "created": int(time.time()),
                  "model": chat.model, "system_fingerprint": "fp_mock"}
        answer = completion_body(common, chat.pieces, chat.finish_reason, chat.usage())
        seconds = rolled_seconds(settings, key, attempt, faults.tail, len(chat.pieces))
        return Row(custom_id, 200, answer, usage, chat), seconds

    # ------------------------------------------------------------ the handlers

    async def create(self, request: web.Request) -> web.Response:
        """POST /v1/batches: validate the request at once, the file while "validating"."""
        self.advance()
        try:
            body = json.loads(await request.read())
        except (ValueError, RecursionError):
            return _invalid("We could not parse the JSON body of your request. (HINT: send valid JSON.)")
        if not isinstance(body, dict):
            return _invalid("The body of your request must be a JSON object.")
        problem = self._request_problem(body)
        if problem:
            return problem
        batch = await self._new_batch(body)
        self.batches[batch.id] = batch
        self.active.append(batch)
        return web.json_response(batch.as_object(self.advance()))

    def _request_problem(self, body: dict) -> web.Response | None:
        """A 400 (or 404) for a batch request OpenAI would refuse at once, else None."""
        for name in ("input_file_id", "endpoint", "completion_window"):
            if name not in body:
                return _invalid(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")
        if body["endpoint"] != ENDPOINT:
            return _invalid(f"Invalid value for 'endpoint': {body['endpoint']!r}. The mock's batches serve "
                            f"only '{ENDPOINT}'.", "endpoint", "invalid_value")
        if body["completion_window"] != "24h":
            return _invalid(f"Invalid value for 'completion_window': {body['completion_window']!r}. "
                            "Supported values are: '24h'.", "completion_window", "invalid_value")
        metadata = body.get("metadata")
        if metadata is not None and not (isinstance(metadata, dict) and len(metadata) <= 16):
            return _invalid("Invalid 'metadata': expected an object of at most 16 pairs.", "metadata")
        stored = self.server.files.files.get(body["input_file_id"]) if isinstance(body["input_file_id"], str) else None
        if stored is None:
            return error_response(404, f"No such File object: {body['input_file_id']}", "invalid_request_error",
                                  param="input_file_id")
        if stored.purpose != "batch":
            return _invalid(f"The file {stored.id} has purpose {stored.purpose!r}; a batch needs a file "
                            "uploaded with purpose 'batch'.", "input_file_id")
        return None

    async def _new_batch(self, body: dict) -> Batch:
        """Validate the file and fix the schedule; validating lasts batch_validate_seconds / speed, or
        as long as working out the rows takes, if that is longer."""
        settings, created, wall = self.server.settings, time.monotonic(), time.time()
        found = read_input(self.server.files.files[body["input_file_id"]].data, settings.batch_max_requests)
        batch_id = f"batch_{stable_hash('batch', next(self._numbers)):016x}"
        rows = [] if found.errors else await self._schedule(found.requests, settings)
        validated = max(time.monotonic(), created + settings.batch_validate_seconds / settings.speed)
        for row in rows:
            row.start, row.finish = row.start + validated, row.finish + validated
        return Batch(batch_id, body["input_file_id"], found.model, body.get("metadata"), wall, created,
                     validated, settings.batch_finalize_seconds / settings.speed,
                     created + settings.batch_window_seconds, rows, found.errors)

    def _find(self, request: web.Request) -> Batch | web.Response:
        batch_id = request.match_info["batch_id"]
        if batch_id not in self.batches:
            return error_response(404, f"No batch found with id '{batch_id}'.", "invalid_request_error",
                                  param="batch_id")
        return self.batches[batch_id]

    async def retrieve(self, request: web.Request) -> web.Response:
        """GET /v1/batches/{id}."""
        now, batch = self.advance(), self._find(request)
        return batch if isinstance(batch, web.Response) else web.json_response(batch.as_object(now))

    async def cancel(self, request: web.Request) -> web.Response:
        """POST /v1/batches/{id}/cancel: validating or in progress -> cancelling; twice is harmless."""
        now, batch = self.advance(), self._find(request)
        if isinstance(batch, web.Response):
            return batch
        status = batch.status_at(now)
        if status in ("validating", "in_progress"):
            batch.cancel(now)  # still in self.active: it has not ended
        elif status != "cancelling":
            return error_response(409, f"Cannot cancel a batch with status '{status}'.", "invalid_request_error")
        return web.json_response(batch.as_object(now))

    async def list(self, request: web.Request) -> web.Response:
        """GET /v1/batches?limit=&after=: newest first, at most `limit` (1 to 100, default 20)."""
        now = self.advance()
        raw = request.query.get("limit", "20")
        if not raw.isdigit() or not 1 <= int(raw) <= 100:
            return _invalid(f"Invalid 'limit': {raw!r}; expected an integer from 1 to 100.", "limit")
        newest = list(reversed(self.batches.values()))
        after = request.query.get("after")
        if after is not None:
            ids = [batch.id for batch in newest]
            if after not in ids:
                return _invalid(f"Invalid 'after': no batch has the id {after!r}.", "after")
            newest = newest[ids.index(after) + 1:]
        page = newest[:int(raw)]
        data = [batch.as_object(now) for batch in page]
        return web.json_response({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                                  "last_id": data[-1]["id"] if data else None, "has_more": len(newest) > len(page)})


def _invalid(message: str, param: str | None = None, code: str | None = None) -> web.Response:
    return error_response(400, message, "invalid_request_error", code=code, param=param)


def _jsonl(lines: list[dict]) -> bytes:
    return b"".join(json.dumps(line, ensure_ascii=False).encode() + b"\n" for line in lines)
