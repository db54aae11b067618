"""A results page of 500 rows at offset 0, the middle and the last page of a 10M-row
job result. Target: last page / first page <= 2.

The result is written by a real materialize-view job (run in-process with
`worker.execute.run_job`, PostgreSQL store) over 10M seed-shaped rows, so it is one
Parquet file of DuckDB's default row groups, as production writes it. Each page is read
with `shared.results.read_results` (what the API calls); median of 20 reads after one
warm-up read per offset.

    .venv/bin/python bench/paging.py [--rows 10000000] [--reads 20]

`--storage s3` writes the same result on local files and in an S3 bucket (a `moto_server`
process on loopback) and reads pages of both in the same run: ranged reads of the Parquet
footer and of the row groups a page needs. Targets: S3 last/first <= 2, S3 first page
<= 3x the local first page.

    .venv/bin/python bench/paging.py --storage s3 [--rows 10000000] [--reads 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._results import record
from bench._system import BenchSystem
from shared.results import read_results
from shared.sample_data import write_seed_dataset
from shared.storage import Storage
from shared.store.jobs import NewJob, create_job, get_job
from tests.s3 import running_moto
from worker.execute import run_job
from worker.importer import import_dataset

PAGE = 500
VIEW = ('CREATE MATERIALIZED VIEW "flat" AS SELECT "mobile_id_unique_identifier"."value" AS mobile_id, '
        '"mobile_id_unique_identifier"."type" AS id_type, "timestamp_object"."day" AS day, '
        '"timestamp_object"."hour" AS hour, "geographic_location"."latitude" AS latitude, '
        '"geographic_location"."longitude" AS longitude, "event_timestamp" AS event_timestamp '
        'FROM company_data."6402"')


def page_timings(system: BenchSystem, source: Path, rows: int, reads: int,
                 offsets: dict[str, int]) -> dict[str, list[float]]:
    """Import `source`, run the view job in-process, then time `reads` reads of each page (ms)."""
    import_dataset(system.settings, system.store, company_id=1, dataset_id=6402, name="seed",
                   source=source)
    with system.store.unit_of_work() as session:
        job, _ = create_job(session, NewJob(company_id=1, user_id=1, type="materialize-view",
                                            nql=VIEW, stats_enabled=False))
        job_id = job.id
    run_job(system.store, system.settings, job_id, executor="bench")
    timings: dict[str, list[float]] = {name: [] for name in offsets}
    storage = Storage.from_settings(system.settings)
    with system.store.unit_of_work() as session:
        job = get_job(session, job_id)
        assert job.state == "completed", job.failures
        for index in range(reads + 1):
            for name, offset in offsets.items():
                started = time.perf_counter()
                body = read_results(session, storage, job, limit=PAGE, offset=offset)
                elapsed = time.perf_counter() - started
                assert body["rowCount"] == rows and len(body["rows"]) == PAGE
                if index:
                    timings[name].append(elapsed * 1000)
    return timings


def main_storage(args: argparse.Namespace, offsets: dict[str, int]) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="dataplane-bench-moto-"))
    local = BenchSystem("paging_local", redis_db=13)
    try:
        source = local.tmp / "seed.parquet"
        write_seed_dataset(source, args.rows)
        timings = {"local": page_timings(local, source, args.rows, args.reads, offsets)}
        with running_moto(log_dir) as moto:
            remote = BenchSystem("paging_s3", redis_db=12, storage_env=moto.env(prefix="paging"))
            try:
                timings["s3"] = page_timings(remote, source, args.rows, args.reads, offsets)
            finally:
                remote.stop()
    finally:
        local.stop()
    median = {(where, name): statistics.median(values)
              for where, pages in timings.items() for name, values in pages.items()}
    lines = [
        f"Dremio-style page of {PAGE} rows (`read_results`) of a {args.rows:,}-row materialize-view "
        f"result, on local files and in an S3 bucket (moto_server on loopback, ranged reads), same "
        f"run; median of {args.reads} reads. Targets: S3 last/first <= 2, S3 first <= 3x local first.",
        "",
        "| page | offset | local median (ms) | S3 median (ms) | S3 max (ms) |",
        "|---|---:|---:|---:|---:|",
        *(f"| {name} | {offsets[name]:,} | {median[('local', name)]:.1f} | {median[('s3', name)]:.1f} | "
          f"{max(timings['s3'][name]):.1f} |" for name in offsets),
        "",
        f"S3 last/first = {median[('s3', 'last')] / median[('s3', 'first')]:.2f}, "
        f"S3 first / local first = {median[('s3', 'first')] / median[('local', 'first')]:.2f}",
    ]
    print("\n".join(lines))
    record("Results paging on S3 (bench/paging.py --storage s3)", lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--reads", type=int, default=20)
    parser.add_argument("--storage", choices=["local", "s3"], default="local")
    args = parser.parse_args()
    offsets = {"first": 0, "middle": args.rows // 2, "last": args.rows - PAGE}
    if args.storage == "s3":
        main_storage(args, offsets)
        return
    system = BenchSystem("paging", redis_db=13)
    try:
        source = system.tmp / "seed.parquet"
        write_seed_dataset(source, args.rows)
        timings = page_timings(system, source, args.rows, args.reads, offsets)
    finally:
        system.stop()
    median = {name: statistics.median(values) for name, values in timings.items()}
    lines = [
        f"Dremio-style page of {PAGE} rows (`read_results`) of a {args.rows:,}-row materialize-view "
        f"result (one Parquet file, 7 columns); median of {args.reads} reads. Target last/first <= 2.",
        "",
        "| page | offset | median (ms) | max (ms) |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {offsets[name]:,} | {median[name]:.1f} | {max(timings[name]):.1f} |"
          for name in offsets),
        "",
        f"last/first = {median['last'] / median['first']:.2f}, "
        f"middle/first = {median['middle'] / median['first']:.2f}",
    ]
    print("\n".join(lines))
    record("Results paging (bench/paging.py)", lines)


if __name__ == "__main__":
    main()
