"""The seed view as a job vs the same query written by hand in DuckDB. Target: ratio <= 1.05.

For each size (default 1M and 10M seed-shaped rows): import the data as dataset 6402, run
`SEED_VIEW_NQL` as a materialize-view job on a real `dataplane worker` (Redis, PostgreSQL,
published like the dispatcher does), and time it from the job row: `started_at` (the
claim) to `ended_at` (the commit that publishes the snapshot and completes the job).
Then run `hand_written_seed_query` over the same Parquet file with `COPY ... TO` Parquet in
this process, with the worker's DuckDB settings (threads, memory limit). Runs alternate,
the first of each is a warm-up, the median of the rest is reported. The worker's peak
RSS is sampled (psutil, main process + pool children) while its jobs run.

    .venv/bin/python bench/query.py [--sizes 1000000 10000000] [--runs 5]

`--storage s3` compares the same job on two deployments in one run: data in local files,
and data in an S3 bucket (a `moto_server` process on loopback), the latter cold (the
worker's input cache emptied before the job: the input is downloaded) and warm (cached).
Targets: warm <= 1.05x local, cold <= 1.5x local.

    .venv/bin/python bench/query.py --storage s3 [--sizes 1000000 10000000] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import duckdb
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._results import record
from bench._system import BenchSystem, wait_until
from shared.celery_app import make_app
from shared.queues import RUN_JOB_TASK, broker_priority, queue_for
from shared.sample_data import SEED_VIEW_NQL, hand_written_seed_query, write_seed_dataset
from shared.store.jobs import NewJob, create_job, get_job, mark_published
from tests.s3 import MotoServer, running_moto
from worker.importer import import_dataset

THREADS, MEMORY = 2, "4GB"


class PeakRss:
    """Peak resident memory of a process and its children, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                tree = [self.root, *self.root.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# The stats run overwrites, so that its statistics cover its own rows (after appends a
# snapshot's statistics cover all of the dataset's files).
OVERWRITE_VIEW_NQL = SEED_VIEW_NQL.replace('"sampleNQL" as', "\"sampleNQL\" WRITE_MODE = 'overwrite' as")


def run_job(system: BenchSystem, app: object, *, stats: bool) -> float:
    with system.store.unit_of_work() as session:
        job, _ = create_job(session, NewJob(
            company_id=1, user_id=1, type="materialize-view", stats_enabled=stats,
            nql=OVERWRITE_VIEW_NQL if stats else SEED_VIEW_NQL))
        job_id = job.id
    with system.store.unit_of_work() as session:
        mark_published(session, job_id)
    app.send_task(RUN_JOB_TASK, kwargs={"job_id": str(job_id), "job_type": "materialize-view",  # type: ignore[attr-defined]
                                        "cluster": "shared"},
                  queue=queue_for("shared", None), priority=broker_priority(0))

    def ended() -> bool:
        with system.store.unit_of_work() as session:
            return get_job(session, job_id).ended_at is not None
    wait_until(ended, timeout=3600, interval=0.2)  # the times come from the job row
    with system.store.unit_of_work() as session:
        job = get_job(session, job_id)
        assert job.state == "completed", job.failures
        assert job.started_at and job.ended_at
        return (job.ended_at - job.started_at).total_seconds()


def hand_written(source: Path, out_dir: Path) -> tuple[float, int]:
    con = duckdb.connect(config={"threads": THREADS, "memory_limit": MEMORY})
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"SET temp_directory = '{out_dir / 'tmp'}'")
        con.execute(f"CREATE VIEW seed AS SELECT * FROM read_parquet('{source}')")
        target = out_dir / f"{uuid.uuid4().hex}.parquet"
        started = time.perf_counter()
        row = con.execute(f"COPY ({hand_written_seed_query('seed')}) TO '{target}' (FORMAT parquet)").fetchone()
        elapsed = time.perf_counter() - started
        # Kept, like the job's files: deleting it at once would spare the hand-written
        # run the disk write-back that the job's runs pay.
        return elapsed, int(row[0]) if row else 0
    finally:
        con.close()


def bench_size(rows: int, runs: int) -> dict[str, float]:
    system = BenchSystem(f"query_{rows}", redis_db=13, extra_env={
        "DATAPLANE_DUCKDB_THREADS": str(THREADS), "DATAPLANE_DUCKDB_MEMORY_LIMIT": MEMORY,
        "DATAPLANE_JOB_TIMEOUT_SECONDS": "3600"})
    app = make_app(system.settings)
    try:
        source = system.tmp / "seed.parquet"
        write_seed_dataset(source, rows)
        dataset = import_dataset(system.settings, system.store, company_id=1, dataset_id=6402,
                                 name="seed", source=source)
        imported = system.settings.datasets_dir / dataset["files"][0]  # what the job reads
        [worker] = system.workers(1)
        out_dir = Path(tempfile.mkdtemp(dir=system.tmp))
        jobs, hands, with_stats = [], [], []
        with PeakRss(worker.pid) as rss:
            for index in range(runs + 1):
                if index % 2:  # alternate which goes first: neither always gets warm caches
                    hand_s, written = hand_written(imported, out_dir)
                    job_s = run_job(system, app, stats=False)
                else:
                    job_s = run_job(system, app, stats=False)
                    hand_s, written = hand_written(imported, out_dir)
                print(f"{rows:,} rows, run {index}: job {job_s:.3f} s, hand-written {hand_s:.3f} s",
                      flush=True)
                if index:  # the first of each warms caches and the pool process up
                    jobs.append(job_s)
                    hands.append(hand_s)
            with_stats.append(run_job(system, app, stats=True))
        job_med, hand_med = statistics.median(jobs), statistics.median(hands)
        return {"rows": rows, "result_rows": written, "job_s": job_med, "hand_s": hand_med,
                "ratio": job_med / hand_med, "stats_job_s": with_stats[0],
                "peak_rss_mb": rss.peak / 2**20}
    finally:
        app.close()
        system.stop()


