"""Fair share vs FIFO on the shared cluster, in one run (issue 12).

For each mode (`DATAPLANE_FAIR_SHARE=false`: the old FIFO relay; then fair share with
admission control) on a fresh deployment (PostgreSQL, Redis, one scheduler, one worker
with `--concurrency 4` whose jobs sleep inside DuckDB for a set time, tests/poison_worker):

1. company A submits a burst of `--burst` jobs of `--job-seconds` each;
2. once A has a few done, company B submits one job: B's queue wait (created -> started),
   against A's median job duration (target: <= 2 durations);
3. then B and C submit `--others` jobs each: running jobs per company are sampled every
   50 ms, and Jain's index of the average running slots of the backlogged companies over
   the contended period is reported (target >= 0.9);
4. throughput under contention: jobs completed per second from the first start to the
   last end of all jobs (target: fair >= 0.95x FIFO).

Sleeping jobs keep CPU out of the comparison: what is measured is scheduling.

    DATAPLANE_TEST_REDIS_DB=3 .venv/bin/python bench/fairness.py [--burst 200] [--others 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select

from bench._results import record
from bench._system import BenchSystem, wait_until
from shared.states import JobState
from shared.store.models import Job
from tests.processes import start_command
from tests.scheduler.fairness import Sampler, import_for, sleepy_nql, submit_many

CONCURRENCY = 4


@dataclass
class Outcome:
    mode: str
    b_wait: float
    duration: float
    jain: float
    averages: dict[int, float]
    throughput: float


def _jobs(system: BenchSystem, ids: list[uuid.UUID]) -> list[Job]:
    with system.store.unit_of_work() as session:
        return list(session.scalars(select(Job).where(Job.id.in_(ids))))


def run(mode: str, *, burst: int, others: int, job_seconds: float) -> Outcome:
    fair = mode == "fair share"
    system = BenchSystem(f"fairness_{'fair' if fair else 'fifo'}", redis_db=13, extra_env={
        "DATAPLANE_FAIR_SHARE": "true" if fair else "false",
        "DATAPLANE_DUCKDB_THREADS": "1", "DATAPLANE_DUCKDB_MEMORY_LIMIT": "256MB",
        "DATAPLANE_DISPATCH_INTERVAL_SECONDS": "0.5"})
    try:
        for company in (1, 2, 3):
            import_for(system, company)
        system.scheduler()
        worker = start_command("worker", [sys.executable, "-m", "tests.poison_worker", "worker",
                                          "--cluster", "shared", "--concurrency", str(CONCURRENCY),
                                          "--loglevel", "warning"], system.env, system.tmp / "logs")
        system.processes.append(worker)
        wait_until(lambda: "ready" in worker.log() or "[queues]" in worker.log(), timeout=60)
        time.sleep(1.0)  # registered (fair share) and warm
        nql = sleepy_nql(job_seconds)
        with Sampler(system.store) as sampler:
            a = submit_many(system, 1, burst, nql)
            wait_until(lambda: sum(j.state == JobState.COMPLETED for j in _jobs(system, a))
                       >= CONCURRENCY, timeout=120)
            [b] = submit_many(system, 2, 1, nql)
            wait_until(lambda: _jobs(system, [b])[0].started_at is not None, timeout=600,
                       interval=0.05)
            rest = submit_many(system, 2, others, nql) + submit_many(system, 3, others, nql)
            everything = [*a, b, *rest]
            wait_until(lambda: system.count("pending", "running") == 0, timeout=1800,
                       interval=0.2)
        jobs = _jobs(system, everything)
        assert all(j.state == JobState.COMPLETED for j in jobs), [j.failures for j in jobs
                                                                  if j.state != "completed"][:3]
        [job_b] = [j for j in jobs if j.id == b]
        spans = [(j.company_id, j.started_at, j.ended_at) for j in jobs
                 if j.started_at is not None and j.ended_at is not None]
        durations = [(end - start).total_seconds() for company, start, end in spans
                     if company == 1]
        first = min(start for _, start, _ in spans)
        last = max(end for _, _, end in spans)
        assert job_b.started_at is not None
        return Outcome(mode, (job_b.started_at - job_b.created_at).total_seconds(),
                       statistics.median(durations), sampler.jain_index(), sampler.averages(),
                       len(jobs) / (last - first).total_seconds())
    finally:
        system.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--others", type=int, default=30)
    parser.add_argument("--job-seconds", type=float, default=0.3)
    args = parser.parse_args()
    results = [run(mode, burst=args.burst, others=args.others, job_seconds=args.job_seconds)
               for mode in ("FIFO", "fair share")]
    fifo, fair = results
    lines = [
        f"Company A bursts {args.burst} jobs of {args.job_seconds} s, then B submits one; then B "
        f"and C submit {args.others} each. One worker, concurrency {CONCURRENCY}, Redis + "
        "PostgreSQL; jobs sleep inside DuckDB (tests/poison_worker) so CPU noise stays out.",
        "",
        "| mode | B's queue wait | A's job duration (median) | wait / duration | Jain's index "
        "(contended) | avg running slots A/B/C while backlogged | throughput |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r.mode} | {r.b_wait:.2f} s | {r.duration:.2f} s | "
                     f"{r.b_wait / r.duration:.1f} | {r.jain:.3f} | "
                     f"{'/'.join(str(r.averages.get(c, 0)) for c in (1, 2, 3))} | "
                     f"{r.throughput:.2f} jobs/s |")
    lines += [
        "",
        f"- B's wait under fair share: {fair.b_wait / fair.duration:.1f} job durations "
        f"(target <= 2); FIFO: {fifo.b_wait / fifo.duration:.1f}",
        f"- Jain's index under fair share: {fair.jain:.3f} (target >= 0.9); FIFO: {fifo.jain:.3f}",
        f"- throughput fair / FIFO: {fair.throughput / fifo.throughput:.3f} (target >= 0.95)",
    ]
    print("\n".join(lines))
    record("Fair share vs FIFO (bench/fairness.py)", lines)


if __name__ == "__main__":
    main()
