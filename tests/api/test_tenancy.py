"""Company 2 can neither see, list, cancel nor read the results of company 1's jobs, nor read
company 1's datasets, through any endpoint, and cannot tell them from missing ones."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import EVENTS_ID, make_dataset
from tests.api.test_jobs import add_job

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("datasets")]


def same_message(a: str, b: str, *, a_id: object, b_id: object) -> bool:
    return a.replace(str(a_id), "ID") == b.replace(str(b_id), "ID")


def test_another_companys_job_is_invisible(client: TestClient, auth, other_auth, pg_store):
    job_id = add_job(pg_store, state="completed")
    missing = str(uuid.uuid4())
    for path in ("/jobs/{}", "/jobs/{}/results", "/jobs/{}/result"):
        theirs = client.get(path.format(job_id), headers=other_auth)
        nothing = client.get(path.format(missing), headers=other_auth)
        assert theirs.status_code == nothing.status_code == 404, path
        assert same_message(theirs.json()["detail"], nothing.json()["detail"],
                            a_id=job_id, b_id=missing)
    assert client.get("/jobs", headers=other_auth).json()["total_records"] == 0
    assert client.get("/jobs", params={"idempotency_key": job_id},
                      headers=other_auth).json()["records"] == []
    # The owner still sees it, unchanged.
    assert client.get(f"/jobs/{job_id}/results", headers=auth).status_code == 200


def test_another_company_cannot_cancel(client, auth, other_auth, pg_store):
    job_id = add_job(pg_store)
    for action in ("request-cancellation", "cancel"):
        assert client.post(f"/jobs/{job_id}/{action}", headers=other_auth).status_code == 404
    assert client.get(f"/jobs/{job_id}", headers=auth).json()["state"] == "pending"


@pytest.mark.parametrize("reference, missing", [
    (f'"{EVENTS_ID}"', '"99999"'),
    ("secret_sales", "no_such_dataset"),
])
def test_nql_cannot_read_another_companys_dataset(client, auth, other_auth, pg_store,
                                                  reference, missing):
    make_dataset(pg_store, dataset_id=303, name="secret_sales")
    statement = 'EXPLAIN SELECT "user_id" FROM company_data.{}'
    # Company 1 may read it ...
    assert client.post("/nql/run", json={"nql": statement.format(reference)},
                       headers=auth).status_code == 201
    # ... company 2 gets exactly what a nonexistent dataset gets.
    theirs = client.post("/nql/run", json={"nql": statement.format(reference)},
                         headers=other_auth)
    nothing = client.post("/nql/run", json={"nql": statement.format(missing)},
                          headers=other_auth)
    assert theirs.status_code == nothing.status_code == 400
    strip = lambda r: r.strip('"')  # noqa: E731
    assert same_message(theirs.json()["detail"], nothing.json()["detail"],
                        a_id=strip(reference), b_id=strip(missing))
    assert {k: v for k, v in theirs.json().items() if k != "detail"} == \
        {k: v for k, v in nothing.json().items() if k != "detail"}
    assert client.get("/jobs", headers=other_auth).json()["total_records"] == 0


def test_validate_does_not_type_another_companys_dataset(client, auth, other_auth):
    nql = {"nql": f'EXPLAIN SELECT "user_id" FROM company_data."{EVENTS_ID}"'}
    mine = client.post("/nql/validate", json=nql, headers=auth).json()
    theirs = client.post("/nql/validate", json=nql, headers=other_auth)
    assert mine["output_columns"] == [{"name": "user_id", "type": "BIGINT"}]
    # What /nql/run would answer: a 400 naming the dataset, as for a missing one.
    assert theirs.status_code == 400 and str(EVENTS_ID) in theirs.json()["detail"]


def test_a_view_named_like_another_companys_dataset_does_not_target_it(client, other_auth,
                                                                       pg_store):
    make_dataset(pg_store, dataset_id=303, name="secret_sales")
    nql = ('CREATE MATERIALIZED VIEW "secret_sales" AS '
           'SELECT "user_id" FROM company_data.events')
    job = client.post("/nql/run", json={"nql": nql}, headers=other_auth).json()
    assert job["input"]["dataset_id"] is None
