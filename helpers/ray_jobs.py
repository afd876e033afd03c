"""Ray Data for batch LLM calls: a local cluster, Ray's HTTP processor, and the workbook's runner inside Ray.

Read this module: lesson 08 teaches it. Ray runs Python on many machines; Ray Data moves rows
through stages that run as tasks or actors across them. Two ways to send a job's requests:

- `run_http_processor`: Ray Data's own LLM processor (`ray.data.llm.HttpRequestProcessorConfig`
  and `build_processor`). Each actor sends its batch's requests one after another, so the job has
  as many requests in flight as it has actors; a 429's Retry-After is not read (the wait is a fixed
  exponential backoff); and a row that runs out of retries fails the whole job.
- `run_with_runner`: the workbook's `run_tracked` inside each actor, over batches of rows, with
  `map_batches`: many requests in flight per actor, retries that honour Retry-After, a failed row
  kept as an error record, and the job's rate budget split across the actors.

`start_ray()` starts a small local cluster for a notebook (no dashboard, nothing reported off this
machine, logs and progress bars off); `start_ray(address="ray://head:10001")` joins a real one
instead, and the same calls then run on its machines. `stop_ray()` ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from collections.abc import Callable, Iterator, Sequence
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # Ray reports usage statistics unless told not to

__all__ = ["start_ray", "stop_ray", "worker_environment", "run_http_processor", "run_with_runner",
           "ACTOR_CPUS"]

ACTOR_CPUS = 0.25  # each actor's share of a CPU: one that asks for a whole CPU can starve the other stages
_QUIET_LOGGERS = ("ray", "ray.data", "ray.llm", "ray.serve")
CORE_LOG = Path(tempfile.gettempdir()) / f"workbook-ray-{os.getpid()}.log"  # what Ray's C++ core writes here


@contextlib.contextmanager
def _core_log_aside() -> Iterator[None]:
    """Inside the block, what Ray's C++ core writes to this process's stderr goes to CORE_LOG instead.

    Ray's core (C++, in this process) logs straight to file descriptor 2, which Jupyter shows under
    the cell; Python's own errors and warnings still show as usual.
    """
    saved = os.dup(2)
    with open(CORE_LOG, "ab") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def worker_environment() -> dict[str, str]:
    """What a Ray worker needs from this kernel: the backend settings, its mock, and the request budget."""
    from .processes import _worker_environment

    backend = {k: v for k, v in os.environ.items() if k.startswith(("WORKBOOK_", "OPENAI_"))}
    return {**backend, **_worker_environment(), "RAY_USAGE_STATS_ENABLED": "0"}


def start_ray(num_cpus: int = 2, *, address: str | None = None, object_store_mb: int = 200) -> dict[str, float]:
    """Start a local Ray cluster of `num_cpus` CPUs (or join the cluster at `address`); its resources.

    Workers get `worker_environment()`: a local cluster's processes inherit it from this one (the fast
    way), a real cluster's get it as the job's runtime_env. No dashboard; logs and progress bars off.
    """
    if not isinstance(num_cpus, int) or isinstance(num_cpus, bool) or num_cpus < 1:
        raise ValueError(f"num_cpus must be a positive int, got {num_cpus!r}")
    with _core_log_aside():
        import ray

        return _start(ray, num_cpus, address, object_store_mb)


def _start(ray: Any, num_cpus: int, address: str | None, object_store_mb: int) -> dict[str, float]:
    if ray.is_initialized():
        ray.shutdown()
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if address is None:
        with _inherited(worker_environment()):
            ray.init(num_cpus=num_cpus, object_store_memory=object_store_mb * 2**20, **options)
    else:
        ray.init(address=address, runtime_env={"env_vars": worker_environment()}, **options)
    _messages_aside()
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.enable_operator_progress_bars = False
    context.print_on_execution_start = False
    context.verbose_stats_logs = False
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)  # a failed job raises; its log lines say it again
    return {name: value for name, value in ray.cluster_resources().items() if name in ("CPU", "memory")}


@contextlib.contextmanager
def _inherited(environment: dict[str, str]) -> Iterator[None]:
    """Inside the block, os.environ also holds `environment` (for the processes started there)."""
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _messages_aside() -> None:
    """Send the cluster's messages to the driver (a worker killed, ...) to CORE_LOG, not under a cell.

    Ray's driver prints them from a background thread through `ray._private.worker.print_to_stdstream`,
    with no setting to turn it off; they land under whatever cell runs at that moment.
    """
    import ray._private.worker as driver

    def to_log(data: dict[str, Any], ignore_prefix: bool = False) -> None:
        with open(CORE_LOG, "a", encoding="utf-8") as log:
            log.write("".join(f"({data.get('pid')}) {line}\n" for line in data.get("lines", [])))

    driver.print_to_stdstream = to_log


def stop_ray() -> None:
    """Disconnect from Ray; a local cluster that start_ray started stops with it."""
    import ray

    with _core_log_aside():
        ray.shutdown()


def _check_job(inputs: Sequence[Any], actors: int) -> None:
    if not isinstance(inputs, Sequence) or isinstance(inputs, (str, bytes)) or not inputs:
        raise ValueError("inputs must be a non-empty list of the chain's inputs (dicts of its prompt's keys)")
    if not isinstance(actors, int) or isinstance(actors, bool) or actors < 1:
        raise ValueError(f"actors must be a positive int, got {actors!r}")


def _rows(inputs: Sequence[Any], actors: int) -> Any:
    """The inputs as a Ray dataset of {"index", "input" (JSON)}, in enough blocks to keep every actor busy."""
    import ray

    rows = [{"index": i, "input": json.dumps(item, ensure_ascii=False)} for i, item in enumerate(inputs)]
    return ray.data.from_items(rows, override_num_blocks=min(len(rows), 4 * actors))


# ------------------------------------------------------------------ Ray Data's own HTTP processor


def _chat_request(template: str, model: str, row: dict[str, Any]) -> dict[str, Any]:
    text = template.format(**json.loads(row["input"]))
    return {"index": row["index"], "payload": {"model": model, "messages": [{"role": "user", "content": text}]}}


def _chat_answer(row: dict[str, Any]) -> dict[str, Any]:
    return {"index": row["index"], "output": row["http_response"]["choices"][0]["message"]["content"]}


def _traced_session(log_path: str) -> Any:
    """An aiohttp session that appends each response's time, status and Retry-After to `log_path`."""
    import aiohttp

    async def on_end(session: Any, context: Any, params: Any) -> None:
        record = {"pid": os.getpid(), "t": time.time(), "status": params.response.status,
                  "retry_after": params.response.headers.get("retry-after")}
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_end)
    return aiohttp.ClientSession(trace_configs=[trace])


