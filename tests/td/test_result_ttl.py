"""Interactive query results expire: with a short DATAPLANE_QUERY_RESULT_TTL_SECONDS their
results answer 410 Gone on every surface and the scheduler's retention duty deletes their
data objects (the Parquet files of the result dataset and the msgpack.gz)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from shared.storage import ObjectNotFound
from shared.store.td import gz_key
from tests.processes import wait_for
from tests.td.stack import QUERY, Stack, finished, make_stack

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

TTL_SECONDS = 5


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_database: str,
          redis_db: int) -> Iterator[Stack]:
    yield from make_stack(tmp_path_factory, pg_database, redis_db, ttl_seconds=TTL_SECONDS)



def test_interactive_results_expire(stack: Stack) -> None:
    with stack.client() as td:
        job = td.query("company_data", QUERY, type="presto")
        finished(job, stack)
        size = td.api.show_job(job.job_id)["result_size"]
        assert size and stack.storage.size(gz_key(job.job_id)) == size
    with stack.http() as http:
        jobs = http.get(f"/v3/job/show/{job.job_id}").json()
        dataset_files = _result_files(stack, job.job_id)
        assert dataset_files
        time.sleep(TTL_SECONDS + 0.5)
        for fmt in ("msgpack", "msgpack.gz", "json", "csv"):
            gone = http.get(f"/v3/job/result/{job.job_id}", params={"format": fmt})
            assert gone.status_code == 410, (fmt, gone.text)
        bearer = {"Authorization": f"Bearer {stack.key}"}
        assert http.get(f"/jobs/{job.job_id}/results", headers=bearer).status_code == 410
        assert http.get(f"/jobs/{job.job_id}/result", headers=bearer).status_code == 410
        assert jobs["status"] == "success"

    def deleted() -> bool:
        return not any(_exists(stack, key) for key in [*dataset_files, gz_key(job.job_id)])
    wait_for(deleted, timeout=30, message=f"expired result deleted\n{stack.logs()}")
    with stack.http() as http:
        bearer = {"Authorization": f"Bearer {stack.key}"}
        dataset_id = http.get(f"/jobs/{job.job_id}", headers=bearer).json()["input"]["dataset_id"]
        wait_for(lambda: http.get(f"/datasets/{dataset_id}", headers=bearer).status_code == 404,
                 timeout=30, message="expired result dataset removed")
        # The job itself stays, and says what became of its result.
        shown = http.get(f"/v3/job/show/{job.job_id}").json()
        assert shown["status"] == "success" and shown["result_expired"] is True


def _result_files(stack: Stack, job_id: str) -> list[str]:
    with stack.store.unit_of_work() as session:
        return list(session.execute(text("SELECT files FROM snapshots WHERE job_id = :j"),
                                    {"j": job_id}).scalar_one())


def _exists(stack: Stack, key: str) -> bool:
    try:
        stack.storage.size(key)
    except ObjectNotFound:
        return False
    return True
