"""Lesson 05's checks reject plausible wrong answers with the right hint.

Both checks are pure functions of the learner's code and a sweep's rows: no request is sent. The
rows below stand for a measured sweep (latency 0.2 s, a CPU ceiling near 150 req/s).
"""

import pytest

from helpers.checks import ExerciseFailed, check_knee, check_predicted_throughput

from checks_support import chain, fast_mock, run  # noqa: F401  (fixtures)

KNEE_SWEEP = [{"concurrency": c, "throughput": x, "lone_latency_s": 0.2, "ideal": c / 0.2}
              for c, x in [(1, 4.6), (2, 9.1), (5, 22.0), (10, 43.0), (20, 80.0), (50, 128.0), (100, 141.0),
                           (200, 146.0), (500, 139.0)]]
PREDICTED_CPU_MS = 6.5  # 1000 / 6.5 ≈ 154 req/s, the sweep's plateau
PREDICTED_RPM = 30_000


# ---------------------------------------------------------------- 05, exercise 1: the knee


def knee_correct(rows):  # the notebook's solution
    best = max(row["throughput"] for row in rows)
    return min(row["concurrency"] for row in rows if row["throughput"] >= 0.9 * best)


def knee_max_throughput(rows):
    return max(rows, key=lambda row: row["throughput"])["concurrency"]


def knee_first_row(rows):
    return rows[0]["concurrency"]


def knee_smallest_concurrency(rows):
    return min(row["concurrency"] for row in rows)


def knee_first_qualifying_in_list_order(rows):
    best = max(row["throughput"] for row in rows)
    return next(row["concurrency"] for row in rows if row["throughput"] >= 0.9 * best)


def knee_row_before(rows):  # off by one: the last row below the bar
    ordered = sorted(rows, key=lambda row: row["concurrency"])
    best = max(row["throughput"] for row in rows)
    index = next(i for i, row in enumerate(ordered) if row["throughput"] >= 0.9 * best)
    return ordered[index - 1]["concurrency"]


def knee_row_after(rows):  # off by one: the row after the first one over the bar
    ordered = sorted(rows, key=lambda row: row["concurrency"])
    best = max(row["throughput"] for row in rows)
    index = next(i for i, row in enumerate(ordered) if row["throughput"] >= 0.9 * best)
    return ordered[index + 1]["concurrency"]


def knee_against_ideal(rows):  # 90 % of Little's-law ideal instead of the best measured
    return min(row["concurrency"] for row in rows if row["throughput"] >= 0.9 * row["ideal"])


def knee_throughput(rows):
    best = max(row["throughput"] for row in rows)
    return min((row for row in rows if row["throughput"] >= 0.9 * best), key=lambda row: row["concurrency"])["throughput"]


def knee_position(rows):  # my own: the position of the knee's row in the list, not its concurrency
    best = max(row["throughput"] for row in rows)
    return min((i for i, row in enumerate(rows) if row["throughput"] >= 0.9 * best),
               key=lambda i: rows[i]["concurrency"])


def knee_whole_row(rows):  # my own: the row itself
    best = max(row["throughput"] for row in rows)
    return min((row for row in rows if row["throughput"] >= 0.9 * best), key=lambda row: row["concurrency"])


def knee_not_solved(rows):
    raise NotImplementedError()


@pytest.mark.parametrize(
    "answer, hint",
    [
        (knee_max_throughput, "the highest throughput"),
        (knee_first_row, "first one in the list"),
        (knee_smallest_concurrency, "smallest concurrency of the whole sweep"),
        (knee_first_qualifying_in_list_order, "first one in the list"),
        (knee_row_before, "one row too early"),
        (knee_row_after, "one row too late"),
        (knee_against_ideal, "smallest concurrency of the whole sweep.*not with the ideal"),
        (knee_throughput, "You returned a throughput"),
        (knee_position, "a position in the list"),
        (knee_whole_row, "You returned a whole row"),
        (knee_not_solved, "Not solved yet"),
    ],
)
def test_knee_rejects(answer, hint):
    with pytest.raises(ExerciseFailed, match=hint):
        check_knee(answer, KNEE_SWEEP)


def test_knee_accepts_the_notebooks_solution(capsys):
    check_knee(knee_correct, KNEE_SWEEP)
    assert "Passed" in capsys.readouterr().out


# ---------------------------------------------------------------- 05, exercise 2: predicted throughput


