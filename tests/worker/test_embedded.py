"""Dev mode: a real worker on the embedded broker (`sqla+sqlite`) and a SQLite store,
no servers at all; and it stops cleanly when its whole process group gets SIGTERM."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.celery_app import make_app
from shared.config import Settings
from shared.queues import RUN_JOB_TASK, queue_for
from shared.sample_data import write_seed_dataset
from shared.states import JobState
from shared.store import Store
from shared.store.migrate import upgrade
from tests.processes import start, wait_for
from worker.importer import import_dataset

from .conftest import job_row, submit
from .queries import HOURS_VIEW

pytestmark = pytest.mark.e2e


def test_embedded_broker_and_sqlite_store(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.celery_broker_url.startswith("sqla+sqlite:///")
    settings.ensure_dirs()
    upgrade(settings.store_url)
    store = Store.from_settings(settings)
    source = tmp_path / "seed.parquet"
    write_seed_dataset(source, 2_000)
    import_dataset(settings, store, company_id=1, dataset_id=6402, name="seed", source=source)
    worker = start("worker", ["worker", "--concurrency", "1"],
                   {"DATAPLANE_DATA_DIR": str(settings.data_dir)}, tmp_path / "logs")
    app = make_app(settings)
    try:
        job_id = submit(store, HOURS_VIEW)
        app.send_task(RUN_JOB_TASK, kwargs={"job_id": str(job_id), "job_type": "materialize-view",
                                            "cluster": "shared"}, queue=queue_for("shared", None))
        wait_for(lambda: job_row(store, job_id).state in (JobState.COMPLETED, JobState.FAILED),
                 timeout=60, message=f"job done\n{worker.log()}")
        job = job_row(store, job_id)
        assert job.state == JobState.COMPLETED, job.failures
        assert (job.result or {}).get("snapshot_id")
        # SIGTERM to the whole group (systemd, the test harness): a pool process must not
        # die holding billiard's queue lock, or the warm shutdown hangs.
        assert worker.stop(timeout=20) == 0  # not -9: no SIGKILL was needed
        assert "Warm shutdown" in worker.log()
    finally:
        worker.stop()
        app.close()
        store.dispose()
