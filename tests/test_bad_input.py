"""Bad input to the robust runners, against the mock: each case gets a clear error naming the problem,
at the right moment, and nothing hangs.

| bad input                                        | expected                                                   |
| ------------------------------------------------ | ---------------------------------------------------------- |
| a missing prompt variable in some items          | only those items fail (KeyError, 1 attempt, no request)   |
| None or a non-mapping item                       | ValueError naming the item (a list: before any request)   |
| empty input                                      | an empty result, at once                                   |
| concurrency / rate / timeout 0, < 0, not a number | ValueError when called, before any request                |
| unwritable or unreadable JSONL path              | ValueError saying what is wrong with the path              |
| truncated last line in a resume file             | a warning; the line is cut and its input redone            |
| a prompt longer than the token bucket            | that item fails with a clear error; no deadlock            |
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import warnings

import pytest
from langchain_openai import ChatOpenAI

from helpers.backend import make_chain
from helpers.mock import start_mock
from helpers.reliability import RetryPolicy, TokenRateLimiter
from helpers.runners import read_jsonl_results, run_to_jsonl, run_tracked, stream_merged

pytestmark = pytest.mark.timeout(60)  # "nothing hangs"
TEMPLATE = "What is {a} + {b}?"
# One event loop for the module, as in a notebook: ChatOpenAI shares a cached HTTP client per
# base_url, and that client's connections belong to the loop that opened them.
LOOP = asyncio.new_event_loop()
run = LOOP.run_until_complete


@pytest.fixture(scope="module")
def mock():
    handle = start_mock(speed=20)
    yield handle
    handle.stop()
    LOOP.close()


@pytest.fixture
def chain(mock):
    mock.reset()
    llm = ChatOpenAI(model="gpt-4o-mini", base_url=mock.base_url, api_key="mock-key", max_retries=0, stream_usage=True)
    return make_chain(TEMPLATE, llm)


def sums(n: int) -> list[dict[str, int]]:
    return [{"a": i, "b": 1} for i in range(n)]


def answer(i: int) -> str:
    return f"{i} + 1 = {i + 1}"


# ------------------------------------------------------------------ a missing prompt variable


def test_missing_variable_fails_only_those_items(chain, mock, tmp_path):
    inputs = sums(6)
    inputs[2] = {"a": 2}  # no "b"
    inputs[4] = {"a": 4, "bb": 1}  # a typo
    retry = RetryPolicy(base_delay=0.01)
    report = run(run_tracked(chain, inputs, max_concurrency=3, retry=retry, progress=False))
    assert report.results == [answer(0), answer(1), None, answer(3), None, answer(5)]
    assert [(f.index, f.error_type, f.attempts) for f in report.failures] == [(2, "KeyError", 1), (4, "KeyError", 1)]
    assert all("missing variables {'b'}" in f.message for f in report.failures)
    assert mock.stats()["requests"] == 4  # the bad items never reached the model

    path = tmp_path / "missing.jsonl"
    summary = run(run_to_jsonl(chain, inputs, path, max_concurrency=3, retry=retry, progress=False))
    assert (summary.ok, summary.failed) == (4, 2)
    errors = {r["index"]: r for r in read_jsonl_results(path) if "error" in r}
    assert sorted(errors) == [2, 4] and errors[4]["error"]["type"] == "KeyError" and errors[4]["attempts"] == 1


# ------------------------------------------------------------------ None or a non-mapping item


@pytest.mark.parametrize("bad", [None, "1 + 1", 42, ["a", "b"]])
def test_none_or_non_mapping_item_in_a_list_is_refused_up_front(chain, mock, bad, tmp_path):
    inputs = sums(3) + [bad]
    what = "None" if bad is None else f"a {type(bad).__name__}"
    message = rf"input 3 is {what}, but the chain's prompt expects a mapping like \{{'a': ..., 'b': ...\}}"
    with pytest.raises(ValueError, match=message):
        run(run_tracked(chain, inputs, max_concurrency=2, progress=False))
    with pytest.raises(ValueError, match=message):
        run(run_to_jsonl(chain, inputs, tmp_path / "x.jsonl", max_concurrency=2, progress=False))
    with pytest.raises(ValueError, match=message):
        stream_merged(chain, inputs, max_concurrency=2)
    assert mock.stats()["requests"] == 0


def test_none_item_from_a_generator_becomes_that_items_failure(chain):
    inputs = (item for item in [*sums(2), None, *sums(2)])
    report = run(run_tracked(chain, inputs, max_concurrency=2, progress=False))
    assert report.results == [answer(0), answer(1), None, answer(0), answer(1)]
    (failure,) = report.failures
    assert (failure.index, failure.error_type, failure.attempts) == (2, "ValueError", 0)
    assert "input 2 is None" in failure.message


# ------------------------------------------------------------------ empty input


def test_empty_input_gives_an_empty_result_at_once(chain, mock, tmp_path):
    report = run(run_tracked(chain, [], max_concurrency=5, progress=False))
    summary = run(run_to_jsonl(chain, iter([]), tmp_path / "empty.jsonl", max_concurrency=5, progress=False))

    async def collect():
        return [event async for event in stream_merged(chain, [], max_concurrency=5)]

    assert (report.results, report.failures) == ([], [])
    assert (summary.written, summary.ok, summary.failed) == (0, 0, 0)
    assert run(collect()) == []
    assert mock.stats()["requests"] == 0


# ------------------------------------------------------------------ bad numbers


BAD_NUMBERS = [0, -1, -0.5, "10", None, True, float("nan"), float("inf")]


@pytest.mark.parametrize("bad", BAD_NUMBERS)
def test_bad_concurrency_raises_value_error_before_any_request(chain, mock, bad, tmp_path):
    with pytest.raises(ValueError, match="max_concurrency must be a positive int"):
        run(run_tracked(chain, sums(2), max_concurrency=bad))
    with pytest.raises(ValueError, match="max_concurrency must be a positive int"):
        run(run_to_jsonl(chain, sums(2), tmp_path / "x.jsonl", max_concurrency=bad))
    with pytest.raises(ValueError, match="max_concurrency must be a positive int"):
        stream_merged(chain, sums(2), max_concurrency=bad)
    assert mock.stats()["requests"] == 0


@pytest.mark.parametrize("bad", [b for b in BAD_NUMBERS if b is not None])  # timeout=None means "no timeout"
def test_bad_timeout_raises_value_error_before_any_request(chain, mock, bad, tmp_path):
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
        run(run_tracked(chain, sums(2), max_concurrency=2, timeout=bad))
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
        run(run_to_jsonl(chain, sums(2), tmp_path / "x.jsonl", max_concurrency=2, timeout=bad))
    assert mock.stats()["requests"] == 0


@pytest.mark.parametrize("bad", [b for b in BAD_NUMBERS if b is not None])
@pytest.mark.parametrize("name", ["rpm", "tpm", "window_seconds"])
def test_bad_rate_raises_value_error(name, bad):
    kwargs = {"rpm": 500, "tpm": 200_000, name: bad}
    with pytest.raises(ValueError, match=f"{name} must be a positive number"):
        TokenRateLimiter(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be an int >= 1"),
        ({"max_attempts": 2.5}, "max_attempts must be an int >= 1"),
        ({"base_delay": -1}, "base_delay must be a number of seconds >= 0"),
        ({"base_delay": math.nan}, "base_delay must be a number of seconds >= 0"),
        ({"max_delay": "20"}, "max_delay must be a number of seconds >= 0"),
    ],
)
def test_bad_retry_policy_raises_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)


# ------------------------------------------------------------------ unwritable or unreadable paths


def test_unusable_jsonl_paths_raise_clear_errors(chain, mock, tmp_path):
    def run_on(path):
        return run(run_to_jsonl(chain, sums(2), path, max_concurrency=2, progress=False))

    with pytest.raises(ValueError, match="does not exist; create it first"):
        run_on(tmp_path / "no such folder" / "out.jsonl")
    with pytest.raises(ValueError, match="is a directory"):
        run_on(tmp_path)
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)  # reading it to resume would block forever
    with pytest.raises(ValueError, match="is not a regular file"):
        run_on(fifo)
    with pytest.raises(ValueError, match="path must be a file path"):
        run_on(3.14)
    assert mock.stats()["requests"] == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes anyway; see the test below")
def test_permission_denied_for_real(chain, tmp_path):
    unreadable = tmp_path / "unreadable.jsonl"
    unreadable.write_text('{"index": 0, "output": "x"}\n')
    unreadable.chmod(0o200)  # write-only
    with pytest.raises(ValueError, match="cannot read .* to resume from it"):
        run(run_to_jsonl(chain, sums(2), unreadable, max_concurrency=2, progress=False))
    unwritable = tmp_path / "unwritable.jsonl"
    unwritable.write_text("")
    unwritable.chmod(0o400)  # read-only
    with pytest.raises(ValueError, match="permission denied"):
        run(run_to_jsonl(chain, sums(2), unwritable, max_concurrency=2, progress=False))


def test_permission_denied_as_the_os_would_say_it(chain, mock, tmp_path, monkeypatch):
    """Root may read and write any file, so here the OS's refusal is simulated at `open`."""
    import builtins

    import helpers.results_file as results_file

    path = tmp_path / "locked.jsonl"
    path.write_text('{"index": 0, "output": "0 + 1 = 1"}\n')
    real_open = builtins.open

    def refusing_open(file, mode="r", *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(results_file, "open", refusing_open, raising=False)  # the module's name lookup finds it first
    with pytest.raises(ValueError, match=r"cannot read .*locked.jsonl.* to resume from it: Permission denied"):
        run(run_to_jsonl(chain, sums(2), path, max_concurrency=2, progress=False))
    with pytest.raises(ValueError, match=r"cannot open .*locked.jsonl.* for writing: Permission denied"):
        run(run_to_jsonl(chain, sums(2), path, max_concurrency=2, resume=False, overwrite=True, progress=False))
    assert mock.stats()["requests"] == 0


# ------------------------------------------------------------------ a truncated resume file


def test_truncated_last_line_is_skipped_with_a_warning_then_redone(chain, mock, tmp_path):
    path = tmp_path / "cut.jsonl"
    done = "".join(json.dumps({"index": i, "output": answer(i)}) + "\n" for i in range(4))
    path.write_text(done + '{"index": 4, "output": "4 + 1 =', encoding="utf-8")  # the crash cut this line
    with pytest.warns(UserWarning, match=r"cut.jsonl line 5 is not a complete record .* cut from the file"):
        summary = run(run_to_jsonl(chain, sums(7), path, max_concurrency=3, progress=False))
    assert (summary.skipped, summary.written, summary.ok) == (4, 3, 3)
    assert mock.stats()["requests"] == 3  # inputs 4, 5 and 6
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the file is clean again: no warning on reading it
        records = read_jsonl_results(path)
    assert [r["output"] for r in records] == [answer(i) for i in range(7)]


# ------------------------------------------------------------------ a prompt too long for the token bucket


def test_prompt_longer_than_the_tpm_limit_fails_clearly_without_deadlock(chain, mock):
    limiter = TokenRateLimiter(rpm=6000, tpm=60_000, max_tokens=50, prompt=chain.first)
    inputs = sums(10)
    inputs[3] = {"a": "9" * 300_000, "b": 1}  # about 75,000 tokens: more than a whole minute allows
    report = run(run_tracked(chain, inputs, max_concurrency=4, limiter=limiter,
                                     retry=RetryPolicy(base_delay=0.01), progress=False))
    assert report.ok == 9
    (failure,) = report.failures
    assert (failure.index, failure.error_type, failure.attempts) == (3, "ValueError", 1)
    assert "could never be sent" in failure.message and "tpm=60000" in failure.message
    assert mock.stats()["requests"] == 9
