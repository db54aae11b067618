"""One claimed run, from NQL to a completed job: compile, bind, run, publish.

`run_job` is the whole lifecycle and what the Celery task calls; it needs no Celery:

    claim (CAS returning the row, its log row, the datasets and their current snapshots:
    one transaction) -> compile against those answers -> inputs made local (in place, or
    pinned from the host's cache) -> locked DuckDB connection -> forecast | materialize:
    staged files, uploaded, published (compiled_sql written with the outcome)
    -> on any error: settle (cancelled / failed / requeued / fenced) -> staging removed

A watcher thread heartbeats the lease and interrupts DuckDB on cancellation, fencing or
the time limit, for the whole run.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.errors import NQLError, UserError
from shared.nql import CompiledQuery, StatementKind, compile_nql, parse_nql
from shared.states import JobType
from shared.store import Store
from shared.store.catalog import PinnedCatalog
from shared.store.jobs import complete, get_job, set_compiled_sql
from shared.store.models import Snapshot
from shared.store.progress import FULL_REFRESH_TAG, ProgressConflict, record_progress
from worker.cache import DataFiles
from worker.forecast import check_budget, forecast, price_per_row
from worker.incremental import Refresh, bind_target, merge_into_target, needs_refresh_plan, plan_refresh
from worker.inputs import Input, bind_inputs, input_directories, local_files, localize, pinned_inputs
from worker.lifecycle import Claimed, Outcome, claim_job, hand_back, record_timeout, settle
from worker.materialize import (
    OUTPUT_FILE_BYTES,
    Staged,
    Target,
    check_output_size,
    ensure_target,
    place,
    publish,
    write_staged,
)
from worker.partitions import prune, write_partitioned
from worker.sandbox import Limits, open_sandbox, retire, trusted_connection
from worker.staging import Staging
from worker.stats import compute_column_stats
from worker.stats_merge import merge_column_stats
from worker.watch import RunStopped, StopReason, Watcher

log = logging.getLogger(__name__)

_KINDS = {JobType.MATERIALIZE_VIEW: StatementKind.MATERIALIZE_VIEW,
          JobType.NQL_FORECAST: StatementKind.FORECAST}


@dataclass(frozen=True)
class Plan:
    compiled: CompiledQuery
    inputs: tuple[Input, ...]
    target: Target | None
    refresh: Refresh | None = None  # an incremental view's (DELTA / MERGE) reads
    merge_target: tuple[Path, ...] = ()  # the view's current rows, local, for its MERGE


@dataclass
class Run:
    """A claimed run and what it runs with."""

    store: Store
    settings: Settings
    files: DataFiles
    executor: str
    job: Claimed
    catalog: PinnedCatalog
    staging: Staging
    watcher: Watcher
    deadline: float  # time.monotonic()
    compiled_sql: str | None = None  # once compiled: written with the outcome

    def limits(self) -> Limits:
        remaining_ms = int((self.deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0:
            raise RunStopped(StopReason.TIMED_OUT)
        return Limits.from_settings(self.settings, temp_directory=self.staging.tmp,
                                    max_execution_ms=remaining_ms)


def _pin_datasets(session: Session, job: Claimed) -> PinnedCatalog:
    """The claim's reads: the datasets the statement names and their current snapshots."""
    try:
        references = parse_nql(job.nql).dataset_references
    except NQLError:
        return PinnedCatalog(())  # the compile reports it, as the job's failure
    return PinnedCatalog.read(session, job.company_id, references)


def run_job(store: Store, settings: Settings, job_id: uuid.UUID, *, executor: str,
            files: DataFiles | None = None) -> Outcome:
    files = files or DataFiles.from_settings(settings)
    claim = claim_job(store, settings, job_id, executor=executor, read=_pin_datasets)
    if claim is None:
        return Outcome.SKIPPED
    claimed, catalog = claim
    log.info("job %s attempt %s: claimed by %s", job_id, claimed.attempt, executor)
    staging = Staging(settings.staging_dir, job_id, claimed.attempt)
    deadline = time.monotonic() + settings.job_timeout_seconds
    watcher = Watcher(
        store, job_id, claimed.attempt, deadline=deadline,
        poll_seconds=settings.cancel_poll_seconds, heartbeat_seconds=settings.heartbeat_seconds,
        lease_seconds=settings.lease_seconds,
        on_stuck=lambda: record_timeout(store, settings, claimed, executor=executor),
        output=(staging.out, settings.max_output_bytes))
    run = Run(store, settings, files, executor, claimed, catalog, staging, watcher, deadline)
    try:
        with watcher:
            if claimed.attempt > 1:  # only an earlier attempt can have left files behind
                staging.remove_earlier_attempts()
            staging.create()
            outcome = _execute(run)
    except BaseException as error:  # every way out must be recorded
        stopping = not isinstance(error, Exception)  # SystemExit, KeyboardInterrupt
        try:
            if stopping:
                outcome = hand_back(store, claimed, executor=executor)
            else:
                outcome = settle(store, settings, claimed, error, watcher.reason, executor=executor,
                                 compiled_sql=run.compiled_sql)
        except Exception:
            log.exception("job %s: could not record the outcome; its lease will expire", job_id)
            outcome = Outcome.FENCED
        if stopping:
            raise
    finally:
        staging.remove()
    log.info("job %s attempt %s: %s", job_id, claimed.attempt, outcome)
    return outcome


