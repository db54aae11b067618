"""Where one job's time goes: `run_job` in-process (no Celery), profiled with cProfile.

A trivial forecast (the throughput bench's job) or the seed view over N generated rows, on a
fresh PostgreSQL database (or the SQLite default with --sqlite). Prints the functions with
the most cumulative time and the median wall time per job. Nothing is recorded: this is the
tool behind the "what limits it" notes, not a figure.

    .venv/bin/python bench/profile_job.py [--job trivial|seed] [--rows 1000000] [--jobs 50] [--sqlite]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._system import TRIVIAL_NQL, drop_database, fresh_database
from shared.config import Settings
from shared.sample_data import SEED_DATASET_ID, SEED_VIEW_NQL, write_seed_dataset
from shared.store import Store
from shared.store.jobs import NewJob, create_job
from shared.store.migrate import upgrade
from worker.execute import run_job
from worker.importer import import_dataset
from worker.lifecycle import Outcome

DATABASE = "dataplane_bench_profile"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", choices=("trivial", "seed"), default="trivial")
    parser.add_argument("--rows", type=int, default=1_000_000, help="seed rows (--job seed)")
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--sqlite", action="store_true", help="the embedded SQLite store")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="dataplane-profile-") as tmp:
        data_dir = Path(tmp)
        database = None if args.sqlite else fresh_database(DATABASE)
        settings = Settings(data_dir=data_dir, database_url=database or "", duckdb_threads=2,
                            duckdb_memory_limit="2GB", job_timeout_seconds=600)
        settings.ensure_dirs()
        if database is None:
            upgrade(settings.store_url)
        store = Store.from_settings(settings)
        try:
            source = data_dir / "input.parquet"
            if args.job == "seed":
                write_seed_dataset(source, args.rows)
                import_dataset(settings, store, company_id=1, dataset_id=SEED_DATASET_ID, name="seed",
                               source=source)
                nql, job_type = SEED_VIEW_NQL, "materialize-view"
            else:
                duckdb.sql(f"COPY (SELECT range AS x, 'v' || range AS label FROM range(5)) TO '{source}' "
                           "(FORMAT parquet)")
                import_dataset(settings, store, company_id=1, dataset_id=1, name="tiny", source=source)
                nql, job_type = TRIVIAL_NQL, "nql-forecast"

            def one_job() -> float:
                with store.unit_of_work() as session:
                    job, _ = create_job(session, NewJob(company_id=1, user_id=1, type=job_type, nql=nql,
                                                        stats_enabled=False))
                    job_id = job.id
                started = time.perf_counter()
                outcome = run_job(store, settings, job_id, executor="profile")
                if outcome != Outcome.COMPLETED:
                    raise SystemExit(f"job {job_id} ended {outcome}")
                return time.perf_counter() - started

            for _ in range(3):  # warm-up: allow-lists, first connections
                one_job()
            profile = cProfile.Profile()
            timings: list[float] = []
            profile.enable()
            for _ in range(args.jobs):
                timings.append(one_job())
            profile.disable()
        finally:
            store.dispose()
            if database is not None:
                drop_database(DATABASE)

    print(f"{args.jobs} {args.job} jobs, median {statistics.median(timings) * 1000:.1f} ms each "
          "(under the profiler)")
    pstats.Stats(profile).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
