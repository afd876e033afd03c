"""Lesson 08's checks reject plausible wrong answers with the right hint, and pass the notebook's solutions.

Every module-level name carries its check's name (concurrency_, shard_), so the per-lesson test files
can be merged into one without collisions. Neither check needs a model.
"""

import math

import pytest

from helpers.checks import ExerciseFailed, check_concurrency_needed, check_shard


def fails_with(check, answer, hint):
    with pytest.raises(ExerciseFailed, match=hint):
        check(answer)


# ---------------------------------------------------------------- 08, exercise 1: the concurrency a job needs


def concurrency_of(*, per_minute=60, combine=min, use_tpm=True, law="times", rounding=math.ceil):
    """The notebook's solution (the defaults), or one of its usual slips."""
    def concurrency_needed(rpm, tpm, tokens_per_request, latency_s):
        by_rpm, by_tpm = rpm / per_minute, tpm / per_minute / tokens_per_request
        rate = combine(by_rpm, by_tpm) if use_tpm else by_rpm
        return rounding(rate * latency_s if law == "times" else rate / latency_s)
    return concurrency_needed


def test_concurrency_solution_passes(capsys):
    check_concurrency_needed(concurrency_of())
    assert "✓ Passed" in capsys.readouterr().out


@pytest.mark.parametrize("slip, hint", [
    (dict(per_minute=1), "per MINUTE"),
    (dict(use_tpm=False), "ignored the TPM limit"),
    (dict(combine=max), "LOWER of the two limits"),
    (dict(law="divide"), "multiply by the latency"),
    (dict(rounding=math.floor), "Round UP"),
    (dict(rounding=round), "Round UP"),  # round() is right where the fraction is over a half
    (dict(rounding=lambda x: x), "return a whole number"),  # a float, not rounded at all
    (dict(rounding=lambda x: int(x) + 1), "needs"),  # one too many where the product is whole
])
def test_concurrency_slips_are_named(slip, hint):
    fails_with(check_concurrency_needed, concurrency_of(**slip), hint)


def test_concurrency_unsolved_says_so():
    def concurrency_needed(rpm, tpm, tokens_per_request, latency_s):
        raise NotImplementedError()
    fails_with(check_concurrency_needed, concurrency_needed, "Not solved yet")


def test_concurrency_bool_and_string_are_refused():
    fails_with(check_concurrency_needed, lambda *job: True, "whole number")
    fails_with(check_concurrency_needed, lambda *job: "1000", "whole number")


# ---------------------------------------------------------------- 08, exercise 2: shard a job


def shard_solution(inputs, k, processes):
    return [(i, inputs[i]) for i in range(k, len(inputs), processes)]


def shard_contiguous(inputs, k, processes):  # also right: contiguous, balanced blocks
    size, extra = divmod(len(inputs), processes)
    start = k * size + min(k, extra)
    return [(i, inputs[i]) for i in range(start, start + size + (k < extra))]


@pytest.mark.parametrize("answer", [shard_solution, shard_contiguous])
def test_shard_right_answers_pass(answer, capsys):
    check_shard(answer)
    assert "✓ Passed" in capsys.readouterr().out


def shard_floor_blocks(inputs, k, processes):  # drops the remainder
    size = len(inputs) // processes
    return [(i, inputs[i]) for i in range(k * size, (k + 1) * size)]


def shard_last_takes_rest(inputs, k, processes):  # nothing lost, but the last process does the most
    size = len(inputs) // processes
    end = len(inputs) if k == processes - 1 else (k + 1) * size
    return [(i, inputs[i]) for i in range(k * size, end)]


def shard_ceil_overlap(inputs, k, processes):  # blocks of ceil(n/P) that start every n//P: overlap
    size, step = -(-len(inputs) // processes), max(1, len(inputs) // processes)
    return [(i, inputs[i]) for i in range(k * step, min(len(inputs), k * step + size))]


@pytest.mark.parametrize("answer, hint", [
    (lambda inputs, k, p: inputs[k::p], r"\(index, input\) PAIRS"),
    (lambda inputs, k, p: list(enumerate(inputs[k::p])), "WHOLE job"),
    (lambda inputs, k, p: [(x, i) for i, x in enumerate(inputs) if i % p == k], "index first"),
    (shard_floor_blocks, "went to no process"),
    (shard_last_takes_rest, "split evenly"),
    (shard_ceil_overlap, "given to two processes"),
    (lambda inputs, k, p: [(i, inputs[i]) for i in range(len(inputs)) if i % p == k] * 2, "given to two"),
    (lambda inputs, k, p: [(i + 1, inputs[i]) for i in range(k, len(inputs), p)], "indices run from 0"),
    (lambda inputs, k, p: [(i, inputs[-1 - i]) for i in range(k, len(inputs), p)], "paired with another input"),
    (lambda inputs, k, p: [(i, inputs[i]) for i in range(len(inputs))] if k == 0 else [], "given to two|split"),
    (lambda inputs, k, p: None, "list of \\(index, input\\) pairs"),
])
def test_shard_slips_are_named(answer, hint):
    fails_with(check_shard, answer, hint)


def test_shard_unsolved_says_so():
    def shard(inputs, k, processes):
        raise NotImplementedError()
    fails_with(check_shard, shard, "Not solved yet")
