"""Fixtures of the worker tests: a real PostgreSQL store, a data dir, seed-shaped datasets.

Unit tests call `worker.execute.run_job` in-process (no Celery); the end-to-end tests
(`test_e2e.py`) run a real `dataplane worker` process on real Redis.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.config import Settings
from shared.sample_data import SEED_DATASET_ID, write_seed_dataset
from shared.store import Store
from shared.store.jobs import NewJob, create_job, get_job
from shared.store.models import Job
from worker.execute import run_job
from worker.importer import import_dataset
from worker.lifecycle import Outcome

COMPANY = 1


@pytest.fixture
def wsettings(data_dir: Path, pg_database: str) -> Settings:
    settings = Settings(data_dir=data_dir, database_url=pg_database, lease_seconds=6,
                        job_timeout_seconds=30, duckdb_threads=2, duckdb_memory_limit="1GB",
                        retry_backoff_seconds=0.01, cancel_poll_seconds=0.1)
    settings.ensure_dirs()
    return settings


@pytest.fixture(scope="session")
def seed_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seed") / "seed.parquet"
    write_seed_dataset(path, 20_000)
    return path


@pytest.fixture
def seed(wsettings: Settings, pg_store: Store, seed_file: Path) -> dict[str, Any]:
    """The seed dataset (20k rows) as dataset 6402 of company 1."""
    return import_dataset(wsettings, pg_store, company_id=COMPANY, dataset_id=SEED_DATASET_ID,
                          name="seed", source=seed_file)


def submit(store: Store, nql: str, *, type: str = "materialize-view", company_id: int = COMPANY,
           **options: Any) -> uuid.UUID:
    with store.unit_of_work() as session:
        job, _ = create_job(session, NewJob(company_id=company_id, user_id=7, type=type, nql=nql,
                                            **options))
        return job.id


def job_row(store: Store, job_id: uuid.UUID) -> Job:
    with store.unit_of_work() as session:
        job = get_job(session, job_id)
        session.expunge(job)
        return job


def run(store: Store, settings: Settings, nql: str, *, type: str = "materialize-view",
        **options: Any) -> tuple[Outcome, Job]:
    job_id = submit(store, nql, type=type, **options)
    outcome = run_job(store, settings, job_id, executor="test")
    return outcome, job_row(store, job_id)


@pytest.fixture
def no_leftovers(wsettings: Settings) -> Iterator[None]:
    yield
    assert not any(wsettings.staging_dir.iterdir()), "a run left staging files behind"
