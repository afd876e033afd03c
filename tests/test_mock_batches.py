"""Tests for the mock's Batch API (helpers/mock/files.py, batches.py, batch_input.py), through the openai SDK.

Every status path (completed, failed validation, expired with partial output, cancelled with partial
output), the two shapes of error rows, rows out of order, the limits, duplicate custom_ids and the
paging of GET /v1/batches. One mock serves the module; each test starts from FAST settings and a reset.
Waits poll with a deadline (a hang fails, a slow machine only waits longer): no test asserts a duration.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict

import httpx
import openai
import pytest

from helpers.mock import MockSettings, reply_for, start_mock

MODEL = "gpt-4o-mini"
FAST = asdict(MockSettings(speed=1000.0, jitter=0.0, batch_validate_seconds=0.0, batch_finalize_seconds=0.0))
ENDED = ("completed", "failed", "expired", "cancelled")


@pytest.fixture(scope="module")
def mock():
    handle = start_mock(**FAST)
    yield handle
    handle.stop()


@pytest.fixture(autouse=True)
def fresh(mock):
    mock.configure(**FAST)
    mock.reset()


@pytest.fixture
def client(mock):
    return openai.OpenAI(base_url=mock.base_url, api_key="mock", max_retries=0)


def line(custom_id: str, text: str, **body) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": MODEL, "messages": [{"role": "user", "content": text}], **body}}


def upload(client, lines: list) -> str:
    """Upload a JSONL file (dicts as JSON, strings as they are) and return its id."""
    text = "\n".join(item if isinstance(item, str) else json.dumps(item, ensure_ascii=False) for item in lines)
    return client.files.create(file=("batch.jsonl", text.encode()), purpose="batch").id


def submit(client, lines: list):
    return client.batches.create(input_file_id=upload(client, lines), endpoint="/v1/chat/completions",
                                 completion_window="24h")


def wait_until(client, batch_id: str, done, timeout: float = 30.0) -> tuple[object, list[tuple[str, int, int]]]:
    """Poll until done(batch); returns it and every (status, completed, failed) seen on the way."""
    seen: list[tuple[str, int, int]] = []
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        state = (batch.status, batch.request_counts.completed, batch.request_counts.failed)
        if not seen or seen[-1] != state:
            seen.append(state)
        if done(batch):
            return batch, seen
        assert time.monotonic() < deadline, f"batch {batch_id} still {batch.status} after {timeout} s: {seen}"
        time.sleep(0.01)


def wait_until_ended(client, batch_id: str):
    return wait_until(client, batch_id, lambda batch: batch.status in ENDED)


def rows(client, file_id: str | None) -> list[dict]:
    return [] if file_id is None else [json.loads(text) for text in client.files.content(file_id).text.splitlines()]


def live_messages(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def questions(n: int) -> list[dict]:
    return [line(f"q{i}", f"计算 {i} + {i}") for i in range(n)]


def test_a_batch_goes_validating_in_progress_finalizing_completed_and_its_counts_move(mock, client):
    mock.configure(speed=1.0, ttft=0.15, tokens_per_second=1e6, batch_concurrency=2,
                   batch_validate_seconds=0.2, batch_finalize_seconds=0.2)
    batch = submit(client, questions(6))
    assert batch.status == "validating" and batch.request_counts.total == 6 and batch.output_file_id is None
    batch, seen = wait_until_ended(client, batch.id)
    statuses = [status for status, _, _ in seen]
    assert [s for i, s in enumerate(statuses) if s not in statuses[:i]] == [
        "validating", "in_progress", "finalizing", "completed"], seen
    completed_counts = [done for _, done, _ in seen]
    assert completed_counts == sorted(completed_counts) and len(set(completed_counts)) >= 3, seen
    assert (batch.request_counts.completed, batch.request_counts.failed) == (6, 0)
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at and batch.error_file_id is None
    out = rows(client, batch.output_file_id)
    assert sorted(row["custom_id"] for row in out) == sorted(f"q{i}" for i in range(6))
    for row in out:
        i = int(row["custom_id"][1:])
        assert row["error"] is None and row["response"]["status_code"] == 200
        assert row["response"]["body"]["choices"][0]["message"]["content"] == f"{i} + {i} = {2 * i}"


def test_rows_come_out_of_order_but_the_same_every_time(mock, client):
    def run_once() -> list[tuple[str, str, dict]]:
        mock.reset()
        batch, _ = wait_until_ended(client, submit(client, questions(12)).id)
        return [(row["custom_id"], row["response"]["body"]["choices"][0]["message"]["content"],
                 row["response"]["body"]["usage"]) for row in rows(client, batch.output_file_id)]
    first, second = run_once(), run_once()
    assert first == second
    order = [custom_id for custom_id, _, _ in first]
    assert sorted(order) == sorted(f"q{i}" for i in range(12)) and order != [f"q{i}" for i in range(12)]


def test_a_row_answers_as_the_chat_endpoint_does(mock, client):
    text = "Tell me about batch jobs."
    batch, _ = wait_until_ended(client, submit(client, [line("only", text, max_tokens=5)]).id)
    body = rows(client, batch.output_file_id)[0]["response"]["body"]
    live = client.chat.completions.create(model=MODEL, messages=live_messages(text), max_tokens=5)
    content = body["choices"][0]["message"]["content"]
    assert content == live.choices[0].message.content and reply_for(MODEL, live_messages(text)).startswith(content)
    assert body["usage"] == live.usage.model_dump(exclude_none=True) and body["choices"][0]["finish_reason"] == "length"
    assert batch.usage.input_tokens == live.usage.prompt_tokens and batch.usage.output_tokens == 5


@pytest.mark.parametrize("lines, code, at_line", [
    ([line("a", "1 + 1"), "this is not json", line("b", "2 + 2")], "invalid_json_line", 2),
    ([line("a", "1 + 1"), line("a", "2 + 2")], "duplicate_custom_id", 2),
    ([line("a", "1 + 1"), {**line("b", "2 + 2"), "url": "/v1/embeddings"}], "url_mismatch", 2),
    ([line("a", "1 + 1"), line("b", "2 + 2", model="gpt-4o")], "model_mismatch", 2),
    ([{**line("a", "1 + 1"), "custom_id": ""}], "missing_required_parameter", 1),
    (["", "  "], "empty_file", None),
])
def test_an_invalid_file_fails_the_batch_with_errors(mock, client, lines, code, at_line):
    mock.configure(batch_validate_seconds=20.0)  # 20 ms at speed 1000: first seen while validating
    batch = submit(client, lines)
    assert batch.status == "validating"
    batch, _ = wait_until_ended(client, batch.id)
    assert batch.status == "failed" and batch.failed_at and batch.in_progress_at is None
    assert [(error.code, error.line) for error in batch.errors.data] == [(code, at_line)]
    assert batch.output_file_id is None and batch.error_file_id is None and batch.request_counts.total == 0
    assert mock.stats()["billed"]["batch"]["requests"] == 0


def test_the_request_limit_fails_the_batch_and_the_size_limit_refuses_the_upload(mock, client):
    mock.configure(batch_max_requests=3)
    batch, _ = wait_until_ended(client, submit(client, questions(4)).id)
    assert batch.status == "failed" and [e.code for e in batch.errors.data] == ["too_many_tasks"]
    assert "4 requests" in batch.errors.data[0].message and "limit is 3" in batch.errors.data[0].message
    assert wait_until_ended(client, submit(client, questions(3)).id)[0].status == "completed"
    mock.configure(batch_max_bytes=300)
    with pytest.raises(openai.BadRequestError, match="File is too large"):
        upload(client, questions(3))
    assert upload(client, questions(1))  # 150-odd bytes: still fine


def test_settings_cannot_lift_openais_limits(mock):
    for name, too_big in (("batch_max_requests", 50_001), ("batch_max_bytes", 209_715_201),
                          ("batch_window_seconds", 86_401)):
        with pytest.raises(ValueError, match=name):
            mock.configure(**{name: too_big})


def test_bad_batch_requests_are_refused_at_once(client):
    file_id = upload(client, questions(1))
    with pytest.raises(openai.BadRequestError, match="completion_window"):
        client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="48h")
    with pytest.raises(openai.BadRequestError, match="endpoint"):
        client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h")
    with pytest.raises(openai.NotFoundError, match="file-nope"):
        client.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")
    other = client.files.create(file=("notes.jsonl", b"{}"), purpose="user_data").id
    with pytest.raises(openai.BadRequestError, match="purpose 'batch'"):
        client.batches.create(input_file_id=other, endpoint="/v1/chat/completions", completion_window="24h")
    with pytest.raises(openai.BadRequestError, match="purpose"):
        client.files.create(file=("x.jsonl", b"{}"), purpose="nonsense")
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")


def test_an_expired_batch_keeps_the_rows_it_finished_and_bills_only_them(mock, client):
    mock.configure(speed=1.0, ttft=0.3, tokens_per_second=1e6, batch_concurrency=1, batch_window_seconds=1.0)
    batch, _ = wait_until_ended(client, submit(client, questions(6)).id)
    assert batch.status == "expired" and batch.expired_at and batch.completed_at is None
    done, cut = rows(client, batch.output_file_id), rows(client, batch.error_file_id)
    assert len(done) == 3 and len(cut) == 3  # rows end at 0.3, 0.6, 0.9 s: the schedule is fixed at creation
    assert sorted(row["custom_id"] for row in done + cut) == sorted(f"q{i}" for i in range(6))
    assert all(row["response"] is None and row["error"]["code"] == "batch_expired" for row in cut)
    assert (batch.request_counts.completed, batch.request_counts.failed) == (len(done), len(cut))
    billed = mock.stats()["billed"]["batch"]
    assert billed["requests"] == len(done)
    assert billed["completion_tokens"] == sum(row["response"]["body"]["usage"]["completion_tokens"] for row in done)


def test_a_cancelled_batch_goes_through_cancelling_and_keeps_its_partial_output(mock, client):
    mock.configure(speed=1.0, ttft=0.2, tokens_per_second=1e6, batch_concurrency=2, batch_finalize_seconds=0.3)
    batch = submit(client, questions(20))
    wait_until(client, batch.id, lambda b: b.request_counts.completed >= 2)
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at and cancelling.output_file_id is None
    assert client.batches.cancel(batch.id).status == "cancelling"  # a second cancel is harmless
    batch, seen = wait_until_ended(client, batch.id)
    assert batch.status == "cancelled" and seen[0][0] == "cancelling" and batch.cancelled_at
    done, cut = rows(client, batch.output_file_id), rows(client, batch.error_file_id)
    assert 2 <= len(done) < 20 and len(done) + len(cut) == 20
    assert sorted(row["custom_id"] for row in done + cut) == sorted(f"q{i}" for i in range(20))
    assert all(row["response"] is None and row["error"]["code"] == "batch_cancelled" for row in cut)
    assert mock.stats()["billed"]["batch"]["requests"] == len(done)
    with pytest.raises(openai.ConflictError, match="cancelled"):
        client.batches.cancel(batch.id)


def test_http_error_rows_carry_a_status_code_and_a_body(mock, client):
    mock.configure(error_rate=1.0)
    lines = [*questions(3), line("empty", "x") | {"body": {"model": MODEL, "messages": []}}]
    batch, _ = wait_until_ended(client, submit(client, lines).id)
    assert batch.status == "completed" and batch.output_file_id is None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (0, 4)
    errors = {row["custom_id"]: row for row in rows(client, batch.error_file_id)}
    assert errors["empty"]["response"]["status_code"] == 400 and errors["empty"]["error"] is None
    assert errors["empty"]["response"]["body"]["error"]["param"] == "messages"
    for custom_id in ("q0", "q1", "q2"):
        response = errors[custom_id]["response"]
        assert response["status_code"] in (500, 503) and response["body"]["error"]["type"] == "server_error"
    assert mock.stats()["billed"]["batch"]["requests"] == 0


def test_a_row_that_hangs_times_out_with_a_null_response_and_is_billed(mock, client):
    mock.configure(hang_rate=1.0, hang_seconds=0.05)
    batch, _ = wait_until_ended(client, submit(client, questions(2)).id)
    errors = rows(client, batch.error_file_id)
    assert [(row["response"], row["error"]["code"]) for row in errors] == [(None, "request_timeout")] * 2
    assert mock.stats()["billed"]["batch"]["requests"] == 2


def test_a_failed_row_resubmitted_rolls_its_next_attempt(mock, client):
    mock.configure(error_rate=0.5)
    first, _ = wait_until_ended(client, submit(client, questions(10)).id)
    failed = [row["custom_id"] for row in rows(client, first.error_file_id)]
    assert 0 < len(failed) < 10
    again, _ = wait_until_ended(client, submit(client, [q for q in questions(10) if q["custom_id"] in failed]).id)
    assert len(rows(client, again.output_file_id)) > 0


def test_listing_batches_pages_newest_first(mock, client):
    ids = [submit(client, questions(1)).id for _ in range(5)]
    page = client.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2] and page.has_more
    every = [b.id for b in client.batches.list(limit=2)]  # the SDK pages on with after=<last id>
    assert every[:5] == ids[::-1] and len(every) == len(set(every)) == len(client.batches.list(limit=100).data)
    last = client.batches.list(limit=2, after=ids[1])
    assert [b.id for b in last.data][:1] == [ids[0]]
    raw = httpx.get(mock.base_url + "/batches", params={"limit": 0})
    assert raw.status_code == 400 and raw.json()["error"]["param"] == "limit"
    assert httpx.get(mock.base_url + "/batches", params={"after": "batch_nope"}).status_code == 400


def test_files_can_be_read_back_and_deleted(client):
    text = json.dumps(line("a", "1 + 1"))
    file_id = client.files.create(file=("mine.jsonl", text.encode()), purpose="batch").id
    info = client.files.retrieve(file_id)
    assert (info.filename, info.purpose, info.bytes) == ("mine.jsonl", "batch", len(text.encode()))
    assert client.files.content(file_id).text == text
    assert file_id in [f.id for f in client.files.list(purpose="batch")]
    assert file_id not in [f.id for f in client.files.list(purpose="batch_output")]
    assert client.files.delete(file_id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(file_id)


def test_an_upload_that_is_not_multipart_gets_a_json_400(mock):
    response = httpx.post(mock.base_url + "/files", json={"purpose": "batch"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "file"
