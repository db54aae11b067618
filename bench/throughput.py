"""Throughput: trivial jobs through the whole system vs bare Celery on the same Redis.

Ours: N forecast jobs over a 5-row dataset, inserted into the store the way the API does
(commit, then nudge) -> dispatcher -> Redis -> 2 workers (1 process each) -> completed.
Baseline, same run: N no-op tasks through 2 bare Celery workers configured alike.
Target: jobs/s >= 1/3 of bare Celery's tasks/s.

`--before DIR` also runs the scheduler and workers of another checkout (e.g. `git
archive main | tar -x -C DIR`) in the same run, right after this tree's, for a before/after.

    .venv/bin/python bench/throughput.py [--jobs 2000] [--before DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._results import record
from bench._system import ROOT, TRIVIAL_ENV, TRIVIAL_NQL, BenchSystem, bare_workers, wait_until
from shared.nudge import nudge_dispatcher
from shared.store.jobs import NewJob, create_job


def submit(system: BenchSystem, count: int, batch: int = 50) -> None:
    for start in range(0, count, batch):
        with system.store.unit_of_work() as session:
            for _ in range(min(batch, count - start)):
                create_job(session, NewJob(company_id=1, user_id=1, type="nql-forecast", nql=TRIVIAL_NQL))
        nudge_dispatcher(system.settings)


def run_ours(jobs: int, code_root: Path = ROOT) -> float:
    system = BenchSystem("throughput", redis_db=15, extra_env=TRIVIAL_ENV, code_root=code_root)
    try:
        system.tiny_dataset()
        system.scheduler()
        system.workers(2)
        submit(system, 20)  # warm-up: first compile and connection in each child
        wait_until(lambda: system.count("completed") == 20, timeout=120)
        started = time.perf_counter()
        submit(system, jobs)
        wait_until(lambda: system.count("completed", "failed") == jobs + 20, timeout=1800, interval=0.1)
        elapsed = time.perf_counter() - started
        assert system.count("failed") == 0, "trivial jobs failed: see the worker logs"
        return jobs / elapsed
    finally:
        system.stop()


def run_bare(tasks: int) -> float:
    from bench._system import bench_redis_db, fresh_redis

    broker = fresh_redis(bench_redis_db(14))
    workers = bare_workers(2, broker_url=broker, log_dir=ROOT / "bench" / "data" / "logs")
    from bench import bare_celery

    bare_celery.app.conf.broker_url = broker
    counter = redis.Redis.from_url(broker)
    try:
        for index in range(20):
            bare_celery.app.send_task("bare.noop", args=[index], queue="bare")
        wait_until(lambda: int(counter.get(bare_celery.COUNTER) or 0) == 20, timeout=60)
        started = time.perf_counter()
        for index in range(tasks):
            bare_celery.app.send_task("bare.noop", args=[index], queue="bare")
        wait_until(lambda: int(counter.get(bare_celery.COUNTER) or 0) == tasks + 20, timeout=600, interval=0.02)
        return tasks / (time.perf_counter() - started)
    finally:
        for worker in workers:
            worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--before", type=Path, default=None, help="another checkout to compare with")
    args = parser.parse_args()
    bare = run_bare(args.jobs)
    ours = run_ours(args.jobs)
    lines = [
        f"N={args.jobs}, 2 workers x 1 process, Redis broker, PostgreSQL store",
        f"- dataplane: {ours:.1f} jobs/s (forecast over a 5-row dataset, store insert -> completed)",
        f"- bare Celery: {bare:.1f} tasks/s (no-op, same Redis, same ack/prefetch settings)",
        f"- ratio ours/bare: {ours / bare:.3f} (target >= 0.333)",
    ]
    if args.before is not None:
        before = run_ours(args.jobs, args.before.resolve())
        lines.append(f"- before ({args.before}): {before:.1f} jobs/s, ratio {before / bare:.3f}; "
                     f"after/before {ours / before:.2f}")
    print("\n".join(lines))
    record("Throughput (bench/throughput.py)", lines)


if __name__ == "__main__":
    main()
