"""Property-based fuzzing of every operation of the checked-in OpenAPI document
(docs/openapi.json, which test_openapi.py keeps equal to /openapi.json) with schemathesis:
valid and invalid requests, with a valid token (so the handlers run, not just the auth
check), against the app on the real PostgreSQL store. Every response must match the
declared schema and status codes, and no request may cause a 500.

`positive_data_acceptance` is off for /nql/*, the refresh operations and POST /webhooks: a
schema-valid body there can still be refused for what it means (a string that is not NQL; a
dataset that is not a view; a webhook URL the URL rules refuse), and that 400 is right.
Bounded to MAX_EXAMPLES per operation.
(The schema is loaded at import, not from a fixture: schemathesis' lazy fixture loader
does not run on pytest 9.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from shared.store import Store
from shared.store.models import ApiToken
from shared.store.tokens import hash_token
from tests.api.conftest import COMPANY, USER
from tests.api.test_jobs import add_job

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

MAX_EXAMPLES = 30
FUZZ_TOKEN = "dp_fuzz-token-for-schemathesis"
DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"

schema = schemathesis.openapi.from_dict(json.loads(DOCUMENT.read_text()), config=SchemathesisConfig.from_dict({
    "base-url": "http://testserver",
    "generation": {"max-examples": MAX_EXAMPLES, "mode": "all"},
    "auth": {"openapi": {"HTTPBearer": {"bearer": FUZZ_TOKEN}}},
    "operations": [
        # Semantic 400s for schema-valid bodies: most NQL strings do not compile, and only a
        # materialized view's dataset can have a refresh schedule or be refreshed.
        {"include-path-regex": "^/nql/|/refresh-",
         "checks": {"positive_data_acceptance": {"enabled": False}}},
        # A schema-valid webhook URL is still refused (400 naming the rule) when it is not
        # https or resolves to a loopback, private or metadata address.
        {"include-path-regex": "^/webhooks$",
         "checks": {"positive_data_acceptance": {"enabled": False}}},
        # POST is an undocumented alias of PUT there (api/routes/schedules.py).
        {"include-path-regex": "/refresh-schedule$",
         "checks": {"unsupported_method": {"enabled": False}}},
    ],
}))


@pytest.fixture
def fuzz_client(client: TestClient, pg_store: Store, datasets: None) -> TestClient:
    """Company 1 with the fuzz token, its datasets and a job in a few states."""
    with pg_store.unit_of_work() as session:
        session.add(ApiToken(company_id=COMPANY, user_id=USER, token_sha256=hash_token(FUZZ_TOKEN)))
    for state in ("pending", "completed", "failed"):
        add_job(pg_store, state=state)
    _app.target = client.app
    return client


class _CurrentApp:
    """The ASGI app the schema sends to, pointed at each test's app by `fuzz_client`: the
    schema exists at import, the app (on this session's database) only in the fixture."""

    target: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.target(scope, receive, send)


_app = _CurrentApp()
schema.app = _app


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case, fuzz_client: TestClient):
    case.call_and_validate()
