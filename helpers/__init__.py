"""The Async Batch Workbook's helpers: the code the lessons teach, and the machinery behind them.

Read these (what the lessons teach, and the tools a learner calls):

| module           | what it holds                                                              |
| ---------------- | -------------------------------------------------------------------------- |
| runners.py       | run_tracked, stream_merged, run_to_jsonl, over one worker-pool core         |
| reliability.py   | invoke_robustly, RetryPolicy, TokenRateLimiter, which errors are retryable |
| results_file.py  | the JSONL results file: scan, repair a torn last line, append, read back   |
| reports.py       | what the runners return (BatchReport, StreamEvent, ...) and readable errors |
| usage.py         | token usage per input (UsageMeter), run totals, and their cost             |
| prices.py        | the price table per model, with sources and date: edit it when prices change |
| processes.py     | run_in_processes: one job as P worker processes, one results shard each, resumable |
| ray_jobs.py      | Ray Data: a local cluster, its HTTP processor, and the workbook's runner inside Ray |
| sizing.py        | size a real job on paper: concurrency, CPU, processes, machines, time and cost |
| batch_api.py     | the Batch API workflow: one result or error per input, split, resume, JSONL |
| caching.py       | do not pay twice: SQLiteCache (an LLM cache in a file), one request per distinct input |
| claims.py        | claim: print a conclusion as a checked verdict; interleaved medians       |
| metrics.py       | percentiles, latency stats, in-flight timeline, slots busy, Little's law   |
| timing.py        | RequestTimer: a callback that times every model call                       |
| backend.py       | get_llm (the mock unless .env says otherwise), mock_demo, the seed's chains |
| budget.py        | the request budget on a real backend: counted per attempt, estimates first |
| plots.py         | the notebooks' figures                                                     |
| stream_board.py  | StreamBoard: many streams shown one line each                              |
| progress_bars.py | tqdm.auto's bar, whose saved text shows how it ended, not "0%"             |
| seed_tutorial.py | the seed tutorial's code, bugs included, to run and measure                |

Backstage (machinery: you need not read these to follow the lessons):

| package          | what it holds                                                              |
| ---------------- | -------------------------------------------------------------------------- |
| mock/            | the fake OpenAI API, its own process: `python -m helpers.mock --port 8000`  |
|   settings.py    | every setting of the mock, and what it does (one table)                    |
|   requests_in.py | what a chat request may hold, checked field by field: JSON 400s, never a crash |
|   replies.py     | the answers: a pure function of the prompt                                 |
|   server.py      | the HTTP server: the chat endpoint's steps, streaming, /mock/* control     |
|   limits.py      | the rate limits: RPM and TPM token buckets, OpenAI's duration format        |
|   faults.py      | which attempts fail (the deterministic rolls) and how long an answer takes  |
|   billing.py     | the billing ledger (/mock/stats "billed"), the prompt cache, usage bodies   |
|   files.py       | the Files API: upload, retrieve, content, delete of the batch JSONL files   |
|   batches.py     | the Batch API: lifecycle, rows, expiry, cancel, output and error files      |
|   batch_input.py | a batch input file checked line by line: the errors that fail a batch       |
|   wire.py        | OpenAI's wire format: error bodies, the chat.completion body, stream events |
|   control.py     | get_mock, MockHandle (configure, stats, temporarily), record_stats         |
| checks/          | the exercise checks, one module per lesson (`from helpers.checks import check_...`) |
|   common.py      | what the checks share: ExerciseFailed, calling the learner's code          |
|   lesson01.py ... lesson08.py | the checks of each lesson                                     |
| bench/           | the measuring harness that lessons 04, 05 and 08 and `make bench` call     |
|   runners.py     | every way to push n inputs through a chain that the workbook compares      |
|   measure.py     | run_once, and measure in a fresh process                                   |
|   profile.py     | where the client's CPU goes, per library and per layer                     |
|   levers.py      | lesson 08's levers: CPU per request of each way to keep a LangChain chain  |
|   scale.py       | the CPU-bound case: P worker processes against chain.abatch                |
|   ray_bench.py   | Ray Data's HTTP processor against the workbook's runner inside Ray         |

Scripts that are neither lessons nor tests (the `make bench` driver, the rate-limit and mock
benchmarks, the hand-out builder) live in the repository's `tools/` folder.
"""
