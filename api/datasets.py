"""Datasets and snapshots as the API shows them (`GET /datasets/...`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from shared.errors import DatasetNotFound, NotFound
from shared.store.datasets import current_snapshot, get_dataset, get_snapshot, list_snapshots
from shared.store.models import Dataset, Snapshot
from shared.store.schedules import get_schedule, schedule_to_wire
from shared.wire import iso


def owned_dataset(session: Session, dataset_id: int, *, company_id: int) -> Dataset:
    """The company's dataset or a 404. (The store's DatasetNotFound is also an NQL error,
    a 400 when the compiler raises it; here a miss is a missing resource.)"""
    try:
        return get_dataset(session, dataset_id, company_id=company_id)
    except DatasetNotFound as e:
        raise NotFound(e.message) from e


def owned_snapshot(session: Session, dataset_id: int, snapshot_id: int, *,
                   company_id: int) -> Snapshot:
    owned_dataset(session, dataset_id, company_id=company_id)
    try:
        return get_snapshot(session, snapshot_id, dataset_id=dataset_id)
    except DatasetNotFound as e:
        raise NotFound(e.message) from e


def dataset_to_wire(session: Session, dataset: Dataset) -> dict[str, Any]:
    snapshot = current_snapshot(session, dataset)
    return {
        "id": dataset.id,
        "company_id": dataset.company_id,
        "name": dataset.name,
        "display_name": dataset.display_name,
        "description": dataset.description,
        "schema": [{"name": name, "type": type_} for name, type_ in dataset.schema or []],
        "tags": list(dataset.tags or []),
        "write_mode": dataset.write_mode,
        "current_snapshot_id": dataset.current_snapshot_id,
        "row_count": snapshot.row_count if snapshot else 0,
        "bytes": snapshot.bytes if snapshot else 0,
        "materialized_view_config": {"nql": dataset.view_nql} if dataset.view_nql else None,
        "refresh_schedule": schedule_to_wire(get_schedule(session, dataset.id)),
        "created_at": iso(dataset.created_at),
        "updated_at": iso(dataset.updated_at),
    }


def snapshot_to_wire(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "snapshot_id": snapshot.id,
        "dataset_id": snapshot.dataset_id,
        "parent_snapshot_id": snapshot.parent_snapshot_id,
        "job_id": str(snapshot.job_id) if snapshot.job_id else None,
        "operation": snapshot.operation,
        "row_count": snapshot.row_count,
        "added_rows": snapshot.added_rows,
        "bytes": snapshot.bytes,
        "files": {"total": len(snapshot.files or []), "added": len(snapshot.added_files or [])},
        "recalculation_id": str(snapshot.recalculation_id) if snapshot.recalculation_id else None,
        "stats_available": snapshot.column_stats is not None,
        "timestamp": iso(snapshot.created_at),
    }


def snapshots_to_wire(session: Session, dataset: Dataset) -> dict[str, Any]:
    return {"snapshots": [snapshot_to_wire(s) for s in list_snapshots(session, dataset.id)]}

