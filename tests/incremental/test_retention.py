"""EXPIRE with a fake clock: append views lose files written before the cutoff (a new
snapshot without them), overwrite views lose old snapshots, expire_everything keeps only
the current one, retain_everything keeps all; objects go only when nothing lists them and
no running job started before they stopped being current."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from scheduler.retention import Retention
from shared.config import Settings
from shared.storage import Storage, import_key
from shared.store import Store
from shared.store.datasets import create_dataset, current_snapshot, get_dataset, list_snapshots, publish_snapshot
from shared.store.jobs import NewJob, cancel, claim, create_job
from shared.store.models import Snapshot
from tests.s3 import object_keys

from .helpers import COMPANY

pytestmark = pytest.mark.postgres
VIEW = 700
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def make_view(store: Store, settings: Settings, *, expire: str, write_mode: str,
              ages_days: list[int]) -> list[str]:
    """A view whose snapshots were written `ages_days` days before NOW (oldest first)."""
    nql = (f"CREATE MATERIALIZED VIEW \"kept\" EXPIRE='{expire}' WRITE_MODE='{write_mode}' "
           'AS SELECT 1 AS x FROM company_data."1"')
    storage = Storage.from_settings(settings)
    keys = []
    with store.unit_of_work() as session:
        dataset = create_dataset(session, company_id=COMPANY, name="kept", schema=(("x", "INTEGER"),),
                                 dataset_id=VIEW, view_nql=nql, write_mode=write_mode)
        dataset.expire = expire  # what a run of the view records
    for age in ages_days:
        key = import_key(VIEW, uuid.uuid4().hex)
        storage.put_bytes(key, b"parquet bytes")
        keys.append(key)
        with store.unit_of_work() as session:
            snapshot = publish_snapshot(session, dataset=get_dataset(session, VIEW), job_id=None,
                                        write_mode=write_mode, added_files=[key], added_rows=10,
                                        added_bytes=13)
            session.execute(update(Snapshot).where(Snapshot.id == snapshot.id)
                            .values(created_at=NOW - timedelta(days=age)))
    return keys


def state(store: Store) -> tuple[list[str], int, int, str]:
    with store.unit_of_work() as session:
        dataset = get_dataset(session, VIEW)
        head = current_snapshot(session, dataset)
        assert head is not None
        return list(head.files), head.row_count, len(list_snapshots(session, VIEW)), head.operation


def retention(store: Store, settings: Settings, *, at: datetime = NOW) -> Retention:
    return Retention(settings=settings, store=store, storage=Storage.from_settings(settings), clock=lambda: at)


def stored(settings: Settings, keys: list[str]) -> set[str]:
    """Which of this test's objects exist (an S3 session's bucket outlives each test)."""
    return set(object_keys(settings, f"{VIEW}/")) & set(keys)


def test_append_view_drops_files_older_than_the_duration(pg_store: Store, wsettings: Settings) -> None:
    keys = make_view(pg_store, wsettings, expire="P30D", write_mode="append", ages_days=[40, 10, 1])
    a, b, c = keys
    done = retention(pg_store, wsettings).sweep()
    files, rows, count, operation = state(pg_store)
    assert (files, rows, operation) == ([b, c], 20, "expire")
    assert len(done.expired_snapshots) == 1 and done.deleted_files == [a]
    assert stored(wsettings, keys) == {b, c} and count == 1  # superseded snapshots listed a: gone
    # A later sweep, 35 days on: b is now old as well.
    retention(pg_store, wsettings, at=NOW + timedelta(days=25)).sweep()
    assert state(pg_store)[0] == [c] and stored(wsettings, keys) == {c}


def test_nothing_is_deleted_under_a_running_job(pg_store: Store, wsettings: Settings) -> None:
    keys = make_view(pg_store, wsettings, expire="P30D", write_mode="append", ages_days=[40, 1])
    a, b = keys
    with pg_store.unit_of_work() as session:
        job, _ = create_job(session, NewJob(company_id=COMPANY, user_id=1, type="materialize-view",
                                            nql='CREATE MATERIALIZED VIEW "r" AS SELECT x FROM company_data."700"'))
        assert claim(session, job.id, executor="w", lease_seconds=60) == 1  # pins the current snapshot
    done = retention(pg_store, wsettings).sweep()
    assert state(pg_store)[0] == [b]  # expired from the current snapshot at once...
    assert done.deleted_files == [] and stored(wsettings, keys) == {a, b}  # ...but a stays for the run
    with pg_store.unit_of_work() as session:
        cancel(session, job.id, actor="test")
    done = retention(pg_store, wsettings).sweep()
    assert done.deleted_files == [a] and stored(wsettings, keys) == {b}


def test_overwrite_view_drops_old_snapshots(pg_store: Store, wsettings: Settings) -> None:
    keys = make_view(pg_store, wsettings, expire="P30D", write_mode="overwrite", ages_days=[50, 40, 1])
    c = keys[2]
    retention(pg_store, wsettings).sweep()
    files, _, count, operation = state(pg_store)
    assert (files, count, operation) == ([c], 1, "overwrite")
    assert stored(wsettings, keys) == {c}


def test_overwrite_view_keeps_recent_history(pg_store: Store, wsettings: Settings) -> None:
    keys = make_view(pg_store, wsettings, expire="P30D", write_mode="overwrite", ages_days=[20, 10, 1])
    retention(pg_store, wsettings).sweep()
    assert state(pg_store)[2] == 3 and len(stored(wsettings, keys)) == 3


def test_expire_everything_keeps_only_the_current_snapshot(pg_store: Store, wsettings: Settings) -> None:
    keys = make_view(pg_store, wsettings, expire="expire_everything", write_mode="append", ages_days=[3, 2, 1])
    a, b, c = keys
    retention(pg_store, wsettings).sweep()
    files, _, count, _ = state(pg_store)
    assert files == [a, b, c] and count == 1 and stored(wsettings, keys) == {a, b, c}


def test_retain_everything_keeps_all(pg_store: Store, wsettings: Settings, tmp_path: Path) -> None:
    make_view(pg_store, wsettings, expire="retain_everything", write_mode="append", ages_days=[900, 1])
    done = retention(pg_store, wsettings, at=NOW + timedelta(days=9999)).sweep()
    assert done.expired_snapshots == [] and done.deleted_snapshots == [] and state(pg_store)[2] == 2


def test_an_invalid_expire_is_rejected_at_compile_time() -> None:
    from shared.nql import validate_nql
    verdict = validate_nql("CREATE MATERIALIZED VIEW \"v\" EXPIRE='30 days' AS SELECT 1 AS x FROM company_data.\"1\"")
    assert not verdict.ok and "ISO-8601" in verdict.problems[0].message