def run_http_processor(base_url: str, inputs: Sequence[Any], *, template: str, actors: int = 2, batch_size: int = 16,
                       qps: int | None = None, max_retries: int = 0, retry_wait_s: float = 1.0,
                       api_key: str = "not-needed", model: str = "gpt-4o-mini",
                       actor_cpus: float | None = ACTOR_CPUS, trace_to: str | None = None,
                       stop_after_s: float | None = None) -> list[dict[str, Any]]:
    """Send each input's chat request with Ray Data's HTTP processor; [{"index", "output"}] in input order.

    A row that runs out of retries raises (Ray's error), and the whole job with it. `actor_cpus=None`
    keeps Ray's default of a whole CPU per actor. `trace_to`: a file (on this machine) where every
    response's time, status and Retry-After header is logged, one JSON line each. `stop_after_s`: Ray
    stops the job (ExecutionTimeoutError) once it has made no progress that long.
    """
    from ray.data.llm import HttpRequestProcessorConfig, build_processor

    _check_job(inputs, actors)
    stage = {} if actor_cpus is None else {"num_cpus": actor_cpus}
    config = HttpRequestProcessorConfig(url=f"{base_url.rstrip('/')}/chat/completions", batch_size=batch_size,
                                        headers={"Authorization": f"Bearer {api_key}"}, concurrency=(actors, actors), qps=qps,
                                        max_retries=max_retries, base_retry_wait_time_in_s=retry_wait_s,
                                        http_request_stage=stage,
                                        session_factory=trace_to and functools.partial(_traced_session, trace_to))
    light = {"num_cpus": actor_cpus} if actor_cpus is not None else None
    processor = build_processor(config, preprocess=functools.partial(_chat_request, template, model),
                                postprocess=_chat_answer, preprocess_map_kwargs=light, postprocess_map_kwargs=light)
    with _no_progress_timeout(stop_after_s), _core_log_aside():
        return _in_order(processor(_rows(inputs, actors)).take_all(), len(inputs))


