"""Job listing on a 100k-job PostgreSQL table: a filtered page, p50/p99.

Measures the store's `list_jobs` (one page query + one count). Baseline in the same
run: the bare page SQL alone (no filters, no count, no ORM), so the ratio shows what
the filters, the count and our layer add.

    .venv/bin/python bench/listing.py [--jobs 100000] [--repeat 200]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, text

from bench._results import record
from bench._system import fresh_database
from shared.store import Store
from shared.store.listing import JobFilter, JobOrder, list_jobs
from shared.store.models import Job, JobTag

STATES = ["pending", "running", "completed", "failed", "cancelled", "pending_cancellation"]


def populate(store: Store, count: int, companies: int = 10) -> None:
    rng = random.Random(7)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    batch: list[dict[str, object]] = []
    tags: list[dict[str, object]] = []
    for i in range(count):
        job_id = uuid.uuid4()
        created = base + timedelta(seconds=i * 3)
        job_tags = [f"workflow={i % 500}"] + (["nightly"] if i % 7 == 0 else [])
        batch.append({
            "id": job_id, "company_id": 1 + i % companies, "user_id": 1, "request_source_type": "api_user",
            "state": rng.choice(STATES), "type": rng.choice(["materialize-view", "nql-forecast"]),
            "nql": "EXPLAIN SELECT 1", "dataset_id": rng.randrange(1, 200), "stats_enabled": True,
            "idempotency_key": str(job_id), "failures": [], "tags": job_tags, "execution_cluster": "shared",
            "priority": 0, "retry_limit": 0, "attempts": 0, "infra_retries": 0, "statistics": {},
            "created_at": created, "updated_at": created + timedelta(seconds=rng.randrange(600)),
        })
        tags.extend({"company_id": 1 + i % companies, "job_id": job_id, "tag": t} for t in job_tags)
        if len(batch) == 5000:
            with store.unit_of_work() as session:
                session.execute(insert(Job), batch)
                session.execute(insert(JobTag), tags)
            batch, tags = [], []
    if batch:
        with store.unit_of_work() as session:
            session.execute(insert(Job), batch)
            session.execute(insert(JobTag), tags)
    with store.engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()


def timed(function: object, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()  # type: ignore[operator]
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()

    url = fresh_database("dataplane_bench_listing")
    store = Store.from_url(url)
    started = time.perf_counter()
    populate(store, args.jobs)
    print(f"inserted {args.jobs} jobs in {time.perf_counter() - started:.1f}s")

    cases = {
        "state+type, created_at_desc, page 1": JobFilter(company_id=3, states=["completed", "failed"],
                                                         types=["materialize-view"]),
        "tag (any of 2), page 1": JobFilter(company_id=3, tags=["workflow=3", "nightly"]),
        "dataset_id": JobFilter(company_id=3, dataset_id=42),
        "no filter, per_page 500": JobFilter(company_id=3),
    }
    lines = [f"PostgreSQL, {args.jobs:,} jobs over 10 companies; {args.repeat} runs each; p50 / p99 ms"]
    for label, filters in cases.items():
        def run(filters: JobFilter = filters) -> None:
            with store.unit_of_work() as session:
                list_jobs(session, filters, order_by=JobOrder.CREATED_AT_DESC, offset=0, per_page=500)

        def bare(filters: JobFilter = filters) -> None:
            with store.engine.connect() as conn:
                conn.execute(text(
                    "SELECT * FROM jobs WHERE company_id = :c ORDER BY created_at DESC LIMIT 500"),
                    {"c": filters.company_id}).fetchall()

        ours = summary(timed(run, args.repeat))
        base = summary(timed(bare, args.repeat))
        lines.append(f"- {label}: list_jobs {ours[0]:.1f} / {ours[1]:.1f} ms; bare page SQL "
                     f"{base[0]:.1f} / {base[1]:.1f} ms; ratio p50 {ours[0] / base[0]:.2f} "
                     f"(target: well under 100 ms)")
    for line in lines:
        print(line)
    record("Job listing (bench/listing.py)", lines)
    store.dispose()


if __name__ == "__main__":
    main()
