"""A second OpenAI-compatible server, independent of the workbook's mock, for the any-server test.

Not collected itself (no test_ prefix); tests/test_other_server.py starts it. It is written apart
from helpers/mock on purpose and behaves otherwise: other replies ("Other server, reply to: ..."),
a short fixed latency, no rate limits, no injected faults, and none of the mock's /mock/* control
endpoints. It answers `POST /v1/chat/completions` (plain and streamed, with usage) and
`GET /v1/models`, refuses a malformed request with OpenAI's JSON 400, and counts what it received.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field

from aiohttp import web

LATENCY = 0.03  # seconds before the first piece
PIECE_DELAY = 0.004  # seconds between streamed pieces


@dataclass
class Counts:
    requests: int = 0  # chat completions received, answered or refused
    refused: int = 0
    tokens: int = 0  # prompt + completion tokens of the answers, as this server counts them (~4 chars a token)
    paths: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str, refused: bool = False) -> None:
        with self.lock:
            self.paths[path] = self.paths.get(path, 0) + 1
            if path == "/v1/chat/completions":
                self.requests += 1
                self.refused += refused


def _error(status: int, message: str, param: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}}
    return web.json_response(body, status=status)


def _reply(messages: list[dict]) -> str:
    last = str(messages[-1].get("content", ""))
    return f"Other server, reply to: {last[:48]}"


class OtherServer:
    """Run the server in a thread of its own; `url` is its /v1 base URL, `counts` what it received."""

    def __init__(self) -> None:
        self.counts = Counts()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.url = ""

    def start(self) -> OtherServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the other server did not start within 10 s")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"
        self._ready.set()
        await self._stopping.wait()
        await runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        self.counts.add(request.path)
        return web.json_response({"object": "list", "data": [{"id": "other-model", "object": "model",
                                                               "created": 0, "owned_by": "tests"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            self.counts.add(request.path, refused=True)
            return _error(400, "We could not parse the JSON body of your request.")
        messages, max_tokens = body.get("messages"), body.get("max_tokens", body.get("max_completion_tokens"))
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            self.counts.add(request.path, refused=True)
            return _error(400, "'messages' must be a non-empty list of objects.", "messages")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            self.counts.add(request.path, refused=True)
            return _error(400, f"Invalid 'max_tokens': integer below minimum value 1, got {max_tokens}.", "max_tokens")
        self.counts.add(request.path)
        words = _reply(messages).split(" ")
        if max_tokens is not None:
            words = words[:max_tokens]
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in messages) // 4 + 1
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                 "total_tokens": prompt_tokens + len(words)}
        with self.counts.lock:
            self.counts.tokens += usage["total_tokens"]
        base = {"id": f"other-{time.monotonic_ns()}", "created": int(time.time()), "model": body.get("model", "")}
        await asyncio.sleep(LATENCY)
        if not body.get("stream"):
            message = {"role": "assistant", "content": " ".join(words)}
            return web.json_response({**base, "object": "chat.completion", "usage": usage, "choices": [
                {"index": 0, "message": message, "finish_reason": "stop"}]})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(choices: list, **extra: object) -> None:
            chunk = {**base, "object": "chat.completion.chunk", "choices": choices, **extra}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

        for i, word in enumerate(words):
            delta = {"role": "assistant", "content": word} if i == 0 else {"content": " " + word}
            await send([{"index": 0, "delta": delta, "finish_reason": None}])
            await asyncio.sleep(PIECE_DELAY)
        await send([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if (body.get("stream_options") or {}).get("include_usage"):
            await send([], usage=usage)
        await response.write(b"data: [DONE]\n\n")
        return response


# ---------------------------------------------------------------- running a notebook against it

DEMO_LINE = "it runs on the local mock."


@dataclass
class CellRun:
    index: int
    source: str
    tags: list[str]
    requests: int  # chat completions this cell sent to the other server
    tokens: int  # the tokens of their answers
    error: str | None  # "Name: message" of an error it raised, or None
    text: str  # everything it printed


def run_notebook(path: str, server: OtherServer, *, timeout: int = 300, max_requests: int | None = None,
                 save_to: str | None = None) -> list[CellRun]:
    """Execute the notebook at `path` with .env's real-backend settings pointing at `server`.

    With `save_to`, the executed notebook is written there too, to read what a learner would see.
    """
    import os
    from pathlib import Path

    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    before: dict[int, tuple[int, int]] = {}
    now = lambda: (server.counts.requests, server.counts.tokens)  # noqa: E731
    client = NotebookClient(notebook, timeout=timeout, allow_errors=True, kernel_name="python3",
                            resources={"metadata": {"path": str(Path(path).parent)}},
                            on_cell_execute=lambda cell, cell_index: before.__setitem__(cell_index, now()))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WORKBOOK_", "OPENAI_", "MOCK_"))}
    env.update(WORKBOOK_BACKEND="openai", OPENAI_BASE_URL=server.url, OPENAI_API_KEY="sk-other-server",
               WORKBOOK_MODEL="other-model")
    env["WORKBOOK_MAX_REQUESTS"] = str(max_requests or 300)  # explicit, so a local .env cannot change it
    after: dict[int, tuple[int, int]] = {}
    client.on_cell_executed = lambda cell, cell_index, execute_reply: after.__setitem__(cell_index, now())
    client.execute(env=env)
    if save_to:
        Path(save_to).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, save_to)
    runs = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code" or index not in before:
            continue
        error, text = None, []
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                error = f"{output.ename}: {output.evalue}"
            elif output.output_type == "stream":
                text.append(output.text)
            elif "text/plain" in output.get("data", {}):
                text.append(output.data["text/plain"])
        (requests, tokens), (start_requests, start_tokens) = after.get(index, now()), before[index]
        runs.append(CellRun(index, cell.source, cell.metadata.get("tags", []), requests - start_requests,
                            tokens - start_tokens, error, "".join(text)))
    return runs


def summary(runs: list[CellRun]) -> str:
    lines = [f"{sum(r.requests for r in runs)} requests ({sum(r.tokens for r in runs):,} tokens) reached the other server"]
    for run in runs:
        marks = [f"{run.requests} requests"] if run.requests else []
        if run.error:
            marks.append(f"RAISED {run.error[:200]}")
        marks += [line.strip() for line in run.text.splitlines() if DEMO_LINE in line or "Estimate for" in line]
        if marks:
            lines.append(f"  cell {run.index}: " + " | ".join(marks))
    return "\n".join(lines)


if __name__ == "__main__":  # python tests/other_server.py notebooks/03_tracked_processing.ipynb ...
    import sys

    args = sys.argv[1:]
    unlimited = "--no-budget" in args  # to count what a notebook would send with no budget at all
    other = OtherServer().start()
    for notebook_path in (a for a in args if a != "--no-budget"):
        print(f"== {notebook_path}")
        print(summary(run_notebook(notebook_path, other, max_requests=10**9 if unlimited else None)), flush=True)
    other.stop()
