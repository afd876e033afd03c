"""One job, P worker processes: past one core's ceiling with the same records, resume and progress bar.

Read this module: lesson 08 teaches it. Past about 100 requests in flight, one event loop is bound by
its own CPU (lesson 05). `run_in_processes` runs one job as P processes, each with its own event loop
and HTTP pool, each running run_to_jsonl's core over its share of the inputs:

    inputs[0::P] -> process 0 (C/P in flight, rpm/P, tpm/P) -> folder/part-0-of-P.jsonl --+
    inputs[1::P] -> process 1 (C/P in flight, rpm/P, tpm/P) -> folder/part-1-of-P.jsonl --+--> read_job_results
       ...                                                                                 |    (input order)
    this process: one progress bar over every shard, then a ProcessJobSummary -------------+

What the job keeps, however many processes run it:
- **Sharded by index.** Input i goes to process i % P, and to no other; its record carries its index
  in the whole job, so every shard has the format of `helpers.results_file` and `read_jsonl_results`
  over all shards gives input order.
- **One rate limit.** Each process gets an equal share of the job's `rpm` and `tpm` and of its
  concurrency, so the processes together stay under the provider's limit with no coordination.
- **Resume per shard.** Every shard is a ResultsFile: run the same call again and each process skips
  what its shard holds. Killing one process (SIGKILL, the out-of-memory killer) loses only what it had in
  flight. `folder/job.json` records P; a rerun with another P is refused (the split would change).
- **One progress bar.** Each process counts its finished inputs in shared memory; this process shows
  the sum.

The chain is built in each process by `make_chain`, which must be importable by name (a function in a
module, or functools.partial of one; not a function defined in a notebook): a chain holds an HTTP pool
bound to one event loop, so it cannot be sent to another process. `seed_chain` is one. Processes
are forked from a server that has already imported LangChain ("forkserver"), so starting one takes
well under a second, and they use this kernel's mock (or count against its request budget).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .metrics import StreamingStats
from .reliability import RetryPolicy, TokenRateLimiter
from .reports import JsonlSummary, Progress, _Readable, _table
from .results_file import ResultsFile, read_jsonl_results
from .runners import _record_each, make_job, run_pool

__all__ = ["run_in_processes", "ProcessJobSummary", "WorkerDied", "seed_chain", "shard_paths", "read_job_results",
           "merge_shards"]

_PRELOAD = ["helpers.processes", "helpers.backend", "langchain_openai", "aiohttp"]


class WorkerDied(RuntimeError):
    """A worker process ended without finishing its shard (killed, or crashed)."""


def seed_chain(prompt: str = "translate", transport: str = "aiohttp", **llm_options: Any) -> Any:
    """The seed's chain on `get_llm()`, built where it is called: a `make_chain` for run_in_processes.

    transport="aiohttp" gives the model the openai SDK's aiohttp transport (lesson 05: less CPU per
    request); "sdk" keeps ChatOpenAI's default. Use functools.partial(seed_chain, "add", max_retries=0).
    """
    from .backend import SEED_PROMPTS, aiohttp_http_client, get_llm, make_chain

    if transport not in ("aiohttp", "sdk"):
        raise ValueError(f"transport must be 'aiohttp' or 'sdk', got {transport!r}")
    if transport == "aiohttp":
        llm_options.setdefault("http_async_client", aiohttp_http_client())
    return make_chain(SEED_PROMPTS[prompt], get_llm(**llm_options))


@dataclass
class ProcessJobSummary(_Readable):
    """What run_in_processes returns: the whole job's counts, and each process's JsonlSummary."""

    folder: Path
    processes: int
    shards: list[Path]
    parts: list[JsonlSummary]
    wall_time: float
    cpu_seconds: float  # CPU time the worker processes used, all of them together
    max_concurrency: int
    written: int = field(init=False)
    ok: int = field(init=False)
    failed: int = field(init=False)
    skipped: int = field(init=False)

    def __post_init__(self) -> None:
        for name in ("written", "ok", "failed", "skipped"):
            setattr(self, name, sum(getattr(part, name) for part in self.parts))

    @property
    def throughput(self) -> float:
        """Inputs finished by this run per second of wall time."""
        return self.written / self.wall_time if self.wall_time > 0 else 0.0

    @property
    def requests_per_cpu_second(self) -> float:
        """Inputs finished per second of worker CPU: the figure that carries over to a bigger machine."""
        return self.written / self.cpu_seconds if self.cpu_seconds > 0 else 0.0

    def summary(self) -> str:
        """A short readable table of the job."""
        return _table([("folder", f"{self.folder.name}/ ({self.processes} shards)"),
                       ("written", f"{self.written}: {self.ok} ok, {self.failed} failed"),
                       ("skipped", f"{self.skipped} already in the shards"),
                       ("throughput", f"{self.throughput:.1f} req/s"),
                       ("client CPU", f"{self.cpu_seconds:.2f} s: {self.requests_per_cpu_second:.0f} req/s per CPU core"),
                       ("per process", [f"{p.path.name}: {p.written} written, peak {p.peak_in_flight} in flight"
                                        for p in self.parts])])


def shard_paths(folder: str | os.PathLike[str], processes: int) -> list[Path]:
    """The results shard of each process: folder/part-K-of-P.jsonl."""
    return [Path(folder) / f"part-{k}-of-{processes}.jsonl" for k in range(processes)]


def read_job_results(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every record of a job's shards, in input order (the last record per index wins)."""
    manifest = _read_manifest(Path(folder))
    if manifest is None:
        raise ValueError(f"{str(folder)!r} holds no job (no job.json): pass the folder given to run_in_processes")
    return read_jsonl_results([p for p in shard_paths(folder, manifest["processes"]) if p.exists()])


