"""Orphaned data files and stale staging folders are deleted; published files never."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from scheduler.orphans import OrphanFiles
from shared.config import Settings
from shared.storage import Storage
from shared.store import Store
from shared.store.datasets import create_dataset, publish_snapshot


def _file(path: Path, *, age: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PAR1")
    when = time.time() - age
    os.utime(path, (when, when))
    return path


def test_sweep(store: Store, tmp_path: Path) -> None:
    # Local files: the sweep's age test needs mtimes set by hand (tests/storage covers S3).
    settings = Settings(data_dir=tmp_path, job_timeout_seconds=60, storage_url=(tmp_path / "datasets").as_uri())
    settings.ensure_dirs()
    old = 60 + 600 + 100  # older than timeout + margin
    with store.unit_of_work() as session:
        dataset = create_dataset(session, company_id=1, name="d", schema=[["x", "BIGINT"]], dataset_id=5)
        publish_snapshot(session, dataset=dataset, job_id=uuid.uuid4(), write_mode="append",
                         added_files=["5/published.parquet"], added_rows=1, added_bytes=4)
    published = _file(settings.datasets_dir / "5/published.parquet", age=old)
    orphan = _file(settings.datasets_dir / "5/orphan.parquet", age=old)
    fresh = _file(settings.datasets_dir / "5/in-flight.parquet", age=10)  # a run may still publish it
    stale_staging = settings.staging_dir / "job-1"
    stale_staging.mkdir()
    os.utime(stale_staging, (time.time() - old, time.time() - old))
    live_staging = settings.staging_dir / "job-2"
    live_staging.mkdir()

    swept = OrphanFiles(settings=settings, store=store, storage=Storage.from_settings(settings)).sweep()

    assert swept.files == ["5/orphan.parquet"] and not orphan.exists()
    assert published.exists() and fresh.exists()
    assert swept.staging == [stale_staging] and not stale_staging.exists() and live_staging.exists()
