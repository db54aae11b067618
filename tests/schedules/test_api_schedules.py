"""The schedule endpoints through the real app (`create_app`) on PostgreSQL and Redis."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.routes.schedules import schedule_lines
from shared.config import Settings
from shared.store import Store
from shared.store.datasets import create_dataset
from shared.store.tokens import create_token
from tests.schedules.helpers import COMPANY, make_view, refresh_jobs

OTHER_COMPANY = 2


def bearer(store: Store, company_id: int = COMPANY, user_id: int = 7) -> dict[str, str]:
    with store.unit_of_work() as session:
        token = create_token(session, company_id=company_id, user_id=user_id)
    return {"Authorization": f"Bearer {token}"}



@pytest.fixture
def auth(pg_store: Store) -> dict[str, str]:
    return bearer(pg_store)


URL = "/datasets/10/refresh-schedule"


def test_put_get_delete(client: TestClient, pg_store: Store, auth: dict[str, str]) -> None:
    make_view(pg_store, 10, schedule="@daily")
    created = client.put(URL, json={"cron": "0 12 * * 1-5", "cron_zone_id": "America/New_York",
                                    "execution_cluster": {"type": "dedicated"},
                                    "stats_enabled": False, "status": "active"}, headers=auth)
    assert created.status_code == 201, created.text
    body = created.json()
    assert {k: body[k] for k in ("cron", "cron_zone_id", "execution_cluster", "stats_enabled",
                                 "status")} == {
        "cron": "0 12 * * 1-5", "cron_zone_id": "America/New_York",
        "execution_cluster": "dedicated", "stats_enabled": False, "status": "active"}
    assert body["next_run_at"].endswith(":00:00Z")
    assert client.get(URL, headers=auth).json() == body

    updated = client.put(URL, json={"execution_cluster": "shared"}, headers=auth)
    assert updated.status_code == 200
    assert updated.json()["execution_cluster"] == "shared"
    assert updated.json()["next_run_at"] == body["next_run_at"]  # same timing, same slot

    archived = client.delete(URL, headers=auth)
    assert archived.status_code == 200
    assert (archived.json()["status"], archived.json()["next_run_at"]) == ("archived", None)
    assert client.get(URL, headers=auth).json()["status"] == "archived"


def test_post_creates_too(client: TestClient, pg_store: Store, auth: dict[str, str]) -> None:
    make_view(pg_store, 10)
    response = client.post(URL, json={"cron": "@hourly"}, headers=auth)
    assert response.status_code == 201 and response.json()["cron"] == "@hourly"


@pytest.mark.parametrize(("body", "says"), [
    ({"cron": "61 * * * *"}, "out of range"),
    ({"cron": "* * * *"}, "has 4 field(s)"),
    ({"cron": "@fortnightly"}, "is not one of"),
    ({"cron": "@daily", "cron_zone_id": "EST5EDTX"}, "not a known time zone"),
    ({"cron": "@once", "status": "active"}, "never runs on its own"),
    ({"cron": "@daily", "status": "paused"}, "status"),
    ({"cron": "@daily", "surprise": 1}, "surprise"),
    ({"status": "active"}, "cron is required"),
])
def test_bad_bodies_are_400s_that_say_why(client: TestClient, pg_store: Store,
                                          auth: dict[str, str], body: dict[str, object],
                                          says: str) -> None:
    make_view(pg_store, 10)
    response = client.put(URL, json=body, headers=auth)
    assert response.status_code == 400, response.text
    assert says in response.json()["detail"]


def test_a_dataset_that_is_no_view_cannot_be_scheduled(client: TestClient, pg_store: Store,
                                                       auth: dict[str, str]) -> None:
    with pg_store.unit_of_work() as session:
        create_dataset(session, company_id=COMPANY, name="imported", schema=[["a", "BIGINT"]],
                       dataset_id=10)
    response = client.put(URL, json={"cron": "@daily"}, headers=auth)
    assert response.status_code == 400
    assert "not a materialized view" in response.json()["detail"]
    refresh = client.post("/datasets/10/refresh-materialized-view", headers=auth)
    assert refresh.status_code == 400


def test_another_companys_dataset_is_404_and_no_token_401(client: TestClient,
                                                          pg_store: Store) -> None:
    make_view(pg_store, 10)
    other = bearer(pg_store, OTHER_COMPANY)
    assert client.put(URL, json={"cron": "@daily"}, headers=other).status_code == 404
    assert client.get(URL, headers=other).status_code == 404
    assert client.delete(URL, headers=other).status_code == 404
    assert client.post("/datasets/10/refresh-materialized-view", headers=other).status_code == 404
    assert client.put(URL, json={"cron": "@daily"}).status_code == 401
    assert client.get(URL, headers=bearer(pg_store)).status_code == 404  # no schedule yet


def test_refresh_now_returns_the_job(client: TestClient, pg_store: Store,
                                     auth: dict[str, str]) -> None:
    make_view(pg_store, 10, schedule="@hourly")
    response = client.post("/datasets/10/refresh-materialized-view",
                           json={"execution_cluster": {"type": "shared"}, "type": "full"},
                           headers=auth)
    assert response.status_code == 201, response.text
    job = response.json()
    assert (job["type"], job["state"], job["input"]["dataset_id"]) == ("materialize-view", "pending", 10)
    # `full`: the run ignores the view's recorded progress (incremental is the default).
    assert set(job["tags"]) == {"refresh", "dataset_id=10", "refresh_type=full"}
    # While it is pending, asking again gives the same job rather than a second one.
    again = client.post("/datasets/10/refresh-materialized-view", headers=auth)
    assert (again.status_code, again.json()["job_id"]) == (200, job["job_id"])
    assert len(refresh_jobs(pg_store, 10)) == 1


def test_metrics_lines(pg_store: Store, api_settings: Settings) -> None:
    make_view(pg_store, 10)
    with pg_store.unit_of_work() as session:
        text = "\n".join(schedule_lines(session, api_settings))
    assert 'dataplane_refresh_schedules{status="active"} 0' in text
    assert "dataplane_refresh_schedules_overdue 0" in text
    assert "# TYPE dataplane_refresh_schedule_max_overdue_seconds gauge" in text


@pytest.mark.parametrize(("schedule", "says"), [
    ("61 * * * *", "out of range"),
    ("0 0 30 2 *", "never matches a date"),
])
def test_run_rejects_an_invalid_refresh_schedule_before_any_job(
        client: TestClient, pg_store: Store, auth: dict[str, str], schedule: str, says: str) -> None:
    with pg_store.unit_of_work() as session:
        create_dataset(session, company_id=COMPANY, name="source", schema=[["a", "BIGINT"]],
                       dataset_id=1)
    nql = f"CREATE MATERIALIZED VIEW \"v\" REFRESH_SCHEDULE = '{schedule}' AS SELECT \"a\" FROM company_data.\"1\""
    response = client.post("/nql/run", json={"nql": nql}, headers=auth)
    assert response.status_code == 400, response.text
    assert says in response.json()["detail"]
    assert client.get("/jobs", headers=auth).json()["total_records"] == 0
