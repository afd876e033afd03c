"""Record when each model call starts, gets its first token, and ends, without changing the chain.

A learner reads this: lessons 01-03 use it to measure each request.

`RequestTimer` is a LangChain callback handler. Pass it in the config of any
`invoke` / `batch` / `abatch` / `astream` call and it notes, for every chat-model
run, the start time, the first streamed token (if streaming) and the end time:

    timer = RequestTimer()
    await chain.abatch(inputs, config={"max_concurrency": 10, "callbacks": [timer]})
    timer.latencies()      # seconds, one per request
    timer.intervals()      # (start, end) pairs, seconds since the first start

It works for `abatch`, whose own result carries no per-request timing.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler


class RequestTimer(BaseCallbackHandler):
    """Collects (start, first token, end, ok) for every chat-model call it sees."""

    run_inline = True  # call us directly on the event loop, no thread hop

    def __init__(self) -> None:
        self._start: dict[UUID, float] = {}
        self._first_token: dict[UUID, float] = {}
        self.records: list[tuple[float, float | None, float, bool]] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID, **kw: Any) -> None:
        self._start[run_id] = time.perf_counter()

    def on_llm_new_token(self, token: str, *, run_id: UUID, **kw: Any) -> None:
        self._first_token.setdefault(run_id, time.perf_counter())

    def on_llm_end(self, response: Any, *, run_id: UUID, **kw: Any) -> None:
        self._finish(run_id, ok=True)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kw: Any) -> None:
        self._finish(run_id, ok=False)

    def _finish(self, run_id: UUID, ok: bool) -> None:
        start = self._start.pop(run_id, None)
        if start is not None:
            first = self._first_token.pop(run_id, None)
            self.records.append((start, first, time.perf_counter(), ok))

    def latencies(self) -> list[float]:
        """Seconds from start to end of each finished call, in completion order."""
        return [end - start for start, _, end, _ in self.records]

    def ttfts(self) -> list[float]:
        """Seconds from start to first token, for streamed calls."""
        return [first - start for start, first, _, _ in self.records if first is not None]

    def intervals(self) -> list[tuple[float, float]]:
        """(start, end) of each call in seconds since the earliest start, sorted by start."""
        if not self.records:
            return []
        t0 = min(start for start, *_ in self.records)
        return sorted((start - t0, end - t0) for start, _, end, _ in self.records)
