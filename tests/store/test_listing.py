"""Listing: each filter, combined filters, each order, pagination arithmetic."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from shared.errors import InvalidRequest
from shared.states import JobState
from shared.store import Store
from shared.store.listing import JobFilter, JobOrder, list_jobs, page_numbers
from shared.store.models import Job
from tests.store.helpers import force_state, new_job

PLANE = uuid.uuid4()


@pytest.fixture
def jobs(store: Store) -> list[uuid.UUID]:
    """12 jobs of company 1 with known created/updated times, plus noise of company 2."""
    ids = []
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(12):
        job_id = new_job(
            store, type="materialize-view" if i % 2 else "nql-forecast",
            dataset_id=100 + i % 3, data_plane_id=PLANE if i < 4 else None,
            tags=("even",) if i % 2 == 0 else ("odd", f"n={i}"),
        )
        with store.unit_of_work() as session:
            # created ascending with i; updated descending with i
            session.execute(update(Job).where(Job.id == job_id).values(
                created_at=base + timedelta(minutes=i), updated_at=base + timedelta(hours=1, minutes=-i)))
        ids.append(job_id)
    force_state(store, ids[0], JobState.COMPLETED)
    force_state(store, ids[1], JobState.FAILED)
    force_state(store, ids[2], JobState.RUNNING)
    for _ in range(3):
        new_job(store, company_id=2, tags=("even",), data_plane_id=PLANE)
    return ids


def _ids(store: Store, filters: JobFilter, **kwargs: object) -> list[uuid.UUID]:
    with store.unit_of_work() as session:
        return [job.id for job in list_jobs(session, filters, **kwargs).records]  # type: ignore[arg-type]


def test_default_order_is_created_desc_and_company_scoped(store: Store, jobs: list[uuid.UUID]) -> None:
    assert _ids(store, JobFilter(company_id=1)) == list(reversed(jobs))


@pytest.mark.parametrize("order", list(JobOrder))
def test_each_order(store: Store, jobs: list[uuid.UUID], order: JobOrder) -> None:
    got = _ids(store, JobFilter(company_id=1), order_by=order)
    expected = {
        JobOrder.CREATED_AT_ASC: jobs, JobOrder.CREATED_AT_DESC: list(reversed(jobs)),
        JobOrder.UPDATED_AT_ASC: list(reversed(jobs)), JobOrder.UPDATED_AT_DESC: jobs,
    }[order]
    assert got == expected


def test_each_filter(store: Store, jobs: list[uuid.UUID]) -> None:
    order = {"order_by": JobOrder.CREATED_AT_ASC}
    assert _ids(store, JobFilter(company_id=1, states=["completed"]), **order) == [jobs[0]]
    assert _ids(store, JobFilter(company_id=1, states=["completed", "failed"]), **order) == jobs[:2]
    assert _ids(store, JobFilter(company_id=1, types=["materialize-view"]), **order) == jobs[1::2]
    assert _ids(store, JobFilter(company_id=1, dataset_id=101), **order) == jobs[1::3]
    assert _ids(store, JobFilter(company_id=1, data_plane_id=PLANE), **order) == jobs[:4]
    assert _ids(store, JobFilter(company_id=1, tags=["even"]), **order) == jobs[::2]
    # tags match any of them
    assert _ids(store, JobFilter(company_id=1, tags=["n=3", "n=5"]), **order) == [jobs[3], jobs[5]]
    with store.unit_of_work() as session:
        key = session.get_one(Job, jobs[7]).idempotency_key
    assert _ids(store, JobFilter(company_id=1, idempotency_key=key)) == [jobs[7]]
    assert _ids(store, JobFilter(company_id=3)) == []


def test_combined_filters(store: Store, jobs: list[uuid.UUID]) -> None:
    got = _ids(store, JobFilter(company_id=1, types=["materialize-view"], data_plane_id=PLANE,
                                tags=["odd"]), order_by=JobOrder.CREATED_AT_ASC)
    assert got == [jobs[1], jobs[3]]
    got = _ids(store, JobFilter(company_id=1, states=["pending"], types=["nql-forecast"]),
               order_by=JobOrder.CREATED_AT_ASC)
    assert got == [jobs[i] for i in (4, 6, 8, 10)]


def test_pagination(store: Store, jobs: list[uuid.UUID]) -> None:
    filters = JobFilter(company_id=1)
    with store.unit_of_work() as session:
        first = list_jobs(session, filters, offset=0, per_page=5)
        last = list_jobs(session, filters, offset=10, per_page=5)
        past = list_jobs(session, filters, offset=50, per_page=5)
    assert (first.current_page, first.total_records, first.total_pages) == (1, 12, 3)
    assert (first.prev_page, first.next_page) == (None, 2)
    assert [j.id for j in last.records] == list(reversed(jobs))[10:]
    assert (last.current_page, last.prev_page, last.next_page) == (3, 2, None)
    assert past.records == [] and past.prev_page == 3 and past.next_page is None


def test_page_arithmetic() -> None:
    assert page_numbers(offset=0, per_page=500, total_records=0) == (1, 0, None, None)
    assert page_numbers(offset=0, per_page=500, total_records=1) == (1, 1, None, None)
    assert page_numbers(offset=500, per_page=500, total_records=1001) == (2, 3, 1, 3)
    assert page_numbers(offset=1000, per_page=500, total_records=1001) == (3, 3, 2, None)
    assert page_numbers(offset=250, per_page=100, total_records=1000) == (3, 10, 2, 4)


@pytest.mark.parametrize(("per_page", "offset"), [(501, 0), (0, 0), (-1, 0), (10, -1)])
def test_bad_paging_rejected(store: Store, per_page: int, offset: int) -> None:
    with store.unit_of_work() as session, pytest.raises(InvalidRequest):
        list_jobs(session, JobFilter(company_id=1), per_page=per_page, offset=offset)
