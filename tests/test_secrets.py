"""The API key never shows up: not in printed output, logs, warnings, exception messages, reprs,
failure records or files.

The test sets a fake key that looks real (`sk-proj-...`), selects the openai backend pointing at
local servers, turns on DEBUG logging for openai, httpx and httpcore, and then produces as much
text as it can: successful calls, 429s and 500s from the mock, 401s from a server that rejects
every request (answering as OpenAI does, with the key masked but for its last four characters),
runner failure records, JSONL error records, streamed error events, tracebacks, reprs of the model
and the backend config. Everything is scanned for the key and for any 8 characters in a row of its
secret part. It also scans the committed notebooks for anything that looks like a key.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import socket
import threading
import traceback
import warnings
from pathlib import Path

import pytest
from aiohttp import web

from helpers.backend import get_llm, load_config, make_chain
from helpers.mock import start_mock
from helpers.reliability import RetryPolicy, TokenRateLimiter
from helpers.reports import describe_error
from helpers.runners import run_to_jsonl, run_tracked, stream_merged

REPO = Path(__file__).resolve().parent.parent
SECRET = "Zq8vJ3nW5tYbK1mD7xRc2LpF9sHa4GeU6oTi0BnMwXyEqVkCd"  # fake, but shaped like a real key
FAKE_KEY = f"sk-proj-{SECRET}"
LOGGERS = ("openai", "httpx", "httpx2", "httpcore", "httpcore2", "langchain", "langchain_openai", "helpers")


def leaks(text: str) -> list[str]:
    """Where the key, or 8 characters in a row of its secret part, occur in `text`."""
    found = [FAKE_KEY] if FAKE_KEY in text else []
    found += [SECRET[i:i + 8] for i in range(len(SECRET) - 7) if SECRET[i:i + 8] in text]
    return found


class RejectingServer:
    """Answers every request with OpenAI's 401 for a wrong key, on 127.0.0.1 in a thread of its own."""

    def __init__(self) -> None:
        self.seen_keys: list[str] = []
        self.port = 0

    async def reject(self, request: web.Request) -> web.Response:
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.seen_keys.append(key)
        masked = f"{key[:3]}{'*' * (len(key) - 7)}{key[-4:]}"  # OpenAI shows the last four characters
        body = {"error": {"message": f"Incorrect API key provided: {masked}. You can find your API key at "
                                     "https://platform.openai.com/account/api-keys.",
                          "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}
        return web.json_response(body, status=401)

    def __enter__(self) -> RejectingServer:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.reject)
        self.runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.SockSite(self.runner, sock).start())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def debug_logs():
    """Capture every record of the HTTP and SDK loggers at DEBUG (as OPENAI_LOG=debug would print them)."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    saved = {}
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    yield buffer
    for name in LOGGERS:
        logging.getLogger(name).removeHandler(handler)
        logging.getLogger(name).setLevel(saved[name])


def produce_text(base_url: str, mock, tmp_path: Path) -> list[str]:
    """Use the key against `base_url` in every way the workbook does; return all the text that came out."""
    texts: list[str] = []
    config = load_config()
    llm = get_llm(max_retries=1)  # the openai backend, as chosen by the environment
    texts += [repr(config), str(config), config.describe(), repr(llm), str(llm), llm.model_dump_json()]
    chain = make_chain("What is {a} + {b}?", llm)
    plain = make_chain("What is {a} + {b}?", get_llm(max_retries=0))
    streaming = make_chain("What is {a} + {b}?", get_llm(max_retries=0, streaming=True))
    inputs = [{"a": i, "b": 1} for i in range(30)] + [{"a": 1}]  # the last one misses a variable

    async def main() -> None:
        outputs = await chain.abatch(inputs, config={"max_concurrency": 10}, return_exceptions=True)
        for output in outputs:
            texts.append(str(output))
            if isinstance(output, Exception):
                texts.extend([repr(output), describe_error(output), repr(vars(output)),
                              "".join(traceback.format_exception(output))])
        report = await run_tracked(plain, inputs, max_concurrency=10, retry=RetryPolicy(max_attempts=2, base_delay=0.01),
                                   timeout=5.0, limiter=TokenRateLimiter(rpm=6000), progress=True)
        texts.extend([report.summary(), repr(report)] + [f"{f!r} {f}" for f in report.failures])
        summary = await run_to_jsonl(plain, inputs, tmp_path / "out.jsonl", max_concurrency=10, progress=False)
        texts.extend([summary.summary(), repr(summary), (tmp_path / "out.jsonl").read_text(encoding="utf-8")])
        async for event in stream_merged(streaming, inputs[:8], max_concurrency=4):
            texts.append(repr(event))
        if base_url == mock.base_url:  # which requests fail above depends on timing: make sure a 5xx is among them
            with mock.temporarily(reset=False, error_rate=1.0, rpm_limit=0):
                failed = await run_tracked(plain, inputs[:2], max_concurrency=2, progress=False)
            texts.extend(f"{f!r} {f}" for f in failed.failures)

    asyncio.run(main())
    return texts


@pytest.mark.timeout(60)
def test_the_key_never_appears(tmp_path, monkeypatch, capsys, debug_logs):
    mock = start_mock(speed=20, rpm_limit=600, error_rate=0.2)  # successes, 429s and 500s
    monkeypatch.setenv("WORKBOOK_BACKEND", "openai")
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    texts: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught, RejectingServer() as rejecting:
            warnings.simplefilter("always")
            for base_url in (mock.base_url, f"http://127.0.0.1:{rejecting.port}/v1"):
                monkeypatch.setenv("OPENAI_BASE_URL", base_url)
                texts += produce_text(base_url, mock, tmp_path)
            texts += [str(w.message) for w in caught]
        stats = mock.stats()
    finally:
        mock.stop()
    captured = capsys.readouterr()
    texts += [captured.out, captured.err, debug_logs.getvalue()]

    # The key really was used, and the run really produced errors of every kind worth scanning.
    assert rejecting.seen_keys and set(rejecting.seen_keys) == {FAKE_KEY}
    assert stats["ok"] and stats["rate_limited"] and stats["errors_injected"]
    everything = "\n".join(texts)
    for expected in ("Incorrect API key provided", "HTTP 401", "HTTP 429", "server error (HTTP 5", "missing variables",
                     "Backend: openai", "HTTP Request"):
        assert expected in everything, f"expected {expected!r} in the produced text"
    assert leaks(everything) == []


KEY_PATTERN = re.compile(r"sk-(proj-)?[A-Za-z0-9_-]{20,}")


def test_no_key_in_committed_notebooks():
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        text = path.read_text(encoding="utf-8")
        json.loads(text)  # a real notebook
        assert not KEY_PATTERN.search(text), f"{path.name} contains something that looks like an API key"
