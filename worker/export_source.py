"""What an export reads, as Arrow tables: a completed job's result rows, or a dataset's
current snapshot (optionally within [from, to) on its `time` column). Worker-side: it reads
object storage (the scheduler, which makes export jobs, must not import this)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy.orm import Session

from shared.errors import JobNotCompleted, UserError
from shared.exports import TIME_COLUMN
from shared.results import result_rows
from shared.states import JobState, JobType
from shared.storage import Storage
from shared.store.datasets import snapshot_of_job
from shared.store.jobs import get_job
from shared.store.models import Dataset, Snapshot, TdJob


class ExportSourceGone(UserError):
    """What an export was to read is no longer there (expired, or not completed)."""


# -- what an export reads, as Arrow tables ----------------------------------------------------

def _read_files(storage: Storage, keys: list[str],
                keep: Any = None) -> Iterator[pa.Table]:
    for key in keys:
        with storage.open(key) as handle:
            parquet = pq.ParquetFile(handle)
            for group in range(parquet.num_row_groups):
                table = parquet.read_row_group(group)
                if keep is not None:
                    table = table.filter(keep(table))
                if table.num_rows:
                    yield table


def _time_filter(time_from: int | None, time_to: int | None) -> Any:
    def keep(table: pa.Table) -> Any:
        column = table.column(TIME_COLUMN)
        bounds: list[Any] = []
        for value, op in ((time_from, pc.greater_equal), (time_to, pc.less)):
            if value is None:
                continue
            if pa.types.is_timestamp(column.type):
                moment = datetime.fromtimestamp(value, UTC)
                if column.type.tz is None:
                    moment = moment.replace(tzinfo=None)
                bounds.append(op(column, pa.scalar(moment, type=column.type)))
            else:
                bounds.append(op(column, pa.scalar(value, type=column.type)))
        mask = bounds[0]
        for more in bounds[1:]:
            mask = pc.and_(mask, more)
        return pc.fill_null(mask, False)
    return keep


def source_tables(session: Session, storage: Storage,
                  spec: dict[str, Any]) -> tuple[list[str], Iterator[pa.Table]]:
    """(column names, Arrow tables) of what the export reads: a completed job's result
    rows, or a dataset's current snapshot (optionally within [from, to) on `time`)."""
    source = spec["source"]
    if source["kind"] == "job":
        job = get_job(session, uuid.UUID(source["job_id"]))
        if job.state != JobState.COMPLETED:
            raise JobNotCompleted(job.state)
        td = session.get(TdJob, job.id)
        if td is not None and td.result_expired_at is not None:
            raise ExportSourceGone(f"The result of job {job.id} expired: nothing to export")
        if job.type != JobType.MATERIALIZE_VIEW:
            rows = result_rows(session, storage, job)
            names = [n for n, _ in rows.columns]
            tables = (pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in batch])
                      for batch in rows.batches if batch)
            return names, tables
        snapshot = snapshot_of_job(session, job.id)
        keys = list(snapshot.added_files) if snapshot is not None else []
        dataset = session.get(Dataset, job.dataset_id) if job.dataset_id is not None else None
        names = [str(n) for n, _ in dataset.schema] if dataset is not None else []
        return names, _read_files(storage, keys)
    dataset = session.get(Dataset, int(source["dataset_id"]))
    if dataset is None:
        raise ExportSourceGone(f"Dataset {source['dataset_id']} no longer exists")
    current = (session.get(Snapshot, dataset.current_snapshot_id)
               if dataset.current_snapshot_id is not None else None)
    keys = list(current.files) if current is not None else []
    time_from, time_to = source.get("from"), source.get("to")
    keep = _time_filter(time_from, time_to) if time_from is not None or time_to is not None else None
    return [str(n) for n, _ in dataset.schema], _read_files(storage, keys, keep)


