"""`materialize-view`: write the query's rows to staging, then publish them as a snapshot.

1. `ensure_target`: the dataset the view writes (the job's `dataset_id`, else the view's
   name in the job's company), created from the view when it does not exist yet.
2. `write_staged`: `COPY (<select>) TO` the run's staging folder, as Parquet files of at
   most `FILE_SIZE_BYTES` each (the watcher caps their total: `max_output_bytes`).
   DuckDB streams it; no row passes through Python.
3. `place`: upload the files to object storage under keys no other run can use
   (`<dataset>/<job_id>-<attempt>-<n>.parquet`), create-only. They are not part of the
   dataset yet: readers only see objects a snapshot lists.
4. `publish`: in one transaction, the snapshot (a compare-and-set on the dataset's
   current snapshot), the job's `completed` (fenced by the attempt) and the view's
   REFRESH_SCHEDULE. If the job is no longer this run's, the transaction rolls back and
   the uploaded objects are deleted.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import duckdb
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.errors import OutputTooLarge, UserError
from shared.nql import CompiledQuery
from shared.storage import Storage, StorageError, output_key, partitioned_output_key
from shared.store import Store
from shared.store.datasets import (
    SnapshotConflict,
    create_dataset,
    current_snapshot,
    find_dataset_by_name,
    get_dataset,
    publish_snapshot,
    snapshot_of_job,
)
from shared.store.db import is_disconnect
from shared.store.jobs import complete, get_job
from shared.store.schedules import record_view_schedule
from worker.sandbox import sql_string
from worker.staging import Staging
from worker.watch import RunStopped, StopReason

log = logging.getLogger(__name__)
PUBLISH_TRIES = 3  # concurrent appends to one dataset: re-read the parent and try again


class SchemaMismatch(UserError):
    """An append whose columns differ from the dataset's."""


@dataclass(frozen=True, kw_only=True)
class Target:
    dataset_id: int
    write_mode: str
    columns: tuple[tuple[str, str], ...]
    refresh_schedule: str | None = None  # the view's REFRESH_SCHEDULE, stored on completion
    # A MERGE into a PARTITIONED_BY view: the view's files of untouched partitions, kept.
    carried_files: tuple[str, ...] = ()
    carried_rows: int = 0
    carried_bytes: int = 0
    # The dataset had no snapshot when the run found it: an append will most likely publish
    # exactly the new files (the publish re-checks; this only says which statistics to make).
    was_empty: bool = False


@dataclass(frozen=True)
class Staged:
    paths: tuple[Path, ...]  # in row order
    rows: int
    size: int
    # PARTITIONED_BY views: each path's (folder name, value) pairs, aligned with `paths`.
    partitions: tuple[tuple[tuple[str, str], ...], ...] = ()


# One output file per this many bytes: bounded uploads, and a cap the watcher can check
# while DuckDB writes.
OUTPUT_FILE_BYTES = 256 * 1024 * 1024


class ViewJob(Protocol):
    """What finding a view's target needs of its job (the claimed row)."""

    @property
    def company_id(self) -> int: ...
    @property
    def nql(self) -> str: ...
    @property
    def dataset_id(self) -> int | None: ...


def _find_or_create(session: Session, job: ViewJob, compiled: CompiledQuery,
                    columns: tuple[tuple[str, str], ...]) -> Any:
    view = compiled.view
    assert view is not None
    if job.dataset_id is not None:
        return get_dataset(session, job.dataset_id, company_id=job.company_id)
    for _ in range(3):
        dataset = find_dataset_by_name(session, company_id=job.company_id, name=view.name)
        if dataset is not None:
            return dataset
        try:  # a savepoint: losing a creation race must not end the transaction
            with session.begin_nested():
                return create_dataset(
                    session, company_id=job.company_id, name=view.name, schema=columns,
                    display_name=view.display_name, description=view.description,
                    tags=view.tags, view_nql=job.nql, write_mode=view.write_mode)
        except IntegrityError:
            continue  # same name (found next time round) or same generated id (retry)
    raise SnapshotConflict(f"could not create dataset {view.name!r}")


