"""Token usage and what it costs: read off each answer, kept per input, summed per run, priced.

A learner reads this: lesson 07 teaches it, and the runners in `helpers.runners` attach it to every
result (`BatchReport.usage`, each JSONL record's "usage", each "done" StreamEvent).

- `Usage`: prompt tokens, cached prompt tokens, completion tokens, as the API reported them
  (LangChain's `AIMessage.usage_metadata`: input_tokens, input_token_details.cache_read,
  output_tokens), never estimated; plus how many model calls reported them and how many did not.
- `UsageMeter`: a callback handler for one input's call. The chains are `prompt | llm | parser`, so
  the parser drops the AIMessage and its usage: the meter catches it on the way, at the model's
  `on_llm_end`. It splits the usage of the attempt that gave the answer from that of failed attempts.
- `UsageTotals`: a run's usage per (model, tier), and `cost`: tokens x `helpers.prices`.

Why not langchain-core's `get_usage_metadata_callback()`: it is the right tool for "what did this
block of code use in total", and lesson 07 shows it. But it sums per model name only, so it cannot
say which input used what, cannot put an input's usage in its JSONL record, cannot tell a retried
attempt's tokens from the answer's, and does not count calls that ended without usage (failures).

What the client cannot know: a failed call reports no usage. A 429 or a 4xx is not billed, but a
request that hung, timed out or dropped after the server started generating is billed for what it
generated. So `unreported` counts those calls, and the server's ledger has the last word. (A call is
counted when it starts: a timeout cancels it without any end event from LangChain.) One more way to
lose sight of billed tokens: a model reused across `asyncio.run` calls sends a request on a connection of
the closed loop, the server answers and bills it, and the client fails with "Event loop is closed".

Usage capture costs a little client CPU per request (more when streamed: the meter sees an event per
token), most of it LangChain dispatching the model's events; lesson 05 measures a request's CPU.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from .prices import BATCH_DISCOUNT, price_for

__all__ = ["Usage", "InputUsage", "UsageMeter", "UsageTotals", "cost", "format_cost", "usage_from_message",
           "usage_fields", "record_usage", "file_usage"]

TIERS = ("default", "flex", "batch")  # flex and batch are billed at batch prices
_TOKEN_FIELDS = ("prompt_tokens", "cached_tokens", "completion_tokens", "calls", "unreported")


@dataclass(frozen=True)
class Usage:
    """Tokens one or more model calls used, as the API reported them."""

    prompt_tokens: int = 0  # all prompt tokens, cached ones included (OpenAI's usage.prompt_tokens)
    cached_tokens: int = 0  # of those, read from the prompt cache (prompt_tokens_details.cached_tokens)
    completion_tokens: int = 0
    calls: int = 0  # model calls whose usage is counted above
    unreported: int = 0  # model calls that ended without usage (failed: a hang or drop may still be billed)
    model: str | None = None  # the model that answered; None if none did, or several did
    tier: str = "default"  # "default", "flex" or "batch" (another, e.g. "priority", has no price here)

    def __bool__(self) -> bool:
        return bool(self.calls or self.unreported)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        counts = {name: getattr(self, name) + getattr(other, name) for name in _TOKEN_FIELDS}
        models = {u.model for u in (self, other) if u.calls}
        tiers = {u.tier for u in (self, other) if u.calls}
        return Usage(**counts, model=models.pop() if len(models) == 1 else None,
                     tier=tiers.pop() if len(tiers) == 1 else ("mixed" if tiers else self.tier))

    def as_record(self) -> dict[str, Any]:
        """The usage as a JSON object for a results file."""
        return {"model": self.model, "tier": self.tier, **{name: getattr(self, name) for name in _TOKEN_FIELDS}}

    @classmethod
    def from_record(cls, data: Any) -> Usage:
        """The usage from a record's JSON object; ValueError naming the field that is wrong."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ValueError(f"a record's usage must be an object, got {type(data).__name__}")
        for name in _TOKEN_FIELDS:
            value = data.get(name, 0)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"a record's usage field {name!r} must be a whole number >= 0, got {value!r}")
        model, tier = data.get("model"), data.get("tier", "default")
        if not (model is None or isinstance(model, str)) or not isinstance(tier, str):
            raise ValueError(f"a record's usage has a bad model or tier: {model!r}, {tier!r}")
        return cls(**{name: data.get(name, 0) for name in _TOKEN_FIELDS}, model=model, tier=tier)

    def line(self) -> str:
        """One readable line: tokens, cache hits and calls."""
        cached = f" ({self.cached_tokens:,} cached)" if self.cached_tokens else ""
        missing = f"{self.unreported} call{'s' * (self.unreported != 1)} with no usage reported"
        if not self.calls:
            return missing
        return (f"{self.prompt_tokens:,} prompt{cached} + {self.completion_tokens:,} completion tokens in "
                f"{self.calls} call{'s' * (self.calls != 1)}" + (f" · {missing}" if self.unreported else ""))


