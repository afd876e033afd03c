"""The seed tutorial's code, kept so the notebooks can run it and measure what goes wrong.

A lesson prop: read it next to the seed, to see what the notebooks measure; never copy it.

The seed is a Chinese tutorial on `abatch` ("实战代码_03_异步批处理与性能优化"). Its
comments and printed messages are translated here; the logic is unchanged, bugs
included. Do not copy these patterns: each notebook shows what goes wrong with them
and then the fix.

- `STREAMING_PROCESSOR_SOURCE`: section 2, as text, because it does not compile.
- `BatchMetrics`, `HighPerformanceBatchProcessor`: section 3.
- `MemoryEfficientBatchProcessor`: section 4.
- `batch_with_progress`: the "progress monitoring" best-practice snippet.
"""

import asyncio
import time
from dataclasses import dataclass
from typing import List

# Section 2, verbatim except for translated comments. Compiling it raises SyntaxError.
STREAMING_PROCESSOR_SOURCE = '''\
class StreamingAsyncBatchProcessor:
    """Streaming async batch processor"""

    def __init__(self, chain, max_concurrency: int = 100):
        self.chain = chain
        self.max_concurrency = max_concurrency

    async def stream_batch(
        self,
        inputs: List[dict]
    ) -> AsyncIterator[tuple[int, str]]:
        """Stream the batch, returning results in real time"""
        semaphore = asyncio.Semaphore(self.max_concurrency)

        async def process_one(idx: int, inp: dict):
            """Process one task and stream it back"""
            async with semaphore:
                full_result = ""
                async for chunk in self.chain.astream(inp):
                    full_result += chunk
                    yield idx, chunk
                return idx, full_result

        # Create every task
        tasks = [process_one(i, inp) for i, inp in enumerate(inputs)]

        # Run concurrently and stream the results back
        for task in asyncio.as_completed([
            asyncio.create_task(self._collect_stream(task))
            for task in tasks
        ]):
            idx, result = await task
            yield idx, result

    async def _collect_stream(self, generator):
        """Collect the streamed result"""
        chunks = []
        idx = None
        async for i, chunk in generator:
            idx = i
            chunks.append(chunk)
        return idx, "".join(chunks)
'''


# ============================================
# 3. High-performance async batch processing
# ============================================


@dataclass
class BatchMetrics:
    """Batch metrics"""

    total_tasks: int
    success_count: int
    failure_count: int
    total_time: float
    avg_latency: float
    throughput: float
    peak_concurrency: int


class HighPerformanceBatchProcessor:
    """High-performance async batch processor"""

    def __init__(self, chain, max_concurrency: int = 100):
        self.chain = chain
        self.max_concurrency = max_concurrency
        self.active_tasks = 0
        self.peak_concurrency = 0

    async def batch(self, inputs: List[dict]) -> BatchMetrics:
        """High-performance batch"""
        print(f"\nStarting async batch of {len(inputs)} tasks")
        print(f"Max concurrency: {self.max_concurrency}\n")

        start_time = time.time()
        semaphore = asyncio.Semaphore(self.max_concurrency)
        results = []
        success_count = 0
        failure_count = 0

        async def process_with_tracking(idx: int, inp: dict):
            """Process with tracking"""
            async with semaphore:
                self.active_tasks += 1
                self.peak_concurrency = max(self.peak_concurrency, self.active_tasks)

                try:
                    result = await self.chain.ainvoke(inp)
                    return idx, result, None
                except Exception as e:
                    return idx, None, e
                finally:
                    self.active_tasks -= 1

        # Create every task
        tasks = [process_with_tracking(i, inp) for i, inp in enumerate(inputs)]

        # Run concurrently
        completed = await asyncio.gather(*tasks, return_exceptions=False)

        # Handle the results
        results = [None] * len(inputs)
        for idx, result, error in completed:
            if error:
                failure_count += 1
                print(f"[error] task {idx} failed: {error}")
            else:
                success_count += 1
                results[idx] = result

        # Compute the metrics
        total_time = time.time() - start_time
        avg_latency = total_time / len(inputs)
        throughput = len(inputs) / total_time

        return BatchMetrics(
            total_tasks=len(inputs),
            success_count=success_count,
            failure_count=failure_count,
            total_time=total_time,
            avg_latency=avg_latency,
            throughput=throughput,
            peak_concurrency=self.peak_concurrency,
        )


# ============================================
# 4. Memory-optimised batch processing
# ============================================


class MemoryEfficientBatchProcessor:
    """Memory-optimised batch processor"""

    def __init__(self, chain, chunk_size: int = 1000):
        self.chain = chain
        self.chunk_size = chunk_size

    async def batch(self, inputs: List[dict]) -> List:
        """Chunked async batch, to optimise memory use"""
        print(f"\nMemory-optimised batch of {len(inputs)} tasks")
        print(f"Chunk size: {self.chunk_size}\n")

        all_results = []
        total_chunks = (len(inputs) + self.chunk_size - 1) // self.chunk_size

        for chunk_idx in range(total_chunks):
            start = chunk_idx * self.chunk_size
            end = min(start + self.chunk_size, len(inputs))
            chunk = inputs[start:end]

            print(f"[progress] chunk {chunk_idx + 1}/{total_chunks} ({len(chunk)} tasks)")

            # Async batch of the current chunk
            chunk_results = await self.chain.abatch(chunk, config={"max_concurrency": 100})
            all_results.extend(chunk_results)

            # Free memory
            del chunk_results

        return all_results


# ============================================
# Best practice 2: progress monitoring
# ============================================


async def batch_with_progress(chain, inputs):
    """Async batch with a progress bar"""
    from tqdm.asyncio import tqdm

    tasks = [chain.ainvoke(inp) for inp in inputs]
    results = []

    for coro in tqdm.as_completed(tasks, total=len(tasks)):
        result = await coro
        results.append(result)

    return results
