"""Latency on an idle system: submit -> completed for trivial jobs, one at a time, vs a bare
Celery `apply_async().get()` round trip on the same Redis. Target: p50 <= 5x.

Submit time is taken before the store insert (the API's path: commit, nudge); completion is
the job's `ended_at` written by the worker (same host clock), so polling adds no error.

`--before DIR` also runs another checkout's scheduler and worker in the same run.

    .venv/bin/python bench/latency.py [--jobs 200] [--before DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._results import record
from bench._system import (
    ROOT,
    TRIVIAL_ENV,
    TRIVIAL_NQL,
    BenchSystem,
    bare_workers,
    bench_redis_db,
    fresh_redis,
    wait_until,
)
from shared.nudge import nudge_dispatcher
from shared.store.jobs import NewJob, create_job, get_job


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_ours(jobs: int, code_root: Path = ROOT) -> list[float]:
    system = BenchSystem("latency", redis_db=15, extra_env=TRIVIAL_ENV, code_root=code_root)
    samples = []
    try:
        system.tiny_dataset()
        system.scheduler()
        system.workers(1)
        for index in range(jobs + 10):
            submitted = datetime.now(UTC)
            with system.store.unit_of_work() as session:
                job, _ = create_job(session, NewJob(company_id=1, user_id=1, type="nql-forecast", nql=TRIVIAL_NQL))
                job_id = job.id
            nudge_dispatcher(system.settings)

            def ended(job_id=job_id) -> bool:
                with system.store.unit_of_work() as session:
                    return get_job(session, job_id).ended_at is not None
            wait_until(ended, timeout=60, interval=0.002)
            with system.store.unit_of_work() as session:
                job = get_job(session, job_id)
                assert job.state == "completed" and job.ended_at is not None, job.failures
                if index >= 10:  # the first ones warm the worker child up
                    samples.append((job.ended_at - submitted).total_seconds() * 1000)
        return samples
    finally:
        system.stop()


def run_bare(tasks: int) -> list[float]:
    broker = fresh_redis(bench_redis_db(14))
    backend = broker  # one db: the result keys do not clash with the queue
    workers = bare_workers(1, broker_url=broker, backend_url=backend, log_dir=ROOT / "bench" / "data" / "logs")
    from bench import bare_celery

    bare_celery.app.conf.update(broker_url=broker, result_backend=backend, task_ignore_result=False)
    samples = []
    try:
        for index in range(tasks + 10):
            started = time.perf_counter()
            bare_celery.app.send_task("bare.noop", args=[index], queue="bare").get(timeout=30)
            if index >= 10:
                samples.append((time.perf_counter() - started) * 1000)
        return samples
    finally:
        for worker in workers:
            worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--before", type=Path, default=None, help="another checkout to compare with")
    args = parser.parse_args()
    bare = run_bare(args.jobs)
    ours = run_ours(args.jobs)
    p50, p99 = statistics.median(ours), percentile(ours, 0.99)
    b50, b99 = statistics.median(bare), percentile(bare, 0.99)
    lines = [
        f"{args.jobs} sequential trivial jobs on an idle system (1 worker process), Redis + PostgreSQL",
        f"- dataplane submit -> completed: p50 {p50:.1f} ms, p99 {p99:.1f} ms",
        f"- bare Celery apply_async().get(): p50 {b50:.1f} ms, p99 {b99:.1f} ms",
        f"- ratio p50 ours/bare: {p50 / b50:.1f}x (target <= 5x); p99 {p99 / b99:.1f}x (target <= 10x)",
    ]
    if args.before is not None:
        before = run_ours(args.jobs, args.before.resolve())
        lines.append(f"- before ({args.before}): p50 {statistics.median(before):.1f} ms, "
                     f"p99 {percentile(before, 0.99):.1f} ms")
    print("\n".join(lines))
    record("Latency (bench/latency.py)", lines)


if __name__ == "__main__":
    main()
