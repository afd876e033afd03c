"""langasync 0.2.3 against the mock's Batch API: what works, and its four defects, measured.

These tests document the library as it is. Each defect test asserts the defective behaviour, so an
upgrade that fixes it fails here with a message saying so: then update lesson 07 and this file.
Always with explicit settings (`LangasyncSettings(_env_file=None, openai_base_url=..., ...)`): by default
langasync reads OPENAI_API_KEY and OPENAI_BASE_URL from the environment and ./.env, never from the
model, so it can reach the real API while the chain points at the mock. A socket-level guard fails
every connection that is not to 127.0.0.1, and langasync's job files go to a temporary folder.
"""

from __future__ import annotations

import asyncio
import json
import socket
from importlib.metadata import version

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_openai import ChatOpenAI

from langasync import BatchPoller, BatchStatus, LangasyncSettings, batch_chain
from langasync.exceptions import LangAsyncError
from langasync.providers.openai import OpenAIProviderJobAdapter

from helpers.mock import start_mock

QUICK_BATCHES = dict(speed=20.0, jitter=0.0, batch_validate_seconds=0.2, batch_finalize_seconds=0.2)
SLOW_ROWS = dict(QUICK_BATCHES, speed=1.0, ttft=0.1, batch_concurrency=1, batch_validate_seconds=0.05)
TEMPLATE = "翻译成英文：{text}"  # "Translate into English: {text}": the mock answers "Test<n>"
FIXED = "langasync {} seems to fix this ({}): update lesson 07 and this test"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def test_the_pinned_version_is_the_one_documented():
    assert version("langasync") == "0.2.3", "these tests document langasync 0.2.3; re-verify each defect"


# ---------------------------------------------------------------- the guard: nothing leaves loopback


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Fail (and record) every name lookup or connection to anything but 127.0.0.1."""
    refused: list[str] = []
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in LOOPBACK:
            refused.append(name)
            raise OSError(f"test guard: no connection may leave loopback (lookup of {host!r})")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self, address):
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            refused.append(str(address[0]))
            raise OSError(f"test guard: no connection may leave loopback ({address!r})")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LANGASYNC_BASE_STORAGE_PATH"):
        monkeypatch.delenv(name, raising=False)
    return refused


@pytest.fixture(scope="module")
def mock():
    handle = start_mock(**QUICK_BATCHES)
    yield handle
    handle.stop()


def chain_on(mock):
    llm = ChatOpenAI(model="gpt-4o-mini", base_url=mock.base_url, api_key="mock-key", temperature=0, max_retries=0)
    return ChatPromptTemplate.from_template(TEMPLATE) | llm | StrOutputParser()


def settings_for(mock, tmp_path) -> LangasyncSettings:
    """Every setting explicit, .env not read: the mock's URL and key, job files in tmp_path."""
    return LangasyncSettings(_env_file=None, openai_api_key="mock-key", openai_base_url=mock.base_url,
                             base_storage_path=str(tmp_path / "langasync_jobs"), batch_poll_interval=0.05)


def inputs(n: int) -> list[dict]:
    return [{"text": f"测试{i}"} for i in range(n)]


def run(coro):
    return asyncio.run(coro)


async def final_status(handle, timeout: float = 30.0) -> str:
    """Poll the batch (through langasync's own adapter) until it is final; its raw OpenAI status."""
    adapter = handle.batch_api_adapter
    for _ in range(int(timeout / 0.05)):
        response = await adapter._client.get(f"{adapter.base_url}/batches/{handle.job_id}")
        status = response.json()["status"]
        if status in ("completed", "failed", "expired", "cancelled"):
            return status
        await asyncio.sleep(0.05)
    raise TimeoutError(f"batch {handle.job_id} still {status} after {timeout} s")


async def raw_rows(handle) -> tuple[list[dict], list[dict]]:
    """The batch's output and error files' rows, read directly (not through langasync)."""
    adapter = handle.batch_api_adapter
    batch = (await adapter._client.get(f"{adapter.base_url}/batches/{handle.job_id}")).json()
    files = []
    for key in ("output_file_id", "error_file_id"):
        text = await adapter._download_file(batch[key]) if batch.get(key) else ""
        files.append([json.loads(line) for line in text.splitlines() if line.strip()])
    return files[0], files[1]


# ---------------------------------------------------------------- what works, and where its settings come from


def test_by_default_langasync_ignores_the_models_base_url_and_sends_the_key_elsewhere(mock, tmp_path, loopback_only):
    settings = LangasyncSettings(_env_file=None, base_storage_path=str(tmp_path / "jobs"))  # no URL given
    wrapper = batch_chain(chain_on(mock), settings)
    with pytest.raises(LangAsyncError):
        run(wrapper.submit(inputs(2)))
    # the chain's model points at the mock on 127.0.0.1, but langasync went for OpenAI's API...
    assert settings.openai_base_url == "https://api.openai.com/v1"
    assert loopback_only == ["api.openai.com"], loopback_only
    # ...carrying the key it copied from the model (the mock's key here; yours on a real run)
    assert settings.openai_api_key == "mock-key"


