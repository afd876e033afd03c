"""The exercise checks, one module per lesson (backstage: a learner need not read these).

A notebook calls a check after an exercise: ``from helpers.checks import check_first_answers``.
Each `check_*` runs the learner's answer against the local mock (never a paid API), prints
"✓ Passed: ..." or raises `ExerciseFailed` with a hint that names the mistake ("results are in
completion order: write each output to its index"). The checks look for the usual wrong answers,
not only for the right one.

| module      | lesson                        | checks                                                              |
| ----------- | ----------------------------- | ------------------------------------------------------------------- |
| common.py   | all                           | ExerciseFailed, fail/passed, calling the learner's code, peak_overlap |
| lesson01.py | 01 basic abatch               | check_concurrency_choice, check_ordered_progress                    |
| lesson02.py | 02 streaming                  | check_first_answers, check_ttft_per_input                           |
| lesson03.py | 03 observability              | check_find_stragglers, check_run_with_ttft                          |
| lesson04.py | 04 chunks, window, resume     | check_questions_from, check_remaining, check_slot_utilisation       |
| lesson05.py | 05 performance comparison     | check_knee, check_predicted_throughput                              |
| lesson06.py | 06 reliability                | check_retry_rule, check_tier_limiter, check_finish                  |
"""

from helpers.checks.common import ExerciseFailed
from helpers.checks.lesson01 import check_concurrency_choice, check_ordered_progress
from helpers.checks.lesson02 import check_first_answers, check_ttft_per_input
from helpers.checks.lesson03 import check_find_stragglers, check_run_with_ttft
from helpers.checks.lesson04 import check_questions_from, check_remaining, check_slot_utilisation
from helpers.checks.lesson05 import check_knee, check_predicted_throughput
from helpers.checks.lesson06 import check_finish, check_retry_rule, check_tier_limiter

__all__ = [
    "ExerciseFailed",
    "check_concurrency_choice",
    "check_find_stragglers",
    "check_finish",
    "check_first_answers",
    "check_knee",
    "check_ordered_progress",
    "check_predicted_throughput",
    "check_questions_from",
    "check_remaining",
    "check_retry_rule",
    "check_run_with_ttft",
    "check_slot_utilisation",
    "check_tier_limiter",
    "check_ttft_per_input",
]
