"""The orphan sweep lists the bucket itself: objects no snapshot lists go once no run can
still publish them; objects a snapshot lists, and recent ones, stay."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from scheduler.orphans import SAFETY_MARGIN_SECONDS, OrphanFiles
from shared.config import Settings
from shared.storage import Storage
from shared.store import Store
from shared.store.datasets import create_dataset, publish_snapshot
from tests.s3 import ACCESS_KEY, SECRET_KEY, MotoServer


def test_sweep_over_s3(pg_store: Store, moto: MotoServer, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, job_timeout_seconds=60,
                        storage_url=f"s3://dataplane-test/{uuid.uuid4().hex}", s3_endpoint_url=moto.endpoint,
                        s3_access_key_id=ACCESS_KEY, s3_secret_access_key=SECRET_KEY)
    storage = Storage.from_settings(settings)
    with pg_store.unit_of_work() as session:
        dataset = create_dataset(session, company_id=1, name="d", schema=[["x", "BIGINT"]], dataset_id=5)
        publish_snapshot(session, dataset=dataset, job_id=uuid.uuid4(), write_mode="append",
                         added_files=["5/published.parquet"], added_rows=1, added_bytes=4)
    for key in ("5/published.parquet", "5/orphan.parquet", "5/other-orphan.parquet"):
        storage.put_bytes(key, b"PAR1")
    now = OrphanFiles(settings=settings, store=pg_store, storage=storage)
    assert now.sweep().files == []  # too recent: a run may still publish them
    later = OrphanFiles(settings=settings, store=pg_store, storage=storage,
                        clock=lambda: time.time() + 60 + SAFETY_MARGIN_SECONDS + 5)
    assert sorted(later.sweep().files) == ["5/orphan.parquet", "5/other-orphan.parquet"]
    assert {o.key for o in storage.list()} == {"5/published.parquet"}
