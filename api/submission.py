"""`POST /nql/run` and `POST /nql/validate` as plain functions over a session.

A statement is compiled against the caller's own datasets before any job exists, so bad
NQL, unknown datasets and unknown columns never become jobs; another company's dataset
gets the very message of a missing one (the catalog cannot tell them apart).
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from sqlalchemy.orm import Session

from api.models.requests import RunRequest
from shared.errors import InvalidRequest
from shared.nql import (
    CompiledQuery,
    MaterializedViewSpec,
    StatementKind,
    StaticCatalog,
    compile_nql,
    validate_nql,
)
from shared.schedule_expr import validate_schedule
from shared.states import ExecutionCluster
from shared.store.catalog import StoreCatalog
from shared.store.datasets import find_dataset_by_name
from shared.store.jobs import NewJob, create_job
from shared.store.models import Job
from shared.store.tokens import Principal

BARE_SELECT = ("A bare SELECT cannot run as a job: wrap it in CREATE MATERIALIZED VIEW \"name\" "
               "AS <select> to store its rows, or in EXPLAIN <select> to forecast them")


def _cluster(body: RunRequest) -> ExecutionCluster:
    cluster = body.cluster()
    if body.compute_pool_id is None:
        return cluster or ExecutionCluster.SHARED
    # A compute pool is a set of dedicated workers: a shared job cannot name one.
    if cluster == ExecutionCluster.SHARED:
        raise InvalidRequest("compute_pool_id requires execution_cluster 'dedicated'")
    return ExecutionCluster.DEDICATED


def _stats_enabled(body: RunRequest, view: MaterializedViewSpec | None) -> bool:
    if body.stats_enabled is not None:
        return body.stats_enabled
    return not (view is not None and view.extended_stats == "none")


# The compiler keeps one DuckDB connection per thread that uses it. Compiling on this small
# pool, not on whichever of the server's many request threads runs the handler, bounds
# those connections to COMPILE_THREADS; and the pool's threads are joined at interpreter
# exit (concurrent.futures does), so their connections close in their own thread. A DuckDB
# object left to interpreter finalization instead can abort the process
# ("FATAL: exception not rethrown"). Compiling is CPU-bound under the GIL: more threads
# would not compile faster.
COMPILE_THREADS = 4
_compiler = ThreadPoolExecutor(max_workers=COMPILE_THREADS, thread_name_prefix="nql-compile")


def compile_statement(session: Session, principal: Principal, nql: str) -> CompiledQuery:
    """Compile against the caller's datasets (the session is only used while we wait)."""
    catalog = StoreCatalog(session, principal.company_id)
    return _compiler.submit(compile_nql, nql, catalog).result()


def warm_up() -> None:
    """The compiler's first use builds its DuckDB function allow-list (~1 s): do it before
    serving, so it does not fall on the first submissions (on all of them at once)."""
    _compiler.submit(compile_nql, "EXPLAIN SELECT 1 AS warm_up", StaticCatalog(())).result()


def submit(session: Session, principal: Principal, body: RunRequest,
           job_id: uuid.UUID | None = None) -> tuple[Job, bool]:
    """Compile, then create the job (or find the one with this idempotency key).
    Returns (job, created). `job_id`: the new job's id when the caller chose it (TD's
    interactive queries name their result dataset after it)."""
    cluster = _cluster(body)
    compiled = compile_statement(session, principal, body.nql)
    if compiled.kind is StatementKind.SELECT:
        raise InvalidRequest(BARE_SELECT)
    view = compiled.view
    check_schedule(view)
    dataset_id = None
    if view is not None:
        # The view's target: known when a dataset of that name exists; the worker creates it
        # otherwise and writes its id back.
        target = find_dataset_by_name(session, company_id=principal.company_id, name=view.name)
        dataset_id = target.id if target is not None else None
    new = NewJob(
        company_id=principal.company_id, user_id=principal.user_id, type=compiled.kind.value,
        nql=body.nql, idempotency_key=body.idempotency_key, data_plane_id=body.data_plane_id,
        dataset_id=dataset_id, stats_enabled=_stats_enabled(body, view),
        tags=(*(view.tags if view else ()), *body.tags),
        compute_pool_id=body.compute_pool_id, execution_cluster=cluster.value,
        priority=body.priority, retry_limit=body.retry_limit,
        job_id=job_id or uuid.uuid4(),
    )
    return create_job(session, new)


def check_schedule(view: MaterializedViewSpec | None) -> None:
    """A REFRESH_SCHEDULE the scheduler could not run (`61 * * * *`, `0 0 30 2 *`) is a 400
    now, before any job, rather than a view that silently never refreshes."""
    if view is not None and view.refresh_schedule is not None:
        validate_schedule(view.refresh_schedule)


def view_options(view: MaterializedViewSpec) -> dict[str, Any]:
    options = asdict(view)
    options["tags"] = list(view.tags)
    options["partitioned_by"] = [{"column": c, "transform": t} for c, t in view.partitioned_by]
    if view.budget is not None:
        options["budget"] = {"amount_usd": float(view.budget.amount_usd),
                             "period": view.budget.period}
    return options


def validate(session: Session, principal: Principal, nql: str) -> dict[str, Any]:
    """The statement's kind, output columns and view options; raises its first NQLError.

    It answers what `/nql/run` would: column types come from compiling against the
    caller's datasets, and an unknown dataset (or another company's) is the same 400
    naming it. A bare SELECT validates as kind `select` (TD's surface runs it)."""
    verdict = validate_nql(nql)
    if verdict.problems:
        raise verdict.problems[0]
    assert verdict.kind is not None
    check_schedule(verdict.view)
    compiled = compile_statement(session, principal, nql)
    columns = [{"name": c.name, "type": c.duckdb_type} for c in compiled.output_columns]
    return {
        "kind": verdict.kind.value,
        "valid": True,
        "output_columns": columns,
        "view": view_options(verdict.view) if verdict.view is not None else None,
    }
