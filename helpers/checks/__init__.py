"""The exercise checks, one module per lesson (backstage: a learner need not read these).

A notebook calls a check after an exercise: ``from helpers.checks import check_first_answers``.
Each `check_*` runs the learner's answer against a private local mock, never the learner's backend,
even when `.env` selects a paid API: learner code that calls get_llm() inside a check is routed to
the check's mock (`helpers.backend.routed_to`); tests/test_checks_private.py proves it. It prints
"✓ Passed: ..." or raises `ExerciseFailed` with a hint that names the mistake ("results are in
completion order: write each output to its index"). The checks look for the usual wrong answers,
not only for the right one.

| module      | lesson                        | checks                                                              |
| ----------- | ----------------------------- | ------------------------------------------------------------------- |
| common.py   | all                           | ExerciseFailed, fail/passed, calling the learner's code, peak_overlap |
| lesson01.py | 01 basic abatch               | check_concurrency_choice (a Little's-law function), check_ordered_progress (progress as answers arrive, failures kept in place) |
| lesson02.py | 02 streaming                  | check_first_answers, check_ttft_per_input                           |
| lesson03.py | 03 observability              | check_find_stragglers, check_run_with_ttft, check_run_workers       |
| lesson04.py | 04 chunks, window, resume     | check_questions_from_csv, check_remaining, check_slot_utilisation   |
| lesson05.py | 05 performance comparison     | check_knee, check_predicted_throughput                              |
| lesson06.py | 06 reliability                | check_retry_rule, check_tier_limiter, check_finish                  |
| lesson07.py | 07 cost and the Batch API     | check_cost_estimate, check_mode_choice, check_collect_rows          |
| lesson08.py | 08 scale out                  | check_concurrency_needed, check_shard                               |

Every `check_*` function of the lesson modules is importable from here.
"""

from helpers.checks import lesson01, lesson02, lesson03, lesson04, lesson05, lesson06, lesson07, lesson08
from helpers.checks.common import ExerciseFailed

# Every `check_*` function of the lesson modules, importable from here.
_CHECKS = {name: value for module in (lesson01, lesson02, lesson03, lesson04, lesson05, lesson06, lesson07, lesson08)
           for name, value in vars(module).items() if name.startswith("check_") and callable(value)}
globals().update(_CHECKS)
__all__ = ["ExerciseFailed", *sorted(_CHECKS)]
