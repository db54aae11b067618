"""A deployment of our own for fault runs: a private PostgreSQL and Redis
(servers.py), a data dir, a 50k-row input dataset, `dataplane scheduler` and N
`dataplane worker` processes (tests/processes.py), and jobs submitted the way the API
submits them (commit, then nudge), with an idempotency key so a submit retried across
a PostgreSQL outage never makes a second job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import psutil
from sqlalchemy import func, select

from bench._faults.servers import PrivatePostgres, PrivateRedis
from shared.config import Settings
from shared.nudge import nudge_dispatcher
from shared.states import TERMINAL_STATES, JobState
from shared.store import Store
from shared.store.jobs import NewJob, create_job, request_cancellation
from shared.store.migrate import upgrade
from shared.store.models import Job
from tests.processes import Process, start

log = logging.getLogger("faults")

COMPANY = 1
SOURCE_DATASET = 7  # the generated input
SOURCE_ROWS = 50_000
TERMINAL = tuple(s.value for s in TERMINAL_STATES)

# Join keys of the input: a self-join on `kN` makes 50k * 50k / N rows to aggregate, so
# the key picks the job's weight (one DuckDB thread, this host): k97 ~0.3 s, k31 ~0.8 s,
# k11 ~2 s, k7 ~3 s of query alone.
KEYS = (97, 31, 11, 7)


def view_nql(name: str, key: int) -> str:
    table = f'company_data."{SOURCE_DATASET}"'
    return (f'CREATE MATERIALIZED VIEW "{name}" AS '
            f'SELECT a."k{key}" AS g, COUNT(*) AS n, SUM(a."v" * b."v") AS s '
            f'FROM {table} a JOIN {table} b ON a."k{key}" = b."k{key}" GROUP BY a."k{key}"')


def retrying(action: Callable[[], Any], *, timeout: float = 120, pause: float = 0.25,
             what: str = "store call") -> Any:
    """`action()`, retried while the store is unreachable (a PostgreSQL restart), the way
    a client retries a 503."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except Exception as error:
            if time.monotonic() > deadline:
                raise
            log.debug("%s failed, retrying: %s", what, error)
            time.sleep(pause)


@dataclass
class FaultEvent:
    at: float  # time.monotonic() when it was injected
    kind: str
    detail: str = ""
    end: float = 0.0  # when it was over (the server back up); `at` for an instant fault
    hit_running: bool = False  # a kill that hit a worker mid-job

    @property
    def over(self) -> float:
        return max(self.end, self.at)


