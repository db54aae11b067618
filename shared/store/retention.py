"""EXPIRE applied to a view's snapshots (the scheduler's retention duty drives it).

Two steps, each its own transaction:

1. `expire_files` (append-mode views with a duration): the files of the current snapshot
   written before the cutoff (the time of the snapshot that added them) are dropped by
   publishing a new snapshot without them (operation `expire`, a compare-and-set like any
   publish). Nothing is deleted yet: older snapshots still list those files.
2. `deletable_snapshots` / `delete_snapshots`: superseded snapshots the policy no longer
   keeps (expire_everything: all of them; a duration: those written before the cutoff,
   and for append-mode views those listing expired files) are deleted, and the objects no
   remaining snapshot lists are returned for deletion, but only when no running job
   started before the snapshot stopped being current: a run pins its inputs' snapshots
   when it is claimed (`jobs.started_at`), so a file a running job may read is never
   removed under it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from shared.expire import ExpirePolicy
from shared.states import JobState
from shared.store.datasets import SnapshotConflict, current_snapshot, new_snapshot_id
from shared.store.db import execute_dml
from shared.store.models import Dataset, Job, Snapshot
from shared.store.types import utcnow

MAX_CHAIN = 100_000


def _chain(session: Session, head: Snapshot) -> list[Snapshot]:
    """The current snapshot and its ancestors, newest first."""
    chain, snapshot = [head], head
    while snapshot.parent_snapshot_id is not None and len(chain) < MAX_CHAIN:
        parent = session.get(Snapshot, snapshot.parent_snapshot_id)
        if parent is None:
            break
        chain.append(parent)
        snapshot = parent
    return chain


def expire_files(session: Session, dataset: Dataset, *, cutoff: datetime) -> Snapshot | None:
    """Publish the current snapshot minus its files written before `cutoff` (or None)."""
    head = current_snapshot(session, dataset)
    if head is None:
        return None
    written: dict[str, datetime] = {}
    chain = _chain(session, head)
    for snapshot in reversed(chain):  # oldest first: a file's time is when it was added
        for key, at in (snapshot.file_written_at or {}).items():
            written.setdefault(key, datetime.fromisoformat(at))
        for key in snapshot.added_files or []:
            written.setdefault(key, snapshot.created_at)
    expired = {k for k in head.files if k in written and written[k] < cutoff}
    if not expired:
        return None
    removed_rows = sum(s.added_rows for s in chain
                       if s.added_files and all(k in expired for k in s.added_files))
    kept = [k for k in head.files if k not in expired]
    snapshot = Snapshot(
        id=new_snapshot_id(), dataset_id=dataset.id, job_id=None, parent_snapshot_id=head.id,
        operation="expire", files=kept, added_files=[], row_count=max(0, head.row_count - removed_rows),
        added_rows=0, bytes=head.bytes, column_stats=None, recalculation_id=uuid.uuid4(),
        created_at=utcnow(), file_written_at={k: written[k].isoformat() for k in kept if k in written})
    session.add(snapshot)
    session.flush()
    won = execute_dml(session, update(Dataset).where(
        Dataset.id == dataset.id, Dataset.current_snapshot_id == head.id,
    ).values(current_snapshot_id=snapshot.id, updated_at=utcnow()))
    if won != 1:
        raise SnapshotConflict(f"dataset {dataset.id} got another snapshot while expiring")
    return snapshot


def oldest_running_start(session: Session) -> datetime | None:
    return session.scalar(select(func.min(Job.started_at)).where(Job.state == JobState.RUNNING.value))


def deletable_snapshots(session: Session, dataset: Dataset, policy: ExpirePolicy, *,
                        cutoff: datetime | None) -> list[Snapshot]:
    snapshots = list(session.scalars(select(Snapshot).where(Snapshot.dataset_id == dataset.id)
                                     .order_by(Snapshot.id)))
    current = next((s for s in snapshots if s.id == dataset.current_snapshot_id), None)
    if current is None:
        return []
    live = set(current.files)
    oldest_running = oldest_running_start(session)
    chosen = []
    for index, snapshot in enumerate(snapshots):
        if snapshot.id == current.id or index + 1 >= len(snapshots):
            continue
        stopped_being_current = snapshots[index + 1].created_at
        if oldest_running is not None and stopped_being_current >= oldest_running:
            continue  # a running job may have pinned it
        old = cutoff is not None and snapshot.created_at < cutoff
        lists_expired = dataset.write_mode == "append" and cutoff is not None and \
            any(k not in live for k in snapshot.files)
        if not policy.keep_history or old or lists_expired:
            chosen.append(snapshot)
    return chosen


def delete_snapshots(session: Session, dataset: Dataset, doomed: list[Snapshot]) -> list[str]:
    """Delete the snapshot rows; returns the object keys no remaining snapshot lists."""
    if not doomed:
        return []
    ids = [s.id for s in doomed]
    candidates = {k for s in doomed for k in s.files}
    execute_dml(session, delete(Snapshot).where(Snapshot.id.in_(ids)))
    remaining: Any = session.scalars(select(Snapshot.files).where(Snapshot.dataset_id == dataset.id))
    still_listed = {k for files in remaining for k in files}
    return sorted(candidates - still_listed)
