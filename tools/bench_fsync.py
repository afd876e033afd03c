"""What each fsync policy of the results file costs per record: `python tools/bench_fsync.py`.

Appends the same records through `ResultsFile` with each policy, in rounds (A B C D, A B C D, ...), and
prints the median cost per record of each against one fsync at the end only.
The figures depend on the disk under --dir (default: a folder in the repository's build/ directory,
so the disk the workbook writes its results to).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers.results_file import ResultsFile  # noqa: E402

POLICIES = {
    "only at the end": {"fsync_seconds": None},
    "every 1 s (default)": {},
    "every 100 records": {"fsync_every": 100},
    "every 0.1 s": {"fsync_seconds": 0.1},
    "every record": {"fsync_every": 1},
}


def seconds_per_record(folder: Path, options: dict, n: int) -> float:
    path = folder / "bench.jsonl"
    path.unlink(missing_ok=True)
    output = "The quick brown fox jumps over the lazy dog. " * 4
    start = time.perf_counter()
    with ResultsFile(path, resume=False, overwrite=True, **options) as results:
        for index in range(n):
            results.append(index, output, None, 1, 0.25, item={"text": f"input {index}"})
    return (time.perf_counter() - start) / n


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000, help="records per run (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, at least 3 (default 3)")
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parents[1] / "build")
    args = parser.parse_args(argv)
    if args.rounds < 3:
        parser.error("--rounds must be at least 3: the figures are medians")
    args.dir.mkdir(parents=True, exist_ok=True)
    costs: dict[str, list[float]] = {name: [] for name in POLICIES}
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        for _ in range(args.rounds):
            for name, options in POLICIES.items():
                costs[name].append(seconds_per_record(Path(folder), options, args.records))
    base = statistics.median(costs["only at the end"])
    print(f"fsync policy cost, {args.records} records per run, median of {args.rounds} interleaved rounds, "
          f"disk under {args.dir}")
    print(f"{'policy':<22} {'per record':>12} {'vs end only':>11}")
    for name, values in costs.items():
        median = statistics.median(values)
        print(f"{name:<22} {median * 1e6:9.1f} µs {median / base:10.1f}×")


if __name__ == "__main__":
    main()
