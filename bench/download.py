"""A whole result downloaded through the API (`GET /jobs/{id}/result`), from local files and
from an S3 bucket: the API process's memory must stay flat in the result's size.

For each storage (local files; an S3 bucket on a `moto_server` process on loopback) and
each size (default 1M and 3M rows): a materialize-view job over seed-shaped rows writes the
result (run in-process), a real `dataplane api` process serves it, and the download is
streamed to nowhere while the API's resident memory is sampled every 50 ms. Reported: the
API's RSS growth over its idle RSS before the download, and the download's throughput.
Target: growth flat in the result size (3M growth within a few MB of 1M growth).

    .venv/bin/python bench/download.py [--sizes 1000000 3000000] [--format csv]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._results import record
from bench._system import BenchSystem, api_args, wait_healthy
from bench.query import PeakRss
from shared.sample_data import write_seed_dataset
from shared.store.jobs import NewJob, create_job, get_job
from shared.store.tokens import create_token
from tests.s3 import free_port, running_moto
from worker.execute import run_job
from worker.importer import import_dataset

VIEW = ('CREATE MATERIALIZED VIEW "flat_{rows}" AS SELECT "mobile_id_unique_identifier"."value" AS mobile_id, '
        '"timestamp_object"."day" AS day, "geographic_location"."latitude" AS latitude, '
        '"geographic_location"."longitude" AS longitude, "event_timestamp" AS event_timestamp '
        'FROM company_data."{dataset}"')


def prepare(system: BenchSystem, sizes: list[int]) -> dict[int, str]:
    """A completed view job per size; its id by size."""
    jobs = {}
    for index, rows in enumerate(sizes):  # imports first: a view's dataset id follows the highest
        source = system.tmp / f"seed-{rows}.parquet"
        write_seed_dataset(source, rows)
        import_dataset(system.settings, system.store, company_id=1, dataset_id=7000 + index,
                       name=f"seed_{rows}", source=source)
    for index, rows in enumerate(sizes):
        dataset = 7000 + index
        with system.store.unit_of_work() as session:
            job, _ = create_job(session, NewJob(company_id=1, user_id=1, type="materialize-view",
                                                nql=VIEW.format(rows=rows, dataset=dataset),
                                                stats_enabled=False))
            job_id = job.id
        run_job(system.store, system.settings, job_id, executor="bench")
        with system.store.unit_of_work() as session:
            done = get_job(session, job_id)
            assert done.state == "completed", done.failures
        jobs[rows] = str(job_id)
    return jobs


def measure(system: BenchSystem, jobs: dict[int, str], fmt: str) -> list[dict[str, float]]:
    with system.store.unit_of_work() as session:
        token = create_token(session, company_id=1, user_id=1)
    port = free_port()
    api = system.start("api", api_args(port))
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base)
    headers = {"Authorization": f"Bearer {token}"}
    results = []
    with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
        for rows, job_id in jobs.items():
            client.get(f"/jobs/{job_id}/results", params={"limit": 1}).raise_for_status()  # warm the app
            time.sleep(0.5)
            with PeakRss(api.pid) as rss:
                time.sleep(0.2)
                idle = rss.peak
                started = time.perf_counter()
                size = 0
                with client.stream("GET", f"/jobs/{job_id}/result", params={"format": fmt}) as response:
                    response.raise_for_status()
                    for chunk in response.iter_raw():
                        size += len(chunk)
                elapsed = time.perf_counter() - started
            results.append({"rows": rows, "bytes": size, "seconds": elapsed,
                            "idle_mb": idle / 2**20, "growth_mb": (rss.peak - idle) / 2**20})
            print(f"{system.name} {rows:,} rows: {size / 2**20:.0f} MiB in {elapsed:.1f} s, API RSS "
                  f"+{(rss.peak - idle) / 2**20:.1f} MB over {idle / 2**20:.0f} MB", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 3_000_000])
    parser.add_argument("--format", default="csv", choices=["csv", "json", "parquet"])
    args = parser.parse_args()
    measured: dict[str, list[dict[str, float]]] = {}
    local = BenchSystem("download_local", redis_db=13)
    try:
        measured["local files"] = measure(local, prepare(local, args.sizes), args.format)
    finally:
        local.stop()
    with running_moto(Path(tempfile.mkdtemp(prefix="dataplane-bench-moto-"))) as moto:
        remote = BenchSystem("download_s3", redis_db=12, storage_env=moto.env(prefix="download"))
        try:
            measured["S3"] = measure(remote, prepare(remote, args.sizes), args.format)
        finally:
            remote.stop()
    lines = [
        f"Whole result streamed by a `dataplane api` process (`GET /jobs/{{id}}/result?format={args.format}`), "
        f"API resident memory sampled every 50 ms (psutil); growth = peak during the download minus "
        f"RSS just before it. Target: growth flat in the result size.",
        "",
        "| storage | result rows | bytes | seconds | MB/s | API idle RSS (MB) | API RSS growth (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *(f"| {where} | {r['rows']:,} | {r['bytes']:,} | {r['seconds']:.1f} | "
          f"{r['bytes'] / 2**20 / r['seconds']:.1f} | {r['idle_mb']:.0f} | {r['growth_mb']:.1f} |"
          for where, rows in measured.items() for r in rows),
    ]
    print("\n".join(lines))
    record("Result download, local files vs S3 (bench/download.py)", lines)


if __name__ == "__main__":
    main()