def usage_from_message(message: Any, tier: str | None = None) -> Usage:
    """The usage an AIMessage reports (`usage_metadata`), or one call without usage if it reports none."""
    metadata = getattr(message, "usage_metadata", None)
    response = getattr(message, "response_metadata", None) or {}
    model = response.get("model_name") or response.get("model")
    if not metadata:
        return Usage(unreported=1)
    details = metadata.get("input_token_details") or {}
    found = tier or response.get("service_tier") or next((t for t in ("flex", "priority") if t in details), None)
    tier = "default" if found in (None, "auto", "default") else found  # "priority": priced as unknown
    cached = details.get("cache_read") or details.get("flex_cache_read") or details.get("priority_cache_read") or 0
    return Usage(int(metadata.get("input_tokens") or 0), int(cached), int(metadata.get("output_tokens") or 0),
                 calls=1, model=model, tier=tier)


@dataclass(frozen=True)
class InputUsage:
    """One input's usage: the attempt that gave its answer, and every attempt that failed."""

    answer: Usage = Usage()  # empty when the input failed
    failed: Usage = Usage()  # earlier attempts that failed, or all of a failed input's attempts

    @property
    def total(self) -> Usage:
        return self.answer + self.failed


class UsageMeter(BaseCallbackHandler):
    """Collects one input's usage, attempt by attempt. Pass `meter.config(config)` to the chain's call.

    An attempt starts with a root run (a chain call with no parent). Runs inline on the event loop:
    no thread hop, a few microseconds per event."""

    run_inline = True
    ignore_retriever = ignore_agent = ignore_custom_event = True  # events it need not see

    def __init__(self) -> None:
        self._earlier, self._current = Usage(), Usage()

    def config(self, config: Mapping[str, Any] | None) -> dict[str, Any]:
        """`config` with this meter added to its callbacks (a list or a CallbackManager)."""
        callbacks = (config or {}).get("callbacks")
        if callbacks is None:
            return {**(config or {}), "callbacks": [self]}
        if isinstance(callbacks, list):
            return {**config, "callbacks": [*callbacks, self]}
        manager = callbacks.copy()  # a CallbackManager: add to a copy, leave the caller's alone
        manager.add_handler(self, inherit=True)
        return {**config, "callbacks": manager}

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                       **kwargs: Any) -> None:
        self._maybe_new_attempt(parent_run_id)

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID,
                            parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        """A model call starts: unreported until it ends with usage. (A timeout's cancel ends it with no event.)"""
        self._maybe_new_attempt(parent_run_id)  # the chain may be the model alone
        self._current = self._current + Usage(unreported=1)

    on_llm_start = on_chat_model_start  # a completion model (not a chat model) announces itself so

    def _maybe_new_attempt(self, parent_run_id: UUID | None) -> None:
        if parent_run_id is None and self._current:  # a new attempt: the last one's usage was a failed attempt's
            self._earlier, self._current = self._earlier + self._current, Usage()

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        try:
            message = response.generations[0][0].message
        except (AttributeError, IndexError):  # a plain LLM, not a chat model: no usage_metadata
            message = None
        usage = usage_from_message(message)  # one call, with its usage or unreported
        self._current = self._current + dataclasses.replace(usage, unreported=usage.unreported - 1)

    def result(self, ok: bool) -> InputUsage:
        """The input's usage, once its call has ended (ok: it has an answer)."""
        if ok:
            return InputUsage(self._current, self._earlier)
        return InputUsage(Usage(), self._earlier + self._current)