def ensure_target(session: Session, job: ViewJob, compiled: CompiledQuery) -> Target:
    view = compiled.view
    if view is None:
        raise UserError("A materialize-view job needs a CREATE MATERIALIZED VIEW statement")
    columns = tuple((c.name, c.duckdb_type) for c in compiled.output_columns)
    dataset = _find_or_create(session, job, compiled, columns)
    existing = tuple((str(n), str(t)) for n, t in dataset.schema)
    if view.write_mode == "append" and dataset.current_snapshot_id is not None and existing != columns:
        raise SchemaMismatch(
            f"The view's columns ({_columns(columns)}) do not match the columns of dataset "
            f"{dataset.id} ({_columns(existing)}); use WRITE_MODE = 'overwrite' to replace it",
            dataset_id=dataset.id)
    if dataset.expire != view.expire:  # the retention duty reads it from here
        dataset.expire = view.expire
    return Target(dataset_id=dataset.id, write_mode=view.write_mode, columns=columns,
                  refresh_schedule=view.refresh_schedule, was_empty=dataset.current_snapshot_id is None)


def _columns(columns: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{n} {t}" for n, t in columns)


def write_staged(con: duckdb.DuckDBPyConnection, select_sql: str, staging: Staging,
                 *, file_bytes: int = OUTPUT_FILE_BYTES) -> Staged:
    """The query's rows as Parquet files in `staging.out` (one even when empty: it carries
    the schema), in row order: DuckDB preserves insertion order across its file rotation."""
    row = con.execute(
        f"COPY ({select_sql}) TO {sql_string(staging.out)} (FORMAT parquet, "
        f"FILE_SIZE_BYTES {int(file_bytes)}, FILENAME_PATTERN 'part-{{i}}')").fetchone()
    paths = tuple(sorted(staging.out.glob("part-*.parquet"),
                         key=lambda p: int(p.stem.rsplit("-", 1)[1])))
    return Staged(paths=paths, rows=int(row[0]) if row else 0,
                  size=sum(p.stat().st_size for p in paths))


def check_output_size(size: int, limit: int) -> None:
    """The cap on what one run writes (the watcher also enforces it while DuckDB writes)."""
    if size > limit:
        raise OutputTooLarge(limit)


def place(staged: Staged, *, storage: Storage, dataset_id: int, job_id: uuid.UUID,
          attempt: int) -> list[str]:
    """Upload the staged files (create-only, moved into a local store); returns their
    keys. A failed upload deletes what this call uploaded before raising."""
    keys: list[str] = []
    try:
        for index, path in enumerate(staged.paths):
            key = partitioned_output_key(dataset_id, staged.partitions[index], job_id, attempt, index) \
                if staged.partitions else output_key(dataset_id, job_id, attempt, index)
            storage.put_file(key, path, move=True)
            keys.append(key)
    except BaseException:
        unplace(storage, keys)
        raise
    return keys


def unplace(storage: Storage, keys: list[str]) -> None:
    """Delete a run's uploaded objects; if storage is down too, the orphan sweep will."""
    if not keys:
        return
    try:
        storage.delete(keys)
    except StorageError:
        log.warning("could not delete %d unpublished object(s); the orphan sweep will", len(keys))


def _parent(store: Store, dataset_id: int) -> tuple[int | None, list[str]]:
    with store.unit_of_work() as session:
        snapshot = current_snapshot(session, get_dataset(session, dataset_id))
        return (snapshot.id, list(snapshot.files)) if snapshot else (None, [])


def _already_published(store: Store, job_id: uuid.UUID) -> dict[str, Any] | None:
    """After a commit whose outcome is unknown: did it land?"""
    with store.unit_of_work() as session:
        if snapshot_of_job(session, job_id) is None:
            return None
        return get_job(session, job_id).result


def publish(store: Store, *, job_id: uuid.UUID, attempt: int, executor: str, target: Target,
            files: list[str], staged: Staged, storage: Storage, compiled_sql: str,
            stats: Callable[[list[str]], dict[str, Any]] | None,
            statistics: Callable[[], dict[str, Any]],
            store_retry_seconds: float = 0,
            on_publish: Callable[[Session, Any], None] | None = None) -> dict[str, Any]:
    """Publish the snapshot and complete the job in one transaction; returns the result.

    `stats` computes column statistics over the new snapshot's files, given the parent
    snapshot's keys when the new one keeps them (None: disabled).
    While the store is unreachable the publish is tried again for `store_retry_seconds`
    (the run's lease covers that long; if the reaper takes the job over meanwhile, the
    attempt fence makes a late publish a no-op): a store restart must not throw finished
    work away. When the publish surely did not happen the placed `files` are deleted; when
    its outcome stays unknown they are left: an orphan file is harmless (the scheduler
    sweeps it), a snapshot missing its file is not."""
    try:
        return _publish_while_reachable(
            store, job_id=job_id, attempt=attempt, executor=executor, target=target, files=files,
            staged=staged, compiled_sql=compiled_sql, stats=stats,
            statistics=statistics, retry_seconds=store_retry_seconds, on_publish=on_publish)
    except (SnapshotConflict, RunStopped, duckdb.Error, UserError):
        unplace(storage, files)
        raise
    except Exception:
        try:
            landed = _already_published(store, job_id)
        except Exception:
            log.warning("job %s: publish outcome unknown, keeping %s", job_id, files)
            raise
        if landed is not None:
            return landed
        unplace(storage, files)
        raise


def _publish_while_reachable(store: Store, *, job_id: uuid.UUID, retry_seconds: float,
                             **publish_args: Any) -> dict[str, Any]:
    """`_publish_with_conflicts`, tried again while the store is unreachable, for up to
    `retry_seconds`. Before each new try it asks whether the last commit landed after all."""
    deadline = time.monotonic() + retry_seconds
    delay = 0.25
    while True:
        try:
            return _publish_with_conflicts(store, job_id=job_id, **publish_args)
        except Exception as error:
            if not is_disconnect(error) or time.monotonic() + delay > deadline:
                raise
            log.warning("job %s: store unreachable while publishing (%s); trying again in %.2fs",
                        job_id, type(error).__name__, delay)
        while True:
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
            try:
                landed = _already_published(store, job_id)
                break
            except Exception as error:
                if not is_disconnect(error) or time.monotonic() + delay > deadline:
                    raise
        if landed is not None:
            return landed


def _publish_with_conflicts(store: Store, **publish_args: Any) -> dict[str, Any]:
    """`_publish_once`, again when another snapshot of the dataset won the race."""
    for _ in range(PUBLISH_TRIES):
        try:
            return _publish_once(store, **publish_args)
        except SnapshotConflict:
            log.info("job %s: dataset %s changed meanwhile, publishing again",
                     publish_args["job_id"], publish_args["target"].dataset_id)
    raise SnapshotConflict(f"dataset {publish_args['target'].dataset_id} kept changing; publish given up")


def _publish_once(store: Store, *, job_id: uuid.UUID, attempt: int, executor: str,
                  target: Target, files: list[str], staged: Staged,
                  compiled_sql: str, stats: Callable[[list[str]], dict[str, Any]] | None,
                  statistics: Callable[[], dict[str, Any]],
                  on_publish: Callable[[Session, Any], None] | None = None) -> dict[str, Any]:
    column_stats, expected = None, None
    # Statistics describe the new snapshot: an append's need its parent first (and the
    # parent must still be current at publish); an overwrite's are of its own files alone.
    parent_matters = stats is not None and target.write_mode == "append"
    if stats is not None:
        parent_files: list[str] = []
        if parent_matters:
            expected, parent_files = _parent(store, target.dataset_id)
        column_stats = stats(parent_files)
    with store.unit_of_work() as session:
        dataset = get_dataset(session, target.dataset_id)
        if parent_matters and dataset.current_snapshot_id != expected:
            raise SnapshotConflict(f"dataset {dataset.id} changed while publishing")
        keep = target.write_mode == "append" and dataset.current_snapshot_id is not None
        snapshot = publish_snapshot(
            session, dataset=dataset, job_id=job_id, write_mode=target.write_mode,
            added_files=files, added_rows=staged.rows, added_bytes=staged.size,
            column_stats=column_stats, schema=None if keep else target.columns,
            carried_files=target.carried_files, carried_rows=target.carried_rows,
            carried_bytes=target.carried_bytes)
        if on_publish is not None:  # an incremental view's progress: same transaction
            on_publish(session, snapshot)
        result = {"dataset_id": dataset.id, "snapshot_id": snapshot.id,
                  "recalculation_id": str(snapshot.recalculation_id)}
        if not complete(session, job_id, attempt=attempt, executor=executor, result=result,
                        statistics=statistics(), compiled_sql=compiled_sql):
            raise RunStopped(StopReason.FENCED)  # rolls the snapshot back too
        record_view_schedule(session, dataset_id=dataset.id, job=get_job(session, job_id),
                             refresh_schedule=target.refresh_schedule)
    return result
