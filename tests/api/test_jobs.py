"""GET /jobs (filters, order, pages), GET /jobs/{id}, request-cancellation and cancel.

Jobs are put into their states through the store's own state machine (no worker needed to
be *in* a state); the worker-driven paths are in test_e2e.py."""

from __future__ import annotations

import time
import uuid

import pytest
from fastapi.testclient import TestClient

from shared.store import Store
from shared.store.jobs import NewJob, claim, complete, create_job, fail, failure_entry
from tests.api.conftest import COMPANY, OTHER_COMPANY, USER

pytestmark = pytest.mark.postgres

PLANE = uuid.UUID("f79cbdae-4848-47ca-95e8-69588364d185")


def add_job(store: Store, *, company_id: int = COMPANY, type_: str = "nql-forecast",
            tags: tuple[str, ...] = (), dataset_id: int | None = None,
            data_plane_id: uuid.UUID | None = None, key: str | None = None,
            state: str = "pending") -> str:
    with store.unit_of_work() as session:
        job, _ = create_job(session, NewJob(
            company_id=company_id, user_id=USER, type=type_, nql="EXPLAIN SELECT 1",
            tags=tags, dataset_id=dataset_id, data_plane_id=data_plane_id, idempotency_key=key))
        job_id = job.id
    if state != "pending":
        with store.unit_of_work() as session:
            attempt = claim(session, job_id, executor="test-executor", lease_seconds=60)
            assert attempt is not None
            if state == "completed":
                complete(session, job_id, attempt=attempt, executor="test-executor",
                         result={"rows": 5, "cost": 0}, statistics={"duration_ms": 3})
            elif state == "failed":
                fail(session, job_id, attempt=attempt, actor="test-executor",
                     failure=failure_entry("boom"))
    time.sleep(0.002)  # distinct created_at for the ordering tests
    return str(job_id)


def ids(page: dict) -> list[str]:
    return [r["job_id"] for r in page["records"]]


def test_get_a_job(client: TestClient, auth, pg_store):
    job_id = add_job(pg_store, state="completed", tags=("a",))
    body = client.get(f"/jobs/{job_id}", headers=auth).json()
    assert body["job_id"] == job_id
    assert body["state"] == "completed" and body["executor"] == "test-executor"
    assert body["result"] == {"rows": 5, "cost": 0}
    assert body["statistics"]["duration_ms"] == 3
    assert body["attempts"] == 1 and body["ended_at"] is not None


def test_unknown_and_malformed_job_ids(client, auth):
    missing = client.get(f"/jobs/{uuid.uuid4()}", headers=auth)
    assert missing.status_code == 404
    assert set(missing.json()) == {"type", "title", "status", "detail"}
    assert client.get("/jobs/not-a-uuid", headers=auth).status_code == 400


def test_list_defaults_newest_first_and_omits_absent_page_links(client, auth, pg_store):
    first, second = add_job(pg_store), add_job(pg_store)
    page = client.get("/jobs", headers=auth).json()
    assert ids(page) == [second, first]
    assert {k: page[k] for k in ("current_page", "total_records", "total_pages")} == {
        "current_page": 1, "total_records": 2, "total_pages": 1}
    assert "prev_page" not in page and "next_page" not in page


@pytest.mark.parametrize("order, expect_reversed", [
    ("created_at_asc", False), ("created_at_desc", True),
    ("updated_at_asc", False), ("updated_at_desc", True)])
def test_order_by(client, auth, pg_store, order, expect_reversed):
    created = [add_job(pg_store) for _ in range(3)]
    page = client.get("/jobs", params={"order_by": order}, headers=auth).json()
    assert ids(page) == (created[::-1] if expect_reversed else created)


def test_pages(client, auth, pg_store):
    created = [add_job(pg_store) for _ in range(5)]
    params = {"order_by": "created_at_asc", "per_page": 2}
    middle = client.get("/jobs", params={**params, "offset": 2}, headers=auth).json()
    assert ids(middle) == created[2:4]
    assert (middle["current_page"], middle["total_pages"], middle["prev_page"],
            middle["next_page"]) == (2, 3, 1, 3)
    last = client.get("/jobs", params={**params, "offset": 4}, headers=auth).json()
    assert "next_page" not in last and last["prev_page"] == 2


