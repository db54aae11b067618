"""The invariants every fault run checks, as plain functions (the bench and the tests
share them).

For every job submitted:

* it exists (none lost) and its state is terminal;
* it has at most one snapshot, and exactly one iff it is a completed materialize-view
  (so a cancelled, failed or forecast job has none);
* its transition log is a legal path: starts `None -> pending`, each step's source is
  the previous step's target, each step is allowed by `shared.states.is_allowed`, and
  the last target is the row's state;
* `attempts` equals the number of `pending -> running` transitions, those claims carry
  the attempt numbers 1, 2, ... in order, and every other step the attempt of its time;
* a completed materialize-view's `result.snapshot_id` (and `dataset_id`) is its snapshot.

`check_record` is pure (a `JobRecord` in, a list of violations out); `load_records`
reads the records of some jobs from a store; `check_jobs` does both and sums it up.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from shared.states import TERMINAL_STATES, JobState, JobType, is_allowed
from shared.storage import Storage
from shared.store import Store
from shared.store.models import Job, JobTransition, Snapshot


@dataclass(frozen=True)
class Step:
    """One transition-log row."""

    from_state: str | None
    to_state: str
    attempt: int
    at: datetime | None = None
    actor: str = ""
    reason: str | None = None


@dataclass(frozen=True)
class SnapshotRef:
    id: int
    dataset_id: int
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobRecord:
    """What the invariants look at of one job: its row, its log and its snapshots."""

    id: uuid.UUID
    type: str
    state: str
    attempts: int
    result: dict[str, Any] | None
    steps: tuple[Step, ...]
    snapshots: tuple[SnapshotRef, ...]
    failures: tuple[dict[str, Any], ...] = ()
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None


def _state(value: str | None) -> JobState | None:
    try:
        return JobState(value) if value is not None else None
    except ValueError:
        return None


def check_terminal(record: JobRecord) -> list[str]:
    if _state(record.state) in TERMINAL_STATES:
        return []
    return [f"state {record.state!r} is not terminal"]


def check_snapshots(record: JobRecord) -> list[str]:
    problems = []
    count = len(record.snapshots)
    if count > 1:
        problems.append(f"{count} snapshots (ids {[s.id for s in record.snapshots]}), at most 1 allowed")
    wants_one = record.type == JobType.MATERIALIZE_VIEW and record.state == JobState.COMPLETED
    if wants_one and count == 0:
        problems.append("completed materialize-view without a snapshot")
    if not wants_one and count:
        problems.append(f"{record.state} {record.type} job has {count} snapshot(s) "
                        f"(ids {[s.id for s in record.snapshots]})")
    return problems


def check_log(record: JobRecord) -> list[str]:
    """The log is a legal path from `pending` that ends in the row's state."""
    steps = record.steps
    if not steps:
        return ["empty transition log"]
    problems = []
    first = steps[0]
    if first.from_state is not None or first.to_state != JobState.PENDING:
        problems.append(f"log starts {first.from_state} -> {first.to_state}, not None -> pending")
    previous = first.to_state
    for index, step in enumerate(steps[1:], start=1):
        source, target = _state(step.from_state), _state(step.to_state)
        if source is None or target is None:
            problems.append(f"step {index}: unknown state in {step.from_state} -> {step.to_state}")
        elif not is_allowed(source, target):
            problems.append(f"step {index}: illegal transition {step.from_state} -> {step.to_state}")
        if step.from_state != previous:
            problems.append(f"step {index}: {step.from_state} -> {step.to_state} does not follow "
                            f"the previous step's {previous}")
        previous = step.to_state
    if previous != record.state:
        problems.append(f"log ends in {previous}, the row is {record.state}")
    return problems


def check_attempts(record: JobRecord) -> list[str]:
    claims = [s.attempt for s in record.steps
              if s.from_state == JobState.PENDING and s.to_state == JobState.RUNNING]
    problems = []
    if record.attempts != len(claims):
        problems.append(f"attempts = {record.attempts} but {len(claims)} pending -> running transition(s)")
    if claims != list(range(1, len(claims) + 1)):
        problems.append(f"claims carry attempts {claims}, not 1..{len(claims)}")
    else:  # every step is stamped with the attempt current when it was made
        current = 0
        for index, step in enumerate(record.steps):
            if step.from_state == JobState.PENDING and step.to_state == JobState.RUNNING:
                current += 1
            if step.attempt != current:
                problems.append(f"step {index} ({step.from_state} -> {step.to_state}) carries attempt "
                                f"{step.attempt} after {current} claim(s)")
                break
    return problems


def check_result(record: JobRecord) -> list[str]:
    if record.state == JobState.CANCELLED and record.snapshots:
        return [f"cancelled job has snapshot(s) {[s.id for s in record.snapshots]}"]
    if not (record.type == JobType.MATERIALIZE_VIEW and record.state == JobState.COMPLETED):
        return []
    if len(record.snapshots) != 1:
        return []  # reported by check_snapshots
    [snapshot] = record.snapshots
    result = record.result or {}
    problems = []
    if result.get("snapshot_id") != snapshot.id:
        problems.append(f"result.snapshot_id {result.get('snapshot_id')} is not its snapshot {snapshot.id}")
    if result.get("dataset_id") != snapshot.dataset_id:
        problems.append(f"result.dataset_id {result.get('dataset_id')} is not its snapshot's "
                        f"dataset {snapshot.dataset_id}")
    return problems


