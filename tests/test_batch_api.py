"""The workbook's Batch API workflow (helpers/batch_api.py) against the mock's Batch API, through the openai SDK.

Every status path ends with exactly one result or one error per input: completed, failed validation,
expired and cancelled with partial output, missing rows, error rows of both shapes. A job resumes from
its job file after a kill between submit and collect, and a job over the request limit is split.
Usage totals are compared with the mock's own billing ledger, not with numbers the client summed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx2
import openai
import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_openai import ChatOpenAI

from helpers import batch_api
from helpers.batch_api import (BatchJob, BatchLimits, PollBackoff, batch_rows, cancel_job, client_for, collect_job,
                               run_batch_job, split_rows, submit_job, wait_for_job)
from helpers.mock import start_mock
from helpers.results_file import InputMismatch, read_jsonl_results
from helpers.runners import run_to_jsonl

REPO = Path(__file__).resolve().parent.parent
FAST = PollBackoff(first=0.02, factor=1.5, longest=0.2, give_up_after=60)
QUICK_BATCHES = dict(speed=20.0, jitter=0.0, batch_validate_seconds=0.2, batch_finalize_seconds=0.2)
TEMPLATE = "翻译成英文：{text}"  # "Translate into English: {text}": the mock answers "Test<n>"


@pytest.fixture(scope="module")
def mock():
    handle = start_mock(**QUICK_BATCHES)
    yield handle
    handle.stop()


def chain_on(mock, **model_settings):
    """The seed's chain on `mock`, with an HTTP client of its own: langchain-openai caches its default
    client per (base_url, timeout), which breaks once a test's asyncio.run has closed its loop."""
    model_settings.setdefault("http_async_client", httpx2.AsyncClient())
    llm = ChatOpenAI(model="gpt-4o-mini", base_url=mock.base_url, api_key="mock-key", temperature=0,
                     timeout=30, max_retries=0, **model_settings)
    return ChatPromptTemplate.from_template(TEMPLATE) | llm | StrOutputParser()


def inputs(n: int) -> list[dict]:
    return [{"text": f"测试{i}"} for i in range(n)]


def run(coro):
    return asyncio.run(coro)


def one_per_input(outcomes, n):
    """Each input exactly once, in order, each with an output or an error and never both."""
    assert [o.index for o in outcomes] == list(range(n))
    for outcome in outcomes:
        assert (outcome.output is None) != (outcome.error is None), outcome


async def submit_and_wait(chain, items, job_file, **options):
    job = await submit_job(chain, items, job_file, **options)
    batches = await wait_for_job(client_for(chain), job, FAST)
    return job, batches, await collect_job(client_for(chain), job, chain, items)


# ---------------------------------------------------------------- the requests in the file


def test_rows_are_the_requests_the_chain_itself_sends(mock):
    sent = []

    async def record(request):
        sent.append(json.loads(request.content))

    async def go():
        client = httpx2.AsyncClient(event_hooks={"request": [record]})
        chain = chain_on(mock, http_async_client=client, max_tokens=40)
        chain = chain.steps[0] | chain.steps[1].bind(stop=["\n"]) | chain.steps[2]
        await chain.ainvoke({"text": "测试5"})
        await client.aclose()
        return batch_rows(chain, [{"text": "测试5"}])

    rows = run(go())
    live = {k: v for k, v in sent[0].items() if k not in ("stream", "stream_options")}
    assert rows[0]["body"] == live
    assert rows[0]["body"]["stop"] == ["\n"] and rows[0]["body"]["max_completion_tokens"] == 40
    assert rows[0]["url"] == "/v1/chat/completions" and rows[0]["custom_id"].startswith("0-")


def test_split_rows_by_count_and_by_bytes():
    lines = [b"x" * 10 + b"\n"] * 7
    assert split_rows(lines, BatchLimits(max_requests=3)) == [range(0, 3), range(3, 6), range(6, 7)]
    assert split_rows(lines, BatchLimits(max_bytes=25)) == [range(0, 2), range(2, 4), range(4, 6), range(6, 7)]
    with pytest.raises(ValueError, match="input 1's request is 31 bytes"):
        split_rows([b"short\n", b"y" * 30 + b"\n"], BatchLimits(max_bytes=20))


# ---------------------------------------------------------------- each status path: one result or error per input


