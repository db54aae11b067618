"""Datasets and their snapshots.

A snapshot is immutable: a list of Parquet files (relative to the datasets dir) plus
totals. Publishing one is a compare-and-set on `datasets.current_snapshot_id`, so two
writers appending at once cannot drop each other's files; a job publishes at most one
snapshot (unique `snapshots.job_id`)."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared.errors import DatasetNotFound, InfrastructureError
from shared.store.db import execute_dml
from shared.store.models import Dataset, Snapshot
from shared.store.types import utcnow


class SnapshotConflict(InfrastructureError):
    """Another writer published a snapshot of the same dataset first; retry the publish."""


def new_snapshot_id() -> int:
    """A positive int64, increasing with time: microseconds << 10 | 10 random bits."""
    return (time.time_ns() // 1000) << 10 | secrets.randbits(10)


def create_dataset(session: Session, *, company_id: int, name: str,
                   schema: Sequence[Sequence[str]], dataset_id: int | None = None,
                   display_name: str | None = None, description: str | None = None,
                   tags: Sequence[str] = (), view_nql: str | None = None,
                   write_mode: str = "append", price_micro_cents_per_row: int = 0) -> Dataset:
    if dataset_id is None:
        dataset_id = (session.scalar(select(func.max(Dataset.id))) or 0) + 1
    dataset = Dataset(
        id=dataset_id, company_id=company_id, name=name, display_name=display_name,
        description=description, schema=[list(c) for c in schema], tags=list(tags),
        view_nql=view_nql, write_mode=write_mode,
        price_micro_cents_per_row=price_micro_cents_per_row,
    )
    session.add(dataset)
    session.flush()
    return dataset


def get_dataset(session: Session, dataset_id: int, *, company_id: int | None = None) -> Dataset:
    """The dataset, or DatasetNotFound (also when another company owns it)."""
    stmt = select(Dataset).where(Dataset.id == dataset_id)
    if company_id is not None:
        stmt = stmt.where(Dataset.company_id == company_id)
    dataset = session.scalars(stmt).one_or_none()
    if dataset is None:
        raise DatasetNotFound(f"Dataset {dataset_id} does not exist or is not accessible")
    return dataset


def find_dataset_by_name(session: Session, *, company_id: int, name: str) -> Dataset | None:
    return session.scalars(
        select(Dataset).where(Dataset.company_id == company_id, Dataset.name == name)
    ).one_or_none()


def get_snapshot(session: Session, snapshot_id: int, *, dataset_id: int) -> Snapshot:
    snapshot = session.scalars(
        select(Snapshot).where(Snapshot.id == snapshot_id, Snapshot.dataset_id == dataset_id)
    ).one_or_none()
    if snapshot is None:
        raise DatasetNotFound(f"Snapshot {snapshot_id} of dataset {dataset_id} not found")
    return snapshot


def current_snapshot(session: Session, dataset: Dataset) -> Snapshot | None:
    if dataset.current_snapshot_id is None:
        return None
    return session.get(Snapshot, dataset.current_snapshot_id)


def list_snapshots(session: Session, dataset_id: int) -> list[Snapshot]:
    return list(session.scalars(
        select(Snapshot).where(Snapshot.dataset_id == dataset_id)
        .order_by(Snapshot.created_at.desc(), Snapshot.id.desc())
    ))


def snapshot_of_job(session: Session, job_id: uuid.UUID) -> Snapshot | None:
    return session.scalars(select(Snapshot).where(Snapshot.job_id == job_id)).one_or_none()


def publish_snapshot(session: Session, *, dataset: Dataset, job_id: uuid.UUID | None,
                     write_mode: str, added_files: Sequence[str], added_rows: int,
                     added_bytes: int, column_stats: dict[str, Any] | None = None,
                     schema: Sequence[Sequence[str]] | None = None,
                     carried_files: Sequence[str] = (), carried_rows: int = 0,
                     carried_bytes: int = 0) -> Snapshot:
    """Make the new snapshot current. `append` keeps the previous snapshot's files,
    `overwrite` replaces them. Raises SnapshotConflict if another snapshot won the race.
    `carried_files` (with their rows and bytes) are parent files a replacing snapshot keeps
    (a MERGE that rewrote only the partitions it touched)."""
    parent = current_snapshot(session, dataset)
    keep_previous = write_mode == "append" and parent is not None
    files = [*(parent.files if keep_previous and parent else []), *carried_files, *added_files]
    snapshot = Snapshot(
        id=new_snapshot_id(), dataset_id=dataset.id, job_id=job_id,
        parent_snapshot_id=parent.id if parent else None,
        operation=write_mode if parent else "overwrite" if write_mode == "overwrite" else "append",
        files=files, added_files=list(added_files),
        row_count=(parent.row_count if keep_previous and parent else 0) + carried_rows + added_rows,
        added_rows=added_rows,
        bytes=(parent.bytes if keep_previous and parent else 0) + carried_bytes + added_bytes,
        column_stats=column_stats, recalculation_id=uuid.uuid4(), created_at=utcnow(),
    )
    session.add(snapshot)
    session.flush()
    values: dict[str, Any] = {"current_snapshot_id": snapshot.id, "updated_at": utcnow()}
    if schema is not None:
        values["schema"] = [list(c) for c in schema]
    expected = (Dataset.current_snapshot_id == parent.id) if parent else Dataset.current_snapshot_id.is_(None)
    won = execute_dml(session, update(Dataset).where(Dataset.id == dataset.id, expected).values(**values))
    if won != 1:
        raise SnapshotConflict(f"dataset {dataset.id} got another snapshot concurrently")
    session.expire(dataset)
    return snapshot