CHECKS = {
    "not_terminal": check_terminal,
    "snapshots": check_snapshots,
    "log": check_log,
    "attempts": check_attempts,
    "result": check_result,
}


def check_record(record: JobRecord) -> list[str]:
    """Every violation of one job, each prefixed with the check's name."""
    return [f"{name}: {problem}" for name, check in CHECKS.items() for problem in check(record)]


def load_records(store: Store, job_ids: Iterable[uuid.UUID], *,
                 chunk: int = 500) -> dict[uuid.UUID, JobRecord | None]:
    """The records of `job_ids` (None for a job that does not exist)."""
    wanted = list(dict.fromkeys(job_ids))
    records: dict[uuid.UUID, JobRecord | None] = dict.fromkeys(wanted)
    with store.unit_of_work() as session:
        for start in range(0, len(wanted), chunk):
            ids = wanted[start:start + chunk]
            steps: dict[uuid.UUID, list[Step]] = {i: [] for i in ids}
            for t in session.scalars(select(JobTransition).where(JobTransition.job_id.in_(ids))
                                     .order_by(JobTransition.job_id, JobTransition.id)):
                steps[t.job_id].append(Step(t.from_state, t.to_state, t.attempt, t.at, t.actor, t.reason))
            snaps: dict[uuid.UUID, list[SnapshotRef]] = {i: [] for i in ids}
            for s in session.scalars(select(Snapshot).where(Snapshot.job_id.in_(ids)).order_by(Snapshot.id)):
                assert s.job_id is not None
                snaps[s.job_id].append(SnapshotRef(int(s.id), int(s.dataset_id), tuple(s.files or ())))
            for job in session.scalars(select(Job).where(Job.id.in_(ids))):
                records[job.id] = JobRecord(
                    id=job.id, type=job.type, state=job.state, attempts=job.attempts,
                    result=job.result, steps=tuple(steps[job.id]), snapshots=tuple(snaps[job.id]),
                    failures=tuple(job.failures or ()), created_at=job.created_at,
                    started_at=job.started_at, ended_at=job.ended_at)
    return records


@dataclass
class CheckReport:
    """The invariants over a set of jobs, summed up for the figures."""

    records: dict[uuid.UUID, JobRecord | None]
    violations: dict[uuid.UUID, list[str]] = field(default_factory=dict)

    @property
    def lost(self) -> list[uuid.UUID]:
        return [job_id for job_id, record in self.records.items() if record is None]

    @property
    def present(self) -> list[JobRecord]:
        return [r for r in self.records.values() if r is not None]

    def by_state(self) -> Counter[str]:
        return Counter(r.state for r in self.present)

    def attempts(self) -> Counter[int]:
        return Counter(r.attempts for r in self.present)

    def max_snapshots(self) -> int:
        return max((len(r.snapshots) for r in self.present), default=0)

    def with_two_snapshots(self) -> list[uuid.UUID]:
        return [r.id for r in self.present if len(r.snapshots) > 1]

    def not_terminal(self) -> list[uuid.UUID]:
        return [r.id for r in self.present if check_terminal(r)]

    def log_mismatches(self) -> list[uuid.UUID]:
        """Jobs whose transition log disagrees with the row (path, end state, attempts)."""
        return [job_id for job_id, problems in self.violations.items()
                if any(p.startswith(("log:", "attempts:")) for p in problems)]

    def violation_kinds(self) -> Counter[str]:
        return Counter(p.split(":", 1)[0] for problems in self.violations.values() for p in problems)

    @property
    def ok(self) -> bool:
        return not self.lost and not self.violations

    def describe(self, limit: int = 20) -> list[str]:
        """One line per violating job (at most `limit`), for reports and assertion messages."""
        lines = [f"lost (no row): {job_id}" for job_id in self.lost[:limit]]
        for job_id, problems in list(self.violations.items())[:limit]:
            record = self.records[job_id]
            path = " > ".join(f"{s.to_state}#{s.attempt}" for s in record.steps) if record else "?"
            lines.append(f"{job_id}: {'; '.join(problems)} [log: {path}]")
        return lines


def check_records(records: dict[uuid.UUID, JobRecord | None]) -> CheckReport:
    report = CheckReport(records)
    for job_id, record in records.items():
        if record is not None and (problems := check_record(record)):
            report.violations[job_id] = problems
    return report


def check_jobs(store: Store, job_ids: Sequence[uuid.UUID]) -> CheckReport:
    return check_records(load_records(store, job_ids))


def snapshot_files_missing(storage: Storage, report: CheckReport) -> list[str]:
    """Objects a snapshot of these jobs lists that are not in storage (a published
    snapshot must never point at an object that is gone)."""
    stored = {info.key for info in storage.list()}
    return sorted({f for r in report.present for s in r.snapshots for f in s.files if f not in stored})


def orphan_outputs(storage: Storage, report: CheckReport) -> list[str]:
    """Output objects of these jobs' runs (`<dataset>/<job>-<attempt>-<n>.parquet`) that no
    snapshot lists: runs killed or fenced after uploading. Harmless (readers only see
    objects a snapshot lists), so counted, not a violation."""
    ours = {str(r.id) for r in report.present}
    listed = {f for r in report.present for s in r.snapshots for f in s.files}
    orphans: list[str] = []
    for info in storage.list():
        job_part = info.key.rsplit("/", 1)[-1].rsplit("-", 2)[0]
        if job_part in ours and info.key not in listed:
            orphans.append(info.key)
    return sorted(orphans)
