"""Checks for lesson 07's exercises, what a batch costs (backstage: a learner need not read this).

07-1 `check_cost_estimate`: predict a job's cost from a small sample's usage and a price row, on
     generated samples; each usual slip (no scaling, per 1K, cached tokens at full price, ...) is named.
07-2 `check_mode_choice`: the cheapest of realtime, flex and batch that meets a deadline and a budget
     (batch counted at its 24 h promise, not its measured turnaround), or None when none does.
07-3 `check_collect_rows`: one result per input from a batch's output and error rows, matched by
     custom_id, with rows missing from both files, both error-row shapes, and a retried row.

None of them needs a model: each builds its own cases (the rows in the Batch API's own JSON shapes)
and sends no request anywhere.
"""

from __future__ import annotations

import json
import math
import numbers
import random
from collections.abc import Callable
from typing import Any

from helpers.checks.common import ExerciseFailed, call_sync, fail, passed
from helpers.prices import BATCH_DISCOUNT, PRICES, ModelPrice

# ---------------------------------------------------------------- 07-1: estimate a job's cost


def _per_input(row: dict[str, int], price: ModelPrice, *, cached_at: str = "cached", output_at: str = "output",
               output: bool = True) -> float:
    """One input's USD; the keyword arguments produce the usual slips (cached at input price, ...)."""
    fresh = row["prompt_tokens"] - row["cached_tokens"]
    prompt = {"cached": fresh * price.input + row["cached_tokens"] * price.cached_input,
              "full": row["prompt_tokens"] * price.input,
              "twice": row["prompt_tokens"] * price.input + row["cached_tokens"] * price.cached_input}[cached_at]
    out_price = price.output if output_at == "output" else price.input
    return (prompt + (row["completion_tokens"] * out_price if output else 0.0)) / 1e6


def _estimates(sample: list[dict[str, int]], n: int, price: ModelPrice, tier: str) -> dict[str, float]:
    """The right estimate, then each plausible wrong one, by the hint that names it."""
    discount = 1 - BATCH_DISCOUNT if tier in ("batch", "flex") else 1.0
    each = [_per_input(row, price) for row in sample]
    mean = sum(each) / len(each)

    def like(**slip: Any) -> float:
        return sum(_per_input(row, price, **slip) for row in sample) / len(sample) * n * discount

    scaled = {
        "right": mean * n * discount,
        "Your estimate is the sample's total, not the job's: divide by the sample's size to get the cost per "
        "input, then multiply by n.": sum(each) * discount,
        "Your estimate is the cost of ONE input: multiply the mean per input by n, the job's size.": mean * discount,
        "You multiplied the sample's total by n: that counts every input len(sample) times. Use the MEAN per "
        "input (total / len(sample)), times n.": sum(each) * n * discount,
        "Prices are in USD per 1,000,000 tokens (per 1M), not per 1,000: divide by 1e6.": mean * n * discount * 1000,
        "Prices are per 1,000,000 tokens: divide tokens × price by 1e6.": mean * n * discount * 1e6,
        "Cached tokens are billed at cached_input, not input: prompt_tokens counts them too, so price "
        "(prompt_tokens - cached_tokens) at input and cached_tokens at cached_input.": like(cached_at="full"),
        "You counted the cached tokens twice: prompt_tokens already includes them. Price (prompt_tokens - "
        "cached_tokens) at input, cached_tokens at cached_input.": like(cached_at="twice"),
        "Completion (output) tokens have their own price, price.output, several times the input price.":
            like(output_at="input"),
        "You left out the completion tokens: the answer's tokens are billed too, at price.output.":
            like(output=False),
        "You used the largest input's cost: use the mean over the sample, times n.": max(each) * n * discount,
        "You used the first input's cost: use the mean over the whole sample, times n.": each[0] * n * discount,
    }
    if tier == "default":
        scaled["This is a realtime job (tier='default'): the batch discount applies only to the Batch API and "
               "flex."] = mean * n * BATCH_DISCOUNT
    else:
        scaled[f"tier={tier!r} is billed at batch prices: apply the discount, "
               "times (1 - BATCH_DISCOUNT)."] = mean * n
    return scaled


