"""POST /nql/run and POST /nql/validate against the real PostgreSQL store."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
from fastapi.testclient import TestClient

from shared.config import Settings
from shared.nudge import redis_channel
from shared.store import Store
from tests.api.conftest import COMPANY, USER, make_dataset

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("datasets")]

FORECAST = 'EXPLAIN SELECT "user_id", "amount" FROM company_data."101" WHERE "amount" > 10'
VIEW = ("CREATE MATERIALIZED VIEW \"big_spenders\" TAGS = ('_nio_materialized_view', 'team_a') "
        "AS SELECT \"user_id\", \"amount\" FROM company_data.events WHERE \"amount\" > 10")


def run(client: TestClient, auth: dict[str, str], nql: str, **extra: object):
    return client.post("/nql/run", json={"nql": nql, **extra}, headers=auth)


def test_forecast_statement_makes_a_pending_nql_forecast_job(client, auth):
    response = run(client, auth, FORECAST)
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["type"] == "nql-forecast"
    assert job["state"] == "pending"
    assert job["request_source"] == {"type": "api_user", "company_id": COMPANY, "user_id": USER}
    assert job["input"] == {"nql": FORECAST, "dataset_id": None, "stats_enabled": True,
                            "compiled_sql": None}
    assert job["execution_cluster"] == "shared" and job["priority"] == 0
    assert job["result"] is None and job["failures"] == []
    # The job is stored: GET returns the same body.
    fetched = client.get(f"/jobs/{job['job_id']}", headers=auth).json()
    assert fetched.pop("wait_reason")  # GET adds why a pending job waits (fair share)
    assert fetched == job


def test_view_statement_makes_a_materialize_view_job_with_view_and_request_tags(client, auth):
    response = run(client, auth, VIEW, tags=["from_request", "team_a"], priority=2,
                   retry_limit=3, stats_enabled=False)
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["type"] == "materialize-view"
    assert job["input"]["dataset_id"] is None  # no dataset named big_spenders yet
    assert job["input"]["stats_enabled"] is False
    assert job["tags"] == ["_nio_materialized_view", "team_a", "from_request"]
    assert (job["priority"], job["retry_limit"]) == (2, 3)


def test_view_of_an_existing_dataset_names_it_in_input(client, auth, pg_store: Store):
    make_dataset(pg_store, dataset_id=555, name="big_spenders",
                 schema=(("user_id", "BIGINT"), ("amount", "DOUBLE")))
    job = run(client, auth, VIEW).json()
    assert job["input"]["dataset_id"] == 555
    listed = client.get("/jobs", params={"dataset_id": 555}, headers=auth).json()
    assert [r["job_id"] for r in listed["records"]] == [job["job_id"]]


def test_extended_stats_none_turns_stats_off_unless_the_request_says(client, auth):
    nql = ("CREATE MATERIALIZED VIEW \"v\" EXTENDED_STATS = 'none' "
           "AS SELECT \"user_id\" FROM company_data.events")
    assert run(client, auth, nql).json()["input"]["stats_enabled"] is False
    assert run(client, auth, nql, stats_enabled=True).json()["input"]["stats_enabled"] is True


def test_same_idempotency_key_returns_the_existing_job_with_200(client, auth):
    first = run(client, auth, FORECAST, idempotency_key="my-key-1")
    again = run(client, auth, FORECAST, idempotency_key="my-key-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert first.json()["idempotency_key"] == "my-key-1"
    assert client.get("/jobs", headers=auth).json()["total_records"] == 1


def test_idempotency_keys_are_per_company(client, auth, other_auth):
    nql = 'EXPLAIN SELECT "user_id" FROM company_data.events'
    mine = run(client, auth, nql, idempotency_key="shared-key").json()
    theirs = run(client, other_auth, nql, idempotency_key="shared-key")
    assert theirs.status_code == 201
    assert theirs.json()["job_id"] != mine["job_id"]


@pytest.mark.parametrize("cluster, pool, expected", [
    (None, None, ("shared", None)),
    ("dedicated", None, ("dedicated", None)),
    ({"type": "dedicated"}, None, ("dedicated", None)),
    ({"type": "shared"}, None, ("shared", None)),
    (None, "3f1c4b8e-3f9a-4c1e-9a53-5d3c2b1a0f00", ("dedicated", "3f1c4b8e-3f9a-4c1e-9a53-5d3c2b1a0f00")),
])
def test_execution_cluster_string_or_object_form(client, auth, cluster, pool, expected):
    body: dict[str, object] = {}
    if cluster is not None:
        body["execution_cluster"] = cluster
    if pool is not None:
        body["compute_pool_id"] = pool
    job = run(client, auth, FORECAST, **body).json()
    assert (job["execution_cluster"], job["compute_pool_id"]) == expected


def test_a_shared_job_cannot_name_a_compute_pool(client, auth):
    response = run(client, auth, FORECAST, execution_cluster="shared",
                   compute_pool_id=str(uuid.uuid4()))
    assert response.status_code == 400
    assert "compute_pool_id" in response.json()["detail"]


def test_bare_select_is_refused_with_the_way_out(client, auth):
    response = run(client, auth, 'SELECT "user_id" FROM company_data.events')
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "CREATE MATERIALIZED VIEW" in detail and "EXPLAIN" in detail


def test_syntax_error_is_400_with_line_and_column(client, auth):
    response = run(client, auth, 'EXPLAIN SELECT "user_id"\nFROM company_data.events WHERE (')
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == 400 and body["title"] == "Invalid NQL"
    assert body["line"] == 2 and isinstance(body["column"], int)
    assert client.get("/jobs", headers=auth).json()["total_records"] == 0


@pytest.mark.parametrize("nql, fragment", [
    ('EXPLAIN SELECT "user_id" FROM company_data."999"', "999"),
    ('EXPLAIN SELECT "nope" FROM company_data.events', "nope"),
    ('EXPLAIN SELECT * FROM company_data.events', "*"),
    ("EXPLAIN SELECT \"user_id\" FROM read_csv('/etc/passwd')", ""),
])
def test_statements_that_do_not_compile_make_no_job(client, auth, nql, fragment):
    response = run(client, auth, nql)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["detail"]
    assert {"line", "column"} <= response.json().keys()
    assert client.get("/jobs", headers=auth).json()["total_records"] == 0


@pytest.mark.parametrize("extra", [
    {"request_source": {"type": "api_user", "company_id": 2, "user_id": 1}},
    {"company_id": 2},
    {"priority": 3}, {"priority": "1"}, {"retry_limit": -1}, {"retry_limit": 11},
    {"execution_cluster": "huge"}, {"execution_cluster": {"type": "huge"}},
    {"stats_enabled": "yes"}, {"data_plane_id": "not-a-uuid"}, {"tags": ["x" * 256]},
    {"idempotency_key": ""}, {"idempotency_key": "a\x00b"},
])
def test_invalid_bodies_are_400_and_make_no_job(client, auth, extra):
    response = run(client, auth, FORECAST, **extra)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"type", "title", "status", "detail"}
    assert client.get("/jobs", headers=auth).json()["total_records"] == 0


def test_submission_nudges_the_dispatcher(client, auth, api_settings: Settings):
    subscriber = redis.Redis.from_url(api_settings.celery_broker_url).pubsub(
        ignore_subscribe_messages=True)
    subscriber.subscribe(redis_channel(api_settings))
    try:
        subscriber.get_message(timeout=1)  # the subscribe confirmation
        assert run(client, auth, FORECAST).status_code == 201
        deadline = time.monotonic() + 5
        message = None
        while message is None and time.monotonic() < deadline:
            message = subscriber.get_message(timeout=0.5)
        assert message is not None, "no nudge published after a submission"
    finally:
        subscriber.close()


def test_validate_types_the_output_when_datasets_resolve(client, auth):
    response = client.post("/nql/validate", json={"nql": VIEW}, headers=auth)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["kind"] == "materialize-view" and body["valid"] is True
    assert body["output_columns"] == [{"name": "user_id", "type": "BIGINT"},
                                      {"name": "amount", "type": "DOUBLE"}]
    assert body["view"]["name"] == "big_spenders"
    assert body["view"]["tags"] == ["_nio_materialized_view", "team_a"]
    assert body["view"]["write_mode"] == "append"


def test_validate_types_a_bare_select(client, auth):
    body = client.post("/nql/validate", headers=auth, json={
        "nql": 'SELECT "user_id", "amount" AS a FROM company_data.events'}).json()
    assert body == {"kind": "select", "valid": True, "view": None,
                    "output_columns": [{"name": "user_id", "type": "BIGINT"},
                                       {"name": "a", "type": "DOUBLE"}]}
    # ... while /nql/run still refuses it.
    assert client.post("/nql/run", headers=auth, json={
        "nql": 'SELECT "user_id" FROM company_data.events'}).status_code == 400


@pytest.mark.parametrize("table", ["company_data.x", 'company_data."202"'])
def test_validate_names_an_unknown_or_foreign_dataset(client, auth, table):
    response = client.post("/nql/validate", headers=auth,
                           json={"nql": f'SELECT "a", "b" AS c FROM {table}'})
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert table.split(".")[1].strip('"') in detail and "does not exist" in detail


def test_validate_reports_nql_errors_with_position(client, auth):
    response = client.post("/nql/validate", json={"nql": "EXPLAIN SELECT FROM WHERE"},
                           headers=auth)
    assert response.status_code == 400
    assert response.json()["line"] == 1


def test_validate_reports_unknown_columns_of_known_datasets(client, auth):
    response = client.post("/nql/validate", headers=auth,
                           json={"nql": 'EXPLAIN SELECT "nope" FROM company_data."101"'})
    assert response.status_code == 400
    assert "nope" in response.json()["detail"]



@pytest.mark.parametrize("schedule, ok", [("@daily", True), ("*/15 * * * *", True),
                                          ("61 * * * *", False), ("0 0 30 2 *", False)])
def test_refresh_schedule_is_checked_at_submit_and_validate(client, auth, schedule, ok):
    nql = (f"CREATE MATERIALIZED VIEW \"v\" REFRESH_SCHEDULE = '{schedule}' "
           "AS SELECT \"user_id\" FROM company_data.events")
    for path in ("/nql/validate", "/nql/run"):
        response = client.post(path, json={"nql": nql}, headers=auth)
        assert (response.status_code < 300) is ok, (path, response.text)
        if not ok:
            assert "REFRESH_SCHEDULE" in response.json()["detail"]


def test_merge_without_append_write_mode_is_400_naming_the_rule(client, auth):
    nql = ("CREATE MATERIALIZED VIEW \"m\" WRITE_MODE='overwrite' AS SELECT \"user_id\" "
           "FROM DELTA(TABLE company_data.events) MERGE ON target.user_id = source.user_id "
           "WHEN NOT MATCHED THEN INSERT (user_id) VALUES (source.user_id)")
    response = run(client, auth, nql)
    assert response.status_code == 400
    assert "MERGE requires WRITE_MODE = 'append'" in response.json()["detail"]
    assert client.get("/jobs", headers=auth).json()["total_records"] == 0
