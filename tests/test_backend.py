"""The backend switch: the mock by default, a real API only when asked, and the key never shown."""

import pytest

from helpers import backend
from helpers.backend import BackendConfig, get_llm, load_config

FAKE_KEY = "sk-proj-Zq8vT3xLmN4pR7sW2yB6dF9hJ1kC5gA0eU"  # looks real, is not


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No WORKBOOK_*/OPENAI_* variables, and an empty folder as the workbook root (no .env)."""
    for name in ("WORKBOOK_BACKEND", "WORKBOOK_MODEL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE",
                 "WORKBOOK_REQUEST_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(backend, "WORKBOOK_ROOT", tmp_path)
    monkeypatch.setattr(backend, "_announced", set())
    return tmp_path


def test_no_env_file_means_mock(clean_env):
    assert load_config() == BackendConfig("mock", "gpt-4o-mini")


def test_a_key_alone_does_not_select_the_real_api(clean_env, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    (clean_env / ".env").write_text(f"OPENAI_API_KEY={FAKE_KEY}\n")
    assert load_config().backend == "mock"


def test_env_file_selects_openai(clean_env):
    (clean_env / ".env").write_text(f"WORKBOOK_BACKEND=openai\nOPENAI_API_KEY={FAKE_KEY}\nWORKBOOK_MODEL=gpt-4.1-mini\n")
    config = load_config()
    assert (config.backend, config.model, config.base_url) == ("openai", "gpt-4.1-mini", None)
    assert config.api_key.get_secret_value() == FAKE_KEY


def test_environment_overrides_env_file(clean_env, monkeypatch):
    (clean_env / ".env").write_text(f"WORKBOOK_BACKEND=openai\nOPENAI_API_KEY={FAKE_KEY}\n")
    monkeypatch.setenv("WORKBOOK_BACKEND", "mock")
    assert load_config().backend == "mock"


def test_compatible_server_needs_no_key(clean_env):
    (clean_env / ".env").write_text("WORKBOOK_BACKEND=openai\nOPENAI_BASE_URL=http://localhost:11434/v1\n")
    config = load_config()
    assert (config.backend, config.base_url) == ("openai", "http://localhost:11434/v1")


@pytest.mark.parametrize(
    "env_text, message",
    [
        ("WORKBOOK_BACKEND=openai\n", "OPENAI_API_KEY"),
        ("WORKBOOK_BACKEND=anthropic\n", "WORKBOOK_BACKEND must be one of"),
    ],
)
def test_bad_settings_name_the_problem(clean_env, env_text, message):
    (clean_env / ".env").write_text(env_text)
    with pytest.raises(ValueError, match=message):
        load_config()


def test_get_llm_for_openai_prints_one_line_without_the_key(clean_env, capsys):
    (clean_env / ".env").write_text(f"WORKBOOK_BACKEND=openai\nOPENAI_API_KEY={FAKE_KEY}\n")
    llm = get_llm()
    get_llm()  # announced once only
    out = capsys.readouterr().out
    assert out.splitlines() == ["Backend: openai · model gpt-4o-mini · OpenAI's API · real requests"]
    for shown in (out, repr(llm), str(llm), repr(load_config()), str(llm.model_dump())):
        assert FAKE_KEY not in shown
        assert FAKE_KEY[:12] not in shown


def test_forcing_the_mock_never_uses_the_key(clean_env, capsys):
    (clean_env / ".env").write_text(f"WORKBOOK_BACKEND=openai\nOPENAI_API_KEY={FAKE_KEY}\n")
    llm = get_llm(backend="mock")
    assert llm.openai_api_base.startswith("http://127.0.0.1:")
    assert llm.openai_api_key.get_secret_value() != FAKE_KEY
    out = capsys.readouterr().out
    assert FAKE_KEY not in out
    assert "Backend:" not in out  # the backend line names .env's choice; a forced demo says so itself (mock_demo)


def test_a_real_backend_cannot_be_forced_from_code(clean_env):
    with pytest.raises(ValueError, match="only backend='mock'"):
        get_llm(backend="openai")


def test_default_llm_talks_to_the_mock(clean_env, capsys):
    chain = backend.translation_chain()
    assert chain.invoke({"text": "测试3"}) == "Test3"
    assert capsys.readouterr().out.startswith("Backend: mock · model gpt-4o-mini")


@pytest.mark.parametrize("make_client", [lambda: backend.aiohttp_http_client(5),
                                         lambda: backend.pooled_http_client(5, "aiohttp"),
                                         lambda: backend.pooled_http_client(5, "httpx")],
                         ids=["aiohttp_http_client", "pooled-aiohttp", "pooled-httpx"])
def test_the_http_clients_serve_chatopenai(clean_env, capsys, make_client):
    import asyncio

    async def main():
        client = make_client()
        try:
            chain = backend.translation_chain(get_llm(http_async_client=client))
            return await chain.abatch([{"text": f"测试{i}"} for i in range(8)], config={"max_concurrency": 8})
        finally:
            await client.aclose()

    assert asyncio.run(main()) == [f"Test{i}" for i in range(8)]


def test_pooled_http_client_names_a_bad_transport():
    with pytest.raises(ValueError, match="transport must be 'aiohttp' or 'httpx'"):
        backend.pooled_http_client(10, "curl")


# ---------------------------------------------------------------- no request can hang forever


def test_chatopenai_alone_sets_no_timeout_so_get_llm_does(clean_env):
    from langchain_openai import ChatOpenAI

    assert ChatOpenAI(model="gpt-4o-mini", api_key="k").request_timeout is None  # langchain #35597: waits forever
    llm = get_llm()
    assert llm.request_timeout == 600.0 and llm.root_async_client.timeout == 600.0  # what the SDK client got
    assert get_llm(timeout=5).request_timeout == 5  # an explicit timeout wins


def test_the_request_timeout_comes_from_env(clean_env, monkeypatch):
    (clean_env / ".env").write_text("WORKBOOK_REQUEST_TIMEOUT=45\n")
    assert get_llm().request_timeout == 45.0
    monkeypatch.setenv("WORKBOOK_REQUEST_TIMEOUT", "7.5")
    assert load_config().request_timeout == 7.5


@pytest.mark.parametrize("value", ["0", "-3", "inf", "nan", "ten", "1e999"])
def test_a_bad_request_timeout_is_refused_by_name(clean_env, monkeypatch, value):
    monkeypatch.setenv("WORKBOOK_REQUEST_TIMEOUT", value)
    with pytest.raises(ValueError, match=f"WORKBOOK_REQUEST_TIMEOUT must be a positive number of seconds.*{value!r}"):
        load_config()
