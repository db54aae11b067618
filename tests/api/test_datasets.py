"""GET /datasets/{id}, its snapshots and a snapshot's column statistics.

Snapshots are published through the store (as the worker does); the files they list need
not exist, these endpoints only read the store."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from shared.store import Store
from shared.store.datasets import get_dataset, publish_snapshot
from tests.api.conftest import COMPANY, EVENTS_ID, OTHER_EVENTS_ID

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("datasets")]

# As the worker stores them (worker/stats.py).
STATS = {
    "user_id": {"position": 0, "type": "BIGINT", "count": 3, "nulls": 0, "completeness": 1.0,
                "approx_count_distinct": 3, "min": 1, "max": 3, "mean": 2.0,
                "standard_deviation": 1.0},
    "country": {"position": 1, "type": "VARCHAR", "count": 2, "nulls": 1,
                "completeness": 2 / 3, "approx_count_distinct": 2, "min": "DE", "max": "US",
                "mean": None, "standard_deviation": None},
}


def publish(store: Store, *, write_mode: str, files: list[str], rows: int,
            stats: dict | None = None) -> int:
    with store.unit_of_work() as session:
        dataset = get_dataset(session, EVENTS_ID)
        snapshot = publish_snapshot(session, dataset=dataset, job_id=None, write_mode=write_mode,
                                    added_files=files, added_rows=rows, added_bytes=rows * 10,
                                    column_stats=stats)
        return snapshot.id


def test_get_a_dataset(client: TestClient, auth, pg_store):
    before = client.get(f"/datasets/{EVENTS_ID}", headers=auth)
    assert before.status_code == 200
    body = before.json()
    assert (body["id"], body["company_id"], body["name"]) == (EVENTS_ID, COMPANY, "events")
    assert body["schema"][0] == {"name": "user_id", "type": "BIGINT"}
    assert (body["current_snapshot_id"], body["row_count"]) == (None, 0)
    assert body["materialized_view_config"] is None and body["refresh_schedule"] is None

    snapshot_id = publish(pg_store, write_mode="append", files=["101/a.parquet"], rows=3)
    after = client.get(f"/datasets/{EVENTS_ID}", headers=auth).json()
    assert (after["current_snapshot_id"], after["row_count"], after["bytes"]) == (
        snapshot_id, 3, 30)


def test_snapshots_newest_first(client, auth, pg_store):
    first = publish(pg_store, write_mode="append", files=["101/a.parquet"], rows=3)
    second = publish(pg_store, write_mode="append", files=["101/b.parquet"], rows=2, stats=STATS)
    body = client.get(f"/datasets/{EVENTS_ID}/snapshots", headers=auth).json()
    assert [s["snapshot_id"] for s in body["snapshots"]] == [second, first]
    newest = body["snapshots"][0]
    assert newest["parent_snapshot_id"] == first
    assert (newest["row_count"], newest["added_rows"]) == (5, 2)
    assert newest["files"] == {"total": 2, "added": 1}
    assert newest["stats_available"] is True and body["snapshots"][1]["stats_available"] is False


def test_column_stats(client, auth, pg_store):
    with_stats = publish(pg_store, write_mode="overwrite", files=["101/a.parquet"], rows=3,
                         stats=STATS)
    body = client.get(f"/datasets/{EVENTS_ID}/snapshots/{with_stats}/column-stats",
                      headers=auth).json()
    assert (body["dataset_id"], body["snapshot_id"], body["row_count"]) == (
        EVENTS_ID, with_stats, 3)
    assert [c["name"] for c in body["columns"]] == ["user_id", "country"]
    assert body["columns"][1]["completeness"] == pytest.approx(2 / 3)

    without = publish(pg_store, write_mode="overwrite", files=["101/b.parquet"], rows=1)
    empty = client.get(f"/datasets/{EVENTS_ID}/snapshots/{without}/column-stats", headers=auth)
    assert empty.status_code == 200 and empty.json()["columns"] == []


def test_missing_datasets_and_snapshots_are_404(client, auth, pg_store):
    snapshot_id = publish(pg_store, write_mode="append", files=["101/a.parquet"], rows=3)
    for path in ("/datasets/9999", "/datasets/9999/snapshots",
                 f"/datasets/9999/snapshots/{snapshot_id}/column-stats",
                 f"/datasets/{EVENTS_ID}/snapshots/12345/column-stats"):
        response = client.get(path, headers=auth)
        assert response.status_code == 404, path
        assert set(response.json()) == {"type", "title", "status", "detail"}


def test_another_companys_dataset_is_404_like_a_missing_one(client, auth):
    theirs = client.get(f"/datasets/{OTHER_EVENTS_ID}", headers=auth)
    missing = client.get("/datasets/9999", headers=auth)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["detail"].replace(str(OTHER_EVENTS_ID), "N") == \
        missing.json()["detail"].replace("9999", "N")
