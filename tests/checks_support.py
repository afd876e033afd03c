"""What the tests of the exercise checks share: one event loop, as in a notebook, and a fast mock.

Not collected itself (no test_ prefix); tests/test_checks_lessonNN.py import from it.
"""

import asyncio

import pytest

from helpers.backend import get_llm, translation_chain
from helpers.mock import get_mock

LOOP = asyncio.new_event_loop()  # one loop for all, as in a notebook (ChatOpenAI caches its client)


def run(coro):
    return LOOP.run_until_complete(coro)


@pytest.fixture(scope="module", autouse=True)
def fast_mock():
    mock = get_mock()
    mock.reset()
    mock.configure(speed=20, error_rate=0.0, hang_rate=0.0, drop_rate=0.0, rpm_limit=0, tpm_limit=0)
    yield mock


@pytest.fixture(scope="module")
def chain():
    return translation_chain(get_llm(backend="mock"))
