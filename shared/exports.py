"""`export` jobs: made by the TD surface (`/v3/export/run`, `/v3/job/result_export`, a
query's `result` URL) and run by `worker/export.py`.

An export job's row says little (`nql` is a readable, redacted description); its plan is in
`td_jobs`: `export_spec` (source and location, nothing secret) and `result_url_encrypted`
(the credentials, Fernet-encrypted). The Celery message carries the job id only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.errors import InvalidRequest, JobNotCompleted, UserError
from shared.export_target import Location, Target, encrypt_credentials
from shared.results import result_rows
from shared.states import ExecutionCluster, JobState, JobType
from shared.storage import Storage
from shared.store.datasets import snapshot_of_job
from shared.store.jobs import NewJob, create_job, get_job
from shared.store.models import Dataset, Job, Snapshot, TdJob
from shared.store.types import utcnow

TIME_COLUMN = "time"
_INTEGER_TYPES = ("BIGINT", "INTEGER", "INT", "SMALLINT", "TINYINT", "UBIGINT", "UINTEGER",
                  "HUGEINT", "INT8", "INT4")


class ExportSourceGone(UserError):
    """What an export was to read is no longer there (expired, or not completed)."""


def time_column_type(dataset: Dataset) -> str | None:
    for name, kind in dataset.schema:
        if name == TIME_COLUMN:
            return str(kind)
    return None


def check_time_range(dataset: Dataset, time_from: int | None, time_to: int | None) -> None:
    if time_from is None and time_to is None:
        return
    kind = time_column_type(dataset)
    if kind is None:
        raise InvalidRequest(f"Table {dataset.name!r} has no {TIME_COLUMN!r} column: "
                             "from/to cannot be applied to it")
    upper = kind.upper()
    if not (upper.startswith("TIMESTAMP") or upper in _INTEGER_TYPES):
        raise InvalidRequest(f"Table {dataset.name!r}: its {TIME_COLUMN!r} column is {kind}, "
                             "neither Unix seconds nor a timestamp")


def create_export(session: Session, settings: Settings, *, company_id: int, user_id: int,
                  source: dict[str, Any], target: Target, idempotency_key: str | None,
                  priority: int = 0, retry_limit: int = 0,
                  compute_pool_id: uuid.UUID | None = None,
                  database: str = "company_data", encrypted: str | None = None,
                  user_actor: str = "api") -> tuple[Job, bool]:
    """The export job (or the existing one of this idempotency key); (job, created).
    `source`: `{"kind": "job", "job_id"}` or `{"kind": "dataset", "dataset_id", "from", "to"}`.
    `encrypted`: the credentials already encrypted (a query's stored result URL)."""
    if encrypted is None:
        encrypted = encrypt_credentials(settings, target.credentials)  # 400 without a key
    location = target.location
    what = (f"RESULT OF JOB {source['job_id']}" if source["kind"] == "job"
            else f'company_data."{source["dataset_id"]}"')
    description = f"EXPORT {what} TO '{location.redacted()}' FORMAT {location.format}"
    job, created = create_job(session, NewJob(
        company_id=company_id, user_id=user_id, type=JobType.EXPORT.value, nql=description,
        idempotency_key=idempotency_key, priority=priority, retry_limit=retry_limit,
        compute_pool_id=compute_pool_id,
        execution_cluster=(ExecutionCluster.DEDICATED if compute_pool_id else
                           ExecutionCluster.SHARED).value), actor=user_actor)
    if not created:
        return job, False
    source_job_id = uuid.UUID(source["job_id"]) if source["kind"] == "job" else None
    session.add(TdJob(job_id=job.id, company_id=company_id, td_type=JobType.EXPORT.value,
                      query=description, database=database, interactive=False,
                      result_url_encrypted=encrypted, result_url_redacted=location.redacted(),
                      export_spec={"source": source, "location": location.to_json()},
                      result_export_target_job_id=source_job_id, created_at=utcnow()))
    if source_job_id is not None:
        link_source(session, source_job_id, job.id)
    session.flush()
    return job, True


def link_source(session: Session, source_job_id: uuid.UUID, export_job_id: uuid.UUID) -> None:
    """The originating job names its export (`linked_result_export_job_id`)."""
    row = session.get(TdJob, source_job_id)
    if row is None:  # a job made on our own API: give it its TD row now
        source = get_job(session, source_job_id)
        row = TdJob(job_id=source.id, company_id=source.company_id, td_type=source.type,
                    query=source.nql, database="company_data", interactive=False,
                    created_at=utcnow())
        session.add(row)
    row.linked_result_export_job_id = export_job_id


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


def location_of(spec: dict[str, Any]) -> Location:
    return Location.from_json(spec["location"])
