"""The request budget: on a real backend, a notebook sends at most WORKBOOK_MAX_REQUESTS requests.

A learner reads this: it is the safety net that keeps a Run All on a paid API from costing a surprise.

On the mock nothing here does anything: the mock costs nothing. When `.env` selects a real backend:

- `get_llm()` passes every model it builds through `guard(llm)`. Each HTTP attempt of that model's
  openai client is counted *before* it is sent: first tries, the SDK's own retries and the runners'
  retries alike. Once the budget is spent the attempt is not sent: `RequestBudgetExceeded` (an
  `openai.OpenAIError`, so the SDK neither retries it nor wraps it) names the budget and how to raise it.
- The budget is per kernel (per notebook run): default 300, `WORKBOOK_MAX_REQUESTS=...` in `.env`.
  The counter lives in a small file whose path child processes get (`WORKBOOK_BUDGET_LEDGER`, or
  `share()` for a process pool started earlier), so a child started by the notebook (lesson 04's crash
  demo) counts against the same budget.
  Tokens, from each answer's usage, are counted alongside.
- `expect(requests, tokens_each)` goes before a cell that sends many requests: it prints the estimate,
  and stops the cell before anything is sent when the estimate does not fit in what is left.
- `lesson_size(on_mock, on_real)`: the size of a lesson's run, smaller on a real backend where the
  point survives, so that a whole notebook fits in the default budget.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import openai
from langchain_core.callbacks import BaseCallbackHandler

LEDGER_VARIABLE = "WORKBOOK_BUDGET_LEDGER"  # the counter file's path, inherited by child processes
DEFAULT_MAX_REQUESTS = 300
_RECORD = struct.Struct("<qq")  # the counter file: requests sent, tokens used
HOW_TO_RAISE = "raise it with WORKBOOK_MAX_REQUESTS=... in .env and restart the kernel"


class RequestBudgetExceeded(openai.OpenAIError):
    """A request was not sent: the notebook has used its whole request budget (or would, by estimate)."""


def _max_requests() -> int:
    from helpers.backend import load_config  # here, not at the top: backend.py imports this module
    return load_config().max_requests


def is_active() -> bool:
    """True when `.env` selects a real backend: only then are requests counted and limited."""
    from helpers.backend import load_config
    return load_config().backend != "mock"


def lesson_size(on_mock: int, on_real: int) -> int:
    """How many inputs a lesson's run uses: `on_mock` on the mock, `on_real` (smaller) on a real backend."""
    return on_real if is_active() else on_mock


# ---------------------------------------------------------------- the counter, shared with child processes


def _ledger_path() -> Path:
    """This kernel's counter file, created on first use; a child process finds its parent's in the environment."""
    path = os.environ.get(LEDGER_VARIABLE)
    if path and Path(path).is_file():
        return Path(path)
    handle, name = tempfile.mkstemp(prefix="workbook_budget_", suffix=".bin")
    os.write(handle, _RECORD.pack(0, 0))
    os.close(handle)
    os.environ[LEDGER_VARIABLE] = name
    atexit.register(_remove_ledger, name, os.getpid())
    return Path(name)


def _remove_ledger(name: str, owner: int) -> None:
    if os.getpid() == owner:
        Path(name).unlink(missing_ok=True)


def share() -> dict[str, str]:
    """The environment a child process needs to count against this kernel's budget ({} on the mock)."""
    return {LEDGER_VARIABLE: str(_ledger_path())} if is_active() else {}


def _update(requests: int = 0, tokens: int = 0, *, limit: int | None = None) -> dict[str, int]:
    """Add to the counters under a file lock and return them; with `limit`, refuse to pass it.

    The two counters are one 16-byte record, read and written whole with one system call each, so a
    process killed at any moment (lesson 04 kills one) leaves the old counts or the new, never half.
    """
    fd = os.open(_ledger_path(), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        sent, used_tokens = _RECORD.unpack(os.pread(fd, _RECORD.size, 0))
        if limit is not None and sent + requests > limit:
            raise RequestBudgetExceeded(
                f"Request budget spent: this notebook has sent {sent} of its "
                f"WORKBOOK_MAX_REQUESTS={limit} requests to a real backend, so this request was not sent. "
                f"To go on, {HOW_TO_RAISE}.")
        sent, used_tokens = sent + requests, used_tokens + tokens
        if requests or tokens:
            os.pwrite(fd, _RECORD.pack(sent, used_tokens), 0)
    finally:
        os.close(fd)  # releases the lock
    return {"requests": sent, "tokens": used_tokens}


def used() -> dict[str, int]:
    """Requests sent and tokens used so far by this kernel (and its children), and the budget."""
    counts = _update() if is_active() else {"requests": 0, "tokens": 0}
    return {"requests": counts["requests"], "tokens": counts["tokens"], "max_requests": _max_requests()}


# ---------------------------------------------------------------- counting in the model's client


class _CountedAsyncOpenAI(openai.AsyncOpenAI):
    async def _prepare_request(self, request: Any) -> None:  # the SDK calls this before every attempt
        _update(requests=1, limit=_max_requests())
        await super()._prepare_request(request)


class _CountedOpenAI(openai.OpenAI):
    def _prepare_request(self, request: Any) -> None:
        _update(requests=1, limit=_max_requests())
        super()._prepare_request(request)


class _TokenCounter(BaseCallbackHandler):
    """Adds the tokens of every answer (its usage_metadata) to the counter."""

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        tokens = sum((getattr(g, "message", None) and (g.message.usage_metadata or {}).get("total_tokens")) or 0
                     for generations in response.generations for g in generations)
        if tokens:
            _update(tokens=tokens)


def guard(llm: Any) -> Any:
    """Make `llm` (a ChatOpenAI) count each request against the budget before sending it; returns `llm`."""
    if isinstance(llm.root_async_client, openai.AsyncOpenAI):
        llm.root_async_client.__class__ = _CountedAsyncOpenAI  # the same client, one method added
    if isinstance(llm.root_client, openai.OpenAI):
        llm.root_client.__class__ = _CountedOpenAI
    llm.callbacks = [*(llm.callbacks or []), _TokenCounter()]
    return llm


# ---------------------------------------------------------------- estimates before a big cell


def expect(requests: int, tokens_each: int, what: str = "this cell") -> None:
    """Before a cell sends many requests: print the estimate, and stop if it does not fit in the budget.

    On the mock this does nothing. `tokens_each` is a rough prompt + answer size per request. The cost is
    an upper bound, every token at the model's output price (helpers/prices.py), or "price unknown".
    """
    if not is_active():
        return
    from helpers.backend import load_config
    from helpers.prices import price_for
    from helpers.usage import format_cost

    counts, limit = used(), _max_requests()
    left, model = limit - counts["requests"], load_config().model
    price = price_for(model)  # an upper bound: every token at the output price
    money = f"up to {format_cost(requests * tokens_each * price.output / 1e6)}" if price else format_cost(None, model)
    print(f"Estimate for {what}: about {requests:,} requests and {requests * tokens_each:,} tokens, {money} "
          f"(budget: {counts['requests']:,} of {limit:,} requests used, {left:,} left)")
    if requests > left:
        raise RequestBudgetExceeded(
            f"{what} would send about {requests:,} requests, but only {left:,} of WORKBOOK_MAX_REQUESTS={limit:,} "
            f"are left, so nothing was sent. To run it, {HOW_TO_RAISE}.")
