"""The /webhooks resource in-process (real PostgreSQL): the secret shown once, tenancy,
filters, deliveries paging, and the URL rules, each refused class a 400 naming its rule."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from shared.config import Settings
from shared.store import Store
from shared.store.jobs import NewJob, cancel, create_job

OK_URL = "https://93.184.215.14/hook"  # a public address literal: no DNS needed


def _sub(client: TestClient, auth: dict[str, str], **body: object) -> dict[str, object]:
    answer = client.post("/webhooks", json={"name": "n", "url": OK_URL, **body}, headers=auth)
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


def test_secret_is_shown_once_and_lists_are_per_company(
        client: TestClient, auth: dict[str, str], other_auth: dict[str, str]) -> None:
    created = _sub(client, auth, states=["completed"], job_types=["nql-forecast"])
    assert created["type"] == "webhook_subscription_jobs"
    assert str(created["secret"]).startswith("whsec_") and len(str(created["secret"])) > 30
    assert created["states"] == ["completed"] and created["job_ids"] == []
    sub_id = created["id"]
    one = client.get(f"/webhooks/{sub_id}", headers=auth)
    assert one.status_code == 200 and "secret" not in one.json()
    listed = client.get("/webhooks", headers=auth).json()["records"]
    assert [s["id"] for s in listed] == [sub_id] and "secret" not in listed[0]
    # Another company sees nothing and gets 404s, as for a missing id.
    assert client.get("/webhooks", headers=other_auth).json()["records"] == []
    for path in (f"/webhooks/{sub_id}", f"/webhooks/{sub_id}/deliveries"):
        assert client.get(path, headers=other_auth).status_code == 404
    assert client.delete(f"/webhooks/{sub_id}", headers=other_auth).status_code == 404
    assert client.get(f"/webhooks/{uuid.uuid4()}", headers=auth).status_code == 404
    assert client.delete(f"/webhooks/{sub_id}", headers=auth).status_code == 204
    assert client.get(f"/webhooks/{sub_id}", headers=auth).status_code == 404


def test_bad_bodies_are_400(client: TestClient, auth: dict[str, str]) -> None:
    for body in ({"name": "n"}, {"name": "n", "url": OK_URL, "states": ["nope"]},
                 {"name": "n", "url": OK_URL, "secret": "mine"},
                 {"name": "n", "url": OK_URL, "type": "other"},
                 {"name": "n", "url": OK_URL, "job_ids": ["not-a-uuid"]}):
        assert client.post("/webhooks", json=body, headers=auth).status_code == 400, body


def test_deliveries_are_made_by_transitions_and_paged(
        client: TestClient, auth: dict[str, str], pg_store: Store) -> None:
    every = _sub(client, auth)
    only_cancelled = _sub(client, auth, states=["cancelled"])
    with pg_store.unit_of_work() as session:
        job, _ = create_job(session, NewJob(company_id=1, user_id=11, type="nql-forecast",
                                            nql="EXPLAIN SELECT 1"))
        cancel(session, job.id, actor="test")
    page = client.get(f"/webhooks/{every['id']}/deliveries?per_page=2", headers=auth).json()
    assert page["total_records"] == 3 and page["total_pages"] == 2
    newest = page["records"][0]
    assert (newest["previous_state"], newest["state"]) == ("pending_cancellation", "cancelled")
    assert newest["status"] == "pending" and newest["attempts"] == 0
    assert newest["next_retry_at"] is not None and newest["last_status_code"] is None
    uuid.UUID(newest["event_id"])
    rest = client.get(f"/webhooks/{every['id']}/deliveries?per_page=2&offset=2",
                      headers=auth).json()["records"]
    assert [(r["previous_state"], r["state"]) for r in rest] == [(None, "pending")]
    cancelled = client.get(f"/webhooks/{only_cancelled['id']}/deliveries",
                           headers=auth).json()["records"]
    assert [r["state"] for r in cancelled] == ["cancelled"]


REFUSED = [
    ("http://93.184.215.14/hook", "scheme"),
    ("ftp://93.184.215.14/hook", "scheme"),
    ("https://user:pw@93.184.215.14/hook", "credentials"),
    ("https://127.0.0.1/hook", "loopback"),
    ("https://localhost:8443/hook", "loopback"),
    ("https://[::1]/hook", "loopback"),
    ("https://[::ffff:127.0.0.1]/hook", "loopback"),
    ("https://10.1.2.3/hook", "private"),
    ("https://172.16.0.9/hook", "private"),
    ("https://192.168.1.1/hook", "private"),
    ("https://100.64.0.1/hook", "private"),
    ("https://[fd12::1]/hook", "private"),
    ("https://169.254.10.10/hook", "link-local"),
    ("https://[fe80::1]/hook", "link-local"),
    ("https://169.254.169.254/latest/meta-data", "metadata"),
    ("https://metadata.google.internal/computeMetadata", "metadata"),
    ("https://0.0.0.0/hook", "reserved"),
    ("https://224.0.0.1/hook", "reserved"),
    ("https://no-such-host.invalid/hook", "host"),
]


@pytest.mark.parametrize(("url", "rule"), REFUSED, ids=[r for _, r in REFUSED])
def test_each_refused_address_class_is_a_400_naming_its_rule(
        client: TestClient, auth: dict[str, str], url: str, rule: str) -> None:
    answer = client.post("/webhooks", json={"name": "n", "url": url}, headers=auth)
    assert answer.status_code == 400, answer.text
    assert f"({rule})" in answer.json()["detail"], answer.json()


@pytest.fixture
def private_client(pg_database: str, redis_url: str, data_dir: Path,
                   pg_store: Store) -> TestClient:
    settings = Settings(database_url=pg_database, broker_url=redis_url, data_dir=data_dir,
                        webhook_allow_private=True)
    return TestClient(create_app(settings, store=pg_store))


def test_allow_private_admits_http_and_loopback_but_never_metadata(
        private_client: TestClient, auth: dict[str, str]) -> None:
    for url in ("http://127.0.0.1:9/hook", "https://10.0.0.1/hook", "http://localhost/x"):
        answer = private_client.post("/webhooks", json={"name": "n", "url": url}, headers=auth)
        assert answer.status_code == 201, (url, answer.text)
    answer = private_client.post("/webhooks", json={"name": "n",
                                 "url": "http://169.254.169.254/"}, headers=auth)
    assert answer.status_code == 400 and "(metadata)" in answer.json()["detail"]


def test_metrics_count_deliveries_by_outcome_and_the_oldest_undelivered(
        client: TestClient, auth: dict[str, str], pg_store: Store) -> None:
    _sub(client, auth)
    with pg_store.unit_of_work() as session:
        create_job(session, NewJob(company_id=1, user_id=11, type="nql-forecast",
                                   nql="EXPLAIN SELECT 1"))
    text = client.get("/metrics").text
    assert 'dataplane_webhook_deliveries{outcome="pending"} 1' in text
    assert 'dataplane_webhook_deliveries{outcome="delivered"} 0' in text
    age = next(line for line in text.splitlines()
               if line.startswith("dataplane_webhook_oldest_undelivered_age_seconds "))
    assert float(age.split()[1]) >= 0
