"""A batch workflow you can trust on OpenAI's Batch API: every input ends with one result or one error.

A learner reads this (lesson 07). The Batch API runs a file of requests within 24 hours at half the
price. This module sends a LangChain chain's requests through it with the openai SDK's own
`client.files` and `client.batches`, and fixes what langasync 0.2.3 gets wrong (lesson 07 measures it):

- the file holds the requests the chain itself would send: its prompt formatted, and the body built
  by ChatOpenAI's `_get_request_payload` (what it runs before every call), answers read by its
  `_create_chat_result`; a job over one file's limits (50,000 requests, 200 MB) is split;
- each row's `custom_id` is "<index>-<input fingerprint>": rows map back by id, never by position;
- expired and cancelled batches keep their finished (billed) rows, and `cancel_job` waits until
  `cancelling` is over; a `"response": null` row, or one in neither file, is an error for its input;
- the job file is small JSON (batch ids, file ids, input count), never a pickle: after a restart,
  `run_batch_job` with the same arguments resumes; results go to run_to_jsonl's JSONL format.

    summary = await run_batch_job(chain, inputs, "job.json", "results.jsonl")   # resumes from job.json
    # step by step: submit_job, wait_for_job (or cancel_job), collect_job, write_results
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import openai
from langchain_core.runnables import Runnable, RunnableBinding, RunnableSequence
from langchain_openai.chat_models.base import BaseChatOpenAI

from .results_file import InputMismatch, ResultsFile, check_output_path, input_fingerprint
from .usage import InputUsage, Usage, UsageTotals, usage_from_message

__all__ = ["BatchJob", "BatchLimits", "BatchOutcome", "BatchRunSummary", "PollBackoff", "batch_rows",
           "cancel_job", "client_for", "collect_job", "run_batch_job", "split_rows", "submit_job",
           "wait_for_job", "write_results"]

ENDPOINT = "/v1/chat/completions"
FINAL = {"completed", "failed", "expired", "cancelled"}  # `cancelling` and `finalizing` are not final
JOB_FORMAT = "workbook-batch-job/1"


@dataclass(frozen=True)
class BatchLimits:
    """What one batch input file may hold (OpenAI's limits by default: 50,000 requests, 200 MB)."""

    max_requests: int = 50_000
    max_bytes: int = 200 * 1024 * 1024

    def __post_init__(self) -> None:
        _check_positive(self)


@dataclass(frozen=True)
class PollBackoff:
    """How often to ask a batch's status: `first` seconds, times `factor` each poll, at most `longest`."""

    first: float = 1.0
    factor: float = 1.5
    longest: float = 60.0
    give_up_after: float = 25 * 3600.0  # the 24 h window and an hour: a wait never hangs for ever

    def __post_init__(self) -> None:
        _check_positive(self)
        if self.factor < 1:
            raise ValueError(f"PollBackoff factor must be >= 1 (each wait as long as the last or longer), "
                             f"got {self.factor!r}")


def _check_positive(settings: Any) -> None:
    """ValueError naming the first field of a settings dataclass that is not a finite number above 0."""
    for name, value in asdict(settings).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
            raise ValueError(f"{type(settings).__name__} {name} must be a finite number above 0, got {value!r}")


@dataclass
class ChainParts:
    """A `prompt | model | parser` chain taken apart: what builds the request, and what reads the answer."""

    before: Runnable | None
    model: BaseChatOpenAI
    bound: dict[str, Any]  # keyword arguments from .bind(), sent with every request
    after: Runnable | None


@dataclass
class BatchPart:
    """One batch of a job: inputs first .. first + count - 1, its input file and its batch id."""

    first: int
    count: int
    input_file_id: str
    batch_id: str


@dataclass
class BatchJob:
    """The job file's content: small JSON that survives a kernel restart (no pickle, no inputs)."""

    path: Path
    input_count: int
    inputs_sha: str  # fingerprint of every input, so a resume with other inputs is refused
    parts: list[BatchPart] = field(default_factory=list)

    def save(self) -> None:
        """Write the job file atomically (a kill mid-write leaves the old file, never half of one)."""
        data = {"format": JOB_FORMAT, "input_count": self.input_count, "inputs_sha": self.inputs_sha,
                "parts": [asdict(part) for part in self.parts]}
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        os.replace(temporary, self.path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BatchJob:
        """Read a job file written by `save`; ValueError saying what is wrong with any other file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != JOB_FORMAT:
                raise ValueError(f"its format is {data.get('format')!r}, not {JOB_FORMAT!r}")
            parts = [BatchPart(**part) for part in data["parts"]]
            return cls(path, int(data["input_count"]), str(data["inputs_sha"]), parts)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{str(path)!r} is not a batch job file this code wrote ({exc}); "
                             "delete it to start a new job") from None


@dataclass
class BatchOutcome:
    """What became of one input: its output, or `error` as (type, readable message)."""

    index: int
    output: Any = None
    error: tuple[str, str] | None = None
    usage: InputUsage = InputUsage()  # the row's tokens, billed at batch prices (helpers.usage)
    attempts: int = 0  # 1 if the row ran (answer or HTTP error), 0 if it never did
    latency: float = 0.0  # seconds from the batch's creation to its end: the time to this result


@dataclass
class BatchRunSummary:
    """What `run_batch_job` returns: counts per outcome and token totals, from the rows themselves."""

    path: Path
    ok: int
    failed: int
    skipped: int  # inputs the results file already held
    statuses: dict[str, str]  # batch id -> final status
    errors: dict[str, int]  # error type -> how many inputs
    usage: UsageTotals = field(default_factory=UsageTotals)  # every row's tokens, as the rows report them

    @property
    def cost(self) -> float | None:
        """USD at helpers/prices.py's batch prices; None if the model's price is unknown."""
        return self.usage.cost()


# ---------------------------------------------------------------- 1. the requests, as the chain would send them


def split_chain(chain: Runnable) -> ChainParts:
    """Find the one ChatOpenAI in `chain` (e.g. prompt | llm | parser); ValueError if there is not exactly one."""
    steps = list(chain.steps) if isinstance(chain, RunnableSequence) else [chain]
    found = [(i, *_unwrap(step)) for i, step in enumerate(steps) if _unwrap(step)[0] is not None]
    if len(found) != 1:
        raise ValueError(f"the chain has {'no ChatOpenAI model' if not found else f'{len(found)} models'}; the "
                         "Batch API workflow needs exactly one ChatOpenAI step: prompt | get_llm() | StrOutputParser()")
    i, model, bound = found[0]
    if model._use_responses_api({**model.model_kwargs, **bound}):
        raise ValueError("the chain's model uses the Responses API; this workflow sends /v1/chat/completions")
    before, after = steps[:i], steps[i + 1:]
    return ChainParts(RunnableSequence(*before) if len(before) > 1 else (before or [None])[0], model, bound,
                      RunnableSequence(*after) if len(after) > 1 else (after or [None])[0])


def _unwrap(step: Runnable) -> tuple[BaseChatOpenAI | None, dict[str, Any]]:
    """(the model inside `step`'s .bind() wrappers, their keyword arguments, the outer ones winning)."""
    bound: dict[str, Any] = {}
    while isinstance(step, RunnableBinding):
        bound = {**step.kwargs, **bound}
        step = step.bound
    return (step, bound) if isinstance(step, BaseChatOpenAI) else (None, {})


def client_for(chain: Runnable) -> Any:
    """The chain's own openai.AsyncOpenAI client: batches go where the chain's requests go, with its key."""
    return split_chain(chain).model.root_async_client


def custom_id(index: int, item: Any) -> str:
    """A row's id: "<index>-<fingerprint of the input>", e.g. "7-3f0a9c1e2b7d"."""
    return f"{index}-{input_fingerprint(item)}"


def batch_rows(chain: Runnable, inputs: Sequence[Any]) -> list[dict[str, Any]]:
    """One Batch API request row per input: the body ChatOpenAI would send for it, and its custom_id."""
    parts = split_chain(chain)
    rows = []
    for index, item in enumerate(inputs):
        try:
            prompt = parts.before.invoke(item) if parts.before is not None else item
            payload = parts.model._get_request_payload(prompt, **parts.bound)
        except Exception as exc:
            raise ValueError(f"input {index} ({item!r:.60}) cannot be turned into a request by the chain: "
                             f"{type(exc).__name__}: {exc}") from exc
        body = {k: v for k, v in payload.items() if k not in ("stream", "stream_options")}  # rows never stream
        rows.append({"custom_id": custom_id(index, item), "method": "POST", "url": ENDPOINT, "body": body})
    return rows


def split_rows(lines: Sequence[bytes], limits: BatchLimits = BatchLimits()) -> list[range]:
    """The ranges of `lines` (JSONL lines, newline included) that each fit in one file under `limits`."""
    ranges, start, size = [], 0, 0
    for index, line in enumerate(lines):
        if len(line) > limits.max_bytes:
            raise ValueError(f"input {index}'s request is {len(line):,} bytes, over the {limits.max_bytes:,}-byte "
                             "limit of a whole batch file: shorten that input")
        if index - start == limits.max_requests or size + len(line) > limits.max_bytes:
            ranges.append(range(start, index))
            start, size = index, 0
        size += len(line)
    return ranges + [range(start, len(lines))] if lines else ranges


# ---------------------------------------------------------------- 2. submit, wait, cancel


def _inputs_sha(inputs: Sequence[Any]) -> str:
    text = ",".join(input_fingerprint(item) for item in inputs)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:16]


def _check_inputs(job: BatchJob, inputs: Sequence[Any]) -> None:
    """InputMismatch if `inputs` are not the inputs `job` was submitted with."""
    if (job.input_count, job.inputs_sha) != (len(inputs), _inputs_sha(inputs)):
        raise InputMismatch(f"{job.path.name} is a job for {job.input_count} other inputs (fingerprint "
                            f"{job.inputs_sha}); these {len(inputs)} inputs' is {_inputs_sha(inputs)}. Pass the "
                            "job's own inputs, or use another job file for a new job")


def _open_job(path: Path, inputs: Sequence[Any]) -> BatchJob:
    """The job in `path` if it exists (refused if it was for other inputs), else a new empty job."""
    job = BatchJob.load(path) if path.exists() else BatchJob(path, len(inputs), _inputs_sha(inputs))
    _check_inputs(job, inputs)
    return job


async def submit_job(chain: Runnable, inputs: Iterable[Any], job_file: str | os.PathLike[str], *,
                     client: Any = None, limits: BatchLimits = BatchLimits()) -> BatchJob:
    """Upload the chain's requests and create the batch(es); the job file is saved after each batch.

    If `job_file` already holds this job, only the batches not yet created are (a resume after a kill).
    """
    items = list(inputs)
    if not items:
        raise ValueError("inputs is empty: a batch needs at least one input")
    client = client or client_for(chain)
    job = _open_job(check_output_path(job_file), items)
    lines = [(json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8") for row in batch_rows(chain, items)]
    planned = split_rows(lines, limits)
    done = [range(part.first, part.first + part.count) for part in job.parts]
    if done != planned[:len(done)]:
        raise ValueError(f"{job.path.name} split its inputs as {done}, but these limits split them as "
                         f"{planned}: resume with the limits the job was submitted with")
    for number, span in enumerate(planned[len(done):], start=len(done)):
        upload = await client.files.create(file=(f"batch_part_{number}.jsonl", b"".join(lines[span.start:span.stop])),
                                           purpose="batch")
        batch = await client.batches.create(input_file_id=upload.id, endpoint=ENDPOINT, completion_window="24h")
        job.parts.append(BatchPart(span.start, len(span), upload.id, batch.id))
        job.save()
    return job


async def wait_for_job(client: Any, job: BatchJob, backoff: PollBackoff = PollBackoff()) -> dict[str, Any]:
    """Poll every batch of `job` with backoff until each is final; returns {batch id: openai Batch}."""
    batches: dict[str, Any] = {}
    delay, started = backoff.first, time.monotonic()
    while True:
        for part in job.parts:
            if part.batch_id not in batches or batches[part.batch_id].status not in FINAL:
                batches[part.batch_id] = await client.batches.retrieve(part.batch_id)
        waiting = [f"{bid} ({b.status})" for bid, b in batches.items() if b.status not in FINAL]
        if not waiting:
            return batches
        if time.monotonic() - started + delay > backoff.give_up_after:
            raise TimeoutError(f"gave up after {backoff.give_up_after:g} s with batches still running: "
                               f"{', '.join(waiting)}; wait again later with the same job file")
        await asyncio.sleep(delay)
        delay = min(delay * backoff.factor, backoff.longest)


async def cancel_job(client: Any, job: BatchJob, backoff: PollBackoff = PollBackoff()) -> dict[str, Any]:
    """Cancel every batch not yet final, and wait until each is `cancelled` (or otherwise final)."""
    for part in job.parts:
        batch = await client.batches.retrieve(part.batch_id)
        if batch.status not in FINAL and batch.status != "cancelling":
            with contextlib.suppress(openai.ConflictError):  # it ended meanwhile: nothing to cancel
                await client.batches.cancel(part.batch_id)
    return await wait_for_job(client, job, backoff)


# ---------------------------------------------------------------- 3. collect: one outcome per input


async def _read_rows(client: Any, file_id: str | None, batch_id: str) -> dict[str, dict[str, Any]]:
    """The rows of an output or error file by custom_id (none if there is no file); bad lines are warned of."""
    rows: dict[str, dict[str, Any]] = {}
    text = (await client.files.content(file_id)).text if file_id else ""
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict) and isinstance(row.get("custom_id"), str) and row["custom_id"] not in rows:
            rows[row["custom_id"]] = row
        elif line.strip():
            warnings.warn(f"line {number} of file {file_id} (batch {batch_id}) is not JSON, has no custom_id, or "
                          "repeats one: skipped", stacklevel=3)
    return rows


def _ended(batch: Any) -> float:
    """Seconds from the batch's creation to its end (completed, expired, cancelled or failed)."""
    end = batch.completed_at or batch.expired_at or batch.cancelled_at or batch.failed_at or batch.created_at
    return float(end - batch.created_at)


def _why_missing(batch: Any, cid: str) -> tuple[str, str]:
    """The error for an input whose row is in no file: the batch's validation errors, or a missing row."""
    if batch.status == "failed":
        errors = batch.errors.data if batch.errors and batch.errors.data else []
        reasons = "; ".join(f"line {e.line}: {e.message}" if e.line else str(e.message) for e in errors)
        return "BatchFailed", f"batch {batch.id} failed validation: {reasons or 'no reason given'}"
    return "BatchRowMissing", (f"row {cid} is in neither the output nor the error file of batch {batch.id} "
                               f"(status {batch.status}): it was never answered")


def _answer(model: BaseChatOpenAI, body: dict[str, Any]) -> Any:
    """The AIMessage ChatOpenAI makes of a chat.completion body, with the metadata langchain-core adds."""
    result = model._create_chat_result(body)
    message = result.generations[0].message
    message.response_metadata = {**(result.generations[0].generation_info or {}), **(result.llm_output or {}),
                                 **message.response_metadata}
    return message


async def _outcome(parts: ChainParts, index: int, row: dict[str, Any] | None, batch: Any, cid: str) -> BatchOutcome:
    """One input's outcome from its row (None: no row), read the way ChatOpenAI reads an answer."""
    latency, where = _ended(batch), f"(batch {batch.id})"
    if row is None:
        return BatchOutcome(index, error=_why_missing(batch, cid), latency=latency)
    response, error = row.get("response"), row.get("error") or {}
    if not isinstance(response, dict):  # "response": null: never ran (expired, cancelled) or timed out (billed)
        ran = int(error.get("code") not in ("batch_expired", "batch_cancelled"))
        return BatchOutcome(index, error=(error.get("code") or "batch_row_failed", f"{error.get('message')} {where}"),
                            usage=InputUsage(failed=Usage(unreported=ran, tier="batch")), attempts=ran, latency=latency)
    body, status, usage = response.get("body") or {}, response.get("status_code"), Usage(unreported=1, tier="batch")
    try:
        if status != 200 or error:
            found = body.get("error", {}).get("message") if isinstance(body, dict) else None
            raise RuntimeError(f"HTTP {status}: {found or error or body}")
        message = _answer(parts.model, body)
        usage = usage_from_message(message, tier="batch")
        output = await parts.after.ainvoke(message) if parts.after is not None else message
    except Exception as exc:  # an HTTP-error row, or an answer the chain's parser refuses
        kind = f"HTTP {status}" if status != 200 or error else type(exc).__name__
        return BatchOutcome(index, error=(kind, f"{exc} {where}"), usage=InputUsage(failed=usage), attempts=1,
                            latency=latency)
    return BatchOutcome(index, output=output, usage=InputUsage(usage), attempts=1, latency=latency)


async def collect_job(client: Any, job: BatchJob, chain: Runnable, inputs: Sequence[Any]) -> list[BatchOutcome]:
    """Exactly one outcome per input, in input order, from every batch's output and error files.

    Expired and cancelled batches give their finished rows; a row in neither file becomes an error
    naming it. Refuses if a batch is not final yet (wait_for_job first) or `inputs` are not the job's.
    """
    items = list(inputs)
    _check_inputs(job, items)
    parts, outcomes = split_chain(chain), []
    for part in job.parts:
        batch = await client.batches.retrieve(part.batch_id)
        if batch.status not in FINAL:
            raise ValueError(f"batch {batch.id} is {batch.status}, not finished: await wait_for_job(...) first")
        rows = await _read_rows(client, batch.error_file_id, batch.id)
        rows.update(await _read_rows(client, batch.output_file_id, batch.id))  # an answer beats an error
        for index in range(part.first, part.first + part.count):
            cid = custom_id(index, items[index])
            outcomes.append(await _outcome(parts, index, rows.pop(cid, None), batch, cid))
        if rows:
            warnings.warn(f"batch {batch.id} returned {len(rows)} row(s) for no input of this job "
                          f"(e.g. {next(iter(rows))}): ignored", stacklevel=2)
    if len(outcomes) != job.input_count:
        raise ValueError(f"{job.path.name} covers {len(outcomes)} of its {job.input_count} inputs: "
                         "run submit_job with the same arguments to submit the rest")
    return outcomes


# ---------------------------------------------------------------- 4. the results file, and the whole job in one call


def write_results(outcomes: Sequence[BatchOutcome], inputs: Sequence[Any], path: str | os.PathLike[str], *,
                  resume: bool = True, overwrite: bool = False) -> tuple[int, int, int]:
    """Append each outcome to a run_to_jsonl results file, usage included; returns (ok, failed, skipped).

    With resume=True, inputs the file already holds a result for are skipped (and checked to be the same)."""
    counts = [0, 0, 0]
    with ResultsFile(path, resume=resume, overwrite=overwrite) as results:
        for o in outcomes:
            if results.recorded(o.index, inputs[o.index], check=True) == "ok":
                counts[2] += 1
                continue
            ok = results.append(o.index, o.output, o.error, o.attempts, o.latency, item=inputs[o.index], usage=o.usage)
            counts[0 if ok else 1] += 1
    return counts[0], counts[1], counts[2]


def summarize(path: Path, outcomes: Sequence[BatchOutcome], skipped: int, batches: dict[str, Any]) -> BatchRunSummary:
    """Counts and token totals of a collected job."""
    failed = Counter(outcome.error[0] for outcome in outcomes if outcome.error is not None)
    summary = BatchRunSummary(path, len(outcomes) - failed.total(), failed.total(), skipped,
                              {bid: batch.status for bid, batch in batches.items()}, dict(failed))
    for outcome in outcomes:
        summary.usage.add(outcome.usage)
    return summary


async def run_batch_job(chain: Runnable, inputs: Iterable[Any], job_file: str | os.PathLike[str],
                        results_path: str | os.PathLike[str], *, client: Any = None,
                        limits: BatchLimits = BatchLimits(), backoff: PollBackoff = PollBackoff()) -> BatchRunSummary:
    """Submit (or resume from `job_file`), wait, collect and write every input's result; returns a summary.

    Run it again after a kernel restart with the same arguments: nothing is submitted twice."""
    items = list(inputs)
    client = client or client_for(chain)
    job = await submit_job(chain, items, job_file, client=client, limits=limits)
    batches = await wait_for_job(client, job, backoff)
    outcomes = await collect_job(client, job, chain, items)
    skipped = write_results(outcomes, items, results_path)[2]
    return summarize(Path(results_path), outcomes, skipped, batches)
