"""Helpers of the fair-share tests and bench/fairness.py: jobs of several companies on a
real deployment (tests/scheduler/cluster.py), a sampler of running jobs per company, and
Jain's fairness index."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sqlalchemy import func, select

from shared.config import Settings
from shared.nudge import nudge_dispatcher
from shared.states import JobState
from shared.store import Store
from shared.store.fairshare import RUNNING_STATES
from shared.store.jobs import NewJob, create_job
from shared.store.models import Job
from tests.poison_worker import sleep_marker
from tests.processes import REPO_ROOT, process_env


class Deployment(Protocol):
    """tests/scheduler/cluster.Cluster or bench/_system.BenchSystem."""

    store: Store
    data_dir: Path

    @property
    def env(self) -> dict[str, str]: ...

    @property
    def settings(self) -> Settings: ...


def import_for(cluster: Deployment, company_id: int, name: str = "tiny") -> str:
    source = cluster.data_dir.parent / f"{name}-{company_id}.csv"
    source.write_text("x,y\n" + "".join(f"{i},{i % 3}\n" for i in range(5)))
    result = subprocess.run(
        [sys.executable, "-m", "dataplane", "datasets", "import", "--company-id",
         str(company_id), "--name", name, str(source)],
        cwd=REPO_ROOT, env=process_env(cluster.env), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return f"company_data.{name}"


def sleepy_nql(seconds: float, relation: str = "company_data.tiny") -> str:
    """A forecast that takes about `seconds` on a tests.poison_worker worker."""
    return f"EXPLAIN SELECT '{sleep_marker(seconds)}' AS marker, \"x\" FROM {relation}"


def submit_many(cluster: Deployment, company_id: int, count: int, nql: str, *,
                priority: int = 0, nudge: bool = True) -> list[uuid.UUID]:
    """`count` jobs committed in one transaction, as a burst of API calls would leave them."""
    with cluster.store.unit_of_work() as session:
        ids = [create_job(session, NewJob(company_id=company_id, user_id=1, type="nql-forecast",
                                          nql=nql, priority=priority))[0].id
               for _ in range(count)]
    if nudge:
        nudge_dispatcher(cluster.settings)
    return ids


def jain(values: list[float]) -> float:
    """Jain's fairness index: 1 when all equal, 1/n when one takes everything."""
    total = sum(values)
    squares = sum(v * v for v in values)
    return 1.0 if squares == 0 else total * total / (len(values) * squares)


@dataclass
class Sample:
    at: float
    running: Counter[int]
    pending: Counter[int]


@dataclass
class Sampler:
    """Counts running and pending jobs per company every `interval` seconds."""

    store: Store
    interval: float = 0.05
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self.store.unit_of_work() as session:
                rows = session.execute(
                    select(Job.company_id, Job.state, func.count())
                    .where(Job.state.in_((JobState.PENDING.value, *RUNNING_STATES)))
                    .group_by(Job.company_id, Job.state)).all()
            running: Counter[int] = Counter()
            pending: Counter[int] = Counter()
            for company, state, count in rows:
                (pending if state == JobState.PENDING.value else running)[company] += count
            self.samples.append(Sample(time.monotonic(), running, pending))
            self._stop.wait(self.interval)

    def contended(self) -> list[Sample]:
        """Samples while at least two companies had jobs waiting."""
        return [s for s in self.samples if sum(1 for c in s.pending if s.pending[c] > 0) >= 2]

    def jain_index(self, *, min_backlog: int = 2) -> float:
        """Jain's index of the companies' average running slots while each had a backlog,
        over the contended samples. Only companies that had at least `min_backlog` jobs
        waiting at some point are in sustained contention: a company with a single job
        is served by the next free slot (the tests check that by start order instead)."""
        slots, seen, deepest = self._waiting_counts()
        averages = [slots[c] / seen[c] for c in seen if deepest[c] >= min_backlog]
        return jain(averages) if len(averages) >= 2 else 0.0

    def averages(self) -> dict[int, float]:
        slots, seen, _ = self._waiting_counts()
        return {c: round(slots[c] / seen[c], 2) for c in sorted(seen)}

    def _waiting_counts(self) -> tuple[Counter[int], Counter[int], Counter[int]]:
        """Per company, over the contended samples in which it had jobs waiting: the slots
        it held (summed), how many such samples, and its deepest backlog."""
        slots: Counter[int] = Counter()
        seen: Counter[int] = Counter()
        deepest: Counter[int] = Counter()
        for sample in self.contended():
            for company, waiting in sample.pending.items():
                if waiting > 0:
                    slots[company] += sample.running.get(company, 0)
                    seen[company] += 1
                    deepest[company] = max(deepest[company], waiting)
        return slots, seen, deepest
