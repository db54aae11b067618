"""Results reading (`shared.results`): pages at any offset, types and value formats, the
three download formats, and column statistics."""

from __future__ import annotations

import csv
import io
import json
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pytest

from shared.config import Settings
from shared.errors import JobNotCompleted
from shared.results import column_stats, csv_text, json_value, read_results, stream_result
from shared.states import JobState
from shared.storage import Storage, output_key
from shared.store import Store
from shared.store.datasets import create_dataset, publish_snapshot, snapshot_of_job
from shared.store.jobs import claim, complete, get_job
from shared.store.models import Job
from worker.importer import import_dataset
from worker.lifecycle import Outcome

from .conftest import job_row, run, submit

pytestmark = pytest.mark.postgres

TYPED_SQL = """
SELECT TIMESTAMP '2013-02-10 20:00:00' + to_seconds(i * 61) AS ts,
       DATE '2020-01-01' + i::INTEGER AS d,
       (i / 4)::DECIMAL(10, 2) AS price,
       {'a': i::INTEGER, 'b': 'x' || i} AS s,
       [i, i + 1] AS l,
       MAP {'k': i::INTEGER} AS m,
       i % 2 = 0 AS even,
       (i / 3)::FLOAT AS f,
       CASE WHEN i = 3 THEN 'NaN'::DOUBLE ELSE i * 1.5 END AS dbl,
       i::BIGINT AS big,
       i::INTEGER AS small,
       CASE WHEN i = 5 THEN NULL ELSE 'v' || i END AS v,
       TIMESTAMPTZ '2013-02-10 20:00:00.123+02' AS tz
FROM range(10) AS r(i)
"""
TYPED_VIEW = ('CREATE MATERIALIZED VIEW "typed_copy" AS SELECT "ts", "d", "price", "s", "l", "m", '
              '"even", "f", "dbl", "big", "small", "v", "tz" FROM company_data.typed')


@pytest.fixture
def typed_job(pg_store: Store, wsettings: Settings, tmp_path: Path) -> Job:
    source = tmp_path / "typed.parquet"
    duckdb.sql(f"COPY ({TYPED_SQL}) TO '{source}' (FORMAT parquet)")
    import_dataset(wsettings, pg_store, company_id=1, dataset_id=900, name="typed", source=source)
    outcome, job = run(pg_store, wsettings, TYPED_VIEW)
    assert outcome == Outcome.COMPLETED, job.failures
    return job


def _read(store: Store, settings: Settings, job_id: uuid.UUID, *, limit: int, offset: int) -> dict[str, Any]:
    with store.unit_of_work() as session:
        return read_results(session, Storage.from_settings(settings), get_job(session, job_id), limit=limit,
                            offset=offset)


def _download(store: Store, settings: Settings, job_id: uuid.UUID, fmt: Any) -> tuple[str, str, bytes]:
    with store.unit_of_work() as session:
        media, name, chunks = stream_result(session, Storage.from_settings(settings), get_job(session, job_id), fmt)
    return media, name, b"".join(chunks)  # streamed after the unit of work ended


def test_types_and_value_formats(pg_store: Store, wsettings: Settings, typed_job: Job) -> None:
    body = _read(pg_store, wsettings, typed_job.id, limit=100, offset=0)
    assert body["rowCount"] == 10
    assert [(c["name"], c["type"]["name"]) for c in body["schema"]] == [
        ("ts", "TIMESTAMP"), ("d", "DATE"), ("price", "DECIMAL"), ("s", "STRUCT"), ("l", "LIST"),
        ("m", "MAP"), ("even", "BOOLEAN"), ("f", "FLOAT"), ("dbl", "DOUBLE"), ("big", "BIGINT"),
        ("small", "INTEGER"), ("v", "VARCHAR"), ("tz", "TIMESTAMP")]
    row = body["rows"][1]
    assert row == {"ts": "2013-02-10 20:01:01.000", "d": "2020-01-02", "price": 0.25,
                   "s": {"a": 1, "b": "x1"}, "l": [1, 2], "m": {"k": 1}, "even": False,
                   "f": pytest.approx(1 / 3), "dbl": 1.5, "big": 1, "small": 1, "v": "v1",
                   "tz": "2013-02-10 18:00:00.123"}
    assert body["rows"][4]["price"] == 1 and isinstance(body["rows"][4]["price"], int)
    assert body["rows"][3]["dbl"] == "NaN" and body["rows"][5]["v"] is None
    json.dumps(body, allow_nan=False)  # what the API's JSONResponse demands


def _multi_file_job(store: Store, settings: Settings, sizes: list[int]) -> tuple[uuid.UUID, list[tuple[Any, ...]]]:
    """A completed job whose snapshot added several files with small row groups."""
    job_id = submit(store, 'CREATE MATERIALIZED VIEW "paged" AS SELECT 1 AS n')
    storage = Storage.from_settings(settings)
    files, first = [], 0
    for index, size in enumerate(sizes):
        name = output_key(901, job_id, 1, index)
        local = settings.staging_dir / f"paged-{index}.parquet"
        duckdb.sql(f"COPY (SELECT {first} + range AS n, 'row ' || ({first} + range) AS label "
                   f"FROM range({size})) TO '{local}' (FORMAT parquet, ROW_GROUP_SIZE 100)")
        storage.put_file(name, local)
        files.append(name)
        first += size
    with store.unit_of_work() as session:
        dataset = create_dataset(session, company_id=1, name="paged", dataset_id=901,
                                 schema=[["n", "BIGINT"], ["label", "VARCHAR"]])
        assert claim(session, job_id, executor="t", lease_seconds=30) == 1
        snapshot = publish_snapshot(session, dataset=dataset, job_id=job_id, write_mode="append",
                                    added_files=files, added_rows=first, added_bytes=1)
        assert complete(session, job_id, attempt=1, executor="t", statistics={},
                        result={"dataset_id": 901, "snapshot_id": snapshot.id})
    return job_id, [(n, f"row {n}") for n in range(first)]