def test_a_completed_batch_gives_every_input_its_answer_in_run_to_jsonl_format(mock, tmp_path):
    items = inputs(12)
    with mock.temporarily(**QUICK_BATCHES, batch_concurrency=4):
        summary = run(run_batch_job(chain_on(mock), items, tmp_path / "job.json", tmp_path / "out.jsonl",
                                    backoff=FAST))
        billed = mock.stats()["billed"]["batch"]
    records = read_jsonl_results(tmp_path / "out.jsonl")
    assert [r["output"] for r in records] == [f"Test{i}" for i in range(12)]
    assert (summary.ok, summary.failed, list(summary.statuses.values())) == (12, 0, ["completed"])
    # the same record format as run_to_jsonl's
    run(run_to_jsonl(chain_on(mock), items[:1], tmp_path / "live.jsonl", max_concurrency=1, progress=False))
    live = read_jsonl_results(tmp_path / "live.jsonl")[0]
    assert set(records[0]) == set(live) - {"failed_usage"}
    assert (records[0]["v"], records[0]["input_sha"]) == (live["v"], live["input_sha"])
    # usage: the rows' totals equal what the server billed, and it is priced at batch prices
    total = summary.usage.total()
    assert (total.prompt_tokens, total.cached_tokens, total.completion_tokens, total.calls) == (
        billed["prompt_tokens"], billed["cached_tokens"], billed["completion_tokens"], billed["requests"])
    assert total.tier == "batch" and total.model == "gpt-4o-mini" and summary.cost is not None and summary.cost > 0


def test_rows_in_any_order_are_mapped_by_custom_id(mock, tmp_path, monkeypatch):
    items = inputs(8)
    chain = chain_on(mock)
    real_content = openai.resources.files.AsyncFiles.content

    async def reversed_content(self, file_id, **kwargs):
        response = await real_content(self, file_id, **kwargs)
        lines = response.text.splitlines()
        return type("Reversed", (), {"text": "\n".join(reversed(lines))})()

    monkeypatch.setattr(openai.resources.files.AsyncFiles, "content", reversed_content)
    with mock.temporarily(**QUICK_BATCHES):
        _, _, outcomes = run(submit_and_wait(chain, items, tmp_path / "job.json"))
    one_per_input(outcomes, 8)
    assert [o.output for o in outcomes] == [f"Test{i}" for i in range(8)]


def test_error_rows_of_both_shapes_are_errors_of_their_own_inputs(mock, tmp_path):
    items = inputs(30)
    with mock.temporarily(**QUICK_BATCHES, error_rate=0.25, hang_rate=0.2, hang_seconds=0.5, batch_concurrency=30):
        _, batches, outcomes = run(submit_and_wait(chain_on(mock), items, tmp_path / "job.json"))
        billed = mock.stats()["billed"]["batch"]
    one_per_input(outcomes, 30)
    kinds = {o.error[0] for o in outcomes if o.error}
    timed_out = [o for o in outcomes if o.error and o.error[0] == "request_timeout"]
    answered = [o for o in outcomes if o.error is None]
    # a timed-out row ran and is billed, but reports no usage: the client counts it as a failed attempt
    assert all(o.attempts == 1 and o.usage.failed.unreported == 1 for o in timed_out)
    assert billed["requests"] == len(answered) + len(timed_out)
    assert billed["prompt_tokens"] > sum(o.usage.answer.prompt_tokens for o in answered)
    assert {"HTTP 500", "HTTP 503"} & kinds, kinds  # HTTP-error rows: response.status_code and a body
    assert "request_timeout" in kinds, kinds  # rows with "response": null and an error code
    assert all(o.output == f"Test{o.index}" for o in outcomes if o.error is None)
    assert list(b.status for b in batches.values()) == ["completed"]


def test_a_batch_that_fails_validation_gives_each_input_the_reason(mock, tmp_path):
    with mock.temporarily(**QUICK_BATCHES, batch_max_requests=3):
        _, batches, outcomes = run(submit_and_wait(chain_on(mock), inputs(5), tmp_path / "job.json"))
    one_per_input(outcomes, 5)
    assert [b.status for b in batches.values()] == ["failed"]
    assert {o.error[0] for o in outcomes} == {"BatchFailed"}
    assert "failed validation" in outcomes[0].error[1] and "3" in outcomes[0].error[1]


