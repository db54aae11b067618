"""A jobs-store outage during a run is nobody's fault: the job goes back to pending, whatever
its retry_limit, up to max_attempts runs (it used to fail as an "internal compiler error"
when the outage hit the catalog lookup)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from shared.config import Settings
from shared.errors import StoreUnavailable
from shared.nql import ResolvedDataset, compile_nql
from shared.states import JobState
from shared.store import Store
from shared.store.jobs import claim
from worker.failures import Kind, classify
from worker.lifecycle import Claimed, Outcome, settle

from .conftest import job_row, submit

pytestmark = pytest.mark.postgres


class DownCatalog:
    def resolve(self, reference: str) -> ResolvedDataset:
        raise StoreUnavailable("The jobs store is unavailable")


def test_a_catalog_outage_is_not_an_nql_error() -> None:
    with pytest.raises(StoreUnavailable):
        compile_nql('EXPLAIN SELECT "x" FROM company_data."1"', DownCatalog())


def test_disconnects_classify_as_outages() -> None:
    dropped = OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
    assert classify(dropped, timeout_seconds=1).kind == Kind.OUTAGE
    assert classify(StoreUnavailable("x"), timeout_seconds=1).kind == Kind.OUTAGE


def _claimed(store: Store, job_id: Any) -> Claimed:
    with store.unit_of_work() as session:
        attempt = claim(session, job_id, executor="t", lease_seconds=30)
    assert attempt is not None
    row = job_row(store, job_id)
    assert row.started_at is not None
    return Claimed(job_id=job_id, attempt=attempt, company_id=1, type=row.type, nql=row.nql,
                   stats_enabled=True, retry_limit=row.retry_limit, infra_retries=row.infra_retries,
                   created_at=row.created_at, started_at=row.started_at)


def test_an_outage_requeues_up_to_max_attempts_then_fails(pg_store: Store, wsettings: Settings) -> None:
    settings = wsettings.model_copy(update={"max_attempts": 2, "retry_backoff_seconds": 0})
    job_id = submit(pg_store, 'EXPLAIN SELECT 1 AS x', type="nql-forecast")  # retry_limit 0
    outage = StoreUnavailable("The jobs store is unavailable")
    assert settle(pg_store, settings, _claimed(pg_store, job_id), outage, None, executor="t") == Outcome.REQUEUED
    job = job_row(pg_store, job_id)
    assert job.state == JobState.PENDING and job.infra_retries == 0
    assert job.failures[0]["value"]["kind"] == "outage" and "queued again" in job.failures[0]["message"]
    assert settle(pg_store, settings, _claimed(pg_store, job_id), outage, None, executor="t") == Outcome.FAILED
    job = job_row(pg_store, job_id)
    assert job.state == JobState.FAILED and job.failures[1]["message"].endswith("on all 2 runs")
