"""A worker whose data lives in a real S3 server (moto_server): jobs, the output cap, and
both sandbox walls, with the object-storage escape routes of the research notes."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pytest

from shared.config import Settings
from shared.sample_data import SEED_DATASET_ID, SEED_VIEW_NQL, write_seed_dataset
from shared.states import JobState
from shared.storage import Storage
from shared.store import Store
from shared.store.datasets import snapshot_of_job
from shared.store.jobs import NewJob, create_job, get_job
from shared.store.models import Job
from tests.nql.test_security import ESCAPES
from tests.s3 import ACCESS_KEY, SECRET_KEY, MotoServer, object_keys
from worker.cache import DataFiles
from worker.execute import run_job
from worker.importer import import_dataset
from worker.inputs import Input, bind_inputs, localize
from worker.sandbox import Limits, open_sandbox

pytestmark = pytest.mark.postgres
# 20k x 20k rows: writes for minutes unless stopped.
BIG_VIEW = ('CREATE MATERIALIZED VIEW "big" AS SELECT a."event_timestamp" AS t1, b."event_timestamp" AS t2 '
            'FROM company_data."6402" AS a CROSS JOIN company_data."6402" AS b')


@pytest.fixture(params=["s3", "file"])
def s3settings(request: pytest.FixtureRequest, data_dir: Path, pg_database: str) -> Settings:
    storage: dict[str, Any] = {"storage_url": (data_dir / "objects").as_uri()}
    if request.param == "s3":
        server: MotoServer = request.getfixturevalue("moto")
        storage = {"storage_url": f"s3://dataplane-test/{uuid.uuid4().hex}", "s3_endpoint_url": server.endpoint,
                   "s3_access_key_id": ACCESS_KEY, "s3_secret_access_key": SECRET_KEY}
    settings = Settings(data_dir=data_dir, database_url=pg_database, lease_seconds=6, job_timeout_seconds=60,
                        duckdb_threads=1, duckdb_memory_limit="512MB", cancel_poll_seconds=0.1, **storage)
    settings.ensure_dirs()
    return settings


@pytest.fixture
def seeded(s3settings: Settings, pg_store: Store, tmp_path: Path) -> dict[str, Any]:
    source = tmp_path / "seed.parquet"
    write_seed_dataset(source, 20_000)
    return import_dataset(s3settings, pg_store, company_id=1, dataset_id=SEED_DATASET_ID, name="seed",
                          source=source)


def _run(store: Store, settings: Settings, nql: str) -> Job:
    with store.unit_of_work() as session:
        job, _ = create_job(session, NewJob(company_id=1, user_id=7, type="materialize-view", nql=nql))
    run_job(store, settings, job.id, executor="t")
    with store.unit_of_work() as session:
        done = get_job(session, job.id)
        session.expunge(done)
        return done


def test_views_read_and_write_the_bucket(pg_store: Store, s3settings: Settings, seeded: dict[str, Any]) -> None:
    job = _run(pg_store, s3settings, SEED_VIEW_NQL)
    assert job.state == JobState.COMPLETED, job.failures
    with pg_store.unit_of_work() as session:
        snapshot = snapshot_of_job(session, job.id)
        assert snapshot is not None
        keys = list(snapshot.files)
    assert set(keys) <= object_keys(s3settings) and keys[0].startswith(f"{job.dataset_id}/{job.id}-1-")
    if s3settings.storage_url.startswith("s3://"):
        assert not (s3settings.datasets_dir / keys[0]).exists()  # nothing on the worker's disk but its cache
        assert any((s3settings.cache_dir / "objects").rglob("import-*.parquet"))


def test_output_past_the_cap_fails_and_leaves_nothing(pg_store: Store, s3settings: Settings,
                                                     seeded: dict[str, Any]) -> None:
    capped = s3settings.model_copy(update={"max_output_bytes": 2_000_000})
    started = time.monotonic()
    job = _run(pg_store, capped, BIG_VIEW)
    assert time.monotonic() - started < 30  # stopped while writing, not after minutes
    assert job.state == JobState.FAILED
    [failure] = job.failures
    assert "2000000 bytes" in failure["message"] and "DATAPLANE_MAX_OUTPUT_BYTES" in failure["message"]
    assert failure["value"]["type"] == "OutputTooLarge" and failure["value"]["kind"] == "user"
    assert not object_keys(capped, f"{job.dataset_id}/{job.id}")
    assert not any(capped.staging_dir.iterdir())


def test_escape_attempts_fail_as_jobs_and_say_nothing_of_the_store(
        pg_store: Store, s3settings: Settings, seeded: dict[str, Any]) -> None:
    forbidden = [SECRET_KEY, ACCESS_KEY, "dataplane-test", str(s3settings.data_dir),
                 s3settings.s3_endpoint_url or "s3-endpoint-unset"]
    for index, (_, nql, _) in enumerate(ESCAPES):
        view = nql if nql.upper().startswith(("CREATE", "EXPLAIN")) else f'CREATE MATERIALIZED VIEW "e{index}" AS {nql}'
        job = _run(pg_store, s3settings, view)
        assert job.state == JobState.FAILED, (nql, job.state)
        text = json.dumps({"failures": job.failures, "sql": job.compiled_sql, "result": job.result})
        assert not any(secret in text for secret in forbidden), (nql, text)


def test_the_locked_connection_holds_on_its_own_over_cached_objects(
        pg_store: Store, s3settings: Settings, seeded: dict[str, Any], moto: MotoServer, tmp_path: Path) -> None:
    """The second wall, given SQL the compiler would refuse: the object-storage holes of
    the research notes (`..` inside an allowed prefix, CREATE SECRET to a foreign endpoint)."""
    files = DataFiles.from_settings(s3settings)
    run_dir = s3settings.staging_dir / "job-1"
    [seed] = localize([Input(dataset_id=SEED_DATASET_ID, relation="ds_6402", columns=(("x", "BIGINT"),),
                             keys=tuple(seeded["files"]), row_count=1, price_micro_cents_per_row=0,
                             snapshot_id=1)], storage=files.storage, cache=files.cache, into=run_dir / "in")
    outside = tmp_path / "outside"
    outside.mkdir()
    for folder in ("in", "out", "tmp"):
        (run_dir / folder).mkdir(parents=True, exist_ok=True)
    duckdb.sql(f"COPY (SELECT 42 AS secret) TO '{outside}/x.parquet' (FORMAT parquet)")
    limits = Limits(threads=1, memory_limit="256MB", temp_directory=run_dir / "tmp",
                    max_temp_directory_size="100MB", max_execution_ms=5000)
    allowed = sorted({f.parent for f in seed.files} | {run_dir})
    con = open_sandbox(limits, allowed_directories=allowed,
                       bind=lambda c: bind_inputs(c, [Input(dataset_id=SEED_DATASET_ID, relation="ds_6402",
                                                            columns=(("event_timestamp", "TIMESTAMP"),),
                                                            files=seed.files, row_count=1,
                                                            price_micro_cents_per_row=0, snapshot_id=1)]))
    try:
        assert con.execute("SELECT count(*) FROM ds_6402").fetchone() == (20_000,)
        # Paths that start inside an allowed folder and climb out of it (`..`); a plain
        # connection reads them, the locked one must not.
        escapes = [f"{folder}/{os.path.relpath(outside / 'x.parquet', folder)}"
                   for folder in (seed.files[0].parent, run_dir / "in")]
        for path in escapes:
            assert duckdb.sql(f"SELECT secret FROM read_parquet('{path}')").fetchall() == [(42,)]
        attempts = [
            *(f"SELECT * FROM read_parquet('{path}')" for path in escapes),
            f"COPY (SELECT 1) TO '{run_dir}/out/{os.path.relpath(outside, run_dir / 'out')}/escape.parquet' "
            "(FORMAT parquet)",
            f"SELECT * FROM read_parquet('s3://dataplane-test/{seeded['files'][0]}')",
            f"CREATE SECRET evil (TYPE s3, KEY_ID 'k', SECRET 's', ENDPOINT '127.0.0.1:{moto.port}', "
            "URL_STYLE 'path', USE_SSL false, SCOPE 's3://dataplane-test/')",
            "COPY (SELECT 1) TO 's3://dataplane-test/leak.parquet' (FORMAT parquet)",
            "SELECT * FROM duckdb_secrets()",
            "INSTALL httpfs",
            "LOAD httpfs",
        ]
        for sql in attempts:
            with pytest.raises(duckdb.Error):
                con.execute(sql).fetchall()
    finally:
        con.close()
    assert not (outside / "escape.parquet").exists()
    assert "leak.parquet" not in {o.key.rsplit("/", 1)[-1] for o in Storage.from_settings(s3settings).list()}