def test_an_expired_batch_keeps_its_finished_rows_and_they_are_what_was_billed(mock, tmp_path):
    items = inputs(20)
    slow_rows = dict(QUICK_BATCHES, speed=1.0, ttft=0.1, batch_concurrency=1, batch_validate_seconds=0.05)
    with mock.temporarily(**slow_rows, batch_window_seconds=1.0):
        _, batches, outcomes = run(submit_and_wait(chain_on(mock), items, tmp_path / "job.json"))
        billed = mock.stats()["billed"]["batch"]
    one_per_input(outcomes, 20)
    done = [o for o in outcomes if o.error is None]
    assert [b.status for b in batches.values()] == ["expired"]
    assert 0 < len(done) < 20 and all(o.output == f"Test{o.index}" for o in done)
    assert {o.error[0] for o in outcomes if o.error} == {"batch_expired"}
    assert all(o.attempts == 0 and not o.usage.total for o in outcomes if o.error)  # never ran, never billed
    assert billed["requests"] == len(done)  # the finished rows were billed, and each is kept


def test_a_cancelled_batch_keeps_its_finished_rows(mock, tmp_path):
    items = inputs(20)
    chain = chain_on(mock)
    slow_rows = dict(QUICK_BATCHES, speed=1.0, ttft=0.1, batch_concurrency=1, batch_validate_seconds=0.05,
                     batch_finalize_seconds=0.5)

    async def go():
        job = await submit_job(chain, items, tmp_path / "job.json")
        await asyncio.sleep(0.6)
        batches = await cancel_job(client_for(chain), job, FAST)
        return batches, await collect_job(client_for(chain), job, chain, items)

    with mock.temporarily(**slow_rows):
        batches, outcomes = run(go())
        billed = mock.stats()["billed"]["batch"]
    one_per_input(outcomes, 20)
    done = [o for o in outcomes if o.error is None]
    assert [b.status for b in batches.values()] == ["cancelled"]  # cancel_job waited through "cancelling"
    assert 0 < len(done) < 20 and billed["requests"] == len(done)
    assert all(o.output == f"Test{o.index}" for o in done)


def test_a_row_missing_from_both_files_becomes_an_error_naming_it(mock, tmp_path, monkeypatch):
    items = inputs(6)
    real_content = openai.resources.files.AsyncFiles.content

    async def without_row_2(self, file_id, **kwargs):
        response = await real_content(self, file_id, **kwargs)
        kept = [line for line in response.text.splitlines() if not line.startswith('{"') or
                json.loads(line)["custom_id"].split("-")[0] != "2"]
        return type("Cut", (), {"text": "\n".join(kept)})()

    monkeypatch.setattr(openai.resources.files.AsyncFiles, "content", without_row_2)
    with mock.temporarily(**QUICK_BATCHES):
        job, _, outcomes = run(submit_and_wait(chain_on(mock), items, tmp_path / "job.json"))
    one_per_input(outcomes, 6)
    assert outcomes[2].error[0] == "BatchRowMissing" and f"2-" in outcomes[2].error[1]
    assert job.parts[0].batch_id in outcomes[2].error[1]
    assert [o.output for i, o in enumerate(outcomes) if i != 2] == [f"Test{i}" for i in (0, 1, 3, 4, 5)]


# ---------------------------------------------------------------- resume, and splitting


KILLED_AFTER_SUBMIT = """
import asyncio, os, signal, sys
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_openai import ChatOpenAI
from helpers.batch_api import submit_job
llm = ChatOpenAI(model="gpt-4o-mini", base_url=sys.argv[1], api_key="mock-key", temperature=0, max_retries=0)
chain = ChatPromptTemplate.from_template({template!r}) | llm | StrOutputParser()
asyncio.run(submit_job(chain, [{{"text": f"测试{{i}}"}} for i in range(10)], sys.argv[2]))
os.kill(os.getpid(), signal.SIGKILL)  # the kernel dies between submit and collect
"""


async def list_batches(client):
    return await client.batches.list(limit=100)


def test_a_job_resumes_from_its_job_file_after_a_kill_between_submit_and_collect(mock, tmp_path):
    job_file = tmp_path / "job.json"
    script = KILLED_AFTER_SUBMIT.format(template=TEMPLATE)
    with mock.temporarily(**QUICK_BATCHES):
        before = {b.id for b in run(list_batches(client_for(chain_on(mock)))).data}
        killed = subprocess.run([sys.executable, "-c", script, mock.base_url, str(job_file)], cwd=REPO,
                                capture_output=True, text=True, timeout=60)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        saved = json.loads(job_file.read_text())
        assert set(saved) == {"format", "input_count", "inputs_sha", "parts"} and saved["input_count"] == 10
        summary = run(run_batch_job(chain_on(mock), inputs(10), job_file, tmp_path / "out.jsonl", backoff=FAST))
        listed = run(list_batches(client_for(chain_on(mock))))
    assert {b.id for b in listed.data} - before == {saved["parts"][0]["batch_id"]}  # nothing submitted twice
    assert (summary.ok, summary.failed) == (10, 0)
    assert [r["output"] for r in read_jsonl_results(tmp_path / "out.jsonl")] == [f"Test{i}" for i in range(10)]


