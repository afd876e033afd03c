"""Choose the model the notebooks talk to: the local mock (default), OpenAI, or any
OpenAI-compatible server.

A learner reads this: it is the one switch between the mock and a real API.

Every notebook gets its model from `get_llm()`, so one setting moves all of them.
The setting is read from environment variables first, then from the `.env` file at
the root of the workbook:

| variable           | meaning                                                  | default       |
| ------------------ | -------------------------------------------------------- | ------------- |
| `WORKBOOK_BACKEND` | `mock` or `openai`                                       | `mock`        |
| `WORKBOOK_MODEL`   | model name sent with each request                        | `gpt-4o-mini` |
| `OPENAI_API_KEY`   | your key; read only when the backend is `openai`         | (none)        |
| `OPENAI_BASE_URL`  | another OpenAI-compatible server (vLLM, Ollama, ...)     | OpenAI's API  |
| `WORKBOOK_REQUEST_TIMEOUT` | seconds a request may take before the SDK gives up | `600`    |
| `WORKBOOK_MAX_REQUESTS` | requests a notebook may send to a real backend (budget.py) | `300` |

Safety rules:
- The mock stays the default even when a key is present: a learner never spends
  money by accident. Only `WORKBOOK_BACKEND=openai` selects a real API.
- The key is held as a `SecretStr`, so it never appears in a repr, a printed line
  or an error message.
- On a real backend every model counts its requests against a budget (`helpers/budget.py`), and a
  request over budget is not sent.
- Demos that need the mock itself (its fault injection, rate limits, counters) call
  `mock_demo(needs)`: on a real backend they run on a local mock of their own and say so in one line,
  and `lesson_mock(...)` sets the mock's speed for a lesson only when the lesson runs on the mock.
- No request can hang forever. `ChatOpenAI` alone sets no timeout (its `timeout` defaults to None,
  which the openai SDK takes as "wait forever"), so `get_llm` passes one: the SDK's own default of
  600 s, or `WORKBOOK_REQUEST_TIMEOUT`. It is httpx's timeout per phase (connect, each read, ...),
  not a deadline for the whole answer: the runners' `timeout=` is that.

Structure: `BackendConfig` (what was chosen) <- `load_config()` (reads env + .env),
then `get_llm()` builds a `ChatOpenAI` from it, and the chain builders wrap that
model in the seed's `prompt | llm | StrOutputParser()` shape.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from dotenv import dotenv_values
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from helpers import budget
from helpers.mock import MockHandle, get_mock

WORKBOOK_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_REQUEST_TIMEOUT = 600.0  # seconds: the openai SDK's own default, which ChatOpenAI does not pass on
BACKENDS = ("mock", "openai")


@dataclass(frozen=True)
class BackendConfig:
    """Which backend and model the notebooks use. The key is a SecretStr: its repr is masked."""

    backend: str
    model: str
    api_key: SecretStr | None = None
    base_url: str | None = None
    request_timeout: float = 600.0
    max_requests: int = budget.DEFAULT_MAX_REQUESTS  # only a real backend counts them

    def describe(self) -> str:
        """One line for learners: which backend and model, and whether it costs money."""
        if self.backend == "mock":
            return f"Backend: mock · model {self.model} · local server, no API key, no cost"
        where = self.base_url or "OpenAI's API"
        return f"Backend: openai · model {self.model} · {where} · real requests"


def load_config(
    environ: Mapping[str, str] | None = None, dotenv_path: Path | None = None
) -> BackendConfig:
    """Read the backend settings from `environ` (default: os.environ), falling back to `.env`."""
    environ = os.environ if environ is None else environ
    dotenv_path = WORKBOOK_ROOT / ".env" if dotenv_path is None else dotenv_path
    file_values = dotenv_values(dotenv_path) if dotenv_path.is_file() else {}

    def setting(name: str) -> str | None:
        value = environ.get(name, file_values.get(name))
        return value.strip() if value and value.strip() else None

    backend = (setting("WORKBOOK_BACKEND") or "mock").lower()
    if backend not in BACKENDS:
        raise ValueError(f"WORKBOOK_BACKEND must be one of {BACKENDS}, not {backend!r}")
    model = setting("WORKBOOK_MODEL") or DEFAULT_MODEL
    timeout = _seconds("WORKBOOK_REQUEST_TIMEOUT", setting("WORKBOOK_REQUEST_TIMEOUT"), DEFAULT_REQUEST_TIMEOUT)
    max_requests = _count("WORKBOOK_MAX_REQUESTS", setting("WORKBOOK_MAX_REQUESTS"), budget.DEFAULT_MAX_REQUESTS)
    if backend == "mock":
        return BackendConfig(backend="mock", model=model, request_timeout=timeout, max_requests=max_requests)

    key, base_url = setting("OPENAI_API_KEY"), setting("OPENAI_BASE_URL")
    if key is None and base_url is None:
        raise ValueError(
            "WORKBOOK_BACKEND=openai needs OPENAI_API_KEY in .env "
            "(or OPENAI_BASE_URL for a local OpenAI-compatible server)"
        )
    # Local OpenAI-compatible servers usually accept any key.
    return BackendConfig("openai", model, SecretStr(key or "not-needed"), base_url, timeout, max_requests)


def _count(name: str, value: str | None, default: int) -> int:
    """A setting that holds a positive whole number; ValueError naming it otherwise."""
    if value is None:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a positive whole number, such as 300, not {value!r}")
    return int(value)


def _seconds(name: str, value: str | None, default: float) -> float:
    """A setting that holds a positive, finite number of seconds; ValueError naming it otherwise."""
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise ValueError(f"{name} must be a positive number of seconds, such as 600, not {value!r}")
    return seconds


_announced: set[tuple[str, str]] = set()
_routed: ContextVar[MockHandle | None] = ContextVar("routed_mock", default=None)
_CHOSEN_IN_ENV = ("base_url", "openai_api_base", "api_key", "openai_api_key")  # .env chooses these


def get_llm(
    model: str | None = None, *, backend: str | None = None, **kwargs: Any
) -> ChatOpenAI:
    """Return a configured `ChatOpenAI` for the chosen backend (the mock unless `.env` says otherwise).

    `backend="mock"` forces the mock, e.g. for fault-injection demos. Extra keyword
    arguments (`max_retries`, `timeout`, `rate_limiter`, ...) go to `ChatOpenAI`; without `timeout`,
    each request gets the configured request timeout (600 s unless `.env` says otherwise).
    """
    if "model_name" in kwargs:  # ChatOpenAI's other name for `model`
        if model is not None and kwargs["model_name"] != model:
            raise ValueError(f"get_llm got model={model!r} and model_name={kwargs['model_name']!r}: give one")
        model = kwargs.pop("model_name")
    if refused := sorted(set(kwargs) & set(_CHOSEN_IN_ENV)):
        raise ValueError(f"get_llm does not take {', '.join(refused)}: the server and key are chosen in .env "
                         "(OPENAI_BASE_URL, OPENAI_API_KEY), or use backend='mock'")
    config = load_config()
    picked = config.backend  # what .env chose
    if backend not in (None, "mock", picked):
        raise ValueError("only backend='mock' can be forced; choose a real API in .env")
    routed = _routed.get()
    if routed is not None or backend == "mock":  # a real backend's model name means nothing to the mock
        mock_model = config.model if picked == "mock" else DEFAULT_MODEL
        config = BackendConfig("mock", mock_model, request_timeout=config.request_timeout)
    if model is not None:
        config = BackendConfig(config.backend, model, config.api_key, config.base_url, config.request_timeout,
                               config.max_requests)

    kwargs.setdefault("temperature", 0)
    kwargs.setdefault("stream_usage", True)  # a custom base_url turns streamed usage off by default
    if "timeout" not in kwargs and "request_timeout" not in kwargs:
        kwargs["timeout"] = config.request_timeout  # ChatOpenAI's own default, None, waits forever
    if config.backend == "mock":
        mock = routed or (get_mock() if picked == "mock" else _demo_mock())
        llm = ChatOpenAI(model=config.model, base_url=mock.base_url, api_key=SecretStr("mock-key"), **kwargs)
    else:
        llm = budget.guard(ChatOpenAI(model=config.model, api_key=config.api_key, base_url=config.base_url,
                                      **kwargs))
    if routed is None and config.backend == picked and (config.backend, config.model) not in _announced:
        _announced.add((config.backend, config.model))
        print(config.describe())
    return llm


# ---------------------------------------------------------------- demos that need the mock itself

_lesson_settings: dict[str, Any] = {}  # the lesson's mock settings, for a demo mock started later
_configured: set[str] = set()  # the demo mocks (by address) that have the lesson's settings


def lesson_mock(**settings: Any) -> MockHandle | None:
    """Set up the mock for a lesson, e.g. lesson_mock(speed=4); returns it, or None on a real backend.

    On a real backend no request of the lesson reaches the mock, so nothing is configured now: the
    settings are kept for the demos that need the mock (`mock_demo`), and applied when one starts it.
    """
    _lesson_settings.clear()
    _lesson_settings.update(settings)
    _configured.clear()  # a demo mock started earlier takes these settings at the next demo
    if load_config().backend != "mock":
        return None
    mock = get_mock()
    mock.reset()
    mock.configure(**settings)
    return mock


def mock_demo(needs: str) -> MockHandle:
    """The mock, for a demo that needs it (`needs`: "the mock's fault injection", ...); returns its handle.

    On the mock this is the lesson's mock. On a real backend it is a local mock no lesson request
    reaches, started with the lesson's settings, and one line says so. Build the demo's models with
    get_llm(backend="mock").
    """
    if load_config().backend == "mock":
        return get_mock()
    print(f"This demo needs {needs}: it runs on the local mock.")
    return _demo_mock()


def _demo_mock() -> MockHandle:
    mock = get_mock()
    if mock.base_url not in _configured:
        _configured.add(mock.base_url)
        mock.configure(**_lesson_settings)
    return mock


@contextlib.contextmanager
def routed_to(mock: MockHandle) -> Iterator[None]:
    """Backstage, for the checks: inside the block every get_llm() builds on `mock`, whatever .env says."""
    token = _routed.set(mock)
    try:
        yield
    finally:
        _routed.reset(token)


def aiohttp_http_client(max_connections: int = 1000) -> Any:
    """The openai SDK's aiohttp transport: an async HTTP client that costs less client CPU per request.

    Pass it as `get_llm(http_async_client=...)` (or `openai.AsyncOpenAI(http_client=...)`). The lever
    is the transport, not a pool size: ChatOpenAI's default client is httpx2 (httpcore2 underneath);
    this one sends the same requests through aiohttp, which lesson 05 measures at well under the CPU
    per request of the default. aiohttp keeps every connection it opens alive, up to
    `max_connections` (the SDK's default, 1,000); it ignores `max_keepalive_connections`. Close it
    with `await client.aclose()` when done.
    """
    import httpx2  # the openai SDK's HTTP library (openai >= 3)
    import openai

    return openai.DefaultAioHttpClient(limits=httpx2.Limits(max_connections=max_connections))


def pooled_http_client(max_connections: int, transport: str = "aiohttp") -> Any:
    """An async HTTP client told to keep up to `max_connections` connections alive (a "sized pool").

    Sizing the pool is not what makes a client cheaper; lesson 05 measures it. transport="httpx"
    keeps httpx2 with a kept-alive pool of `max_connections`: it costs *more* CPU per request than
    the SDK's default (100 kept alive), because httpcore2 checks every idle connection each time a
    request starts or ends. transport="aiohttp" is `aiohttp_http_client(max_connections)`: aiohttp
    ignores `max_keepalive_connections`, so the size changes nothing there. Use `aiohttp_http_client`.
    Close the client with `await client.aclose()` when done.
    """
    import httpx2  # the openai SDK's HTTP library (openai >= 3)
    import openai

    limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    if transport == "aiohttp":
        return aiohttp_http_client(max_connections)
    if transport == "httpx":
        return openai.DefaultAsyncHttpxClient(limits=limits)
    raise ValueError(f"transport must be 'aiohttp' or 'httpx', got {transport!r}")


# The seed tutorial's two prompts, defined once: "Translate into English: {text}" and "Calculate {a} + {b}".
SEED_PROMPTS = {"translate": "翻译成英文：{text}", "add": "计算 {a} + {b}"}


def make_chain(template: str, llm: ChatOpenAI | None = None) -> Runnable:
    """Build the seed's chain shape: `prompt | llm | StrOutputParser()`."""
    return ChatPromptTemplate.from_template(template) | (llm or get_llm()) | StrOutputParser()


def translation_chain(llm: ChatOpenAI | None = None) -> Runnable:
    """The seed's section-1 chain. The prompt means "Translate into English: {text}"."""
    return make_chain(SEED_PROMPTS["translate"], llm)


def addition_chain(llm: ChatOpenAI | None = None) -> Runnable:
    """The seed's section-5 chain. The prompt means "Calculate {a} + {b}"."""
    return make_chain(SEED_PROMPTS["add"], llm)