SIZES = [1000, 0, 2500, 700]


@pytest.mark.parametrize(("offset", "limit"), [
    (0, 500), (750, 500), (1990, 20), (4000, 500), (4199, 5), (4200, 10), (10**12, 500), (0, 0)])
def test_pages_at_any_offset(pg_store: Store, wsettings: Settings, offset: int, limit: int) -> None:
    job_id, everything = _multi_file_job(pg_store, wsettings, SIZES)
    body = _read(pg_store, wsettings, job_id, limit=limit, offset=offset)
    assert body["rowCount"] == len(everything) == 4200
    expected = [{"n": n, "label": label} for n, label in everything[offset:offset + limit]]
    assert body["rows"] == expected
    assert [c["type"]["name"] for c in body["schema"]] == ["BIGINT", "VARCHAR"]


def test_results_of_an_append_are_the_rows_that_job_wrote(
        pg_store: Store, wsettings: Settings, typed_job: Job) -> None:
    _, second = run(pg_store, wsettings, TYPED_VIEW)
    with pg_store.unit_of_work() as session:
        snapshot = snapshot_of_job(session, second.id)
        assert snapshot is not None and snapshot.row_count == 20
    assert _read(pg_store, wsettings, second.id, limit=500, offset=0)["rowCount"] == 10


@pytest.mark.parametrize("which", ["typed", "multi"])
def test_downloads_equal_the_pages(pg_store: Store, wsettings: Settings, tmp_path: Path,
                                   which: str, request: pytest.FixtureRequest) -> None:
    if which == "typed":
        job_id = request.getfixturevalue("typed_job").id
    else:
        job_id, _ = _multi_file_job(pg_store, wsettings, SIZES)
    pages = _read(pg_store, wsettings, job_id, limit=10**6, offset=0)
    names = [c["name"] for c in pages["schema"]]

    media, filename, data = _download(pg_store, wsettings, job_id, "jsonl")
    assert media == "application/x-ndjson" and filename == f"{job_id}.jsonl"
    assert [json.loads(line) for line in data.decode().splitlines()] == pages["rows"]

    media, _, data = _download(pg_store, wsettings, job_id, "csv")
    table = list(csv.reader(io.StringIO(data.decode())))
    assert media == "text/csv" and table[0] == names
    assert table[1:] == [[csv_text(row[n]) for n in names] for row in pages["rows"]]

    media, _, data = _download(pg_store, wsettings, job_id, "parquet")
    assert media == "application/vnd.apache.parquet" and data[:4] == b"PAR1"
    (tmp_path / "down.parquet").write_bytes(data)
    rows = duckdb.sql(f"SELECT * FROM '{tmp_path / 'down.parquet'}'")
    got = [dict(zip(names, map(json_value, r), strict=True)) for r in rows.fetchall()]
    assert got == pages["rows"]


def test_results_of_jobs_that_did_not_complete(pg_store: Store, wsettings: Settings) -> None:
    job_id = submit(pg_store, 'CREATE MATERIALIZED VIEW "x" AS SELECT 1 AS n')
    with pg_store.unit_of_work() as session, pytest.raises(JobNotCompleted) as caught:
        read_results(session, Storage.from_settings(wsettings), get_job(session, job_id), limit=10, offset=0)
    assert str(caught.value) == "Can not fetch details for a job that is in [PENDING] state."
    with pg_store.unit_of_work() as session, pytest.raises(JobNotCompleted):
        stream_result(session, Storage.from_settings(wsettings), get_job(session, job_id), "csv")


def test_forecast_results(pg_store: Store, wsettings: Settings, seed: dict[str, Any]) -> None:
    from .queries import FILTER_FORECAST

    _, job = run(pg_store, wsettings, FILTER_FORECAST, type="nql-forecast")
    assert job.state == JobState.COMPLETED and job.result
    body = _read(pg_store, wsettings, job.id, limit=100, offset=0)
    assert body == {"rowCount": 1,
                    "schema": [{"name": "rows", "type": {"name": "BIGINT"}},
                               {"name": "cost", "type": {"name": "BIGINT"}}],
                    "rows": [{"rows": job.result["rows"], "cost": 0}]}
    _, _, data = _download(pg_store, wsettings, job.id, "jsonl")
    assert json.loads(data) == body["rows"][0]


def test_column_stats_view(pg_store: Store, wsettings: Settings, typed_job: Job) -> None:
    with pg_store.unit_of_work() as session:
        snapshot = snapshot_of_job(session, typed_job.id)
        shaped = column_stats(session, snapshot)
    assert [c["name"] for c in shaped["columns"]][:3] == ["ts", "d", "price"]
    by_name = {c["name"]: c for c in shaped["columns"]}
    assert by_name["big"] == {
        "name": "big", "type": "BIGINT", "approx_count_distinct": 10, "mean": 4.5,
        "standard_deviation": pytest.approx(3.0276, abs=1e-3), "completeness": 1.0, "min": 0,
        "max": 9, "count": 10, "nulls": 0}
    assert by_name["v"]["nulls"] == 1 and by_name["v"]["completeness"] == 0.9
    assert by_name["ts"]["min"] == "2013-02-10 20:00:00.000" and by_name["ts"]["mean"] is None
    assert by_name["s"]["min"] is None and by_name["s"]["count"] == 10
    assert column_stats(session, None) == {}
    assert job_row(pg_store, typed_job.id).state == JobState.COMPLETED
