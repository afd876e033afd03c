"""The mock OpenAI API: a fake model behind real HTTP, in a process of its own.

Backstage: a learner need not read this to follow the lessons, but every effect the notebooks
show is in here: settings.py lists them all.

| module      | what it holds                                                                     |
| ----------- | --------------------------------------------------------------------------------- |
| settings.py | MockSettings: every setting, its default and its effect (one table)               |
| replies.py  | the answers and token counts: reply_for, count_tokens, split_into_pieces, ...     |
| server.py   | the HTTP server: the chat endpoint step by step, streaming, /mock/* control       |
| limits.py   | the rate limits: one token bucket per per-minute limit (RateLimiter)              |
| faults.py   | the fault rolls (request_key, roll, roll_faults) and an answer's timing           |
| billing.py  | the billing ledger (stats()["billed"]), the prompt cache, the usage body          |
| files.py    | the Files API: /v1/files upload, retrieve, content, delete                        |
| batches.py  | the Batch API: /v1/batches lifecycle, rows, expiry, cancel, output/error files    |
| batch_input.py | a batch input file checked line by line (the errors that fail a batch)         |
| wire.py     | OpenAI's wire format: error bodies, the chat.completion body, the stream's events |
| control.py  | get_mock, start_mock, MockHandle (configure, stats, temporarily), record_stats    |
| __main__.py | ``python -m helpers.mock --port 8000 --rpm-limit 500`` runs the server by hand     |

    from helpers.mock import get_mock
    mock = get_mock()                          # started once per Python process
    ChatOpenAI(base_url=mock.base_url, api_key="mock", ...)
"""

from helpers.mock.control import MockHandle, StatsTimeline, get_mock, record_stats, shared_environment, start_mock
from helpers.mock.replies import count_prompt_tokens, count_tokens, reply_for, split_into_pieces
from helpers.mock.server import request_key, roll
from helpers.mock.settings import MockSettings

__all__ = [
    "MockHandle",
    "MockSettings",
    "StatsTimeline",
    "count_prompt_tokens",
    "count_tokens",
    "get_mock",
    "shared_environment",
    "record_stats",
    "reply_for",
    "request_key",
    "roll",
    "split_into_pieces",
    "start_mock",
]
