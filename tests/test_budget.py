"""The request budget, and the backend switch's handling of what a real user passes.

On a real backend (here: the independent server of tests/other_server.py, or a private mock posing
as one) every attempt counts before it is sent, and the request over budget is never sent.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from helpers import budget
from helpers.backend import get_llm, lesson_mock, load_config, mock_demo, routed_to, translation_chain
from helpers.claims import claim
from helpers.mock import start_mock
from helpers.runners import run_tracked
from other_server import OtherServer

run = asyncio.new_event_loop().run_until_complete  # one loop, as in a notebook (ChatOpenAI caches its client)


@pytest.fixture(scope="module")
def other():
    server = OtherServer().start()
    yield server
    server.stop()


@pytest.fixture
def real_backend(monkeypatch, other, tmp_path):
    """.env selecting a real backend (the other server), with a budget of 3 and a fresh counter."""
    monkeypatch.setenv("WORKBOOK_BACKEND", "openai")
    monkeypatch.setenv("OPENAI_BASE_URL", other.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("WORKBOOK_MAX_REQUESTS", "3")
    monkeypatch.delenv(budget.LEDGER_VARIABLE, raising=False)
    return other


def test_over_budget_the_request_is_not_sent(real_backend):
    llm = get_llm(max_retries=0)
    start = real_backend.counts.requests
    for _ in range(3):
        run(llm.ainvoke("hello"))
    assert real_backend.counts.requests == start + 3
    with pytest.raises(budget.RequestBudgetExceeded, match=r"3 of its WORKBOOK_MAX_REQUESTS=3 .*\.env"):
        run(llm.ainvoke("hello"))
    with pytest.raises(budget.RequestBudgetExceeded):
        llm.invoke("hello")  # the sync client counts too
    assert real_backend.counts.requests == start + 3, "a request over budget reached the server"
    assert budget.used()["requests"] == 3 and budget.used()["tokens"] > 0


def test_a_runner_records_the_refusals_and_keeps_every_input(real_backend):
    chain = translation_chain(get_llm(max_retries=0))
    report = run(run_tracked(chain, [{"text": f"t{i}"} for i in range(5)], max_concurrency=1,
                                     progress=False))
    assert report.ok == 3 and len(report.failures) == 2
    assert [f.error_type for f in report.failures] == ["RequestBudgetExceeded"] * 2
    assert [f.attempts for f in report.failures] == [1, 1]  # not retried: retrying cannot help


def test_retries_count_as_requests(monkeypatch, tmp_path):
    failing = start_mock(error_rate=1.0, speed=20)  # posing as a real server that always answers 500
    try:
        monkeypatch.setenv("WORKBOOK_BACKEND", "openai")
        monkeypatch.setenv("OPENAI_BASE_URL", failing.base_url)
        monkeypatch.setenv("WORKBOOK_MAX_REQUESTS", "10")
        monkeypatch.delenv(budget.LEDGER_VARIABLE, raising=False)
        llm = get_llm(max_retries=2)
        with pytest.raises(Exception):
            run(llm.ainvoke("hello"))
        assert budget.used()["requests"] == 3 == failing.stats()["requests"]
    finally:
        failing.stop()


def test_an_estimate_over_budget_stops_the_cell_before_anything_is_sent(real_backend, capsys):
    start = real_backend.counts.requests
    budget.expect(2, tokens_each=30, what="the small run")
    assert "about 2 requests and 60 tokens" in capsys.readouterr().out
    with pytest.raises(budget.RequestBudgetExceeded, match="about 4 requests, but only 3 .*nothing was sent"):
        budget.expect(4, tokens_each=30, what="the sweep")
    assert real_backend.counts.requests == start


def test_the_estimate_prices_the_model_or_says_it_cannot(real_backend, monkeypatch, capsys):
    monkeypatch.setenv("WORKBOOK_MODEL", "gpt-4o-mini")
    budget.expect(2, tokens_each=500_000, what="a big job")  # 1M tokens at $0.60 per 1M output tokens
    assert "1,000,000 tokens, up to $0.600000" in capsys.readouterr().out
    monkeypatch.setenv("WORKBOOK_MODEL", "llama3")
    budget.expect(2, tokens_each=30)
    assert "price unknown (no price for model 'llama3'" in capsys.readouterr().out


def test_a_child_process_counts_against_the_same_budget(real_backend):
    assert budget.used()["requests"] == 0
    code = "from helpers import budget; budget._update(requests=2)"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert budget.used()["requests"] == 2


def test_on_the_mock_nothing_is_counted_or_printed(monkeypatch, capsys):
    monkeypatch.setenv("WORKBOOK_BACKEND", "mock")
    budget.expect(10_000, tokens_each=100)
    assert capsys.readouterr().out == ""
    assert budget.lesson_size(200, 20) == 200
    assert type(get_llm().root_async_client).__name__ == "AsyncOpenAI"


def test_sizes_and_claims_on_a_real_backend(real_backend, capsys):
    assert budget.lesson_size(200, 20) == 20
    claim("the mock's own number", False)  # would raise on the mock: here it reports
    assert "does not hold on this backend" in capsys.readouterr().out


def test_demos_say_they_run_on_the_mock_and_leave_it_alone_until_then(real_backend, capsys):
    assert lesson_mock(speed=7) is None
    mock = mock_demo("the mock's fault injection")
    assert capsys.readouterr().out == "This demo needs the mock's fault injection: it runs on the local mock.\n"
    assert mock.settings().speed == 7  # the lesson's settings reach the demo's mock
    assert get_llm(backend="mock").openai_api_base == mock.base_url


def test_checks_route_the_learners_get_llm_to_their_mock(real_backend):
    private = start_mock()
    try:
        with routed_to(private):
            assert get_llm(streaming=True).openai_api_base == private.base_url
        assert get_llm().openai_api_base == real_backend.url
    finally:
        private.stop()


def test_model_name_is_honoured_and_server_settings_are_refused(monkeypatch):
    monkeypatch.setenv("WORKBOOK_BACKEND", "mock")
    assert get_llm(model_name="gpt-4.1-nano").model_name == "gpt-4.1-nano"
    with pytest.raises(ValueError, match="model='a' and model_name='b'"):
        get_llm("a", model_name="b")
    with pytest.raises(ValueError, match="does not take base_url.*OPENAI_BASE_URL"):
        get_llm(base_url="http://elsewhere/v1")


@pytest.mark.parametrize("value", ["0", "-5", "lots", "1.5"])
def test_a_bad_budget_setting_names_itself(monkeypatch, value):
    monkeypatch.setenv("WORKBOOK_MAX_REQUESTS", value)
    with pytest.raises(ValueError, match="WORKBOOK_MAX_REQUESTS must be a positive whole number"):
        load_config()


@pytest.mark.parametrize("item, named", [({"text": b"\xe6\xb5\x8b"}, "input 1's 'text' is bytes"),
                                         (b"hello", "input 1 is bytes")])
def test_bytes_inputs_get_a_clear_error_before_anything_is_sent(monkeypatch, item, named):
    monkeypatch.setenv("WORKBOOK_BACKEND", "mock")
    chain = translation_chain(get_llm())
    with pytest.raises(ValueError, match=named + r".*decode"):
        run(run_tracked(chain, [{"text": "ok"}, item], max_concurrency=2, progress=False))


def _spend_forever() -> None:
    from helpers import budget as child_budget
    while True:
        child_budget._update(requests=1, tokens=3)


def test_a_process_killed_while_counting_never_corrupts_the_counter(real_backend, monkeypatch):
    import os
    import signal
    import time

    from helpers.bench.measure import prepare_fresh_processes, start_in_fresh_process

    monkeypatch.setenv("WORKBOOK_MAX_REQUESTS", "100000000")
    prepare_fresh_processes()  # the fork server starts before the counter exists, as in lesson 04
    for _ in range(5):
        child = start_in_fresh_process(_spend_forever)
        deadline = time.time() + 10
        while budget.used()["requests"] == 0 and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        counts = budget.used()  # readable, and whole: tokens are always 3 per request
        assert counts["requests"] > 0, "the child's requests did not reach this kernel's counter"
        assert counts["tokens"] == 3 * counts["requests"]
