"""The mock OpenAI API (backstage: a learner need not read this package to follow the lessons)."""
from helpers.mock.control import MockHandle, StatsTimeline, get_mock, record_stats, start_mock  # noqa: F401
from helpers.mock.server import (  # noqa: F401
    MockSettings,
    count_prompt_tokens,
    count_tokens,
    reply_for,
    request_key,
    roll,
    split_into_pieces,
)
