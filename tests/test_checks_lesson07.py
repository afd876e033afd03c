"""Lesson 07's checks reject plausible wrong answers with the right hint, and pass the notebook's solutions.

Every module-level name carries its check's name (cost_estimate_, mode_choice_, collect_rows_), so the
per-lesson test files can be merged into one without collisions. None of these checks needs a model.
"""

import math
import random

import pytest

from helpers.checks import ExerciseFailed, check_collect_rows, check_cost_estimate, check_mode_choice
from helpers.checks import lesson07
from helpers.prices import BATCH_DISCOUNT


def fails_with(check, answer, hint):
    with pytest.raises(ExerciseFailed, match=hint):
        check(answer)


# ---------------------------------------------------------------- 07, exercise 1: estimate a job's cost


def cost_estimate_of(*, cached="cached", output="output", per=1e6, scale="mean", pick=None, discount="tier"):
    """The notebook's solution (the defaults), or one of its usual slips."""
    def estimate_cost(sample, n, price, tier="default"):
        def one(u):
            fresh = u["prompt_tokens"] - u["cached_tokens"]
            prompt = {"cached": fresh * price.input + u["cached_tokens"] * price.cached_input,
                      "full": u["prompt_tokens"] * price.input,
                      "twice": u["prompt_tokens"] * price.input + u["cached_tokens"] * price.cached_input}[cached]
            out = {"output": price.output, "input": price.input, "none": 0.0}[output]
            return (prompt + u["completion_tokens"] * out) / per

        each = [one(u) for u in sample]
        base = {"mean": sum(each) / len(each), "max": max(each), "first": each[0]}[pick or "mean"]
        usd = {"mean": base * n, "one": base, "total": sum(each), "total_times_n": sum(each) * n}[scale]
        off = {"tier": tier in ("batch", "flex"), "always": True, "never": False}[discount]
        return usd * (1 - BATCH_DISCOUNT) if off else usd
    return estimate_cost


def cost_estimate_not_solved(sample, n, price, tier="default"):
    raise NotImplementedError("return the cost in USD of n inputs like the sample's")


def cost_estimate_usage_module(sample, n, price, tier="default"):
    """Another right answer: through helpers.usage.cost, as the lesson does."""
    from helpers.usage import Usage, cost

    total = sum((Usage(u["prompt_tokens"], u["cached_tokens"], u["completion_tokens"], calls=1, model=price.model,
                       tier=tier) for u in sample), Usage())
    return cost(total) / len(sample) * n


def cost_estimate_rounded_tokens(sample, n, price, tier="default"):  # a mean of tokens, then priced: also right
    mean = {k: sum(u[k] for u in sample) / len(sample) for k in sample[0]}
    usd = ((mean["prompt_tokens"] - mean["cached_tokens"]) * price.input + mean["cached_tokens"] * price.cached_input
           + mean["completion_tokens"] * price.output) / 1e6 * n
    return usd * (1 - BATCH_DISCOUNT) if tier != "default" else usd


@pytest.mark.parametrize("answer", [cost_estimate_of(), cost_estimate_usage_module, cost_estimate_rounded_tokens])
def test_cost_estimate_accepts_the_solution(answer, capsys):
    check_cost_estimate(answer)
    assert "✓ Passed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "answer, hint",
    [
        (cost_estimate_of(scale="one"), "cost of ONE input"),  # not scaled to n
        (cost_estimate_of(scale="total"), "sample's total, not the job's"),  # not scaled to n either
        (cost_estimate_of(per=1e3), "per 1M.*not per 1,000"),
        (cost_estimate_of(cached="full"), "Cached tokens are billed at cached_input"),
        (cost_estimate_of(cached="twice"), "counted the cached tokens twice"),
        (cost_estimate_of(output="input"), "Completion \\(output\\) tokens have their own price"),
        (cost_estimate_of(output="none"), "left out the completion tokens"),
        (cost_estimate_of(discount="always"), "realtime job .*discount applies only"),
        (cost_estimate_of(pick="max"), "largest input's cost"),
        (cost_estimate_of(pick="first"), "first input's cost"),
        (lambda sample, n, price, tier="default": f"${cost_estimate_of()(sample, n, price, tier):.2f}",
         "not a string"),
        (cost_estimate_not_solved, "Not solved yet"),
        # wrong answers beyond the first list
        (cost_estimate_of(scale="total_times_n"), "counts every input len\\(sample\\) times"),
        (cost_estimate_of(per=1), "divide tokens × price by 1e6"),  # forgot the per-million altogether
        (cost_estimate_of(discount="never"), "billed at batch prices: apply the discount"),
        (lambda sample, n, price, tier="default": True, "as a number"),  # a bool is not a cost
        (lambda sample, n, price, tier="default": round(cost_estimate_of()(sample, n, price, tier), 1),
         "you estimated"),  # rounded to 10 cents: the fallback hint gives the right figure
        (lambda sample, n, price, tier="default": cost_estimate_of()(sample, n, price, tier) * 1.2,
         "Price each input"),  # a made-up 20% margin
    ],
)
def test_cost_estimate_rejects(answer, hint):
    fails_with(check_cost_estimate, answer, hint)