@contextlib.contextmanager
def _no_progress_timeout(seconds: float | None) -> Iterator[None]:
    """Inside the block, a Ray Data job that makes no progress for `seconds` is stopped (None: Ray's default)."""
    import ray

    context = ray.data.DataContext.get_current()
    saved = context.execution_no_progress_timeout_s
    if seconds is not None:
        context.execution_no_progress_timeout_s = seconds
    try:
        yield
    finally:
        context.execution_no_progress_timeout_s = saved


# ------------------------------------------------------------------ the fix: the workbook's runner in each actor


class RunnerActor:
    """One Ray actor: builds the chain once, keeps one event loop, and runs run_tracked on each batch."""

    def __init__(self, make_chain: Callable[[], Any], concurrency: int, limits: dict[str, Any],
                 retry: Any, timeout: float | None) -> None:
        from .reliability import TokenRateLimiter

        self.loop = asyncio.new_event_loop()  # the chain's HTTP pool belongs to this loop, for every batch
        self.chain, self.concurrency, self.retry, self.timeout = make_chain(), concurrency, retry, timeout
        has_limit = limits["rpm"] is not None or limits["tpm"] is not None
        self.limiter = TokenRateLimiter(limits["rpm"], limits["tpm"], max_tokens=limits["max_tokens"]) \
            if has_limit else None

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        from .runners import run_tracked

        inputs = [json.loads(text) for text in batch["input"]]
        report = self.loop.run_until_complete(run_tracked(
            self.chain, inputs, max_concurrency=self.concurrency, progress=False, retry=self.retry,
            timeout=self.timeout, limiter=self.limiter))
        failed = {failure.index: failure for failure in report.failures}
        return {"index": [int(i) for i in batch["index"]],
                "output": [None if j in failed else report.results[j] for j in range(len(inputs))],
                "error": [f"{failed[j].error_type}: {failed[j].message}" if j in failed else None
                          for j in range(len(inputs))],
                "attempts": [failed[j].attempts if j in failed else None for j in range(len(inputs))],
                "peak_in_flight": [report.peak_in_flight] * len(inputs)}


def run_with_runner(make_chain: Callable[[], Any], inputs: Sequence[Any], *, actors: int = 2,
                    max_concurrency: int = 40, rpm: float | None = None, tpm: float | None = None,
                    max_tokens: int = 100, retry: Any = None, timeout: float | None = None,
                    batch_size: int = 100, actor_cpus: float = ACTOR_CPUS) -> list[dict[str, Any]]:
    """Run every input through `make_chain()`'s chain on Ray: `actors` actors, each with run_tracked.

    `max_concurrency`, `rpm` and `tpm` are the whole job's: each actor gets 1/actors of them. Returns
    one record per input, in input order: {"index", "output", "error", "attempts", "peak_in_flight"}
    (a failed input has output None and its error, as "Type: message").
    """
    from .processes import _check_make_chain

    _check_job(inputs, actors)
    _check_make_chain(make_chain)
    if not isinstance(max_concurrency, int) or isinstance(max_concurrency, bool) or max_concurrency < actors:
        raise ValueError(f"max_concurrency must be an int of at least actors={actors}, got {max_concurrency!r}")
    limits = {"rpm": rpm and rpm / actors, "tpm": tpm and tpm / actors, "max_tokens": max_tokens}
    actor_kwargs = {"make_chain": make_chain, "concurrency": max_concurrency // actors, "limits": limits,
                    "retry": retry, "timeout": timeout}
    ds = _rows(inputs, actors).map_batches(RunnerActor, fn_constructor_kwargs=actor_kwargs, concurrency=actors,
                                           num_cpus=actor_cpus, batch_size=batch_size)
    with _core_log_aside():
        return _in_order(ds.take_all(), len(inputs))


def _in_order(rows: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The job's rows sorted by index, checked: every index from 0 to n - 1 exactly once."""
    rows = sorted(({k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in rows),
                  key=lambda row: row["index"])
    indices = [row["index"] for row in rows]
    if indices != list(range(n)):
        seen = set(indices)
        missing, twice = sorted(set(range(n)) - seen), sorted({i for i in indices if indices.count(i) > 1})
        raise RuntimeError(f"the job returned {len(rows)} rows for {n} inputs: missing {missing[:5]}, "
                           f"twice {twice[:5]}")
    return rows
