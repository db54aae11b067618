"""The OpenAPI document: served at /openapi.json, checked in as docs/openapi.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.openapi import document
from shared.config import Settings

CHECKED_IN = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
REGENERATE = ".venv/bin/python -m api.openapi > docs/openapi.json"


def test_checked_in_document_is_current():
    served = TestClient(create_app(Settings())).get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == json.loads(CHECKED_IN.read_text()), (
        f"docs/openapi.json differs from the app's document; regenerate it: {REGENERATE}")
    assert document() == CHECKED_IN.read_text(), f"formatting differs; run: {REGENERATE}"


def test_every_operation_declares_its_errors_and_no_422():
    paths = json.loads(CHECKED_IN.read_text())["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            responses = set(operation["responses"])
            assert "422" not in responses, (method, path)
            assert "default" in responses, (method, path)
            if operation.get("security"):
                assert {"400", "401"} <= responses, (method, path)
            if path.startswith("/nql/"):
                assert "413" in responses, (method, path)


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
def test_operations_endpoints_are_public(path):
    operation = json.loads(CHECKED_IN.read_text())["paths"][path]["get"]
    assert not operation.get("security")