def storage_size(rows: int, runs: int, moto: MotoServer) -> dict[str, float]:
    """The same job on local files and on S3 (cold, then warm), interleaved run by run."""
    env = {"DATAPLANE_DUCKDB_THREADS": str(THREADS), "DATAPLANE_DUCKDB_MEMORY_LIMIT": MEMORY,
           "DATAPLANE_JOB_TIMEOUT_SECONDS": "3600"}
    local = BenchSystem(f"query_local_{rows}", redis_db=13, extra_env=env)
    remote = BenchSystem(f"query_s3_{rows}", redis_db=12, extra_env=env,
                         storage_env=moto.env(prefix=f"query-{rows}-{uuid.uuid4().hex[:6]}"))
    if local.redis_db == remote.redis_db:  # DATAPLANE_TEST_REDIS_DB pins every bench to one db
        raise SystemExit("--storage s3 runs two deployments: unset DATAPLANE_TEST_REDIS_DB")
    apps = {system.name: make_app(system.settings) for system in (local, remote)}
    try:
        source = local.tmp / "seed.parquet"
        write_seed_dataset(source, rows)
        for system in (local, remote):
            import_dataset(system.settings, system.store, company_id=1, dataset_id=6402, name="seed",
                           source=source)
            system.workers(1)
        times: dict[str, list[float]] = {"local": [], "cold": [], "warm": []}
        for index in range(runs + 1):
            local_s = run_job(local, apps[local.name], stats=False)
            remote.drop_cache()
            cold_s = run_job(remote, apps[remote.name], stats=False)
            warm_s = run_job(remote, apps[remote.name], stats=False)
            print(f"{rows:,} rows, run {index}: local {local_s:.3f} s, s3 cold {cold_s:.3f} s, "
                  f"s3 warm {warm_s:.3f} s", flush=True)
            if index:  # the first warms the pool processes up
                for name, value in (("local", local_s), ("cold", cold_s), ("warm", warm_s)):
                    times[name].append(value)
        med = {name: statistics.median(values) for name, values in times.items()}
        return {"rows": rows, "local_s": med["local"], "cold_s": med["cold"], "warm_s": med["warm"],
                "cold_ratio": med["cold"] / med["local"], "warm_ratio": med["warm"] / med["local"]}
    finally:
        for app in apps.values():
            app.close()
        local.stop()
        remote.stop()


def main_storage(args: argparse.Namespace) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="dataplane-bench-moto-"))
    with running_moto(log_dir) as moto:
        results = [storage_size(rows, args.runs, moto) for rows in args.sizes]
    lines = [
        f"Seed view as a materialize-view job (stats off), claim->completed, on a deployment with "
        f"local files and on one with an S3 bucket (moto_server on loopback), same run; cold = the "
        f"worker's input cache emptied first, warm = cached. Median of {args.runs} after a warm-up. "
        f"Targets: warm <= 1.05x local, cold <= 1.5x local.",
        "",
        "| input rows | local (s) | S3 cold (s) | S3 warm (s) | cold / local | warm / local |",
        "|---:|---:|---:|---:|---:|---:|",
        *(f"| {r['rows']:,} | {r['local_s']:.3f} | {r['cold_s']:.3f} | {r['warm_s']:.3f} | "
          f"{r['cold_ratio']:.2f} | {r['warm_ratio']:.2f} |" for r in results),
    ]
    print("\n".join(lines))
    record("Seed view on S3 vs local files (bench/query.py --storage s3)", lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--storage", choices=["local", "s3"], default="local")
    args = parser.parse_args()
    if args.storage == "s3":
        main_storage(args)
        return
    results = [bench_size(rows, args.runs) for rows in args.sizes]
    lines = [
        f"Seed view (`SEED_VIEW_NQL`) as a materialize-view job (stats off) vs the hand-written "
        f"DuckDB query writing the same Parquet; DuckDB threads={THREADS}, memory_limit={MEMORY}; "
        f"median of {args.runs} after a warm-up. Target ratio <= 1.05.",
        "",
        "| input rows | result rows | job claim->completed (s) | hand-written COPY (s) | ratio "
        "| job with stats, overwrite (s) | worker peak RSS (MB) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        *(f"| {r['rows']:,} | {r['result_rows']:,} | {r['job_s']:.3f} | {r['hand_s']:.3f} | "
          f"{r['ratio']:.3f} | {r['stats_job_s']:.3f} | {r['peak_rss_mb']:.0f} |" for r in results),
    ]
    print("\n".join(lines))
    record("Seed view: job vs hand-written DuckDB (bench/query.py)", lines)


if __name__ == "__main__":
    main()
