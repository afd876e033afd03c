"""Lesson 04's checks reject plausible wrong answers with the right hint."""

import csv
import io
import json

import pytest

from helpers.checks import ExerciseFailed, check_questions_from_csv, check_remaining, check_slot_utilisation
from helpers.results_file import read_jsonl_results

from checks_support import chain, fast_mock, run  # noqa: F401  (fixtures)

# ---------------------------------------------------------------- 04, exercise 1: questions from a CSV file


def csv_lazy_correct(path):  # the notebook's solution
    with open(path, encoding="utf-8", newline="") as file:
        for row in csv.DictReader(file):
            if row["question"].strip():
                yield {"text": row["question"].strip()}


def csv_list_of_rows(path):  # yields, but only after reading every row
    with open(path, encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    for row in rows:
        if row["question"].strip():
            yield {"text": row["question"].strip()}


def csv_read_then_parse(path):
    with open(path, encoding="utf-8") as file:
        text = file.read()
    for row in csv.DictReader(io.StringIO(text)):
        if row["question"].strip():
            yield {"text": row["question"].strip()}


def csv_returns_list(path):
    with open(path, encoding="utf-8", newline="") as file:
        return [{"text": row["question"]} for row in csv.DictReader(file) if row["question"].strip()]


def csv_split_on_comma(path):
    with open(path, encoding="utf-8") as file:
        next(file)
        for line in file:
            question = line.rstrip("\r\n").split(",", 1)[1]
            if question.strip():
                yield {"text": question.strip()}


def csv_split_unpacking(path):
    with open(path, encoding="utf-8") as file:
        next(file)
        for line in file:
            _, question = line.rstrip("\r\n").split(",")  # a second comma, or none, raises
            yield {"text": question}


def csv_plain_reader_with_header(path):
    with open(path, encoding="utf-8", newline="") as file:
        for _, question in csv.reader(file):
            if question.strip():
                yield {"text": question.strip()}


def csv_yields_rows(path):
    with open(path, encoding="utf-8", newline="") as file:
        yield from csv.DictReader(file)


def csv_yields_strings(path):
    with open(path, encoding="utf-8", newline="") as file:
        for row in csv.DictReader(file):
            if row["question"].strip():
                yield row["question"].strip()


def csv_keeps_blanks(path):
    with open(path, encoding="utf-8", newline="") as file:
        for row in csv.DictReader(file):
            yield {"text": row["question"].strip()}


def csv_not_solved(path):
    raise NotImplementedError()


def csv_forgets_to_yield(path):
    with open(path, encoding="utf-8", newline="") as file:
        for row in csv.DictReader(file):
            {"text": row["question"]}  # noqa: B018 - the mistake: no yield


@pytest.mark.parametrize(
    "answer, hint",
    [
        (csv_list_of_rows, "reads the whole file first"),
        (csv_read_then_parse, "reads the whole file first"),
        (csv_returns_list, "returned a list"),
        (csv_split_on_comma, "quoted field"),
        (csv_split_unpacking, "raised ValueError.*csv.DictReader"),
        (csv_plain_reader_with_header, "header row"),
        (csv_yields_rows, "keys"),
        (csv_yields_strings, "needs a mapping"),
        (csv_keeps_blanks, "blank question"),
        (csv_not_solved, "Not solved yet"),
        (csv_forgets_to_yield, "returned None"),
    ],
)
def test_questions_from_csv_rejects(answer, hint):
    with pytest.raises(ExerciseFailed, match=hint):
        run(check_questions_from_csv(answer))


def test_questions_from_csv_accepts_the_notebooks_solution(capsys):
    run(check_questions_from_csv(csv_lazy_correct))
    assert "✓ Passed" in capsys.readouterr().out


# ---------------------------------------------------------------- 04, exercise 2: what is left to do


def remaining_correct(path, n):  # the notebook's solution
    done = set()
    with open(path, encoding="utf-8") as file:
        for line in file:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if "output" in record:
                done.add(record["index"])
            else:
                done.discard(record["index"])
    return [i for i in range(n) if i not in done]


def remaining_from_the_library(path, n):  # also right: the library's reader keeps the last record
    done = {record["index"] for record in read_jsonl_results(path) if "output" in record}
    return [i for i in range(n) if i not in done]


def remaining_any_output(path, n):  # "done if any record for it has an output"
    done = set()
    for line in open(path, encoding="utf-8"):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if "output" in record:
            done.add(record["index"])
    return [i for i in range(n) if i not in done]


def remaining_first_record_decides(path, n):
    first = {}
    for line in open(path, encoding="utf-8"):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        first.setdefault(record["index"], "output" in record)
    return [i for i in range(n) if not first.get(i)]


def remaining_raises_on_torn_line(path, n):
    records = [json.loads(line) for line in open(path, encoding="utf-8")]
    done = {r["index"] for r in records if "output" in r}
    return [i for i in range(n) if i not in done]


def remaining_only_errors(path, n):  # forgets the indices that never started
    last = {}
    for line in open(path, encoding="utf-8"):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        last[record["index"]] = record
    return sorted(i for i, record in last.items() if "output" not in record)


def remaining_count(path, n):
    return len(remaining_correct(path, n))


def remaining_unsorted(path, n):
    return sorted(remaining_correct(path, n), reverse=True)


def remaining_torn_line_counts_as_done(path, n):
    done = set()
    for line in open(path, encoding="utf-8"):
        try:
            record = json.loads(line)
        except ValueError:
            done.add(int(line.split(":")[1].split(",")[0]))  # "it was being written, so it finished"
            continue
        if "output" in record:
            done.add(record["index"])
        else:
            done.discard(record["index"])
    return [i for i in range(n) if i not in done]


@pytest.mark.parametrize(
    "answer, hint",
    [
        (remaining_any_output, "LAST record decides, not whether any record"),
        (remaining_first_record_decides, "LAST record"),
        (remaining_raises_on_torn_line, "cut in half"),
        (remaining_only_errors, "never started"),
        (remaining_count, "returned a count"),
        (remaining_unsorted, "sorted"),
        (remaining_torn_line_counts_as_done, "cut off by the kill"),
        (lambda path, n: None, "returned None"),
    ],
)
def test_remaining_rejects(answer, hint):
    with pytest.raises(ExerciseFailed, match=hint):
        check_remaining(answer)


@pytest.mark.parametrize("answer", [remaining_correct, remaining_from_the_library])
def test_remaining_accepts_right_answers(answer, capsys):
    check_remaining(answer)
    assert "✓ Passed" in capsys.readouterr().out


# ---------------------------------------------------------------- 04, exercise 3: how busy were the slots


def utilisation_correct(intervals, max_concurrency):
    busy = sum(end - start for start, end in intervals)
    span = max(end for _, end in intervals) - min(start for start, _ in intervals)
    return busy / (max_concurrency * span)


@pytest.mark.parametrize(
    "answer, hint",
    [
        (lambda iv, c: sum(e - s for s, e in iv) / (max(e for _, e in iv) - min(s for s, _ in iv)), "divide by max_concurrency"),
        (lambda iv, c: sum(e - s for s, e in iv) / (c * max(e for _, e in iv)), "not from 0"),
        (lambda iv, c: len(iv) / (c * 2), "counts requests"),
        (lambda iv, c: sum(e - s for s, e in iv) / (c * (iv[-1][1] - iv[0][0])), "busy 3.5 s"),  # span from the last-listed
        (lambda iv, c: round(utilisation_correct(iv, c), 1), "you returned 0.9"),
        (lambda iv, c: f"{utilisation_correct(iv, c):.0%}", "Return a number"),
    ],
)
def test_slot_utilisation_rejects(answer, hint):
    with pytest.raises(ExerciseFailed, match=hint):
        check_slot_utilisation(answer)


def test_slot_utilisation_accepts_a_correct_answer(capsys):
    runs = {"made up": {"intervals": [(0.0, 1.0), (0.2, 0.9), (0.5, 2.0)], "concurrency": 2}}
    check_slot_utilisation(utilisation_correct, runs)
    assert "✓ Passed" in capsys.readouterr().out