def prepare(run: Run) -> Plan:
    """Compile against the datasets the claim pinned (the company from the row, never the
    message) and, for a view, find or create its target, fenced by the attempt."""
    compiled = compile_nql(run.job.nql, run.catalog)
    if _KINDS.get(JobType(run.job.type)) != compiled.kind:
        raise UserError(f"A {run.job.type} job cannot run a {compiled.kind} statement")
    run.compiled_sql = compiled.select_sql
    target = _target(run, compiled) if run.job.type == JobType.MATERIALIZE_VIEW else None
    inputs = pinned_inputs(run.catalog, compiled.datasets)
    refresh = None
    if target is not None and compiled.view is not None and \
            needs_refresh_plan(compiled.view, compiled.delta_dataset_ids):
        with run.store.unit_of_work() as session:
            full = FULL_REFRESH_TAG in (get_job(session, run.job.job_id).tags or [])
            refresh = plan_refresh(session, view_dataset_id=target.dataset_id, view=compiled.view,
                                   inputs=inputs, delta_ids=compiled.delta_dataset_ids,
                                   full_requested=full)
        inputs = refresh.inputs
    inputs = prune(inputs, compiled.select_sql)  # PARTITIONED_BY inputs: only matching files
    # Downloads (a remote store) happen here, outside any transaction; the watcher
    # heartbeats meanwhile and a cancel interrupts between files.
    inputs = localize(inputs, storage=run.files.storage, cache=run.files.cache,
                      into=run.staging.inputs)
    merge_target: tuple[Path, ...] = ()
    if refresh is not None and refresh.target_keys:
        merge_target = local_files(refresh.target_keys, storage=run.files.storage,
                                   cache=run.files.cache, into=run.staging.inputs / "target")
    return Plan(compiled, inputs, target, refresh, merge_target)


def _target(run: Run, compiled: CompiledQuery) -> Target:
    """The view's dataset, found or created, recorded on the job (fenced by the attempt)."""
    with run.store.unit_of_work() as session:  # what it needs of the job came with the claim
        target = ensure_target(session, run.job, compiled)
        if not set_compiled_sql(session, run.job.job_id, attempt=run.job.attempt,
                                sql=compiled.select_sql, dataset_id=target.dataset_id):
            raise RunStopped(run.watcher.reason or StopReason.FENCED)
    return target


def _execute(run: Run) -> Outcome:
    if run.job.type == JobType.EXPORT:  # no NQL to run: read, write, upload (worker/export.py)
        from worker.export import run_export
        return run_export(run)
    plan = prepare(run)
    run.watcher.check()
    directories: list[Path] = [*input_directories(plan.inputs), run.staging.root,
                               *sorted({f.parent for f in plan.merge_target})]
    con = open_sandbox(run.limits(), allowed_directories=directories,
                       bind=lambda c: _bind(c, plan))
    run.watcher.attach(con)
    try:
        if plan.target is None:
            return _forecast(run, plan, con)
        return _materialize(run, plan, plan.target, con)
    finally:
        run.watcher.attach(None)
        retire(con)


def _bind(con: duckdb.DuckDBPyConnection, plan: Plan) -> None:
    bind_inputs(con, plan.inputs)
    view = plan.compiled.view
    if plan.refresh is not None and view is not None and view.merge is not None:
        bind_target(con, [(c.name, c.duckdb_type) for c in plan.compiled.output_columns])


def _forecast_of(run: Run, plan: Plan, con: duckdb.DuckDBPyConnection) -> Any:
    return forecast(con, plan.compiled.select_sql, plan.inputs,
                    exact_max_rows=run.settings.forecast_exact_max_rows,
                    sample_percent=run.settings.forecast_sample_percent)


def _forecast(run: Run, plan: Plan, con: duckdb.DuckDBPyConnection) -> Outcome:
    result = _forecast_of(run, plan, con).as_result()
    run.watcher.check()
    with run.store.unit_of_work() as session:
        if not complete(session, run.job.job_id, attempt=run.job.attempt, executor=run.executor,
                        result=result, statistics=run.job.statistics(),
                        compiled_sql=plan.compiled.select_sql):
            raise RunStopped(run.watcher.reason or StopReason.FENCED)
    return Outcome.COMPLETED


