"""A real deployment for end-to-end scheduler tests: PostgreSQL store, a Redis broker,
and `dataplane scheduler` / `dataplane worker` processes (tests/processes.py), with jobs
submitted the way the API submits them (commit, then nudge)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from shared.config import Settings
from shared.nudge import nudge_dispatcher
from shared.states import TERMINAL_STATES, JobState
from shared.store import Store
from shared.store.jobs import NewJob, create_job
from shared.store.models import Job, Snapshot
from tests.processes import REPO_ROOT, Process, process_env, start, wait_for

COMPANY = 1


@dataclass
class Cluster:
    store: Store
    database_url: str
    broker_url: str
    data_dir: Path
    log_dir: Path
    overrides: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)
    dataset: str = ""

    @property
    def env(self) -> dict[str, str]:
        return {
            "DATAPLANE_DATABASE_URL": self.database_url,
            "DATAPLANE_BROKER_URL": self.broker_url,
            "DATAPLANE_DATA_DIR": str(self.data_dir),
            "DATAPLANE_LEASE_SECONDS": "3",
            "DATAPLANE_DISPATCH_INTERVAL_SECONDS": "0.5",
            "DATAPLANE_REAPER_INTERVAL_SECONDS": "0.5",
            "DATAPLANE_PUBLISH_TIMEOUT_SECONDS": "1",
            "DATAPLANE_DUCKDB_THREADS": "1",
            "DATAPLANE_DUCKDB_MEMORY_LIMIT": "256MB",
            **self.overrides,
        }

    @property
    def settings(self) -> Settings:
        return Settings(data_dir=self.data_dir, database_url=self.database_url,
                        broker_url=self.broker_url)

    # --- processes ----------------------------------------------------------------

    def scheduler(self, **env: str) -> Process:
        process = start("scheduler", ["scheduler", "--log-level", "DEBUG"],
                        {**self.env, **env}, self.log_dir)
        self.processes.append(process)
        wait_for(lambda: "scheduler running" in process.log() or not process.alive(),
                 timeout=30, message="the scheduler to start")
        assert process.alive(), process.log()
        return process

    def worker(self, cluster: str = "shared", *, pool: uuid.UUID | None = None,
               concurrency: int = 1, poison: bool = False, wait: bool = True) -> Process:
        args = ["worker", "--cluster", cluster, "--concurrency", str(concurrency)]
        if pool is not None:
            args += ["--compute-pool", str(pool)]
        name = f"worker-{cluster}" + (f"-{pool}" if pool else "")
        process = (_start_module("tests.poison_worker", name, args, self.env, self.log_dir)
                   if poison else start(name, args, self.env, self.log_dir))
        self.processes.append(process)
        if wait:
            wait_for(lambda: " ready." in process.log() or not process.alive(), timeout=60,
                     message=f"{name} to be ready")
            assert process.alive(), process.log()
        return process

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop(timeout=10)
        self.processes.clear()

    def logs(self) -> str:
        return "\n".join(f"===== {p.name} (pid {p.pid}) =====\n{p.log()[-6000:]}"
                         for p in self.processes)

    # --- jobs -----------------------------------------------------------------------

    def submit(self, nql: str | None = None, *, nudge: bool = True, **fields: Any) -> uuid.UUID:
        """As the API does it: commit the pending job, then nudge the dispatcher."""
        job_type = fields.pop("type", None)
        if nql is None:
            nql = f'EXPLAIN SELECT "x" FROM {self.dataset}'
        if job_type is None:
            job_type = "materialize-view" if nql.lstrip().upper().startswith("CREATE") \
                else "nql-forecast"
        with self.store.unit_of_work() as session:
            job, _ = create_job(session, NewJob(company_id=COMPANY, user_id=1, type=job_type,
                                                nql=nql, **fields))
            job_id = job.id
        if nudge:
            nudge_dispatcher(self.settings)
        return job_id

    def job(self, job_id: uuid.UUID) -> Job:
        with self.store.unit_of_work() as session:
            return session.get_one(Job, job_id)

    def jobs(self, ids: Iterable[uuid.UUID]) -> list[Job]:
        wanted = list(ids)
        with self.store.unit_of_work() as session:
            by_id = {j.id: j for j in session.scalars(select(Job).where(Job.id.in_(wanted)))}
        return [by_id[i] for i in wanted]

    def wait_for_states(self, ids: Iterable[uuid.UUID], states: Iterable[JobState] = (),
                        *, timeout: float) -> list[Job]:
        wanted = list(ids)
        targets = {s.value for s in states} or {s.value for s in TERMINAL_STATES}
        try:
            wait_for(lambda: all(j.state in targets for j in self.jobs(wanted)),
                     timeout=timeout, interval=0.1, message=f"jobs in {sorted(targets)}")
        except AssertionError as error:
            states_now = [(str(j.id)[:8], j.state, j.attempts) for j in self.jobs(wanted)]
            raise AssertionError(f"{error}: {states_now}\n{self.logs()}") from error
        return self.jobs(wanted)

    def snapshots_of_job(self, job_id: uuid.UUID) -> int:
        with self.store.unit_of_work() as session:
            return int(session.scalar(
                select(func.count()).select_from(Snapshot).where(Snapshot.job_id == job_id)) or 0)

    def import_dataset(self, name: str = "tiny", rows: int = 20) -> str:
        source = self.data_dir.parent / f"{name}.csv"
        source.write_text("x,y\n" + "".join(f"{i},{i % 3}\n" for i in range(rows)))
        result = subprocess.run(
            [sys.executable, "-m", "dataplane", "datasets", "import", "--company-id",
             str(COMPANY), "--name", name, str(source)],
            cwd=REPO_ROOT, env=process_env(self.env), capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        self.dataset = f"company_data.{name}"
        return self.dataset


def _start_module(module: str, name: str, args: list[str], env: dict[str, str],
                  log_dir: Path) -> Process:
    """tests/processes.start, for a test-only entry point instead of `-m dataplane`."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=process_env(env),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return Process(name, popen, log_path)
