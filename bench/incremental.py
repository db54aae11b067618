"""Incremental vs full refresh of a DELTA view over an append-only dataset.

For each history size (rows already in the input, written as 1M-row append snapshots):
the view's first run, then 1% more rows appended, then an incremental refresh (reads only
the new file) and a full refresh (`refresh_type=full`: all files, the view rebuilt), timed
in the same run, in process (`run_job`, no Celery), on a file:// store and SQLite. Two
views: an hourly rollup with MERGE, PARTITIONED_BY its hour (DAY), so a MERGE rewrites only
the days it touches; and a filtered projection.

    .venv/bin/python bench/incremental.py --history 1000000 10000000 30000000
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._results import record  # noqa: E402
from shared.config import Settings  # noqa: E402
from shared.storage import Storage, import_key  # noqa: E402
from shared.store import Store  # noqa: E402
from shared.store.datasets import create_dataset, get_dataset, publish_snapshot  # noqa: E402
from shared.store.jobs import NewJob, create_job, get_job  # noqa: E402
from shared.store.migrate import upgrade  # noqa: E402
from shared.store.progress import FULL_REFRESH_TAG  # noqa: E402
from worker.execute import run_job  # noqa: E402
from worker.lifecycle import Outcome  # noqa: E402

COMPANY = 1
FILE_ROWS = 1_000_000
FIXED_APPEND = 100_000


def rows_sql(start: int, count: int) -> str:
    return (f"SELECT (i % 1000)::BIGINT AS k, (i * 37 % 10007)::BIGINT AS v, "
            f"TIMESTAMP '2026-01-01' + to_seconds(i // 10) AS ts FROM range({start}, {start + count}) t(i)")


def views(dataset_id: int) -> dict[str, str]:
    src = f'DELTA(TABLE company_data."{dataset_id}")'
    return {
        "hourly rollup + MERGE": (
            f'CREATE MATERIALIZED VIEW "agg_{dataset_id}" PARTITIONED_BY hour DAY '
            "AS SELECT date_trunc('hour', ts) AS hour, k, "
            "COUNT(1) AS n, SUM(v) AS total, MAX(v) AS top "
            f"FROM {src} GROUP BY date_trunc('hour', ts), k "
            "MERGE ON target.hour = source.hour AND target.k = source.k "
            "WHEN MATCHED THEN UPDATE SET n = target.n + source.n, total = target.total + source.total, "
            "top = greatest(target.top, source.top) "
            "WHEN NOT MATCHED THEN INSERT (hour, k, n, total, top) "
            "VALUES (source.hour, source.k, source.n, source.total, source.top)"),
        "filtered projection": (
            f'CREATE MATERIALIZED VIEW "proj_{dataset_id}" AS SELECT k, v, ts FROM {src} AS e '
            "WHERE e.v % 10 = 0"),
    }


class Bench:
    def __init__(self, root: Path) -> None:
        self.settings = Settings(data_dir=root, job_timeout_seconds=3600, lease_seconds=120)
        self.settings.ensure_dirs()
        upgrade(self.settings.store_url)
        self.store = Store.from_url(self.settings.store_url)
        self.storage = Storage.from_settings(self.settings)
        self.tmp = root / "gen"
        self.tmp.mkdir()

    def append(self, dataset_id: int, start: int, count: int) -> None:
        token = uuid.uuid4().hex
        path = self.tmp / f"{token}.parquet"
        duckdb.execute(f"COPY ({rows_sql(start, count)}) TO '{path}' (FORMAT parquet)")
        key = import_key(dataset_id, token)
        size = self.storage.put_file(key, path, move=True)
        with self.store.unit_of_work() as session:
            publish_snapshot(session, dataset=get_dataset(session, dataset_id), job_id=None,
                             write_mode="append", added_files=[key], added_rows=count, added_bytes=size)

    def dataset(self, dataset_id: int, history: int) -> None:
        with self.store.unit_of_work() as session:
            create_dataset(session, company_id=COMPANY, name=f"events_{dataset_id}", dataset_id=dataset_id,
                           schema=(("k", "BIGINT"), ("v", "BIGINT"), ("ts", "TIMESTAMP")))
        for start in range(0, history, FILE_ROWS):
            self.append(dataset_id, start, min(FILE_ROWS, history - start))

    def run(self, nql: str, *, full: bool = False) -> tuple[float, dict[str, object]]:
        with self.store.unit_of_work() as session:
            job, _ = create_job(session, NewJob(company_id=COMPANY, user_id=1, type="materialize-view", nql=nql,
                                                tags=(FULL_REFRESH_TAG,) if full else ()))
            job_id = job.id
        started = time.perf_counter()
        outcome = run_job(self.store, self.settings, job_id, executor="bench")
        elapsed = time.perf_counter() - started
        with self.store.unit_of_work() as session:
            job = get_job(session, job_id)
            assert outcome == Outcome.COMPLETED, job.failures
            return elapsed, dict(job.statistics)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, nargs="+", default=[1_000_000, 10_000_000, 30_000_000])
    parser.add_argument("--rounds", type=int, default=3, help="append+refresh rounds per size")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-incremental-"))
    lines = ["| history rows | view | no-op refresh s | incremental s, +1% | full s | incremental / full "
             "| (incr - no-op) / (full - no-op) | incremental s, +100k rows | rows read incr / full |",
             "|---|---|---|---|---|---|---|---|---|"]
    try:
        bench = Bench(root)
        for index, history in enumerate(args.history):
            dataset_id = 100_000 + 1000 * index  # views take the next free ids
            started = time.perf_counter()
            bench.dataset(dataset_id, history)
            print(f"generated {history} rows in {time.perf_counter() - started:.1f}s", flush=True)
            total = history
            for name, nql in views(dataset_id).items():
                bench.run(nql)  # first run: everything
                noop: list[float] = []
                incremental: list[float] = []
                fixed: list[float] = []
                full: list[float] = []
                read = (0, 0)
                for _ in range(args.rounds):
                    noop.append(bench.run(nql)[0])  # nothing new: the per-run fixed cost
                    for added, into in ((max(1, history // 100), incremental), (FIXED_APPEND, fixed)):
                        bench.append(dataset_id, total, added)
                        total += added
                        seconds, stats = bench.run(nql)
                        assert stats["refresh"] == "incremental" and stats["rows_read"] == added, stats
                        into.append(seconds)
                    full_seconds, full_stats = bench.run(nql, full=True)
                    assert full_stats["refresh"] == "full", full_stats
                    full.append(full_seconds)
                    read = (history // 100, int(str(full_stats["rows_read"])))
                base, inc, ful = (statistics.median(x) for x in (noop, incremental, full))
                line = (f"| {history:,} | {name} | {base:.3f} | {inc:.3f} | {ful:.3f} | {inc / ful:.1%} | "
                        f"{max(inc - base, 0) / max(ful - base, 1e-9):.1%} | {statistics.median(fixed):.3f} | "
                        f"{read[0]:,} / {read[1]:,} |")
                print(line, flush=True)
                lines.append(line)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    lines += ["", "Target: incremental <= 5% of full, and flat as the history grows. Per size and view, "
              f"{args.rounds} rounds of: a no-op refresh (nothing new: the fixed cost of any run), "
              "append 1% + incremental refresh, append 100k rows + incremental refresh (flatness), "
              "full refresh; medians. In process (run_job), file:// store, SQLite jobs store.",
              f"Command: `.venv/bin/python bench/incremental.py --history {' '.join(map(str, args.history))} "
              f"--rounds {args.rounds}`"]
    print("\n".join(lines))
    if not args.no_record:
        record("Incremental views: DELTA refresh vs full refresh (bench/incremental.py)", lines)


if __name__ == "__main__":
    main()