def _cost_case(rng: random.Random, model: str, size: int, n: int, tier: str) -> tuple[list[dict[str, int]], int,
                                                                                       ModelPrice, str]:
    sample = []
    for _ in range(size):
        prompt = rng.randrange(1_200, 3_000)
        sample.append({"prompt_tokens": prompt, "cached_tokens": rng.choice([0, 1_024, 1_152]) if prompt > 1_300
                       else 0, "completion_tokens": rng.randrange(40, 600)})
    sample[0]["cached_tokens"] = 1_024  # at least one cached row, and the first input unlike the mean
    sample[-1]["completion_tokens"] = 900
    return sample, n, PRICES[model], tier


def _judge_estimate(answer: Any, sample: list[dict[str, int]], n: int, price: ModelPrice, tier: str) -> None:
    if isinstance(answer, bool) or not isinstance(answer, numbers.Real):
        fail(f"estimate_cost returned {answer!r} ({type(answer).__name__}): return the cost in USD as a number "
             "(a float), not a string or a formatted price.")
    answer = float(answer)
    candidates = _estimates(sample, n, price, tier)
    right = candidates.pop("right")
    if math.isclose(answer, right, rel_tol=1e-4):
        return
    for hint, value in candidates.items():
        if math.isclose(answer, value, rel_tol=1e-4):
            fail(hint)
    fail(f"For {n:,} inputs of {price.model} (tier={tier!r}) you estimated ${answer:,.6f}; the sample says "
         f"${right:,.6f}. Price each input: (prompt - cached) × input + cached × cached_input + completion × "
         "output, per 1M tokens; take the mean over the sample, times n.")


def check_cost_estimate(estimate_cost: Callable[..., Any]) -> None:
    """Exercise 07-1: `estimate_cost(sample, n, price, tier)` on generated samples, models and tiers."""
    rng = random.Random(7)
    cases = [_cost_case(rng, "gpt-4o-mini", 5, 10_000, "default"),
             _cost_case(rng, "gpt-4.1", 8, 2_500, "default"),
             _cost_case(rng, "gpt-4o", 6, 40_000, "batch"),
             _cost_case(rng, "gpt-4.1-mini", 4, 777, "flex")]
    for sample, n, price, tier in cases:
        copy = json.loads(json.dumps(sample))
        answer = call_sync(estimate_cost, copy, n, price, tier)
        _judge_estimate(answer, sample, n, price, tier)
    passed(f"{len(cases)} jobs estimated right, realtime and batch/flex, from samples of "
           f"{min(len(c[0]) for c in cases)}-{max(len(c[0]) for c in cases)} inputs.")


# ---------------------------------------------------------------- 07-2: realtime, flex or batch

DAY = 86_400  # the Batch API's promise: results within the 24 h completion window


