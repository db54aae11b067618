"""The worker's claim transaction: the claim returns the row a run needs, and the run's
dataset reads (`PinnedCatalog`) answer like `StoreCatalog`, pinned to the current snapshot."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from shared.errors import DatasetNotFound
from shared.store import Store
from shared.store import jobs as ops
from shared.store.catalog import PinnedCatalog, StoreCatalog
from shared.store.datasets import create_dataset, get_dataset, publish_snapshot
from shared.store.models import Job
from shared.store.types import utcnow
from tests.store.helpers import new_job

NQL = 'EXPLAIN SELECT "x" FROM company_data."1"'


def test_claim_row_returns_what_the_run_needs_and_logs_it(store: Store) -> None:
    job_id = new_job(store, nql=NQL, stats_enabled=False, retry_limit=2)
    with store.unit_of_work() as session:
        row = ops.claim_row(session, job_id, executor="w1", lease_seconds=30)
    assert row is not None
    assert (row.attempt, row.company_id, row.type, row.nql) == (1, 1, "nql-forecast", NQL)
    assert (row.stats_enabled, row.retry_limit, row.infra_retries, row.dataset_id) == (False, 2, 0, None)
    with store.unit_of_work() as session:
        job = session.get_one(Job, job_id)
        assert (job.state, job.attempts, job.executor) == ("running", 1, "w1")
        assert job.started_at == row.started_at and job.created_at == row.created_at
        log = ops.transitions_of(session, job_id)
    assert [(t.from_state, t.to_state, t.attempt, t.actor) for t in log][-1] == ("pending", "running", 1, "w1")
    with store.unit_of_work() as session:  # a second claim (a duplicate message) wins nothing
        assert ops.claim_row(session, job_id, executor="w2", lease_seconds=30) is None


def test_a_claim_that_must_be_due_waits_for_the_backoff(store: Store) -> None:
    job_id = new_job(store)
    with store.unit_of_work() as session:
        session.execute(update(Job).where(Job.id == job_id).values(run_after=utcnow() + timedelta(hours=1)))
    with store.unit_of_work() as session:
        assert ops.claim_row(session, job_id, executor="w", lease_seconds=30, due=True) is None
    with store.unit_of_work() as session:
        session.execute(update(Job).where(Job.id == job_id).values(run_after=utcnow() - timedelta(seconds=1)))
    with store.unit_of_work() as session:
        row = ops.claim_row(session, job_id, executor="w", lease_seconds=30, due=True)
    assert row is not None and row.attempt == 1


def _datasets(store: Store) -> int:
    with store.unit_of_work() as session:
        create_dataset(session, company_id=1, name="events", schema=[("x", "BIGINT")], dataset_id=11)
        create_dataset(session, company_id=1, name="empty", schema=[], dataset_id=12)
        create_dataset(session, company_id=2, name="theirs", schema=[("y", "BIGINT")], dataset_id=13)
        create_dataset(session, company_id=1, name="fresh", schema=[("z", "INTEGER")], dataset_id=14)
        dataset = get_dataset(session, 11)
        snapshot = publish_snapshot(session, dataset=dataset, job_id=None, write_mode="overwrite",
                                    added_files=["11/a.parquet"], added_rows=5, added_bytes=10)
        return snapshot.id


def test_pinned_catalog_answers_like_the_store_catalog(store: Store) -> None:
    snapshot_id = _datasets(store)
    references = ["11", "events", "fresh", "empty", "13", "theirs", "nope", "99", "\u00b2"]
    with store.unit_of_work() as session:
        pinned = PinnedCatalog.read(session, 1, references)
        live = StoreCatalog(session, 1)
        for reference in references:
            try:
                expected = live.resolve(reference)
            except DatasetNotFound:
                with pytest.raises(DatasetNotFound):
                    pinned.resolve(reference)
            else:
                assert pinned.resolve(reference) == expected
    events = pinned.by_id(11)
    assert events.snapshot is not None and events.snapshot.id == snapshot_id
    assert events.snapshot.files == ["11/a.parquet"] and events.snapshot.row_count == 5
    assert pinned.pinned("fresh").snapshot is None  # no data yet: an empty relation


def test_pinned_catalog_keeps_the_snapshot_it_read(store: Store) -> None:
    first = _datasets(store)
    with store.unit_of_work() as session:
        pinned = PinnedCatalog.read(session, 1, ["events"])
    with store.unit_of_work() as session:
        publish_snapshot(session, dataset=get_dataset(session, 11), job_id=None, write_mode="append",
                         added_files=["11/b.parquet"], added_rows=1, added_bytes=1)
    snapshot = pinned.by_id(11).snapshot
    assert snapshot is not None and snapshot.id == first and snapshot.files == ["11/a.parquet"]
