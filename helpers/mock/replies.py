"""The mock's answers and token counts: pure functions of the prompt (backstage: a learner need
not read this to follow the lessons).

Because an answer depends only on the last user message, stored notebook outputs can be checked:

- a translation request (``翻译成英文：测试3``, ``Translate to English: ...``) gets a word-by-word
  "translation" from a small table (``Test3``); unknown Chinese words become made-up English ones;
- a sum, difference or product (``计算 3 + 4``, ``What is 3 + 4?``) gets ``3 + 4 = 7``;
- anything else gets 10 to 60 words of plausible sentences, chosen by a hash of the prompt.

Tokens are estimated, not counted with a tokenizer: ``count_tokens`` is ``helpers.metrics.approx_tokens``.
A streamed reply is cut into word-ish pieces by ``split_into_pieces``: one piece is one token.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

from helpers.metrics import approx_tokens

__all__ = ["count_prompt_tokens", "count_tokens", "last_user_text", "reply_for", "reply_pieces",
           "split_into_pieces", "stable_hash", "text_of", "translate"]

_WORDS = {"测试": "test", "你好": "hello", "世界": "world", "谢谢": "thank you", "早上好": "good morning",
          "晚安": "good night", "苹果": "apple", "数据": "data", "模型": "model", "批处理": "batch processing",
          "异步": "asynchronous", "并发": "concurrency", "文本": "text", "问题": "question", "答案": "answer",
          "我": "I", "你": "you", "是": "am", "好": "good", "猫": "cat", "狗": "dog", "书": "book"}
_LONGEST_FIRST = sorted(_WORDS, key=len, reverse=True)  # so "早上好" wins over "好"
_PUNCTUATION = {"，": ",", "。": ".", "？": "?", "！": "!", "：": ":", "；": ";", "、": ","}
_MADE_UP = ("river", "morning", "light", "story", "garden", "system", "friend", "market", "window",
            "quiet", "travel", "letter", "music", "city", "paper", "bridge")
_SENTENCES = (
    "Here is a short answer to your question.",
    "The main idea is simple once you see it in one example.",
    "It helps to start small and measure before changing anything.",
    "Most of the time the first step is the hardest one.",
    "A good rule of thumb is to keep each part easy to check.",
    "There are a few ways to look at this, and each has trade-offs.",
    "In practice, the details depend on what you need it for.",
    "If you try it, write down what happened so you can compare later.",
    "The same approach works for larger cases with little change.",
    "That is the short version; the long version adds more examples.",
    "Keep the inputs the same and the results will be the same too.",
    "Let me know if you want a step by step explanation.",
)
_TRANSLATE = re.compile(r"^(?:翻译成英文|翻译|translate(?: this)? (?:in)?to english)\s*[:：]\s*(.+)$", re.I | re.S)
_ARITHMETIC = re.compile(r"^(?:计算|compute|calculate|what is|what's)?\s*(-?\d+)\s*([-+*×])\s*(-?\d+)\s*[?？]?$", re.I)
_PIECE = re.compile(r"\s?[A-Za-z]+|\s?\d{1,3}|\s?[^\sA-Za-z\d]|\s+")  # word-ish pieces, like tokens

count_tokens = approx_tokens  # ceil(UTF-8 bytes / 4), at least 1: one estimate for the mock and the lessons


def stable_hash(*parts: object) -> int:
    """A 64-bit hash that is the same in every process (Python's hash() of a str is not)."""
    data = "\x1f".join(map(str, parts)).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def reply_for(model: str, messages: list[dict]) -> str:
    """The mock's answer: a pure function of the last user message (the model is ignored)."""
    return _answer(last_user_text(messages).strip())[0]


def reply_pieces(messages: list[dict]) -> tuple[str, ...]:
    """The answer cut into pieces, one per token: what the server streams (and counts)."""
    return _answer(last_user_text(messages).strip())[1]


def count_prompt_tokens(messages: list[dict]) -> int:
    """Prompt tokens: each message's content plus 3 for its framing, plus 3 for the reply's priming."""
    return sum(count_tokens(text_of(m)) + 3 for m in messages) + 3


def split_into_pieces(text: str) -> list[str]:
    """Split a reply into word-ish pieces; one piece = one streamed token (they join back to text)."""
    return _PIECE.findall(text)


def text_of(message: dict) -> str:
    """A message's text: its string content, or its text parts joined ("" for anything else)."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):  # content parts: [{"type": "text", "text": "..."}, ...]
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def last_user_text(messages: list[dict]) -> str:
    """The text of the last message with role "user" ("" if there is none)."""
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return text_of(users[-1]) if users else ""


@lru_cache(maxsize=8192)
def _answer(text: str) -> tuple[str, tuple[str, ...]]:
    """(reply, pieces) for the last user message; cached because batches repeat prompts."""
    if match := _TRANSLATE.match(text):
        reply = translate(match.group(1))
    elif match := _ARITHMETIC.match(text):
        a, op, b = int(match.group(1)), match.group(2), int(match.group(3))
        result = a + b if op == "+" else a - b if op == "-" else a * b
        reply = f"{a} {op} {b} = {result}"
    else:
        reply = _plausible_reply(text)
    return reply, tuple(split_into_pieces(reply))


def translate(text: str) -> str:
    """Word-by-word 'translation': known Chinese words from a small dict, others made up."""
    parts, i = [], 0
    while i < len(text):
        word = next((w for w in _LONGEST_FIRST if text.startswith(w, i)), None)
        if word:
            parts.append(" " + _WORDS[word])
            i += len(word)
        elif "\u4e00" <= text[i] <= "\u9fff":  # an unknown Chinese character: 2 chars -> 1 word
            parts.append(" " + _MADE_UP[stable_hash(text[i:i + 2]) % len(_MADE_UP)])
            i += 2
        else:  # digits, Latin letters, spaces and punctuation pass through
            parts.append(_PUNCTUATION.get(text[i], text[i]))
            i += 1
    result = re.sub(r"\s+", " ", "".join(parts)).strip()
    return result[:1].upper() + result[1:]


def _plausible_reply(text: str) -> str:
    """10 to 60 words of hash-chosen sentences: the same text always gets the same reply."""
    target, words, k = 10 + stable_hash(text) % 51, [], 0
    while len(words) < target:
        sentence = _SENTENCES[stable_hash(text, k) % len(_SENTENCES)].split()
        if len(words) >= 10 and len(words) + len(sentence) > 60:
            break
        words += sentence
        k += 1
    return " ".join(words)
