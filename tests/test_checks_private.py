"""Every exercise check runs on a private mock even when .env selects a real backend.

The tests that feed each check its notebook's solution run again, in a fresh process whose settings
point at a second OpenAI-compatible server (tests/other_server.py): the checks must pass there too,
and that server must see no request at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from other_server import OtherServer

TESTS = Path(__file__).resolve().parent


@pytest.mark.timeout(600)
def test_no_check_sends_a_request_to_the_real_backend():
    server = OtherServer().start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WORKBOOK_", "OPENAI_", "MOCK_"))}
        env.update(WORKBOOK_BACKEND="openai", OPENAI_BASE_URL=server.url, OPENAI_API_KEY="sk-other-server")
        files = sorted(str(p) for p in TESTS.glob("test_checks_lesson*.py"))
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "accept",
                               *files], env=env, cwd=TESTS.parent, capture_output=True, text=True)
    finally:
        server.stop()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "deselected" in done.stdout
    assert server.counts.requests == 0, f"the checks sent {server.counts.requests} requests to the real backend"