def _modes(realtime: tuple[float, float], flex: tuple[float, float], batch: tuple[float, float],
           order: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Each mode's cost, measured time and worst-case time; (cost, measured seconds) per mode."""
    worst = {"realtime": realtime[1] * 1.5, "flex": flex[1] * 3, "batch": DAY}
    given = {"realtime": realtime, "flex": flex, "batch": batch}
    return {mode: {"cost_usd": given[mode][0], "measured_s": given[mode][1], "worst_case_s": worst[mode]}
            for mode in order}


# (modes, deadline_s, budget_usd, right answer, what the case tests); (cost, measured s) per mode. Flex and
# batch are both billed at batch prices; flex here costs a little more (its 429 retries) and no two tie.
_SLOW_BATCH = ((40.0, 600.0), (20.0, 1_800.0), (19.0, 5_000.0))
_QUICK_BATCH = ((40.0, 600.0), (20.0, 1_800.0), (19.5, 1_200.0))  # batch measured fast, as on a mock
_CHEAP_BATCH = ((40.0, 600.0), (20.0, 1_800.0), (10.0, 900.0))
_MODE_CASES: list[tuple[dict[str, dict[str, float]], float, float, str | None, str]] = [
    (_modes(*_QUICK_BATCH, ("realtime", "flex", "batch")), 2 * DAY, 100.0, "batch",
     "a two-day deadline and room in the budget"),
    (_modes(*_SLOW_BATCH, ("batch", "flex", "realtime")), 1200.0, 100.0, "realtime",
     "a twenty-minute deadline, cheaper modes listed first"),
    (_modes(*_QUICK_BATCH, ("realtime", "batch", "flex")), 4 * 3600.0, 100.0, "flex", "a four-hour deadline"),
    (_modes(*_CHEAP_BATCH, ("flex", "batch", "realtime")), 4 * 3600.0, 15.0, None,
     "a four-hour deadline and a $15 budget"),
    (_modes(*_CHEAP_BATCH, ("realtime", "flex", "batch")), 300.0, 100.0, None,
     "a five-minute deadline, which no mode's worst case meets"),
    (_modes(*_CHEAP_BATCH, ("batch", "realtime", "flex")), float(DAY), 11.0, "batch",
     "a deadline of exactly 24 h and a budget of $11"),
    (_modes(*_SLOW_BATCH, ("realtime", "batch", "flex")), 4 * 3600.0, 20.0, "flex",
     "a four-hour deadline and a budget of exactly the cost of flex"),
]


def _mode_hint(answer: Any, modes: dict[str, dict[str, float]], deadline_s: float, budget_usd: float,
               right: str | None, case: str) -> str:
    """The hint for a wrong `answer` (a mode name or None) in one case."""
    if answer is None:
        return (f"With {case}, you returned None, but {right!r} fits: its worst case "
                f"({modes[right]['worst_case_s']:,.0f} s) meets the deadline ({deadline_s:,.0f} s) and its cost "
                f"(${modes[right]['cost_usd']:g}) the budget (${budget_usd:g}). Both limits are inclusive (<=).")
    chosen = modes[answer]
    if chosen["worst_case_s"] > deadline_s >= chosen["measured_s"]:
        promise = "batch promises results only within its 24 h window" if answer == "batch" else "plan for that"
        return (f"With {case}, you chose {answer!r} by its measured time ({chosen['measured_s']:,.0f} s), but "
                f"its worst case is {chosen['worst_case_s']:,.0f} s: {promise}. A measured turnaround is one "
                "run, not a promise: compare worst_case_s with the deadline.")
    if chosen["worst_case_s"] > deadline_s:
        return (f"With {case}, {answer!r} misses the deadline (worst case {chosen['worst_case_s']:,.0f} s > "
                f"{deadline_s:,.0f} s): keep only the modes that meet it"
                + (", and return None when none does." if right is None else "."))
    if chosen["cost_usd"] > budget_usd:
        return (f"With {case}, {answer!r} costs ${chosen['cost_usd']:g}, over the budget (${budget_usd:g}): "
                + ("no mode meets both, so return None." if right is None else "keep only the modes within it."))
    return (f"With {case}, {answer!r} fits but costs ${chosen['cost_usd']:g}; {right!r} fits too and costs "
            f"${modes[right]['cost_usd']:g}: return the CHEAPEST mode that meets both (not the first or the "
            "fastest).")


def check_mode_choice(choose_mode: Callable[..., Any]) -> None:
    """Exercise 07-2: `choose_mode(modes, deadline_s, budget_usd)` on deadlines from minutes to days."""
    for modes, deadline_s, budget_usd, right, case in _MODE_CASES:
        answer = call_sync(choose_mode, json.loads(json.dumps(modes)), deadline_s, budget_usd)
        if answer == right and (answer is None or isinstance(answer, str)):
            continue
        if answer is not None and (not isinstance(answer, str) or answer not in modes):
            fail(f"choose_mode returned {answer!r}: return one of the names {sorted(modes)} (a str), or None "
                 "when no mode meets both the deadline and the budget (None itself, not 'None' or False).")
        fail(_mode_hint(answer, modes, deadline_s, budget_usd, right, case))
    passed(f"the right mode (or None) in all {len(_MODE_CASES)} cases, from a five-minute to a two-day deadline, "
           "with batch counted at its 24 h promise.")


# ---------------------------------------------------------------- 07-3: collect a batch with missing rows

MISSING = "missing"  # the error text for an input with no row in either file


def _answer_row(cid: str, text: str, n: int) -> dict[str, Any]:
    body = {"id": f"chatcmpl-{n:04d}", "object": "chat.completion", "created": 1_700_000_000 + n,
            "model": "gpt-4o-mini", "service_tier": "default",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                         "logprobs": None}],
            "usage": {"prompt_tokens": 20 + n, "completion_tokens": 8, "total_tokens": 28 + n,
                      "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0}}}
    return {"id": f"batch_req_{n:04d}", "custom_id": cid,
            "response": {"status_code": 200, "request_id": f"req_{n:04d}", "body": body}, "error": None}


def _http_error_row(cid: str, status: int, n: int) -> dict[str, Any]:
    message = {500: "The server had an error while processing your request.",
               400: "Invalid 'messages': empty array."}[status]
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"id": f"batch_req_{n:04d}", "custom_id": cid, "error": None,
            "response": {"status_code": status, "request_id": f"req_{n:04d}",
                         "body": {"error": {"message": message, "type": kind, "param": None, "code": None}}}}


