"""How long one NQL compile takes: the seed view, compiled 1,000 times.

Each compile is timed with the per-process compile cache cleared (what a new statement
costs), then 1,000 more with it warm (a refresh or retry of a statement compiled before:
only the catalog lookup remains).

    .venv/bin/python bench/compile.py [--runs N] [--no-record]

Prints and records (bench/RESULTS.md) the median and p99 milliseconds per compile. The first
compile, which derives the function allow-lists and opens the checking DuckDB, is timed
separately as the cold start.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from bench._results import record
from shared.nql import ResolvedDataset, StaticCatalog, clear_compile_cache, compile_nql
from shared.sample_data import SEED_COLUMNS, SEED_DATASET_ID, SEED_VIEW_NQL


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()

    catalog = StaticCatalog([ResolvedDataset(SEED_DATASET_ID, "seed", f"ds_{SEED_DATASET_ID}", SEED_COLUMNS)])
    start = time.perf_counter()
    compile_nql(SEED_VIEW_NQL, catalog)
    cold_ms = (time.perf_counter() - start) * 1000

    samples: list[float] = []
    for _ in range(args.runs):
        clear_compile_cache()
        start = time.perf_counter()
        compile_nql(SEED_VIEW_NQL, catalog)
        samples.append((time.perf_counter() - start) * 1000)
    cached: list[float] = []
    for _ in range(args.runs):
        start = time.perf_counter()
        compile_nql(SEED_VIEW_NQL, catalog)
        cached.append((time.perf_counter() - start) * 1000)

    lines = [
        f"- seed view (`sampleNQL`), {args.runs} compiles in one thread",
        f"- median {statistics.median(samples):.2f} ms, p99 {percentile(samples, 0.99):.2f} ms, "
        f"min {min(samples):.2f} ms, max {max(samples):.2f} ms",
        f"- cold first compile {cold_ms:.0f} ms (allow-list derivation, DuckDB connection)",
        f"- same statement again, compile cache warm: median {statistics.median(cached) * 1000:.0f} us, "
        f"p99 {percentile(cached, 0.99) * 1000:.0f} us",
    ]
    print("\n".join(lines))
    if not args.no_record:
        record("NQL compile (bench/compile.py)", lines)


if __name__ == "__main__":
    main()
