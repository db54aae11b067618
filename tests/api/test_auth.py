"""Bearer tokens: missing, malformed, unknown and revoked tokens are all 401 with a
`WWW-Authenticate: Bearer` challenge; /healthz and /metrics need none."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from shared.store import Store
from shared.store.tokens import revoke_token
from tests.api.conftest import bearer

pytestmark = pytest.mark.postgres

PROTECTED = [
    ("GET", "/jobs"), ("GET", f"/jobs/{uuid.uuid4()}"),
    ("POST", f"/jobs/{uuid.uuid4()}/request-cancellation"), ("POST", f"/jobs/{uuid.uuid4()}/cancel"),
    ("GET", f"/jobs/{uuid.uuid4()}/results"), ("GET", f"/jobs/{uuid.uuid4()}/result"),
    ("POST", "/nql/run"), ("POST", "/nql/validate"),
    ("GET", "/datasets/1"), ("GET", "/datasets/1/snapshots"),
    ("GET", "/datasets/1/snapshots/1/column-stats"),
]


def assert_401(response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    body = response.json()
    assert set(body) == {"type", "title", "status", "detail"} and body["status"] == 401


@pytest.mark.parametrize("method, path", PROTECTED)
def test_every_endpoint_needs_a_token(client: TestClient, method, path):
    assert_401(client.request(method, path, json={"nql": "EXPLAIN SELECT 1"}))


@pytest.mark.parametrize("header", [
    "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", "dp_abc", "Bearer dp_unknown",
    "Bearer dp_unknown extra",
])
def test_malformed_and_unknown_tokens_are_401(client, header):
    assert_401(client.get("/jobs", headers={"Authorization": header}))


def test_a_revoked_token_stops_working_at_once(client, token, pg_store: Store):
    assert client.get("/jobs", headers=bearer(token)).status_code == 200
    with pg_store.unit_of_work() as session:
        assert revoke_token(session, token)
    assert_401(client.get("/jobs", headers=bearer(token)))


def test_the_scheme_is_case_insensitive(client, token):
    assert client.get("/jobs", headers={"Authorization": f"bearer {token}"}).status_code == 200


def test_health_and_metrics_need_no_token(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200
