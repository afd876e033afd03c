"""The results file in an untidy world: two writers, changed inputs, unwritable text, a full disk, power loss.

Each test is one row of the reliability issue's table; each was seen failing against the code before it.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from langchain_core.runnables import RunnableLambda

import helpers.results_file as results_file
from helpers.results_file import FORMAT_VERSION, InputMismatch, ResultsFile, ResultsFileBusy, read_jsonl_results
from helpers.runners import run_to_jsonl

REPO = Path(__file__).resolve().parent.parent


def echo_chain():
    """A chain with no model behind it: each input's answer is its text, upper-cased."""
    return RunnableLambda(lambda item: item["text"].upper())


def texts(n: int, start: int = 0) -> list[dict]:
    return [{"text": f"item {i}"} for i in range(start, start + n)]


def run(coro):
    return asyncio.run(coro)


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------- two writers on one file


def test_a_second_writer_is_refused_with_the_owners_pid(tmp_path):
    path = tmp_path / "out.jsonl"
    with ResultsFile(path):
        with pytest.raises(ResultsFileBusy, match=rf"out.jsonl' is being written by another run \(PID {os.getpid()}"):
            ResultsFile(path)
        with pytest.raises(ResultsFileBusy, match="another run"):  # run_to_jsonl says the same, before any request
            run(run_to_jsonl(echo_chain(), texts(3), path, max_concurrency=2, progress=False))
    assert not path.read_bytes()  # the refused run wrote nothing
    with ResultsFile(path):  # released on close
        pass