def _null_row(cid: str, code: str, n: int) -> dict[str, Any]:
    message = {"batch_expired": "This request could not be executed before the completion window expired.",
               "request_timeout": "The request timed out."}[code]
    return {"id": f"batch_req_{n:04d}", "custom_id": cid, "response": None,
            "error": {"code": code, "message": message}}


def _rows_case(seed: int, ids: list[str]) -> tuple[list[dict], list[dict], list[Any], dict[str, str]]:
    """Output rows, error rows (both shuffled), and what each input must end with: its text or "error"."""
    rng = random.Random(seed)
    kinds = ["ok"] * (len(ids) - 7) + ["500", "400", "batch_expired", "request_timeout", "missing", "missing",
                                       "retried"]
    rng.shuffle(kinds)
    output, errors, expected, why = [], [], [], {}
    for n, (cid, kind) in enumerate(zip(ids, kinds)):
        text = f"Answer {n}: the {rng.choice(['red', 'blue', 'green'])} one, for row {cid}."
        if kind in ("ok", "retried"):
            output.append(_answer_row(cid, text, n))
            if kind == "retried":  # the first attempt failed, then its resubmission answered
                errors.append(_http_error_row(cid, 500, n + 500))
            expected.append(text)
        else:
            if kind in ("500", "400"):
                errors.append(_http_error_row(cid, int(kind), n))
            elif kind != "missing":
                errors.append(_null_row(cid, kind, n))
            expected.append(MISSING if kind == "missing" else "error")
        why[cid] = kind
    rng.shuffle(output)
    rng.shuffle(errors)
    return output, errors, expected, why


def _crash_hint(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, TypeError) and "NoneType" in str(exc):
        return (f"collect_rows raised {text}. A row that never ran has \"response\": null (None) and the reason "
                "in row['error']['code']: check for None before reading the response.")
    if isinstance(exc, (KeyError, IndexError)) and "choices" in str(exc):
        return (f"collect_rows raised {text}. An HTTP-error row (status 500, 400) has a body with 'error', not "
                "'choices': look at response['status_code'] before reading an answer.")
    return f"collect_rows raised {text}: it must return a result for every input, whatever the rows hold."


