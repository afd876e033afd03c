"""Start the mock OpenAI server (server.py) in its own process and control it (backstage: a
learner calls ``get_mock`` and ``MockHandle``'s methods, but need not read how they work).

    from helpers.mock import get_mock
    mock = get_mock()                  # started once per Python process, stopped at exit
    mock.base_url                      # "http://127.0.0.1:PORT/v1", for ChatOpenAI(base_url=...)
    mock.configure(rpm_limit=500)      # change settings of the running server
    mock.stats()["rate_limited"]       # counters since the last reset
    mock.stats()["billed"]["batch"]    # what the mock billed per tier: default, flex, batch
    mock.reset()                       # forget attempts, refill rate limits, zero the stats
    async with record_stats(mock) as timeline:   # sample the counters over time (rates, 429s/s)
        ...

Why its own process: the notebook's event loop then measures only the client, as it would
against OpenAI, and the server's CPU does not slow the client down.

The server is started with ``--exit-with-parent``: its stdin is a pipe from this process, and
when this process exits, even when it is killed, the pipe closes and the server exits too.

Settings, later ones win: MockSettings defaults, MOCK_* lines in the repo's .env file, MOCK_*
environment variables, then the keyword arguments of ``start_mock``. Control calls use plain
urllib, so they work from sync code and from inside a running event loop alike.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from helpers.mock.settings import MockSettings

REPO = Path(__file__).resolve().parents[2]
READY_LINE = "Mock OpenAI server: "
START_TIMEOUT = 30.0  # seconds to wait for the ready line
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 never goes via a proxy


@dataclass
class MockHandle:
    """A running mock server: its address, and calls to change and inspect it."""

    process: subprocess.Popen | None  # None: a mock another process started (WORKBOOK_MOCK_URL)
    base_url: str  # "http://127.0.0.1:PORT/v1"
    log_path: Path | None  # the server's stderr

    @classmethod
    def attached(cls, base_url: str) -> MockHandle:
        """A handle on a mock that another process started and owns (it is never stopped from here)."""
        return cls(None, base_url, None)

    def __repr__(self) -> str:
        return f"MockHandle(base_url={self.base_url!r}, running={self.running()})"

    def running(self) -> bool:
        return self.process is None or self.process.poll() is None

    def configure(self, **changes: Any) -> MockSettings:
        """Change some settings (e.g. ttft=0.1, rpm_limit=500); returns all settings now in force."""
        unknown = sorted(set(changes) - set(MockSettings.names()))
        if unknown:
            raise ValueError(f"unknown mock setting(s) {unknown}; valid names: {', '.join(MockSettings.names())}")
        return MockSettings(**self._call("POST", "/mock/settings", changes))

    def settings(self) -> MockSettings:
        """The settings in force."""
        return MockSettings(**self._call("GET", "/mock/settings"))

    def reset(self) -> None:
        """Forget attempt counts, refill the rate-limit buckets and zero the stats."""
        self._call("POST", "/mock/reset", {})

    def stats(self) -> dict[str, Any]:
        """Counters since the last reset (requests, ok, rate_limited, errors_injected, peak_in_flight, ...),
        and "billed": the ledger, {"default"|"flex"|"batch": {requests, prompt_tokens, cached_tokens,
        completion_tokens}} (the billing rule: settings.py)."""
        return self._call("GET", "/mock/stats")

    @contextlib.contextmanager
    def temporarily(self, *, reset: bool = True, **changes: Any) -> Iterator[MockSettings]:
        """Change some settings for the length of a `with` block, then put back what was there.

            with mock.temporarily(error_rate=0.2, speed=20):
                ...                        # a fresh server state with these settings

        With reset=True (the default) attempts, buckets and stats are reset on entry and on exit,
        so a demo starts from a known state and leaves none behind. Yields the settings in force.
        """
        saved = self.settings()
        try:
            if reset:
                self.reset()
            yield self.configure(**changes)
        finally:
            if reset:
                self.reset()
            self.configure(**vars(saved))

    def stop(self) -> None:
        """Stop the server (closing its stdin makes it exit); safe to call twice."""
        atexit.unregister(self.stop)
        if self.process is None:  # attached: its owner stops it
            return
        if self.running():
            self.process.stdin.close()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()
        self.log_path.unlink(missing_ok=True)

    def _call(self, method: str, path: str, data: dict | None = None) -> Any:
        """One control request; a 400 answer (a bad setting) raises ValueError with the server's message."""
        body = json.dumps(data).encode() if data is not None else None
        url = self.base_url.removesuffix("/v1") + path
        request = urllib.request.Request(url, data=body, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with _NO_PROXY.open(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            if error.code == 400:
                raise ValueError(json.loads(error.read())["error"]["message"]) from None
            raise


def settings_from_env() -> MockSettings:
    """MockSettings from MOCK_* in the repo's .env file, overridden by MOCK_* environment variables."""
    values = {k: v for k, v in dotenv_values(REPO / ".env").items() if k.startswith("MOCK_") and v is not None}
    values.update({k: v for k, v in os.environ.items() if k.startswith("MOCK_")})
    return MockSettings.from_env(values)


def start_mock(**overrides: Any) -> MockHandle:
    """Start a mock server on a free port of 127.0.0.1 and wait until it answers."""
    settings = settings_from_env().updated(**overrides)  # bad names or values raise ValueError here
    flags = [arg for name, value in asdict(settings).items() for arg in (f"--{name.replace('_', '-')}", str(value))]
    log = tempfile.NamedTemporaryFile(prefix="mock_server_", suffix=".log", delete=False)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(
        [sys.executable, "-m", "helpers.mock", "--port", "0", "--exit-with-parent", *flags],
        cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
    log.close()
    line = _read_line(process.stdout, START_TIMEOUT)
    if not line.startswith(READY_LINE):
        process.kill()
        process.wait()
        stderr = Path(log.name).read_text(errors="replace")
        raise RuntimeError(f"the mock server did not start within {START_TIMEOUT:.0f} s "
                           f"(exit code {process.returncode}); its stderr:\n{stderr}")
    handle = MockHandle(process, line.removeprefix(READY_LINE).strip(), Path(log.name))
    atexit.register(handle.stop)
    return handle


_mock: MockHandle | None = None
_mock_lock = threading.Lock()


# Set in the worker processes (helpers.processes) and Ray workers (helpers.ray_jobs) of a job: they
# send their requests to the mock of the process that started them, not to one of their own.
SHARED_MOCK_ENV = "WORKBOOK_MOCK_URL"


def get_mock() -> MockHandle:
    """The process-wide mock server, started on first use (and again if it has died).

    In a worker whose environment holds WORKBOOK_MOCK_URL, a handle on that mock instead."""
    global _mock
    with _mock_lock:
        if _mock is None or not _mock.running():
            shared = os.environ.get(SHARED_MOCK_ENV)
            _mock = MockHandle.attached(shared) if shared else start_mock()
        return _mock


def shared_environment() -> dict[str, str]:
    """The environment a worker process needs to use this process's mock (started if need be)."""
    return {SHARED_MOCK_ENV: get_mock().base_url}


def _read_line(stream: Any, timeout: float) -> str:
    """The first line of `stream`, or "" if none comes within `timeout` seconds (or it closes)."""
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0].decode() if lines else ""


@dataclass
class StatsTimeline:
    """The mock's counters sampled over time: at `times[i]` seconds after the start, `samples[i]` = stats()."""

    times: list[float]
    samples: list[dict[str, int]]

    def counts(self, counter: str) -> list[int]:
        """One counter's value at each sample time, e.g. "requests" or "rate_limited"."""
        return [sample[counter] for sample in self.samples]

    def rates(self, counter: str) -> tuple[list[float], list[float]]:
        """(midpoint times, per-second rate) of one counter between consecutive samples, e.g. "requests"."""
        points = list(zip(self.times, self.samples))
        mids, rates = [], []
        for (t0, s0), (t1, s1) in zip(points, points[1:]):
            if t1 > t0:
                mids.append((t0 + t1) / 2)
                rates.append((s1[counter] - s0[counter]) / (t1 - t0))
        return mids, rates


class record_stats:
    """Sample `handle.stats()` every `every` seconds while the block runs: the server's own view.

        async with record_stats(mock) as timeline:
            await chain.abatch(...)
        timeline.rates("requests")   # requests that reached the server per second, over time

    A thread of its own takes the samples, so they stay on time however busy the event loop is.
    Counters are cumulative; call `mock.reset()` before the block so they start at 0.
    """

    def __init__(self, handle: MockHandle, every: float = 0.1) -> None:
        self.handle, self.every = handle, every
        self.timeline = StatsTimeline([], [])
        self._stop = threading.Event()

    def _sample(self) -> None:
        stats = self.handle.stats()
        self.timeline.times.append(time.perf_counter() - self._start)
        self.timeline.samples.append(stats)

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    async def __aenter__(self) -> StatsTimeline:
        self._start = time.perf_counter()
        self._sample()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)
        self._thread.start()
        return self.timeline

    async def __aexit__(self, *exc_info: Any) -> None:
        self._stop.set()
        await asyncio.to_thread(self._thread.join)
        self._sample()
