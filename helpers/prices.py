"""The price table: what a million tokens cost, per model, in one place. Edit it when prices change.

A learner reads this, and may edit it: lesson 07 prices every run with it (`helpers.usage` does the
arithmetic). Prices change, so every figure says where it came from and when it was read, and the
lesson prints `TABLE_DATE`. A model missing here is priced "price unknown", never guessed.

    price = (prompt tokens not from the cache) x input + (cached prompt tokens) x cached_input
            + (completion tokens) x output                     all in USD per 1,000,000 tokens
    batch and flex tiers: the same, times (1 - BATCH_DISCOUNT)

How the figures were read (2026-12-02): OpenAI's own page, https://developers.openai.com/api/docs/pricing
(formerly https://openai.com/api/pricing/), could not be opened from the machine this table was written
on (no internet). Every figure below is as published on that page and quoted, with that page named as
the source, by the secondary pages cited per row; two or more agree on each figure. One of them notes
that OpenAI's page now lists the GPT-5 family first and the gpt-4o / gpt-4.1 families less prominently:
check the page before you budget real money.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TABLE_DATE", "BATCH_DISCOUNT", "BATCH_DISCOUNT_SOURCE", "ModelPrice", "PRICES", "price_for",
           "describe_table"]

TABLE_DATE = "2026-12-02"  # when the figures below were last read; change it when you update them
OPENAI_PAGE = "https://developers.openai.com/api/docs/pricing"


@dataclass(frozen=True)
class ModelPrice:
    """One model's prices in USD per 1M tokens, and where they were read."""

    model: str
    input: float  # prompt tokens not read from the prompt cache
    cached_input: float  # prompt tokens read from the prompt cache (usage.prompt_tokens_details.cached_tokens)
    output: float  # completion tokens
    source: str  # where each figure was read, beyond OpenAI's own page
    read_on: str = TABLE_DATE


# Batch API and flex processing: half price on input, cached input and output alike.
BATCH_DISCOUNT = 0.5
BATCH_DISCOUNT_SOURCE = (f"{OPENAI_PAGE} (Batch: 50% off input and output, 24 h window; Flex: batch rates), "
                         "as quoted by nicolalazzari.ai/articles/openai-api-pricing-explained-2026 and "
                         "aipromptshub.co/calc/openai-api-cost, read 2026-12-02")

_QUOTED_BY = "as quoted by "
PRICES: dict[str, ModelPrice] = {price.model: price for price in (
    ModelPrice("gpt-4o-mini", 0.15, 0.075, 0.60,
               _QUOTED_BY + "nicolalazzari.ai/articles/openai-api-pricing-explained-2026, "
               "chatgptpricing-akr.pages.dev/api-pricing, ai.cloudprice.net (OpenAI, 2026-06-20)"),
    ModelPrice("gpt-4o", 2.50, 1.25, 10.00,
               _QUOTED_BY + "nicolalazzari.ai/articles/openai-api-pricing-explained-2026, "
               "chatgptpricing-akr.pages.dev/api-pricing"),
    ModelPrice("gpt-4.1", 2.00, 0.50, 8.00,
               _QUOTED_BY + "nicolalazzari.ai/articles/openai-api-pricing-explained-2026, "
               "tokenmath.io (checked 2026-06-21), github.com/outl1ne/openai-pricing"),
    ModelPrice("gpt-4.1-mini", 0.40, 0.10, 1.60,
               _QUOTED_BY + "tokenmath.io (checked 2026-06-21; input and output), aumiqx.com (2026-04; input "
               "and output), github.com/outl1ne/openai-pricing (all three)"),
    ModelPrice("gpt-4.1-nano", 0.10, 0.025, 0.40,
               _QUOTED_BY + "aumiqx.com (2026-04; input and output), github.com/outl1ne/openai-pricing "
               "(all three)"),
)}


def price_for(model: str | None) -> ModelPrice | None:
    """The table's row for `model`, also for a dated snapshot ("gpt-4o-mini-2024-07-18"); None if absent."""
    if not isinstance(model, str) or not model:
        return None
    if model in PRICES:
        return PRICES[model]
    parts = model.split("-")  # a snapshot ends in a date: "gpt-4o-mini-2024-07-18"
    if len(parts) > 3 and all(p.isdigit() for p in parts[-3:]) and len(parts[-3]) == 4:
        return PRICES.get("-".join(parts[:-3]))
    return None


def describe_table() -> str:
    """The table as a few readable lines, with its date."""
    lines = [f"Prices in USD per 1M tokens, read {TABLE_DATE} (check {OPENAI_PAGE} before budgeting):",
             f"  {'model':<14}{'input':>8}{'cached':>8}{'output':>8}"]
    lines += [f"  {p.model:<14}{p.input:>8.3f}{p.cached_input:>8.3f}{p.output:>8.3f}" for p in PRICES.values()]
    lines.append(f"  batch and flex: {BATCH_DISCOUNT:.0%} off every price")
    return "\n".join(lines)