def test_the_lock_is_released_when_its_owner_is_killed(tmp_path):
    path = tmp_path / "out.jsonl"
    code = ("import sys, time; from helpers.results_file import ResultsFile; f = ResultsFile(sys.argv[1]); "
            "print('locked', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(ResultsFileBusy, match=f"PID {child.pid}"):
            ResultsFile(path)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with ResultsFile(path):  # the OS dropped the dead process's lock
        pass


# ---------------------------------------------------------------- resume with other inputs


def test_resume_with_reordered_inputs_is_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "out.jsonl"
    run(run_to_jsonl(echo_chain(), texts(4), path, max_concurrency=2, progress=False))
    before = path.read_bytes()
    reordered = texts(6)[::-1]
    with pytest.raises(InputMismatch, match="index 0 of a different input .* same inputs in the same order"):
        run(run_to_jsonl(echo_chain(), reordered, path, max_concurrency=1, progress=False))
    assert path.read_bytes() == before  # nothing written for the mismatching input, or after it
    assert [r["output"] for r in read_jsonl_results(path)] == ["ITEM 0", "ITEM 1", "ITEM 2", "ITEM 3"]


def test_resume_with_the_same_inputs_then_more_goes_on(tmp_path):
    path = tmp_path / "out.jsonl"
    run(run_to_jsonl(echo_chain(), texts(3), path, max_concurrency=2, progress=False))
    summary = run(run_to_jsonl(echo_chain(), texts(5), path, max_concurrency=2, progress=False))
    assert (summary.skipped, summary.written) == (3, 2)
    assert all(record["v"] == FORMAT_VERSION and len(record["input_sha"]) == 12 for record in lines_of(path))


def test_records_of_format_version_1_are_still_read_and_resumed(tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_text('{"index": 0, "output": "ITEM 0", "attempts": 1, "latency": 0.1}\n', encoding="utf-8")
    summary = run(run_to_jsonl(echo_chain(), texts(2), path, max_concurrency=2, progress=False))
    assert (summary.skipped, summary.written) == (1, 1)
    assert [r["output"] for r in read_jsonl_results(path)] == ["ITEM 0", "ITEM 1"]


def test_a_record_from_a_newer_format_is_a_clear_error(tmp_path):
    path = tmp_path / "new.jsonl"
    path.write_text(json.dumps({"v": FORMAT_VERSION + 1, "index": 0, "output": "x"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"format version {FORMAT_VERSION + 1}; this code reads up to"):
        read_jsonl_results(path)


# ---------------------------------------------------------------- output that cannot be written


def test_an_output_with_a_lone_surrogate_becomes_that_inputs_error(tmp_path):
    path = tmp_path / "out.jsonl"
    broken = RunnableLambda(lambda item: "bad \ud800 text" if item["text"] == "item 1" else item["text"].upper())
    summary = run(run_to_jsonl(broken, texts(3), path, max_concurrency=2, progress=False))
    assert (summary.ok, summary.failed) == (2, 1)
    record = read_jsonl_results(path)[1]
    assert record["error"]["type"] == "UnicodeEncodeError"
    assert "lone surrogate" in record["error"]["message"] and "retry_errors=True" in record["error"]["message"]
    again = run(run_to_jsonl(echo_chain(), texts(3), path, max_concurrency=2, progress=False, retry_errors=True))
    assert (again.skipped, again.written) == (2, 1)
    assert [r["output"] for r in read_jsonl_results(path)] == ["ITEM 0", "ITEM 1", "ITEM 2"]


# ---------------------------------------------------------------- a full disk


DISK_FULL_CHILD = """
import asyncio, resource, signal, sys
from langchain_core.runnables import RunnableLambda
from helpers.runners import run_to_jsonl
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write() instead of being killed
resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))  # files may not grow past 4,000 bytes
chain = RunnableLambda(lambda item: item["text"].upper())
try:
    asyncio.run(run_to_jsonl(chain, ({"text": f"item {i}"} for i in range(200)), sys.argv[1], max_concurrency=4,
                             progress=False))
except OSError as exc:
    print(type(exc).__name__, exc)
"""


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="needs RLIMIT_FSIZE (Linux, macOS)")
def test_a_full_disk_is_a_clear_error_and_nothing_is_lost(tmp_path):
    path = tmp_path / "out.jsonl"
    done = subprocess.run([sys.executable, "-c", DISK_FULL_CHILD, str(path)], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    message = done.stdout.strip()
    assert message.startswith("OSError [Errno 27] cannot write to"), (done.stdout, done.stderr)
    assert "out.jsonl" in message and "File too large" in message and "Nothing already written is lost" in message
    assert 3000 < path.stat().st_size <= 4000
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run(run_to_jsonl(echo_chain(), texts(200), path, max_concurrency=4, progress=False))
    kept = summary.skipped
    assert kept > 10 and summary.written == 200 - kept
    indices = [record["index"] for record in lines_of(path)]
    assert sorted(indices) == list(range(200))  # no loss, no duplicate
    assert len(caught) <= 1  # at most the torn line, repaired


# ---------------------------------------------------------------- power loss: the fsync policy


@pytest.mark.parametrize("options, expected", [({}, 1), ({"fsync_seconds": None}, 1),
                                               ({"fsync_every": 1}, 10), ({"fsync_every": 4}, 3),
                                               ({"fsync_seconds": 0}, 10)])
def test_the_fsync_policy_syncs_as_often_as_asked(tmp_path, monkeypatch, options, expected):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(results_file.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    run(run_to_jsonl(echo_chain(), texts(10), tmp_path / "out.jsonl", max_concurrency=2, progress=False, **options))
    assert len(synced) == expected  # every N records, and once at the end for what is left


@pytest.mark.parametrize("options, message", [({"fsync_every": 0}, "fsync_every must be a whole number"),
                                              ({"fsync_every": 2.5}, "fsync_every must be a whole number"),
                                              ({"fsync_seconds": -1}, "fsync_seconds must be a finite number"),
                                              ({"fsync_seconds": float("inf")}, "fsync_seconds must be a finite")])
def test_bad_fsync_settings_are_refused(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        run(run_to_jsonl(echo_chain(), texts(2), tmp_path / "out.jsonl", max_concurrency=2, progress=False, **options))


# ---------------------------------------------------------------- garbage in the middle of a file


def test_garbage_lines_give_one_warning_per_run_with_the_count(tmp_path):
    path = tmp_path / "out.jsonl"
    run(run_to_jsonl(echo_chain(), texts(3), path, max_concurrency=1, progress=False))
    good = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text(good[0] + "garbage\n" + good[1] + "[1, 2]\n" + "{\"index\": -1, \"output\": 1}\n" + good[2],
                    encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run(run_to_jsonl(echo_chain(), texts(3), path, max_concurrency=1, progress=False))
        records = read_jsonl_results(path)
    assert (summary.skipped, summary.written) == (3, 0) and len(records) == 3
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2, messages  # one for the run, one for the read: not one per line
    assert all("3 lines are not complete records (lines 2, 4, 5" in m for m in messages)


def test_overwrite_without_resume_false_is_a_contradiction_refused(tmp_path):
    path = tmp_path / "out.jsonl"
    run(run_to_jsonl(echo_chain(), texts(2), path, max_concurrency=2, progress=False))
    with pytest.raises(ValueError, match="overwrite=True erases the file, and resume=True"):
        run(run_to_jsonl(echo_chain(), texts(2), path, max_concurrency=2, progress=False, overwrite=True))
    assert len(lines_of(path)) == 2