def cost(usage: Usage) -> float | None:
    """USD for `usage` at `helpers.prices` (cached tokens at the cached price, batch/flex discounted).

    None if the price is unknown: a model not in the table, several models mixed, or no model at all."""
    price = price_for(usage.model)
    if price is None or usage.tier not in TIERS:
        return 0.0 if not usage.calls and usage.model is None else None
    fresh = usage.prompt_tokens - usage.cached_tokens
    usd = (fresh * price.input + usage.cached_tokens * price.cached_input
           + usage.completion_tokens * price.output) / 1e6
    return usd * (1 - BATCH_DISCOUNT) if usage.tier in ("flex", "batch") else usd


def format_cost(usd: float | None, model: str | None = None) -> str:
    """"$0.001234", or "price unknown" (naming the model) when there is no price."""
    if usd is None:
        return f"price unknown (no price for model {model!r} in helpers/prices.py)" if model else "price unknown"
    return f"${usd:.6f}" if usd < 1 else f"${usd:,.2f}"


class UsageTotals:
    """A run's usage: per (model, tier), split into answers' and failed attempts' usage; and its cost."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str | None, str], Usage] = {}
        self.failed: dict[tuple[str | None, str], Usage] = {}

    def __bool__(self) -> bool:
        return bool(self.answers or self.failed)

    def add(self, usage: InputUsage | None) -> None:
        """Count one input's usage (None: the input made no call, e.g. it was skipped)."""
        if usage is None:
            return
        for part, into in ((usage.answer, self.answers), (usage.failed, self.failed)):
            if part:
                key = (part.model, part.tier)
                into[key] = into.get(key, Usage(model=part.model, tier=part.tier)) + part

    def answer(self) -> Usage:
        return sum(self.answers.values(), Usage())

    def failed_attempts(self) -> Usage:
        return sum(self.failed.values(), Usage())

    def total(self) -> Usage:
        return self.answer() + self.failed_attempts()

    def cost(self, *, failed: bool | None = None) -> float | None:
        """USD of every call (failed=None), of the answers only (False), or of failed attempts (True)."""
        parts = [d for flag, d in ((False, self.answers), (True, self.failed)) if failed in (None, flag)]
        prices = [cost(u) for d in parts for u in d.values() if u.calls]
        return None if None in prices else sum(prices, 0.0)

    def lines(self) -> list[str]:
        """Readable lines for a report: tokens and cost, answers and failed attempts apart."""
        total, failed = self.total(), self.failed_attempts()
        models = sorted({m or "?" for m, _ in {**self.answers, **self.failed}})
        rows = [f"{total.line()} · {format_cost(self.cost(), ', '.join(models))}"]
        if failed:
            rows.append(f"failed attempts: {failed.line()} · {format_cost(self.cost(failed=True))}"
                        + (" (429s and errors are not billed; a hang or drop may be)" if failed.unreported else ""))
        return rows



def usage_fields(usage: InputUsage | None) -> dict[str, Any]:
    """A results record's usage fields: "usage" (the answer's), and "failed_usage" when an attempt failed."""
    if usage is None:
        return {}
    return {"usage": usage.answer.as_record(), **({"failed_usage": usage.failed.as_record()} if usage.failed else {})}


def record_usage(record: Mapping[str, Any]) -> InputUsage | None:
    """The usage a results record holds, or None for a record without any (format versions 1 and 2)."""
    if "usage" not in record and "failed_usage" not in record:
        return None
    return InputUsage(Usage.from_record(record.get("usage")), Usage.from_record(record.get("failed_usage")))


def file_usage(path: str | os.PathLike[str]) -> UsageTotals:
    """Every call a results file records, over all the runs that wrote it (a rerun input's earlier record too)."""
    from .results_file import parse_record  # here, not at the top: results_file imports this module

    totals = UsageTotals()
    with open(Path(path), "rb") as file:
        for line in file:
            record = parse_record(line) if line.strip() else None
            if record is not None:
                totals.add(record_usage(record))
    return totals
