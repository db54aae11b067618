"""Bad input is always a 4xx with a `{type, title, status, detail}` body: never a 422,
never a 500. Oversized bodies are 413, whether announced by Content-Length or not."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from shared.config import Settings

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("datasets")]

PROBLEM_KEYS = {"type", "title", "status", "detail"}


def test_body_over_the_limit_with_content_length_is_413(client: TestClient, auth,
                                                        api_settings: Settings):
    nql = "EXPLAIN SELECT 1 -- " + "x" * api_settings.api_max_body_bytes
    response = client.post("/nql/run", json={"nql": nql}, headers=auth)
    assert response.status_code == 413
    assert set(response.json()) == PROBLEM_KEYS and response.json()["status"] == 413


def test_chunked_body_over_the_limit_is_413(client, auth, api_settings: Settings):
    chunk = b"x" * 65536
    chunks = api_settings.api_max_body_bytes // len(chunk) + 2

    def body():
        yield b'{"nql": "'
        for _ in range(chunks):
            yield chunk
        yield b'"}'

    response = client.post("/nql/run", content=body(),
                           headers={**auth, "Content-Type": "application/json"})
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert response.status_code == 413


def test_body_just_under_the_limit_is_read(client, auth, api_settings: Settings):
    # JSON whitespace pads the body (NQL itself has a shorter length limit of its own).
    statement = json.dumps({"nql": 'EXPLAIN SELECT "user_id" FROM company_data.events'})
    body = statement[:-1] + " " * (api_settings.api_max_body_bytes - len(statement)) + "}"
    assert len(body) == api_settings.api_max_body_bytes
    response = client.post("/nql/run", content=body,
                           headers={**auth, "Content-Type": "application/json"})
    assert response.status_code == 201, response.text[:300]


@pytest.mark.parametrize("content, content_type", [
    (b'{"nql": ', "application/json"),
    (b"[1, 2]", "application/json"),
    (b"nql=EXPLAIN", "application/x-www-form-urlencoded"),
    (b'{"nql": "EXPLAIN SELECT 1"}', "text/plain"),
    (b"", "application/json"),
    (b'{"nql": null}', "application/json"),
    (b'{"nql": 5}', "application/json"),
    (b'{"nql": "EXPLAIN SELECT \\ud800"}', "application/json"),
])
def test_malformed_bodies_are_400(client, auth, content, content_type):
    for path in ("/nql/run", "/nql/validate"):
        response = client.post(path, content=content,
                               headers={**auth, "Content-Type": content_type})
        assert response.status_code == 400, (path, response.text)
        assert set(response.json()) == PROBLEM_KEYS


def test_unknown_fields_are_rejected(client, auth):
    response = client.post("/nql/validate", json={"nql": "EXPLAIN SELECT 1", "x": 1},
                           headers=auth)
    assert response.status_code == 400
    assert "x" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/datasets/99999999999999999999", "/datasets/-1",
                                  "/datasets/abc", "/datasets/1/snapshots/x/column-stats",
                                  "/jobs/123/results", "/jobs/00000000-0000-0000-0000-00000000000g"])
def test_malformed_path_parameters_are_400(client, auth, path):
    response = client.get(path, headers=auth)
    assert response.status_code == 400, response.text
    assert set(response.json()) == PROBLEM_KEYS


def test_unknown_routes_and_methods_answer_problem_bodies(client, auth):
    missing = client.get("/nope", headers=auth)
    assert missing.status_code == 404 and set(missing.json()) == PROBLEM_KEYS
    wrong_method = client.delete("/jobs", headers=auth)
    assert wrong_method.status_code == 405 and set(wrong_method.json()) == PROBLEM_KEYS