@dataclass
class FaultSystem:
    name: str
    workers: int = 3
    concurrency: int = 1
    lease_seconds: int = 5
    overrides: dict[str, str] = field(default_factory=dict)
    keep: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"dataplane-faults-{self.name}-"))
        self.data_dir = self.root / "data"
        self.log_dir = self.root / "logs"
        self.redis = PrivateRedis(self.root / "redis")
        self.postgres = PrivatePostgres(keep=self.keep)
        self.store: Store | None = None
        self.scheduler_process: Process | None = None
        self.worker_processes: list[Process] = []
        self.retired: list[Process] = []
        self.events: list[FaultEvent] = []
        self.submitted: list[uuid.UUID] = []
        self.submitted_at: dict[uuid.UUID, float] = {}
        self.rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self.failed = False  # keep the logs when a run found something

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        return {
            "DATAPLANE_DATABASE_URL": self.database_url,
            "DATAPLANE_BROKER_URL": self.redis.url,
            "DATAPLANE_DATA_DIR": str(self.data_dir),
            "DATAPLANE_LEASE_SECONDS": str(self.lease_seconds),
            "DATAPLANE_REAPER_INTERVAL_SECONDS": "1",
            "DATAPLANE_DISPATCH_INTERVAL_SECONDS": "0.5",
            "DATAPLANE_REPUBLISH_AFTER_SECONDS": "10",
            "DATAPLANE_PUBLISH_TIMEOUT_SECONDS": "1",
            "DATAPLANE_DUCKDB_THREADS": "1",
            "DATAPLANE_DUCKDB_MEMORY_LIMIT": "512MB",
            **self.overrides,
        }

    @property
    def settings(self) -> Settings:
        return Settings(data_dir=self.data_dir, database_url=self.database_url,
                        broker_url=self.redis.url, lease_seconds=self.lease_seconds)

    @property
    def slots(self) -> int:
        return self.workers * self.concurrency

    def open(self) -> FaultSystem:
        self.redis.start()
        self.postgres.start()
        self.database_url = self.postgres.create_database("dataplane_faults")
        upgrade(self.database_url)
        self.store = Store.from_url(self.database_url)
        self.settings.ensure_dirs()
        self.import_source()
        self.start_scheduler()
        for index in range(self.workers):
            self.worker_processes.append(self._start_worker(index))
        for process in self.worker_processes:
            self.wait_ready(process)
        return self

    def close(self) -> None:
        for process in [*self.worker_processes, *self.retired]:
            with contextlib.suppress(Exception):
                process.stop(timeout=10)
        if self.scheduler_process is not None:
            with contextlib.suppress(Exception):
                self.scheduler_process.stop(timeout=10)
        if self.store is not None:
            self.store.dispose()
        try:
            self.redis.close()
        finally:
            self.postgres.keep = self.keep or self.failed
            self.postgres.close()
            if not (self.keep or self.failed):
                shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> FaultSystem:
        try:
            return self.open()
        except BaseException:
            self.failed = True
            self.close()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.failed = True
        self.close()

    def db(self) -> Store:
        assert self.store is not None, "open() first"
        return self.store

    # --- input ---------------------------------------------------------------------------

    def import_source(self) -> None:
        from worker.importer import import_dataset

        source = self.root / "source.parquet"
        keys = ", ".join(f"range % {k} AS k{k}" for k in KEYS)
        con = duckdb.connect()
        try:
            con.execute(f"COPY (SELECT range AS x, {keys}, ((range * 7919) % 10007) / 10007.0 AS v "
                        f"FROM range({SOURCE_ROWS})) TO '{source}' (FORMAT parquet)")
        finally:
            con.close()
        import_dataset(self.settings, self.db(), company_id=COMPANY, dataset_id=SOURCE_DATASET,
                       name="fault_source", source=source)

    # --- processes -----------------------------------------------------------------------

    def start_scheduler(self) -> Process:
        process = start("scheduler", ["scheduler"], self.env, self.log_dir)
        self.scheduler_process = process
        _wait(lambda: "scheduler running" in process.log() or not process.alive(), 60, "the scheduler")
        if not process.alive():
            raise RuntimeError(f"scheduler died:\n{process.log()[-3000:]}")
        return process

    def _start_worker(self, index: int) -> Process:
        return start(f"worker{index}", ["worker", "--cluster", "shared", "--concurrency",
                                        str(self.concurrency), "--loglevel", "info"],
                     self.env, self.log_dir)

    @staticmethod
    def wait_ready(process: Process, timeout: float = 90) -> None:
        _wait(lambda: " ready." in process.log() or not process.alive(), timeout, f"{process.name} ready")
        if not process.alive():
            raise RuntimeError(f"{process.name} died:\n{process.log()[-3000:]}")

    def busy_jobs(self, process: Process) -> list[uuid.UUID]:
        """Jobs this worker's processes run right now (their executor names its pid)."""
        marker = f"%.{process.pid}@%"

        def read() -> list[uuid.UUID]:
            with self.db().unit_of_work() as session:
                return list(session.scalars(select(Job.id).where(
                    Job.state.in_([JobState.RUNNING.value, JobState.PENDING_CANCELLATION.value]),
                    Job.executor.like(marker))))
        try:
            return retrying(read, timeout=5)
        except Exception:
            return []

    def sigkill_worker(self, index: int) -> FaultEvent:
        """SIGKILL a worker with its pool processes (a lost host), then start a new one."""
        process = self.worker_processes[index]
        busy = self.busy_jobs(process)
        process.kill()
        self.retired.append(process)
        event = self.fault("worker_sigkill", f"worker{index} pid {process.pid}, running {len(busy)} job(s)",
                           hit_running=bool(busy))
        self.worker_processes[index] = self._start_worker(index)
        return event

    def sigkill_child(self, index: int) -> FaultEvent | None:
        """SIGKILL one pool process of a worker (an OOM kill); Celery forks a new one."""
        process = self.worker_processes[index]
        try:
            children = psutil.Process(process.pid).children()
        except psutil.Error:
            return None
        if not children:
            return None
        victim = self.rng.choice(children)
        busy = self.busy_jobs(process)
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim.pid, signal.SIGKILL)
        return self.fault("child_sigkill", f"worker{index} child {victim.pid} (worker running {len(busy)})",
                          hit_running=bool(busy))

    def fault(self, kind: str, detail: str = "", *, hit_running: bool = False) -> FaultEvent:
        event = FaultEvent(time.monotonic(), kind, detail, hit_running=hit_running)
        with self._lock:
            self.events.append(event)
        log.info("fault: %s %s", kind, detail)
        return event

    def logs(self, chars: int = 4000) -> str:
        processes = [p for p in [self.scheduler_process, *self.worker_processes, *self.retired] if p]
        return "\n".join(f"===== {p.name} (pid {p.pid}) {p.log_path} =====\n{p.log()[-chars:]}"
                         for p in processes)

    # --- jobs ----------------------------------------------------------------------------

    def submit(self, nql: str, key: str, *, nudge: bool = True, timeout: float = 120) -> uuid.UUID:
        """As the API does it (commit, then nudge), retried across store outages; the
        idempotency key makes a retry after an unknown commit outcome return the same job."""
        def once() -> uuid.UUID:
            with self.db().unit_of_work() as session:
                job, _ = create_job(session, NewJob(company_id=COMPANY, user_id=1, type="materialize-view",
                                                    nql=nql, idempotency_key=key))
                return job.id
        job_id: uuid.UUID = retrying(once, timeout=timeout, what="submit")
        if nudge:
            nudge_dispatcher(self.settings)
        with self._lock:
            if job_id not in self.submitted_at:
                self.submitted.append(job_id)
                self.submitted_at[job_id] = time.monotonic()
        return job_id

    def request_cancellation(self, job_id: uuid.UUID) -> bool:
        def once() -> bool:
            with self.db().unit_of_work() as session:
                return request_cancellation(session, job_id, actor="faults-bench")
        return bool(retrying(once, what="request-cancellation"))

    def cancel(self, job_id: uuid.UUID) -> bool:
        from shared.store.jobs import cancel

        def once() -> bool:
            with self.db().unit_of_work() as session:
                return cancel(session, job_id, actor="faults-bench")
        return bool(retrying(once, what="cancel"))

    def states(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
        wanted = list(ids)
        out: dict[uuid.UUID, str] = {}
        with self.db().unit_of_work() as session:
            for start_ in range(0, len(wanted), 1000):
                chunk = wanted[start_:start_ + 1000]
                out.update(session.execute(select(Job.id, Job.state).where(Job.id.in_(chunk))).tuples().all())
        return out

    def state(self, job_id: uuid.UUID) -> str | None:
        with self.db().unit_of_work() as session:
            return session.scalar(select(Job.state).where(Job.id == job_id))

    def open_count(self) -> int:
        """Jobs of ours not terminal yet (this database holds only our jobs)."""
        with self.db().unit_of_work() as session:
            return int(session.scalar(select(func.count(Job.id)).where(Job.state.not_in(TERMINAL))) or 0)

    def pending_count(self) -> int:
        with self.db().unit_of_work() as session:
            return int(session.scalar(select(func.count(Job.id)).where(
                Job.state == JobState.PENDING.value)) or 0)

    def wait_terminal(self, timeout: float, *, interval: float = 0.2) -> float | None:
        """Wait until every job is terminal; the monotonic time it happened, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.open_count() == 0:
                    return time.monotonic()
            except Exception as error:  # the store is restarting
                log.debug("open_count: %s", error)
            time.sleep(interval)
        return None


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