def _materialize(run: Run, plan: Plan, target: Target, con: duckdb.DuckDBPyConnection) -> Outcome:
    view = plan.compiled.view
    if view is not None and view.budget is not None and price_per_row(plan.inputs) > 0:
        check_budget(view.budget, _forecast_of(run, plan, con))  # before anything is written
    select_sql = plan.compiled.select_sql
    refresh = plan.refresh
    carried: tuple[tuple[str, Path], ...] = ()
    if refresh is not None and view is not None and view.merge is not None:
        merged = merge_into_target(con, select_sql=select_sql, view=view, columns=target.columns,
                                   target_files=tuple(zip(refresh.target_keys, plan.merge_target, strict=True)))
        select_sql, carried = merged.select_sql, merged.carried
        target = replace(target, carried_files=tuple(k for k, _ in carried), carried_rows=merged.carried_rows,
                         carried_bytes=sum(p.stat().st_size for _, p in carried))
    if refresh is not None and view is not None:
        target = replace(target, write_mode=refresh.publish_mode(view))
    if view is not None and view.partitioned_by:
        rows, files_written = write_partitioned(
            con, select_sql, run.staging.out, view.partitioned_by, target.columns, file_bytes=OUTPUT_FILE_BYTES)
        staged = Staged(paths=tuple(p for p, _ in files_written), rows=rows,
                        size=sum(p.stat().st_size for p, _ in files_written),
                        partitions=tuple(part for _, part in files_written))
    else:
        staged = write_staged(con, select_sql, run.staging)
    run.watcher.check()  # a cancel (or the output cap) that came while writing wins
    check_output_size(staged.size, run.settings.max_output_bytes)
    # An incremental append's statistics: the new files' now, in this connection (they are
    # still in the staging folder), merged with the parent's at publish.
    new_stats = None
    if refresh is not None and run.job.stats_enabled and target.write_mode == "append" \
            and refresh.target_snapshot_id is not None:
        new_stats = compute_column_stats(con, staged.paths, target.columns)
    # A snapshot without a parent (an overwrite, or the first one) is exactly the staged and
    # carried files: its statistics come from this connection too, one query over files it
    # can already read, not a second database (~20 ms of CPU to open and close) reading them
    # again. Used only if the publish finds no parent after all.
    own_stats = None
    if run.job.stats_enabled and (target.write_mode != "append" or target.was_empty):
        own_stats = compute_column_stats(con, [*(p for _, p in carried), *staged.paths], target.columns)
    files = place(staged, storage=run.files.storage, dataset_id=target.dataset_id,
                  job_id=run.job.job_id, attempt=run.job.attempt)
    # The new rows, as local files: a local store took the staged files, a remote one copied them.
    written = [run.files.storage.local_path(key) or path for key, path in zip(files, staged.paths, strict=True)]

    def stats(parent_keys: list[str]) -> dict[str, Any]:
        if own_stats is not None and not parent_keys:
            return own_stats
        merged = _incremental_stats(run, refresh, parent_keys, new_stats)
        if merged:
            return merged
        parent = local_files(parent_keys, storage=run.files.storage, cache=run.files.cache,
                             into=run.staging.inputs / "parent")
        stats_con = trusted_connection(run.limits())
        run.watcher.attach(stats_con)
        try:
            return compute_column_stats(stats_con, [*parent, *(p for _, p in carried), *written],
                                        target.columns)
        finally:
            run.watcher.attach(con)
            stats_con.close()

    publish(run.store, job_id=run.job.job_id, attempt=run.job.attempt, executor=run.executor,
            target=target, files=files, staged=staged, storage=run.files.storage,
            compiled_sql=plan.compiled.select_sql,
            stats=stats if run.job.stats_enabled else None,  # EXTENDED_STATS resolved at submit
            statistics=lambda: {**run.job.statistics(rows=staged.rows, size=staged.size),
                                "files_read": sum(len(i.keys) for i in plan.inputs),
                                **(refresh.statistics() if refresh is not None else {})},
            store_retry_seconds=run.settings.lease_seconds,
            on_publish=_progress_recorder(run, target, refresh) if refresh is not None else None)
    return Outcome.COMPLETED


def _incremental_stats(run: Run, refresh: Refresh | None, parent_keys: list[str],
                       new_stats: dict[str, Any] | None) -> dict[str, Any] | None:
    """An incremental append's column statistics: the parent's merged with the new files'
    (`stats_merge.py`), so the run never reads the view's history. None: compute in full."""
    if refresh is None or new_stats is None or not parent_keys or refresh.target_snapshot_id is None:
        return None
    with run.store.unit_of_work() as session:
        parent = session.get(Snapshot, refresh.target_snapshot_id)
        parent_stats = parent.column_stats if parent is not None else None
    if not parent_stats:
        return None
    return merge_column_stats(parent_stats, new_stats) or None


def _progress_recorder(run: Run, target: Target, refresh: Refresh) -> Callable[[Session, Any], None]:
    """In the publish transaction: the view's snapshot must follow the one the run started
    from, and the inputs' progress moves to the snapshots the run read (compare-and-set)."""
    def record(session: Session, snapshot: Any) -> None:
        if snapshot.parent_snapshot_id != refresh.target_snapshot_id:
            raise ProgressConflict(f"view {target.dataset_id} got another snapshot during the run")
        record_progress(session, target.dataset_id, before=refresh.before,
                        consumed=refresh.consumed, job_id=run.job.job_id)
    return record
