"""What the mock bills, and which prompt tokens it reports as cached (backstage: a learner need not
read this; the rules are stated in ``settings.py``, under Billing and Prompt caching).

- ``Ledger``: the server-side bill, per tier ("default", "flex", "batch"), served at
  ``GET /mock/stats`` as ``stats["billed"]``. The server decides when a request is billed.
- ``PromptCache``: OpenAI's prompt caching rule (1,024 tokens or more, in steps of 128) over the
  prompts that have finished. It is bounded: the oldest prefixes are forgotten first.
- ``usage_body``: the ``usage`` object of a chat completion, with ``prompt_tokens_details``.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import asdict, dataclass, field

from helpers.mock.replies import text_of

__all__ = ["CACHE_MIN_TOKENS", "CACHE_STEP_TOKENS", "TIERS", "Bill", "Ledger", "PromptCache", "usage_body"]

TIERS = ("default", "flex", "batch")
CACHE_MIN_TOKENS = 1024  # OpenAI caches prompts of 1,024 tokens or more ...
CACHE_STEP_TOKENS = 128  # ... in increments of 128 tokens
BYTES_PER_TOKEN = 4  # the mock's token estimate (helpers.metrics.approx_tokens)
MAX_PREFIXES = 100_000  # a bound on the cache's memory: about 10 MB


def usage_body(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> dict:
    """A chat completion's ``usage``, as OpenAI sends it (cached tokens are part of prompt_tokens)."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


@dataclass
class Bill:
    """What one tier has been billed for since the last reset."""

    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Ledger:
    """The server's bill, one ``Bill`` per tier."""

    tiers: dict[str, Bill] = field(default_factory=lambda: {tier: Bill() for tier in TIERS})

    def bill(self, tier: str, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> None:
        """Add one billed request to `tier` ("default", "flex" or "batch")."""
        entry = self.tiers[tier]
        entry.requests += 1
        entry.prompt_tokens += prompt_tokens
        entry.cached_tokens += cached_tokens
        entry.completion_tokens += completion_tokens

    def as_dict(self) -> dict[str, dict[str, int]]:
        """{tier: {"requests", "prompt_tokens", "cached_tokens", "completion_tokens"}}, tier by tier."""
        return {tier: asdict(entry) for tier, entry in self.tiers.items()}


class PromptCache:
    """Prompt prefixes of finished requests; `cached_tokens` says how much of a new prompt they cover."""

    def __init__(self, max_prefixes: int = MAX_PREFIXES) -> None:
        self.max_prefixes = max_prefixes
        self._prefixes: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._prefixes)

    def cached_tokens(self, model: str, messages: list[dict], prompt_tokens: int) -> int:
        """The longest remembered prefix of this prompt, in tokens (0 below 1,024 tokens)."""
        for tokens, key in reversed(prefix_keys(model, messages)):
            if key in self._prefixes:
                self._prefixes.move_to_end(key)
                return min(tokens, prompt_tokens)
        return 0

    def remember(self, model: str, messages: list[dict]) -> None:
        """A request with this prompt has finished: its prefixes count as cached from now on."""
        for _, key in prefix_keys(model, messages):
            self._prefixes[key] = None
            self._prefixes.move_to_end(key)
        while len(self._prefixes) > self.max_prefixes:
            self._prefixes.popitem(last=False)


def prefix_keys(model: str, messages: list[dict]) -> list[tuple[int, bytes]]:
    """(tokens, hash) of each cacheable prefix: 1,024 tokens, then every 128 more the prompt holds."""
    text = b"".join(f"{m.get('role')}\x1f{text_of(m)}\x1e".encode() for m in messages if isinstance(m, dict))
    step = CACHE_STEP_TOKENS * BYTES_PER_TOKEN
    digest = hashlib.blake2b(model.encode() + b"\x00", digest_size=16)
    keys = []
    for end in range(step, len(text) + 1, step):
        digest.update(text[end - step:end])
        tokens = end // BYTES_PER_TOKEN
        if tokens >= CACHE_MIN_TOKENS:
            keys.append((tokens, digest.copy().digest()))
    return keys