def test_cost_estimate_wrong_answers_are_told_apart():
    """In every generated case each slip gives another figure than the right one and than every other slip."""
    rng = random.Random(7)
    for args in [("gpt-4o-mini", 5, 10_000, "default"), ("gpt-4.1", 8, 2_500, "default"),
                 ("gpt-4o", 6, 40_000, "batch"), ("gpt-4.1-mini", 4, 777, "flex")]:
        values = sorted(lesson07._estimates(*lesson07._cost_case(rng, *args)).values())
        assert all(not math.isclose(a, b, rel_tol=1e-3) for a, b in zip(values, values[1:])), args


# ---------------------------------------------------------------- 07, exercise 2: realtime, flex or batch


def mode_choice_solution(modes, deadline_s, budget_usd):  # the notebook's solution
    fits = [name for name, m in modes.items() if m["worst_case_s"] <= deadline_s and m["cost_usd"] <= budget_usd]
    return min(fits, key=lambda name: modes[name]["cost_usd"], default=None)


def mode_choice_by(time="worst_case_s", *, budget=True, fallback=None, pick="cheapest", strict_deadline=False,
                   strict_budget=False):
    def choose_mode(modes, deadline_s, budget_usd):
        def in_time(m):
            return m[time] < deadline_s if strict_deadline else m[time] <= deadline_s

        def affordable(m):
            return not budget or (m["cost_usd"] < budget_usd if strict_budget else m["cost_usd"] <= budget_usd)

        fits = [name for name, m in modes.items() if in_time(m) and affordable(m)]
        if not fits:
            return fallback(modes) if fallback else None
        if pick == "first":
            return fits[0]
        return min(fits, key=lambda name: modes[name]["cost_usd"])
    return choose_mode


def cheapest(modes, *_):
    return min(modes, key=lambda name: modes[name]["cost_usd"])


def fastest(modes, *_):
    return min(modes, key=lambda name: modes[name]["worst_case_s"])


def mode_choice_not_solved(modes, deadline_s, budget_usd):
    raise NotImplementedError("return the cheapest mode that meets the deadline and the budget, or None")


def test_mode_choice_accepts_the_solution(capsys):
    check_mode_choice(mode_choice_solution)
    assert "✓ Passed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "answer, hint",
    [
        (cheapest, "misses the deadline"),  # always the cheapest
        (fastest, "return the CHEAPEST mode"),  # always the fastest
        (mode_choice_by(budget=False), "over the budget .*return None"),  # ignores the budget
        (mode_choice_by("measured_s"), "by its measured time .*24 h window"),  # batch's measured turnaround
        (mode_choice_by(budget=False, fallback=cheapest), "over the budget|misses the deadline"),
        (mode_choice_by(fallback=fastest), "return None"),  # never None
        (lambda modes, deadline_s, budget_usd: modes[mode_choice_solution(modes, deadline_s, budget_usd) or "batch"],
         "return one of the names"),  # the mode's dict, not its name
        (lambda modes, deadline_s, budget_usd: str(mode_choice_solution(modes, deadline_s, budget_usd)),
         "not 'None' or False"),
        (mode_choice_not_solved, "Not solved yet"),
        # wrong answers beyond the first list
        (mode_choice_by(pick="first"), "return the CHEAPEST mode"),  # the first that fits, in the dict's order
        (mode_choice_by(strict_deadline=True), "you returned None, but 'batch' fits.*inclusive"),
        (mode_choice_by(strict_budget=True), "you returned None, but 'flex' fits.*inclusive"),
        (lambda modes, deadline_s, budget_usd: (mode_choice_solution(modes, deadline_s, budget_usd) or "").title()
         or None, "return one of the names"),  # "Batch"
    ],
)
def test_mode_choice_rejects(answer, hint):
    fails_with(check_mode_choice, answer, hint)


# ---------------------------------------------------------------- 07, exercise 3: collect a batch


def collect_rows_solution(custom_ids, output_rows, error_rows):  # the notebook's solution
    found = {}
    for row in error_rows:
        response = row["response"]
        found[row["custom_id"]] = {"error": row["error"]["code"] if response is None
                                   else f"HTTP {response['status_code']}"}
    for row in output_rows:  # an answer wins over a failed attempt's error row
        found[row["custom_id"]] = row["response"]["body"]["choices"][0]["message"]["content"]
    return [found.get(cid, {"error": "missing"}) for cid in custom_ids]


def text(row):
    return row["response"]["body"]["choices"][0]["message"]["content"]


def collect_rows_by_position(custom_ids, output_rows, error_rows):  # langasync 0.2.3's way: zip
    answers = [text(row) for row in output_rows]
    return answers + [{"error": "missing"}] * (len(custom_ids) - len(answers))


def collect_rows_dropping(custom_ids, output_rows, error_rows):  # only the inputs that have a row
    entries = collect_rows_solution(custom_ids, output_rows, error_rows)
    return [entry for entry in entries if entry != {"error": "missing"}]


