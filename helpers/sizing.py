"""Size a real job on paper, from figures you measured: concurrency, CPU, processes, time and cost.

Read this module: lesson 08's section 3 uses it. Every formula is one line:

- the provider's ceiling, in requests a second: min(RPM / 60, TPM / 60 / tokens per request);
- the client's ceiling: cores * 1,000 / (CPU ms per request) (one event loop per core, lesson 05);
- the job runs at the lower of the two, and Little's law gives the requests in flight it needs:
  concurrency = rate * mean latency;
- processes = the CPU that rate needs (rate * CPU ms per request / 1,000), at `utilization` of each
  core, rounded up; machines = processes / cores per machine, rounded up;
- duration = requests / rate; cost = tokens * the price table (`helpers.prices`), and the Batch API
  at BATCH_DISCOUNT of it, in files of at most `batch_file_requests` requests.

    plan = size_job(requests=10_000_000, latency_s=2.0, rpm=30_000, tpm=150_000_000,
                    prompt_tokens=19, completion_tokens=9, cpu_ms_per_request=2.5)
    print(plan.table())
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .prices import BATCH_DISCOUNT, price_for

__all__ = ["JobPlan", "size_job"]


@dataclass(frozen=True)
class JobPlan:
    """What a job needs, worked out by size_job; `table()` shows it with the formula of each line."""

    requests: int
    latency_s: float
    provider_rate: float  # requests a second the RPM and TPM limits allow
    limited_by: str  # "RPM" or "TPM": which of the provider's limits is the lower
    rate: float  # requests a second the job is planned at (the provider's ceiling)
    concurrency: int  # Little's law: rate * latency
    cpu_cores: float  # the client CPU that rate needs
    processes: int
    machines: int
    one_core_rate: float  # what one process can send: the client's ceiling on one core
    duration_h: float
    realtime_usd: float | None  # None: the model is not in the price table
    batch_usd: float | None
    batch_files: int

    def table(self) -> str:
        """The plan as readable lines: each figure and how it was worked out."""
        usd = (lambda v: "price unknown" if v is None else f"${v:,.0f}")
        rows = [
            ("provider ceiling", f"{self.provider_rate:,.0f} req/s", f"min(RPM/60, TPM/60/tokens): {self.limited_by} decides"),
            ("one process sends", f"{self.one_core_rate:,.0f} req/s", "1000 / CPU ms per request"),
            ("concurrency", f"{self.concurrency:,}", f"Little's law: {self.rate:,.0f} req/s x {self.latency_s:g} s"),
            ("client CPU", f"{self.cpu_cores:.2f} cores", "rate x CPU ms per request / 1000"),
            ("processes", f"{self.processes} processes", "CPU / utilization per core, rounded up"),
            ("machines", f"{self.machines} machine{'s' * (self.machines != 1)}", "processes / cores per machine, rounded up"),
            ("duration", f"{self.duration_h:.1f} h", f"{self.requests:,} requests / rate"),
            ("cost, realtime", usd(self.realtime_usd), "tokens x the price table"),
            ("cost, Batch API", usd(self.batch_usd), f"{BATCH_DISCOUNT:.0%} of realtime, {self.batch_files:,} files"),
        ]
        width = max(len(name) for name, _, _ in rows)
        return "\n".join(f"{name:<{width}}  {value:>14}   {how}" for name, value, how in rows)


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")


def size_job(*, requests: int, latency_s: float, rpm: float, tpm: float, prompt_tokens: float,
             completion_tokens: float, cpu_ms_per_request: float, model: str = "gpt-4o-mini",
             cores_per_machine: int = 8, utilization: float = 0.7, batch_file_requests: int = 50_000) -> JobPlan:
    """Work out what a job of `requests` needs at the provider's ceiling, from measured per-request figures."""
    _check_positive(requests=requests, latency_s=latency_s, rpm=rpm, tpm=tpm, prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens, cpu_ms_per_request=cpu_ms_per_request,
                    cores_per_machine=cores_per_machine, batch_file_requests=batch_file_requests)
    if not 0 < utilization <= 1:
        raise ValueError(f"utilization must be in (0, 1], the share of each core a process may use; got {utilization!r}")
    by_rpm, by_tpm = rpm / 60, tpm / 60 / (prompt_tokens + completion_tokens)
    rate = min(by_rpm, by_tpm)
    cpu_cores = rate * cpu_ms_per_request / 1000
    processes = max(1, math.ceil(cpu_cores / utilization))
    price = price_for(model)
    realtime = None if price is None else requests * (prompt_tokens * price.input
                                                      + completion_tokens * price.output) / 1e6
    return JobPlan(requests=requests, latency_s=latency_s, provider_rate=rate,
                   limited_by="RPM" if by_rpm <= by_tpm else "TPM", rate=rate,
                   concurrency=math.ceil(rate * latency_s), cpu_cores=cpu_cores, processes=processes,
                   machines=math.ceil(processes / cores_per_machine), one_core_rate=1000 / cpu_ms_per_request,
                   duration_h=requests / rate / 3600, realtime_usd=realtime,
                   batch_usd=None if realtime is None else realtime * BATCH_DISCOUNT,
                   batch_files=math.ceil(requests / batch_file_requests))