def _judge_entry(index: int, cid: str, got: Any, want: str, kind: str, text_of: dict[str, str]) -> None:
    is_error = isinstance(got, dict) and set(got) == {"error"} and isinstance(got["error"], str) and got["error"]
    if want not in ("error", MISSING):  # an answer
        if got == want:
            return
        if kind == "retried" and is_error:
            fail(f"Input {index} ({cid}) has an error row (a 500) AND an output row (its resubmission "
                 "answered): the answer wins. Keep an error only for inputs with no answer.")
        if isinstance(got, str) and got in text_of.values():
            fail(f"Input {index} ({cid}) got another input's answer: the output file is in any order, so match "
                 "each row by its custom_id, not by position.")
        if is_error:
            fail(f"Input {index} ({cid}) has an answer in the output file, but you returned {got!r}: look each "
                 "input's custom_id up among the output rows (they come in any order), not by position or sorted.")
        if isinstance(got, dict):
            fail(f"Input {index} ({cid}) holds a dict ({str(got):.80}...): return the answer text, "
                 "row['response']['body']['choices'][0]['message']['content'].")
        fail(f"Input {index} ({cid}) holds {got!r:.100}; its answer is {want!r}.")
    if not is_error:
        if isinstance(got, str) and got in text_of.values():
            fail(f"Input {index} ({cid}) got another input's answer: its row is "
                 f"{'missing' if want == MISSING else 'an error row'}. Match rows by custom_id, not by position.")
        if want == MISSING:
            fail(f"Input {index} ({cid}) has no row in either file, so its result is {{'error': 'missing'}}, "
                 f"not {got!r:.80}.")
        fail(f"Input {index} ({cid}) has an error row ({kind}), so its result is {{'error': '...'}} (a dict whose "
             f"only key is 'error', with a non-empty text), not {got!r:.80}. Never turn an error row into an answer.")
    if want == MISSING and got["error"] != MISSING:
        fail(f"Input {index} ({cid}) has no row in either file: mark it {{'error': 'missing'}}, so it can be "
             "told from an error row and rerun.")
    if want == "error" and got["error"] == MISSING:
        fail(f"Input {index} ({cid}) is in the error file ({kind}), so it is not missing: give the row's reason "
             "(error['code'], or the status code), not 'missing'.")


def check_collect_rows(collect_rows: Callable[..., Any]) -> None:
    """Exercise 07-3: `collect_rows(custom_ids, output_rows, error_rows)`: one result per input, by custom_id."""
    cases = [(11, [f"item-{i}" for i in range(14)]), (12, [f"{i}-{random.Random(i).getrandbits(40):010x}"
                                                         for i in range(20)])]
    for seed, ids in cases:
        output, errors, expected, why = _rows_case(seed, ids)
        text_of = {row["custom_id"]: row["response"]["body"]["choices"][0]["message"]["content"] for row in output}
        try:
            got = call_sync(collect_rows, list(ids), json.loads(json.dumps(output)), json.loads(json.dumps(errors)))
        except ExerciseFailed:
            raise
        except Exception as exc:
            fail(_crash_hint(exc))
        if isinstance(got, dict):
            fail("collect_rows returned a dict: return a list, one result per input, in the order of custom_ids.")
        if not isinstance(got, (list, tuple)):
            fail(f"collect_rows returned {type(got).__name__}: return a list, one result per input.")
        if len(got) != len(ids):
            fail(f"{len(got)} results for {len(ids)} inputs: return exactly one per input, in input order; an input "
                 "with no row in either file gets {'error': 'missing'}, never dropped, never doubled.")
        for index, (cid, value, want) in enumerate(zip(ids, got, expected)):
            _judge_entry(index, cid, value, want, why[cid], text_of)
    passed(f"{sum(len(ids) for _, ids in cases)} inputs: every answer at its own input, every error row and "
           "missing row marked, the retried row's answer kept.")
