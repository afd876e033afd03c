"""The SQLite LLM cache and one request per distinct input (helpers/caching.py)."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.globals import set_llm_cache

from helpers.backend import translation_chain
from helpers.caching import SQLiteCache, distinct_inputs, spread
from helpers.mock import start_mock

run = asyncio.new_event_loop().run_until_complete


@pytest.fixture
def mock():
    handle = start_mock(speed=50, error_rate=0, hang_rate=0, drop_rate=0)
    yield handle
    handle.stop()


def _llm(mock, **settings):
    from langchain_openai import ChatOpenAI
    return ChatOpenAI(model="gpt-4o-mini", base_url=mock.base_url, api_key="k", temperature=0, **settings)


def test_a_rerun_from_the_cache_file_sends_nothing_and_reports_no_usage(mock, tmp_path):
    inputs = [{"text": f"测试{i}"} for i in range(6)]
    cache = SQLiteCache(tmp_path / "cache.sqlite")
    set_llm_cache(cache)
    try:
        chain = translation_chain(_llm(mock))
        first = run(chain.abatch(inputs))
        assert mock.stats()["requests"] == 6 and len(cache) == 6
        set_llm_cache(SQLiteCache(tmp_path / "cache.sqlite"))  # a new kernel: the same file
        again = run(_llm(mock).abatch([f"翻译成英文：{item['text']}" for item in inputs]))
        assert [m.content for m in again] == first
        assert mock.stats()["requests"] == 6, "a cached prompt was sent again"
        assert all(m.usage_metadata["total_tokens"] == 0 for m in again), "a hit must not replay billed usage"
        run(_llm(mock, max_tokens=3).ainvoke("翻译成英文：测试0"))
        assert mock.stats()["requests"] == 7, "other model settings must miss the cache"
    finally:
        set_llm_cache(None)


def test_distinct_inputs_send_each_prompt_once_and_every_input_gets_its_answer():
    inputs = [{"text": "a"}, {"text": "b"}, {"text": "a"}, {"text": "c"}, {"text": "b"}]
    unique, where = distinct_inputs(inputs)
    assert unique == [{"text": "a"}, {"text": "b"}, {"text": "c"}]
    assert spread(["A", "B", "C"], where) == ["A", "B", "A", "C", "B"]
    assert distinct_inputs([{"a": 1, "b": 2}, {"b": 2, "a": 1}])[0] == [{"a": 1, "b": 2}]  # key order
    with pytest.raises(ValueError, match="3 distinct inputs"):
        spread(["A", "B"], where)
    with pytest.raises(ValueError, match="input 1 cannot be compared"):
        distinct_inputs([{"text": "a"}, {"text": object()}])