def predicted_correct(concurrency, latency_s, rpm_limit, cpu_ms):  # the notebook's solution
    ceilings = [concurrency / latency_s, 1000 / cpu_ms]
    if rpm_limit:
        ceilings.append(rpm_limit / 60)
    return min(ceilings)


def predicted_no_cpu_ceiling(concurrency, latency_s, rpm_limit, cpu_ms):
    return min(concurrency / latency_s, rpm_limit / 60) if rpm_limit else concurrency / latency_s


def predicted_no_rate_limit(concurrency, latency_s, rpm_limit, cpu_ms):
    return min(concurrency / latency_s, 1000 / cpu_ms)


def predicted_rpm_not_per_second(concurrency, latency_s, rpm_limit, cpu_ms):
    return min(concurrency / latency_s, 1000 / cpu_ms, rpm_limit or float("inf"))


def predicted_zero_limit(concurrency, latency_s, rpm_limit, cpu_ms):
    return min(concurrency / latency_s, 1000 / cpu_ms, rpm_limit / 60)


def predicted_cpu_in_seconds(concurrency, latency_s, rpm_limit, cpu_ms):
    return predicted_correct(concurrency, latency_s, rpm_limit, cpu_ms * 1000)


def predicted_inverted_law(concurrency, latency_s, rpm_limit, cpu_ms):
    return predicted_correct(latency_s, concurrency, rpm_limit, cpu_ms)


def predicted_latency_in_ms(concurrency, latency_s, rpm_limit, cpu_ms):  # C / L with L taken as milliseconds
    return predicted_correct(concurrency, latency_s * 1000, rpm_limit, cpu_ms)


def predicted_times_latency(concurrency, latency_s, rpm_limit, cpu_ms):  # X = C · L
    ceilings = [concurrency * latency_s, 1000 / cpu_ms] + ([rpm_limit / 60] if rpm_limit else [])
    return min(ceilings)


def predicted_max(concurrency, latency_s, rpm_limit, cpu_ms):
    ceilings = [concurrency / latency_s, 1000 / cpu_ms] + ([rpm_limit / 60] if rpm_limit else [])
    return max(ceilings)


def predicted_per_minute(concurrency, latency_s, rpm_limit, cpu_ms):  # my own: requests a minute
    return 60 * predicted_correct(concurrency, latency_s, rpm_limit, cpu_ms)


def predicted_text(concurrency, latency_s, rpm_limit, cpu_ms):
    return f"{predicted_correct(concurrency, latency_s, rpm_limit, cpu_ms):.0f} req/s"


def predicted_not_solved(concurrency, latency_s, rpm_limit, cpu_ms):
    raise NotImplementedError()


@pytest.mark.parametrize(
    "answer, hint",
    [
        (predicted_no_cpu_ceiling, "add the CPU ceiling 1000 / cpu_ms"),
        (predicted_no_rate_limit, "did you leave it out"),
        (predicted_rpm_not_per_second, "divide by 60"),
        (predicted_zero_limit, "rpm_limit=0 means no limit"),
        (predicted_cpu_in_seconds, "cpu_ms is in milliseconds"),
        (predicted_inverted_law, "not latency / concurrency"),
        (predicted_latency_in_ms, "latency_s is in seconds"),
        (predicted_times_latency, "not concurrency × latency"),
        (predicted_max, "the lowest ceiling: min, not max"),
        (predicted_per_minute, "That is requests per minute"),
        (predicted_text, "Return a number"),
        (predicted_not_solved, "Not solved yet"),
    ],
)
def test_predicted_throughput_rejects(answer, hint):
    with pytest.raises(ExerciseFailed, match=hint):
        check_predicted_throughput(answer, KNEE_SWEEP, cpu_ms=PREDICTED_CPU_MS, rpm_limit=PREDICTED_RPM)


def test_predicted_throughput_accepts_the_notebooks_solution(capsys):
    check_predicted_throughput(predicted_correct, KNEE_SWEEP, cpu_ms=PREDICTED_CPU_MS, rpm_limit=PREDICTED_RPM)
    assert "Passed" in capsys.readouterr().out


def test_predicted_throughput_rejects_a_prediction_far_from_the_sweep():
    far = [dict(row, throughput=row["throughput"] * 4) for row in KNEE_SWEEP]  # a sweep the formula misses
    with pytest.raises(ExerciseFailed, match="were measured"):
        check_predicted_throughput(predicted_correct, far, cpu_ms=PREDICTED_CPU_MS, rpm_limit=PREDICTED_RPM)