def test_a_job_over_the_request_limit_is_split_into_batches_that_fit(mock, tmp_path):
    with mock.temporarily(**QUICK_BATCHES, batch_max_requests=5):
        summary = run(run_batch_job(chain_on(mock), inputs(12), tmp_path / "job.json", tmp_path / "out.jsonl",
                                    limits=BatchLimits(max_requests=5), backoff=FAST))
    job = BatchJob.load(tmp_path / "job.json")
    assert [(p.first, p.count) for p in job.parts] == [(0, 5), (5, 5), (10, 2)]
    assert list(summary.statuses.values()) == ["completed"] * 3 and (summary.ok, summary.failed) == (12, 0)
    assert [r["output"] for r in read_jsonl_results(tmp_path / "out.jsonl")] == [f"Test{i}" for i in range(12)]


# ---------------------------------------------------------------- bad input: a clear error, never a hang


def test_bad_input_gets_a_clear_error(mock, tmp_path):
    chain = chain_on(mock)
    with pytest.raises(ValueError, match="inputs is empty"):
        run(submit_job(chain, [], tmp_path / "job.json"))
    with pytest.raises(ValueError, match="has 2 models"):
        batch_rows(chain | chain.steps[1], [{"text": "a"}])
    with pytest.raises(ValueError, match="no ChatOpenAI model"):
        batch_rows(RunnableLambda(lambda x: x), [1])
    with pytest.raises(ValueError, match="input 1 .* cannot be turned into a request"):
        batch_rows(chain, [{"text": "a"}, {"txt": "b"}])
    with pytest.raises(ValueError, match="PollBackoff first must be a finite number above 0"):
        PollBackoff(first=0)
    with pytest.raises(ValueError, match="BatchLimits max_requests must be a finite number above 0"):
        BatchLimits(max_requests=0)
    with pytest.raises(ValueError, match="is a directory"):
        run(submit_job(chain_on(mock), inputs(1), tmp_path))
    (tmp_path / "other.json").write_text('{"some": "json"}')
    with pytest.raises(ValueError, match="not a batch job file"):
        BatchJob.load(tmp_path / "other.json")
    with mock.temporarily(**{**QUICK_BATCHES, "batch_validate_seconds": 30}):
        job = run(submit_job(chain_on(mock), inputs(3), tmp_path / "job.json"))
        with pytest.raises(ValueError, match="is validating, not finished: await wait_for_job"):
            chain = chain_on(mock)
            run(collect_job(client_for(chain), job, chain, inputs(3)))
        with pytest.raises(InputMismatch, match="job for 3 other inputs"):
            run(submit_job(chain_on(mock), inputs(4), tmp_path / "job.json"))
        with pytest.raises(TimeoutError, match="still running"):
            run(wait_for_job(client_for(chain_on(mock)), job, PollBackoff(first=0.05, give_up_after=0.2)))


def test_a_split_job_killed_between_its_batches_submits_only_the_rest(mock, tmp_path):
    job_file, limits = tmp_path / "job.json", BatchLimits(max_requests=4)
    with mock.temporarily(**QUICK_BATCHES):
        first = run(submit_job(chain_on(mock), inputs(10), job_file, limits=limits))
        saved = json.loads(job_file.read_text())
        saved["parts"] = saved["parts"][:1]  # the job file as a kill after the first batch left it
        job_file.write_text(json.dumps(saved))
        summary = run(run_batch_job(chain_on(mock), inputs(10), job_file, tmp_path / "out.jsonl",
                                    limits=limits, backoff=FAST))
    resumed = BatchJob.load(job_file)
    assert resumed.parts[0] == first.parts[0] and resumed.parts[1:] != first.parts[1:]
    assert [(p.first, p.count) for p in resumed.parts] == [(0, 4), (4, 4), (8, 2)]
    assert (summary.ok, summary.failed) == (10, 0)
    assert [r["output"] for r in read_jsonl_results(tmp_path / "out.jsonl")] == [f"Test{i}" for i in range(10)]