def test_filters(client, auth, pg_store):
    done = add_job(pg_store, state="completed", tags=("nightly",))
    failed = add_job(pg_store, state="failed", tags=("adhoc",), key="dom-key-1")
    view = add_job(pg_store, type_="materialize-view", dataset_id=77, data_plane_id=PLANE,
                   tags=("nightly", "team"))

    def listed(**params: object) -> set[str]:
        response = client.get("/jobs", params=params, headers=auth)
        assert response.status_code == 200, response.text
        return set(ids(response.json()))

    assert listed(state=["completed", "failed"]) == {done, failed}
    assert listed(state="pending") == {view}
    assert listed(type="materialize-view") == {view}
    assert listed(type=["materialize-view", "nql-forecast"]) == {done, failed, view}
    assert listed(tag=["nightly"]) == {done, view}
    assert listed(tag=["adhoc", "team"]) == {failed, view}
    assert listed(dataset_id=77) == {view}
    assert listed(data_plane_id=str(PLANE)) == {view}
    assert listed(idempotency_key="dom-key-1") == {failed}
    assert listed(tag="nightly", state="completed") == {done}


@pytest.mark.parametrize("params", [
    {"per_page": 501}, {"per_page": 0}, {"offset": -1}, {"state": "done"},
    {"type": "query"}, {"order_by": "name"}, {"data_plane_id": "x"}, {"dataset_id": "x"},
    {"dataset_id": 2**63}, {"per_page": "ten"},
])
def test_bad_list_parameters_are_400(client, auth, params):
    response = client.get("/jobs", params=params, headers=auth)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == 400 and body["type"] == "validation-error"
    assert next(iter(params)) in body["detail"]


def test_scalar_parameters_may_not_repeat_lists_may(client, auth):
    repeated = client.get("/jobs?per_page=10&per_page=600", headers=auth)
    assert repeated.status_code == 400 and "per_page" in repeated.json()["detail"]
    assert client.get("/jobs?state=pending&state=failed&tag=a&tag=b&type=nql-forecast"
                      "&type=materialize-view", headers=auth).status_code == 200


def test_per_page_500_is_the_maximum_accepted(client, auth):
    assert client.get("/jobs", params={"per_page": 500}, headers=auth).status_code == 200


def test_request_cancellation_of_a_pending_job(client, auth, pg_store):
    job_id = add_job(pg_store)
    response = client.post(f"/jobs/{job_id}/request-cancellation", headers=auth)
    assert response.status_code == 200
    assert response.json()["state"] == "pending_cancellation"
    # Again: a no-op, same state.
    again = client.post(f"/jobs/{job_id}/request-cancellation", headers=auth)
    assert again.status_code == 200 and again.json()["state"] == "pending_cancellation"


@pytest.mark.parametrize("state", ["completed", "failed"])
def test_request_cancellation_and_cancel_are_no_ops_on_terminal_jobs(client, auth, pg_store,
                                                                     state):
    job_id = add_job(pg_store, state=state)
    for action in ("request-cancellation", "cancel"):
        response = client.post(f"/jobs/{job_id}/{action}", headers=auth)
        assert response.status_code == 200
        assert response.json()["state"] == state


def test_cancel_finalizes(client, auth, pg_store):
    pending, requested = add_job(pg_store), add_job(pg_store)
    client.post(f"/jobs/{requested}/request-cancellation", headers=auth)
    for job_id in (pending, requested):
        body = client.post(f"/jobs/{job_id}/cancel", headers=auth).json()
        assert body["state"] == "cancelled" and body["ended_at"] is not None


def test_cancellation_of_unknown_jobs_is_404(client, auth):
    for action in ("request-cancellation", "cancel"):
        assert client.post(f"/jobs/{uuid.uuid4()}/{action}", headers=auth).status_code == 404


def test_listing_shows_only_the_callers_company(client, auth, pg_store):
    mine = add_job(pg_store)
    add_job(pg_store, company_id=OTHER_COMPANY)
    assert ids(client.get("/jobs", headers=auth).json()) == [mine]