def test_with_explicit_settings_batch_chain_submit_and_batchpoller_work_on_loopback(mock, tmp_path, loopback_only):
    settings = settings_for(mock, tmp_path)

    async def go():
        handle = await batch_chain(chain_on(mock), settings).submit(inputs(6))
        return handle, [result async for result in BatchPoller(settings).wait_all()]

    with mock.temporarily(**QUICK_BATCHES):
        handle, results = run(go())
    assert [r.status_info.status for r in results] == [BatchStatus.COMPLETED]
    assert results[0].results == [f"Test{i}" for i in range(6)]
    assert loopback_only == []  # nothing tried to leave 127.0.0.1
    assert list((tmp_path / "langasync_jobs" / "batch_jobs").glob("*.json"))  # its job files stay in tmp_path


# ---------------------------------------------------------------- the four defects of 0.2.3


def test_defect_an_expired_batch_returns_no_results_though_its_finished_rows_are_billed(mock, tmp_path):
    settings = settings_for(mock, tmp_path)

    async def go():
        handle = await batch_chain(chain_on(mock), settings).submit(inputs(20))
        await final_status(handle)
        rows = await raw_rows(handle)
        try:
            return await handle.get_results(), rows
        except LangAsyncError as exc:  # an upgrade that reads the output but still chokes on its error rows
            pytest.fail(FIXED.format(version("langasync"), f"an expired batch is now read, but it raised {exc!r}"))

    with mock.temporarily(**SLOW_ROWS, batch_window_seconds=1.0):
        result, (output, errors) = run(go())
        billed = mock.stats()["billed"]["batch"]["requests"]
    assert 0 < len(output) < 20 and billed == len(output)  # finished rows: in the output file, and billed
    assert result.status_info.status == BatchStatus.EXPIRED
    assert result.results is None, FIXED.format(version("langasync"), "an expired batch now returns results")


def test_defect_cancel_returns_while_cancelling_so_the_partial_output_is_never_read(mock, tmp_path):
    settings = settings_for(mock, tmp_path)

    async def go():
        handle = await batch_chain(chain_on(mock), settings).submit(inputs(20))
        await asyncio.sleep(0.6)
        cancelled = await handle.cancel()
        adapter = handle.batch_api_adapter
        right_after = (await adapter._client.get(f"{adapter.base_url}/batches/{handle.job_id}")).json()["status"]
        after_cancel = await handle.get_results()
        polled = [r async for r in BatchPoller(settings).wait_all()]  # the job is marked finished: not polled
        status = await final_status(handle)
        return cancelled, right_after, after_cancel, polled, status, await raw_rows(handle)

    with mock.temporarily(**{**SLOW_ROWS, "batch_finalize_seconds": 1.0}):
        cancelled, right_after, after_cancel, polled, status, (output, _) = run(go())
        billed = mock.stats()["billed"]["batch"]["requests"]
    assert cancelled is True and status == "cancelled" and 0 < len(output) and billed == len(output)
    assert right_after == "cancelling", FIXED.format(version("langasync"), "cancel() now waits for 'cancelled'")
    assert after_cancel.results is None and polled == [], FIXED.format(
        version("langasync"), "a cancelled batch's partial output is now read")


def test_defect_a_missing_row_shifts_every_later_result_onto_the_wrong_input(mock, tmp_path, monkeypatch):
    settings = settings_for(mock, tmp_path)
    real_download = OpenAIProviderJobAdapter._download_file

    async def without_row_2(self, file_id):  # an output file missing one row, as the real service may send
        text = await real_download(self, file_id)
        return "\n".join(line for line in text.splitlines() if line.strip() and json.loads(line)["custom_id"] != "2")

    monkeypatch.setattr(OpenAIProviderJobAdapter, "_download_file", without_row_2)

    async def go():
        handle = await batch_chain(chain_on(mock), settings).submit(inputs(6))
        await final_status(handle)
        return await handle.get_results()

    with mock.temporarily(**QUICK_BATCHES):
        result = run(go())
    assert result.status_info.status == BatchStatus.COMPLETED
    assert result.results == ["Test0", "Test1", "Test3", "Test4", "Test5"], FIXED.format(
        version("langasync"), f"results no longer shift after a missing row: {result.results}")
    # results[i] is meant to be input i's: from input 2 on, each input gets the next input's answer
    assert [result.results[i] == f"Test{i}" for i in range(5)] == [True, True, False, False, False]


def test_defect_an_error_row_with_a_null_response_crashes_collection_of_the_whole_batch(mock, tmp_path):
    settings = settings_for(mock, tmp_path)

    async def go():
        handle = await batch_chain(chain_on(mock), settings).submit(inputs(20))
        status = await final_status(handle)
        rows = await raw_rows(handle)
        try:
            return status, rows, await handle.get_results()
        except LangAsyncError as exc:
            return status, rows, exc

    with mock.temporarily(**QUICK_BATCHES, hang_rate=0.2, hang_seconds=0.5, batch_concurrency=20):
        status, (output, errors), outcome = run(go())
    timed_out = [row for row in errors if row["response"] is None]
    assert status == "completed" and len(output) > 0 and timed_out  # request_timeout rows, "response": null
    assert {row["error"]["code"] for row in timed_out} == {"request_timeout"}
    assert isinstance(outcome, LangAsyncError), FIXED.format(
        version("langasync"), "a 'response': null row no longer crashes get_results")
    assert "'NoneType' object has no attribute 'get'" in str(outcome)  # none of the answered rows can be had
