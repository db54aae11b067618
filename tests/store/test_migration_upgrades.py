"""Every migration upgrades a database populated at the revision before it: jobs in every
state, their transitions, a dataset with snapshots and a refresh schedule all survive, on
SQLite and PostgreSQL. The data is written with plain SQL in the first revision's columns
(every later revision keeps them), so a new migration is covered without a new test."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from shared.states import JobState
from shared.store.migrate import alembic_config, upgrade
from tests.conftest import PG_ADMIN_URL, require_service

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC).isoformat()


def _revisions() -> list[tuple[str, str]]:
    """(previous, revision) for every non-initial migration, oldest first."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    pairs = [(str(r.down_revision), r.revision) for r in script.walk_revisions()
             if r.down_revision is not None]
    return list(reversed(pairs))


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'upgrade.sqlite'}"
        return
    require_service("PostgreSQL", "127.0.0.1", 5432)
    name = f"dataplane_upgrade_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                     {"n": name})
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def _populate(url: str) -> dict[str, str]:
    """One job per state (with its transition), a dataset, two snapshots, a schedule."""
    jobs = {state.value: str(uuid.uuid4()) for state in JobState}
    engine = create_engine(url)
    uuid_value = (lambda v: v) if url.startswith("postgresql") else (lambda v: v.replace("-", ""))
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO datasets (id, company_id, name, schema, tags, write_mode, "
            "price_micro_cents_per_row, current_snapshot_id, created_at, updated_at) VALUES "
            "(6402, 1, 'events', :schema, '[]', 'append', 0, 2, :now, :now)"),
            {"schema": json.dumps([["n", "BIGINT"]]), "now": NOW})
        for snapshot_id, files in ((1, ["6402/a-1-0.parquet"]), (2, ["6402/a-1-0.parquet", "6402/b-1-0.parquet"])):
            conn.execute(text(
                "INSERT INTO snapshots (id, dataset_id, operation, files, added_files, row_count, "
                "added_rows, bytes, created_at) VALUES (:id, 6402, 'append', :files, :added, :rows, 5, 100, :now)"),
                {"id": snapshot_id, "files": json.dumps(files), "added": json.dumps(files[-1:]),
                 "rows": 5 * len(files), "now": NOW})
        conn.execute(text(
            "INSERT INTO refresh_schedules (dataset_id, company_id, user_id, nql, cron, cron_zone_id, "
            "execution_cluster, stats_enabled, status, next_run_at, created_at, updated_at) VALUES "
            "(6402, 1, 7, 'CREATE MATERIALIZED VIEW \"v\" AS SELECT 1 AS n', '@hourly', 'UTC', 'shared', "
            ":t, 'active', :now, :now, :now)"), {"t": True, "now": NOW})
        for state, job_id in jobs.items():
            conn.execute(text(
                "INSERT INTO jobs (id, company_id, user_id, request_source_type, state, type, nql, "
                "stats_enabled, idempotency_key, failures, tags, execution_cluster, priority, "
                "retry_limit, attempts, infra_retries, statistics, created_at, updated_at) VALUES "
                "(:id, 1, 7, 'api_user', :state, 'nql-forecast', 'EXPLAIN SELECT 1', :t, :key, '[]', "
                "'[\"x\"]', 'shared', 0, 0, 1, 0, '{}', :now, :now)"),
                {"id": uuid_value(job_id), "state": state, "t": True, "key": job_id, "now": NOW})
            conn.execute(text("INSERT INTO job_tags (company_id, tag, job_id) VALUES (1, 'x', :id)"),
                         {"id": uuid_value(job_id)})
            conn.execute(text(
                "INSERT INTO job_transitions (job_id, from_state, to_state, attempt, at, actor) "
                "VALUES (:id, NULL, :state, 1, :now, 'test')"),
                {"id": uuid_value(job_id), "state": state, "now": NOW})
    engine.dispose()
    return jobs


@pytest.mark.parametrize(("previous", "revision"), _revisions() or [pytest.param("", "", marks=pytest.mark.skip(
    reason="only the initial migration exists"))])
def test_upgrade_keeps_every_job(empty_url: str, previous: str, revision: str) -> None:
    upgrade(empty_url, previous)
    jobs = _populate(empty_url)
    upgrade(empty_url, revision)
    engine = create_engine(empty_url)
    with engine.connect() as conn:
        states = dict(conn.execute(text("SELECT idempotency_key, state FROM jobs")).all())
        transitions = conn.execute(text("SELECT count(*) FROM job_transitions")).scalar_one()
        tags = conn.execute(text("SELECT count(*) FROM job_tags")).scalar_one()
        snapshots = conn.execute(text("SELECT id, files FROM snapshots ORDER BY id")).all()
        current = conn.execute(text("SELECT current_snapshot_id FROM datasets WHERE id = 6402")).scalar_one()
        schedule = conn.execute(text("SELECT status FROM refresh_schedules")).scalar_one()
    engine.dispose()
    assert states == {job_id: state for state, job_id in jobs.items()}
    assert transitions == len(jobs) and tags == len(jobs)
    assert [s.id for s in snapshots] == [1, 2] and current == 2 and schedule == "active"
    files = snapshots[1].files
    assert (json.loads(files) if isinstance(files, str) else files) == ["6402/a-1-0.parquet", "6402/b-1-0.parquet"]
    upgrade(empty_url, "head")  # and on to the newest
