"""Incremental views' progress: which input snapshot a view last consumed, and what an
input gained since.

`read_progress` at the start of a run; `record_progress` in the publish transaction, as a
compare-and-set per input on the value read at the start, so two runs that read the same
delta cannot both publish it (the loser's publish fails and the job is retried, reading
the new progress). `delta_since` walks an input's snapshot chain back to the consumed
snapshot: only `append` snapshots in between means the delta is exactly the files they
added; anything else (an overwrite, a merge, an expiry, a history we cannot follow) means
the view must read the whole input, and says why.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.store.datasets import SnapshotConflict
from shared.store.db import execute_dml
from shared.store.models import Snapshot, ViewProgress
from shared.store.types import utcnow

FULL_REFRESH_TAG = "refresh_type=full"  # on a refresh job: ignore the recorded progress
MAX_CHAIN = 100_000  # snapshots walked back at most (hourly appends for 11 years)


class ProgressConflict(SnapshotConflict):
    """Another run of the view recorded progress first; this run's result is stale."""


def read_progress(session: Session, view_dataset_id: int) -> dict[int, int]:
    rows = session.scalars(select(ViewProgress).where(ViewProgress.view_dataset_id == view_dataset_id))
    return {row.input_dataset_id: row.snapshot_id for row in rows}


def record_progress(session: Session, view_dataset_id: int, *, before: Mapping[int, int],
                    consumed: Mapping[int, int | None], job_id: uuid.UUID) -> None:
    """Set each input's consumed snapshot, if the progress is still what the run read."""
    now = utcnow()
    for input_id, snapshot_id in consumed.items():
        if snapshot_id is None:
            continue  # the input had no snapshot: nothing was consumed
        previous = before.get(input_id)
        if previous is None:
            if session.get(ViewProgress, (view_dataset_id, input_id)) is not None:
                raise ProgressConflict(f"view {view_dataset_id}: progress on {input_id} moved")
            session.add(ViewProgress(view_dataset_id=view_dataset_id, input_dataset_id=input_id,
                                     snapshot_id=snapshot_id, job_id=job_id, updated_at=now))
            session.flush()
            continue
        moved = execute_dml(session, update(ViewProgress).where(
            ViewProgress.view_dataset_id == view_dataset_id,
            ViewProgress.input_dataset_id == input_id,
            ViewProgress.snapshot_id == previous,
        ).values(snapshot_id=snapshot_id, job_id=job_id, updated_at=now))
        if moved != 1:
            raise ProgressConflict(f"view {view_dataset_id}: progress on {input_id} moved")


def forget_progress(session: Session, view_dataset_id: int, input_ids: set[int]) -> None:
    """Drop progress on inputs the view no longer reads (their progress is meaningless)."""
    for row in session.scalars(select(ViewProgress).where(ViewProgress.view_dataset_id == view_dataset_id)):
        if row.input_dataset_id not in input_ids:
            session.delete(row)


@dataclass(frozen=True)
class Delta:
    """What an input gained since a snapshot: its files and rows, or why it cannot be said."""

    keys: tuple[str, ...] = ()
    rows: int = 0
    full_reason: str | None = None  # set: read the whole input instead


def delta_since(session: Session, *, dataset_id: int, since: int, current: int) -> Delta:
    if since == current:
        return Delta()
    added: list[tuple[str, ...]] = []
    rows = 0
    snapshot_id: int | None = current
    for _ in range(MAX_CHAIN):
        if snapshot_id == since:
            return Delta(keys=tuple(key for chunk in reversed(added) for key in chunk), rows=rows)
        snapshot = session.get(Snapshot, snapshot_id) if snapshot_id is not None else None
        if snapshot is None or snapshot.dataset_id != dataset_id:
            break
        if snapshot.operation != "append":
            what = {"overwrite": "overwritten", "merge": "rewritten by a MERGE",
                    "expire": "expired"}.get(snapshot.operation, snapshot.operation)
            return Delta(full_reason=f"dataset {dataset_id} was {what} (snapshot {snapshot.id}) "
                                     f"since snapshot {since}, which the view last read")
        added.append(tuple(snapshot.added_files))
        rows += snapshot.added_rows
        snapshot_id = snapshot.parent_snapshot_id
        if snapshot_id is None:
            break
    return Delta(full_reason=f"snapshot {since} of dataset {dataset_id}, which the view last read, "
                             "is no longer in its history")