def collect_rows_null_crash(custom_ids, output_rows, error_rows):  # reads every error row's status code
    found = {row["custom_id"]: {"error": f"HTTP {row['response']['status_code']}"} for row in error_rows}
    found |= {row["custom_id"]: text(row) for row in output_rows}
    return [found.get(cid, {"error": "missing"}) for cid in custom_ids]


def collect_rows_error_as_answer(custom_ids, output_rows, error_rows):  # every row's body is "the answer"
    found = {row["custom_id"]: str(row["response"]["body"]) if row["response"] else {"error": row["error"]["code"]}
             for row in error_rows}
    found |= {row["custom_id"]: text(row) for row in output_rows}
    return [found.get(cid, {"error": "missing"}) for cid in custom_ids]


def collect_rows_error_wins(custom_ids, output_rows, error_rows):  # error rows read last: the retry's answer lost
    found = {row["custom_id"]: text(row) for row in output_rows}
    for row in error_rows:
        found[row["custom_id"]] = {"error": row["error"]["code"] if row["response"] is None else "HTTP error"}
    return [found.get(cid, {"error": "missing"}) for cid in custom_ids]


def collect_rows_all_rows(custom_ids, output_rows, error_rows):  # one entry per ROW: the retried id twice
    by_id = {row["custom_id"]: text(row) for row in output_rows}
    rows = [by_id.get(cid, {"error": "missing"}) for cid in custom_ids]
    return rows + [{"error": "HTTP"} for row in error_rows if row["custom_id"] in by_id]


def collect_rows_sorted(custom_ids, output_rows, error_rows):  # sorts the ids: "item-10" before "item-2"
    return collect_rows_solution(sorted(custom_ids), output_rows, error_rows)


def collect_rows_choices_crash(custom_ids, output_rows, error_rows):  # every non-null response has choices
    found = {}
    for row in output_rows + error_rows:
        found.setdefault(row["custom_id"], text(row) if row["response"] else {"error": row["error"]["code"]})
    return [found.get(cid, {"error": "missing"}) for cid in custom_ids]


def collect_rows_missing_as_none(custom_ids, output_rows, error_rows):
    return [None if entry == {"error": "missing"} else entry
            for entry in collect_rows_solution(custom_ids, output_rows, error_rows)]


def collect_rows_all_missing(custom_ids, output_rows, error_rows):  # ignores the error file
    found = {row["custom_id"]: text(row) for row in output_rows}
    return [found.get(cid, {"error": "missing"}) for cid in custom_ids]


def collect_rows_not_solved(custom_ids, output_rows, error_rows):
    raise NotImplementedError("return one result per custom_id: its answer text or {'error': ...}")


def test_collect_rows_accepts_the_solution(capsys):
    check_collect_rows(collect_rows_solution)
    assert "✓ Passed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "answer, hint",
    [
        (collect_rows_by_position, "another input's answer.*custom_id, not by position"),
        (collect_rows_dropping, "results for 14 inputs"),
        (collect_rows_null_crash, "raised TypeError.*\"response\": null"),
        (collect_rows_error_as_answer, "Never turn an error row into an answer"),
        (collect_rows_error_wins, "the answer wins"),
        (collect_rows_all_rows, "results for 14 inputs.*never doubled"),
        (lambda ids, out, err: {cid: entry for cid, entry in zip(ids, collect_rows_solution(ids, out, err))},
         "returned a dict"),
        (collect_rows_not_solved, "Not solved yet"),
        # wrong answers beyond the first list
        # sorted ids: "item-10" before "item-2"
        (collect_rows_sorted, "has an answer in the output file.*not by position or sorted"),
        (collect_rows_choices_crash, "raised KeyError.*body with 'error', not 'choices'"),
        (lambda ids, out, err: [{"error": "no row"} if entry == {"error": "missing"} else entry
                                for entry in collect_rows_solution(ids, out, err)], "mark it \\{'error': 'missing'\\}"),
        (collect_rows_missing_as_none, "no row in either file"),  # None is not an error marker
        (collect_rows_all_missing, "in the error file .*not 'missing'"),
        (lambda ids, out, err: [row["response"]["body"]["choices"][0]["message"] if isinstance(row, dict) else row
                                for row in out], "8 results for 14 inputs"),  # the output rows' message dicts
        (lambda ids, out, err: (entry for entry in collect_rows_solution(ids, out, err)), "return a list"),
    ],
)
def test_collect_rows_rejects(answer, hint):
    fails_with(check_collect_rows, answer, hint)


def test_collect_rows_cases_hold_every_kind_of_row():
    """Each case has answers out of input order, both error shapes, missing rows and a retried row."""
    ids = [f"item-{i}" for i in range(14)]
    output, errors, expected, why = lesson07._rows_case(11, ids)
    assert [row["custom_id"] for row in output] != [cid for cid in ids if cid in {r["custom_id"] for r in output}]
    assert {row["response"] is None for row in errors} == {True, False}
    assert sorted(why.values()).count("missing") == 2 and "retried" in why.values()
    assert len(expected) == len(ids)