def merge_shards(folder: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> int:
    """Write every record of a job's shards to one results file, in input order; returns how many."""
    records = read_job_results(folder)
    with open(out_path, "w", encoding="utf-8") as out:
        out.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    return len(records)


# ------------------------------------------------------------------ the job, as seen from this process


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / "job.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _prepare_folder(folder: Path, processes: int, total: int, resume: bool, overwrite: bool) -> list[Path]:
    """Check the folder against its job.json (a rerun must keep P), start it over if asked; the shards."""
    if not folder.is_dir():
        raise ValueError(f"folder {str(folder)!r} does not exist: create it first (it will hold one file per process)")
    manifest, shards = _read_manifest(folder), shard_paths(folder, processes)
    if manifest is not None and resume and manifest["processes"] != processes:
        raise ValueError(f"{folder.name}/ holds a job split across {manifest['processes']} processes; resume it "
                         f"with processes={manifest['processes']} (each shard resumes), or pass resume=False, "
                         "overwrite=True to start over")
    if manifest is not None and not resume:
        if not overwrite:
            raise ValueError(f"{folder.name}/ already holds a job, and resume=False would erase it: pass "
                             "overwrite=True to start it over, or resume=True to continue it")
        for old in shard_paths(folder, manifest["processes"]):
            old.unlink(missing_ok=True)
    (folder / "job.json").write_text(json.dumps({"processes": processes, "inputs": total}) + "\n", encoding="utf-8")
    return shards


def _check_make_chain(make_chain: Any) -> None:
    target = make_chain.func if isinstance(make_chain, functools.partial) else make_chain
    if not callable(target):
        raise ValueError(f"make_chain must be a function that builds the chain, got a {type(target).__name__}")
    qualname = getattr(target, "__qualname__", "")
    if getattr(target, "__module__", None) == "__main__" or "<locals>" in qualname or "<lambda>" in qualname:
        raise ValueError(f"make_chain ({getattr(target, '__name__', target)!r}) is defined in the notebook, and a "
                         "worker process cannot import it: define it in a .py module, or use "
                         "helpers.processes.seed_chain (functools.partial(seed_chain, ...))")


def _worker_environment() -> dict[str, str]:
    """What a worker needs to use this kernel's mock, or to count against its request budget."""
    from . import budget
    from .backend import load_config
    from .mock import shared_environment

    return {**budget.share(), **(shared_environment() if load_config().backend == "mock" else {})}


async def run_in_processes(make_chain: Callable[[], Any], inputs: Sequence[Any], folder: str | os.PathLike[str], *,
                           processes: int, max_concurrency: int, rpm: float | None = None, tpm: float | None = None,
                           max_tokens: int = 100, retry: RetryPolicy | None = None, timeout: float | None = None,
                           resume: bool = True, retry_errors: bool = False, overwrite: bool = False,
                           progress: bool = True) -> ProcessJobSummary:
    """Run `inputs` through the chain `make_chain()` builds, as `processes` worker processes; one shard each.

    `max_concurrency`, `rpm` and `tpm` are the whole job's: each process gets 1/processes of them.
    Raises WorkerDied (after the others finish) if a process was killed: rerun the same call to resume.
    """
    if not isinstance(processes, int) or isinstance(processes, bool) or processes < 1:
        raise ValueError(f"processes must be a positive int, got {processes!r}")
    if not isinstance(inputs, Sequence) or isinstance(inputs, (str, bytes)):
        raise ValueError(f"inputs must be a list (process k takes inputs[k::processes]), got a {type(inputs).__name__}")
    _check_make_chain(make_chain)
    if isinstance(max_concurrency, int) and not isinstance(max_concurrency, bool) and max_concurrency < processes:
        raise ValueError(f"max_concurrency={max_concurrency} is below processes={processes}: each process needs at "
                         "least one request in flight")
    chain = make_chain()  # built here too, to check every input against its prompt before any process starts
    make_job(chain, inputs, max_concurrency, retry=retry, timeout=timeout)
    await _close_http_clients(chain)
    limits = {"rpm": rpm and rpm / processes, "tpm": tpm and tpm / processes, "max_tokens": max_tokens}
    if rpm is not None or tpm is not None:
        TokenRateLimiter(rpm, tpm, max_tokens=max_tokens)  # checks the limits before any process starts
    folder = Path(folder)
    shards = _prepare_folder(folder, processes, len(inputs), resume, overwrite)
    options = {"concurrency": max_concurrency // processes, "limits": limits, "retry": retry, "timeout": timeout,
               "retry_errors": retry_errors}
    t0 = time.perf_counter()
    parts = await _run_workers(make_chain, inputs, shards, options, progress, folder.name)
    summaries, cpu = [part[0] for part in parts], sum(part[1] for part in parts)
    return ProcessJobSummary(folder, processes, shards, summaries, time.perf_counter() - t0, cpu, max_concurrency)


# ------------------------------------------------------------------ the worker processes


def _context() -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context("forkserver")  # safe beside the kernel's threads, unlike fork
    context.set_forkserver_preload(_PRELOAD)
    return context


async def _run_workers(make_chain: Callable[[], Any], inputs: Sequence[Any], shards: list[Path],
                       options: dict[str, Any], progress: bool, name: str) -> list[tuple[JsonlSummary, float]]:
    """Start one process per shard, show one bar over all of them, and collect each one's summary."""
    context, count = _context(), len(shards)
    done = context.Array("q", count, lock=False)  # done[k]: inputs process k has finished (or skipped)
    results = context.Queue()
    workers = [context.Process(target=_worker, daemon=True, name=f"{name}-part-{k}",
                               args=(_worker_environment(), make_chain, list(inputs[k::count]), k, count, shards[k],
                                     options, done, results)) for k in range(count)]
    meter, collected = Progress(progress, len(inputs), name), {}
    try:
        for worker in workers:
            worker.start()
        while len(collected) < count and any(w.is_alive() for w in workers) or not results.empty():
            while not results.empty():
                k, outcome = results.get()
                collected[k] = outcome
            meter.bar.update(sum(done) - meter.bar.n)
            await asyncio.sleep(0.05)
        meter.bar.update(sum(done) - meter.bar.n)
    finally:
        meter.bar.close()
        for worker in workers:
            if worker.is_alive() and len(collected) < count:
                worker.terminate()  # this kernel was interrupted: leave no process behind
            worker.join()
    return [_outcome(k, collected.get(k), workers[k]) for k in range(count)]


def _outcome(k: int, outcome: Any, worker: Any) -> tuple[JsonlSummary, float]:
    """Process k's (summary, CPU seconds), or the error that stopped it, raised here."""
    if isinstance(outcome, tuple):
        return outcome
    if isinstance(outcome, str):
        raise RuntimeError(f"worker process {k} failed: {outcome}")
    how = f"killed by signal {-worker.exitcode}" if (worker.exitcode or 0) < 0 else f"exit code {worker.exitcode}"
    raise WorkerDied(f"worker process {k} ({worker.name}) ended before finishing its shard ({how}). Its shard keeps "
                     "every result it wrote: run the same call again to resume")


def _worker(environment: dict[str, str], make_chain: Callable[[], Any], shard: list[Any], k: int, count: int,
            path: Path, options: dict[str, Any], done: Any, results: Any) -> None:
    """One worker process: its own event loop and chain, run_to_jsonl's core over inputs k, k+P, k+2P, ..."""
    os.environ.update(environment)
    start = time.process_time()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # e.g. get_llm's "Backend: ..." line, shown once by the parent
            summary = asyncio.run(_run_shard(make_chain, shard, k, count, path, options, done))
        results.put((k, (summary, time.process_time() - start)))
    except Exception as exc:  # reported by the parent, which raises it with the process's number
        results.put((k, f"{type(exc).__name__}: {exc}"))


class _SharedCount:
    """Stands in for a tqdm bar in a worker: counts finished inputs in the parent's shared array."""

    def __init__(self, done: Any, k: int) -> None:
        self.done, self.k = done, k

    def update(self, n: int = 1) -> None:
        self.done[self.k] += n

    def close(self) -> None:
        pass


async def _run_shard(make_chain: Callable[[], Any], shard: list[Any], k: int, count: int, path: Path,
                     options: dict[str, Any], done: Any) -> JsonlSummary:
    """run_to_jsonl over one shard, with each record filed under its index in the whole job."""
    limits = options["limits"]
    limiter = TokenRateLimiter(**limits) if limits["rpm"] or limits["tpm"] else None
    job = make_job(make_chain(), shard, options["concurrency"], retry=options["retry"], timeout=options["timeout"],
                   limiter=limiter)
    summary = JsonlSummary(path, 0, 0, 0, 0, 0, 0.0, 0, options["concurrency"], StreamingStats())
    meter = Progress(False, None, path.name)
    meter.bar = _SharedCount(done, k)
    t0 = time.perf_counter()
    with ResultsFile(path, resume=True) as results:
        record = _record_each(job, results, summary, meter, options["retry_errors"])
        await run_pool(job.items, job.workers, lambda j, item: record(k + j * count, item))
    summary.wall_time, summary.peak_in_flight = time.perf_counter() - t0, meter.peak
    await _close_http_clients(job.chain)
    return summary


async def _close_http_clients(chain: Any) -> None:
    """Close the HTTP pools of the chain's models, so the process ends without 'Unclosed' warnings."""
    for step in getattr(chain, "steps", [chain]):
        client = getattr(step, "root_async_client", None)
        if client is not None:
            await client.close()
