"""Do not pay twice: an LLM cache in a SQLite file, and one request per distinct prompt in a job.

A learner reads this (lesson 07).

    from langchain_core.globals import set_llm_cache
    set_llm_cache(SQLiteCache("runs/07/cache.sqlite"))   # every model now answers a repeat from the file
    unique, where = distinct_inputs(inputs)              # send each distinct input once ...
    answers = spread(await chain.abatch(unique), where)  # ... and give every input its answer

`SQLiteCache` is a LangChain `BaseCache`: `set_llm_cache` makes every chat model look a request up
(its messages and its settings: model, temperature, max_tokens, ...) before sending it, and store the
answer after. A hit sends nothing, so it costs nothing; its answer is marked with zero tokens of
usage, so that usage counted from answers stays what was billed (LangChain would replay the first
answer's usage, which was billed once).

Why not `langchain_community.cache.SQLiteCache`: measured on this workbook's machine, langchain-community
0.4.2 adds 69 MB (langchain-community, langchain-classic, SQLAlchemy), takes 2 s to import, and warns on
import that it "is being sunset and is no longer actively maintained". The cache it would give is the
table below, on Python's own `sqlite3`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.load import dumps, loads

NO_USAGE = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}


class SQLiteCache(BaseCache):
    """LangChain's LLM cache in one SQLite file: (prompt, model settings) -> the answer's generations."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # one connection, used from the event loop and from threads
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        with self._lock, self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS answers (prompt TEXT, llm TEXT, generations TEXT, "
                             "PRIMARY KEY (prompt, llm))")

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        with self._lock:
            row = self._db.execute("SELECT generations FROM answers WHERE prompt = ? AND llm = ?",
                                   (prompt, llm_string)).fetchone()
        if row is None:
            return None
        with warnings.catch_warnings():  # langchain-core marks loads() as beta
            warnings.simplefilter("ignore")
            generations = [loads(text, allowed_objects="core") for text in json.loads(row[0])]
        for generation in generations:
            message = getattr(generation, "message", None)
            if message is not None and getattr(message, "usage_metadata", None) is not None:
                message.usage_metadata = dict(NO_USAGE)  # a hit was not billed
        return generations

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        stored = json.dumps([dumps(generation) for generation in return_val])
        with self._lock, self._db:
            self._db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?)", (prompt, llm_string, stored))

    def clear(self, **kwargs: Any) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM answers")

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def distinct_inputs(inputs: Sequence[Any]) -> tuple[list[Any], list[int]]:
    """(each distinct input once, in first-seen order; for every input, the position of its copy there)."""
    unique: list[Any] = []
    seen: dict[str, int] = {}
    where = []
    for index, item in enumerate(inputs):
        try:
            key = json.dumps(item, sort_keys=True, ensure_ascii=False)
        except TypeError as error:
            raise ValueError(f"input {index} cannot be compared with the others ({error}): "
                             "give inputs made of str, numbers, lists and dicts") from None
        if key not in seen:
            seen[key] = len(unique)
            unique.append(item)
        where.append(seen[key])
    return unique, where


def spread(answers: Sequence[Any], where: Sequence[int]) -> list[Any]:
    """Every input's answer, from the answers to the distinct inputs (`where` from distinct_inputs)."""
    if where and max(where) >= len(answers):
        raise ValueError(f"{len(answers)} answers for {max(where) + 1} distinct inputs: one answer each is needed")
    return [answers[position] for position in where]
